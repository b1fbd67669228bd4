#include "updates/librdkafka.hpp"

#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <vector>

#include "hps/error.hpp"

namespace hps::kafka {

namespace {

namespace fs = std::filesystem;

// The folder of libhps_core.so itself.
fs::path library_folder() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&library_folder), &info) == 0 || info.dli_fname == nullptr) return {};
  std::error_code ec;
  const fs::path self = fs::canonical(info.dli_fname, ec);
  return ec ? fs::path{} : self.parent_path();
}

// librdkafka*.so* inside `<site-packages>/confluent_kafka.libs`, found from libhps_core's folder
// (site-packages/hps) and its parent.
std::vector<std::string> wheel_candidates() {
  std::vector<std::string> out;
  const fs::path here = library_folder();
  if (here.empty()) return out;
  for (const fs::path& base : {here, here.parent_path(), here.parent_path().parent_path()}) {
    const fs::path libs = base / "confluent_kafka.libs";
    std::error_code ec;
    if (!fs::is_directory(libs, ec)) continue;
    for (const auto& entry : fs::directory_iterator(libs, ec)) {
      const std::string name = entry.path().filename().string();
      if (name.rfind("librdkafka", 0) == 0 && name.find(".so") != std::string::npos) out.push_back(entry.path());
    }
    if (!out.empty()) break;
  }
  return out;
}

// Loads `path` and resolves every function; on failure returns false with `why` set.
bool try_load(const std::string& path, RdKafka& out, std::string& why) {
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* e = dlerror();
    why = e ? e : "dlopen failed";
    return false;
  }
  RdKafka table;
  table.path = path;
  std::string missing;
#define HPS_RDKAFKA_RESOLVE(name)                                                 \
  table.name = reinterpret_cast<decltype(table.name)>(dlsym(handle, #name));      \
  if (table.name == nullptr) missing += (missing.empty() ? "" : ", ") + std::string(#name);
  HPS_RDKAFKA_FUNCTIONS(HPS_RDKAFKA_RESOLVE)
#undef HPS_RDKAFKA_RESOLVE
  if (!missing.empty()) {
    why = "lacks " + missing + " (librdkafka 1.6 or newer is needed)";
    dlclose(handle);
    return false;
  }
  table.version = table.rd_kafka_version_str();
  out = std::move(table);  // the handle stays open for the life of the process
  return true;
}

}  // namespace

const RdKafka& librdkafka() {
  static std::mutex mutex;
  static RdKafka loaded;
  static bool ok = false;
  std::lock_guard lock(mutex);
  if (ok) return loaded;

  std::string tried;
  auto attempt = [&](const std::string& path, const char* origin) {
    std::string why;
    if (try_load(path, loaded, why)) return true;
    tried += "\n  " + path + " (" + origin + "): " + why;
    return false;
  };
  if (const char* env = std::getenv("HPS_LIBRDKAFKA"); env != nullptr && *env != '\0') {
    ok = attempt(env, "HPS_LIBRDKAFKA");
    HPS_EXPECTS(ok, BackendUnavailable, "update_source kafka: cannot load librdkafka:", tried);
    return loaded;
  }
  for (const std::string& path : wheel_candidates()) {
    if ((ok = attempt(path, "confluent-kafka wheel"))) return loaded;
  }
  if ((ok = attempt("librdkafka.so.1", "system"))) return loaded;
  HPS_FAIL(BackendUnavailable, "update_source kafka: cannot load librdkafka; tried:", tried,
           "\n  Install it (pip install confluent-kafka, or Debian librdkafka1) or point HPS_LIBRDKAFKA at "
           "librdkafka.so");
}

}  // namespace hps::kafka
