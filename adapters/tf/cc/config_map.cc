#include "config_map.h"

#include <cstdlib>
#include <map>
#include <mutex>

namespace hps_tf {
namespace {

std::mutex g_mutex;
std::map<std::string, std::string>& Mappings() {
  static auto* mappings = new std::map<std::string, std::string>();  // never freed: used at exit by kernels
  return *mappings;
}

// The target of `config` in HPS_TF_CONFIG_MAP, or "" when none.
std::string FromEnvironment(const std::string& config) {
  const char* env = std::getenv("HPS_TF_CONFIG_MAP");
  if (env == nullptr) return "";
  std::string text(env), wildcard;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(';', start);
    if (end == std::string::npos) end = text.size();
    std::string entry = text.substr(start, end - start);
    size_t eq = entry.find('=');
    if (eq != std::string::npos) {
      std::string from = entry.substr(0, eq), to = entry.substr(eq + 1);
      if (from == config) return to;
      if (from == "*") wildcard = to;
    }
    start = end + 1;
  }
  return wildcard;
}

}  // namespace

std::string ResolveConfig(const std::string& config) {
  if (!config.empty() && config[0] == '{') return config;  // JSON text: nothing to re-point
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    auto& mappings = Mappings();
    auto found = mappings.find(config);
    if (found != mappings.end()) return found->second;
    found = mappings.find("*");
    if (found != mappings.end()) return found->second;
  }
  std::string mapped = FromEnvironment(config);
  return mapped.empty() ? config : mapped;
}

}  // namespace hps_tf

extern "C" void hps_tf_map_config(const char* from, const char* to) {
  if (from == nullptr) return;
  std::lock_guard<std::mutex> lock(hps_tf::g_mutex);
  if (to == nullptr || *to == '\0') {
    hps_tf::Mappings().erase(from);
  } else {
    hps_tf::Mappings()[from] = to;
  }
}

extern "C" void hps_tf_clear_config_map(void) {
  std::lock_guard<std::mutex> lock(hps_tf::g_mutex);
  hps_tf::Mappings().clear();
}

extern "C" const char* hps_tf_resolve_config(const char* config) {
  thread_local std::string resolved;
  resolved = hps_tf::ResolveConfig(config == nullptr ? "" : config);
  return resolved.c_str();
}
