#include "hps/update_source.hpp"

#include <nlohmann/json.hpp>

namespace hps {

std::string to_json(const std::vector<UpdateSourceStats>& sources) {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (const UpdateSourceStats& s : sources) {
    out.push_back({{"name", s.name},
                   {"received", s.received},
                   {"applied", s.applied},
                   {"errors", s.errors},
                   {"last_error", s.last_error}});
  }
  return out.dump();
}

}  // namespace hps
