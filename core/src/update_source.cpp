#include "hps/update_source.hpp"

#include <sstream>

#include <nlohmann/json.hpp>

namespace hps {

std::string to_json(const std::vector<UpdateSourceStats>& sources) {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (const UpdateSourceStats& s : sources) {
    out.push_back({{"name", s.name},
                   {"received", s.received},
                   {"applied", s.applied},
                   {"rows", s.rows},
                   {"errors", s.errors},
                   {"lag", s.lag},
                   {"last_error", s.last_error}});
  }
  return out.dump();
}

std::string to_prometheus(const std::vector<UpdateSourceStats>& sources) {
  if (sources.empty()) return {};
  auto label = [](const std::string& name) {
    std::string v;
    for (char c : name) {
      if (c == '\\' || c == '"') v += '\\';
      if (c == '\n') {
        v += "\\n";
        continue;
      }
      v += c;
    }
    return "{source=\"" + v + "\"} ";
  };
  std::ostringstream out;
  auto family = [&](const char* name, const char* type, const char* help, auto value) {
    out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
    for (const UpdateSourceStats& s : sources) out << name << label(s.name) << value(s) << '\n';
  };
  family("hps_update_source_messages_total", "counter", "Messages an update source received.",
         [](const UpdateSourceStats& s) { return s.received; });
  family("hps_update_source_batches_total", "counter", "Update and erase calls a source applied through every tier.",
         [](const UpdateSourceStats& s) { return s.applied; });
  family("hps_update_source_rows_total", "counter", "Rows a source applied.",
         [](const UpdateSourceStats& s) { return s.rows; });
  family("hps_update_source_errors_total", "counter",
         "Errors of a source: malformed or skipped messages, failed batches, lost brokers, failed commits.",
         [](const UpdateSourceStats& s) { return s.errors; });
  family("hps_update_source_lag", "gauge", "Messages waiting at the source not applied yet (-1: unknown).",
         [](const UpdateSourceStats& s) { return s.lag; });
  return out.str();
}

}  // namespace hps
