// The C ABI (hps/c_api.h) over the C++ core.
//
// Every entry point runs its body through `guarded`, which turns every exception into a status
// code and this thread's last-error message, so no C++ exception ever crosses into C.
// A handle is shared: every acquire of the same server returns the same hps_server_t, whose count
// is kept under one mutex (acquire and release are rare; lookups never touch it).
#include "hps/c_api.h"

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

#include "hps/config.hpp"
#include "hps/error.hpp"
#include "hps/gpu/gpu_cache.hpp"
#include "hps/keys.hpp"
#include "hps/metrics.hpp"
#include "hps/parameter_server.hpp"
#include "hps/server_registry.hpp"

#ifndef HPS_VERSION_STRING
#error "HPS_VERSION_STRING must be defined by the build (from VERSION)"
#endif

struct hps_server {
  std::shared_ptr<hps::ParameterServer> server;
  std::string id;
  std::size_t refs = 0;  // guarded by handles_mutex
};

namespace {

thread_local std::string last_error;

std::mutex handles_mutex;
// One handle per live server, so every acquire of a server gives the same pointer.
std::unordered_map<const hps::ParameterServer*, hps_server_t*>& handles() {
  static auto* map = new std::unordered_map<const hps::ParameterServer*, hps_server_t*>;  // never destroyed
  return *map;
}

hps_status_t fail(hps_status_t status, const char* message) {
  try {
    last_error = message;
  } catch (...) {
    // No memory for the message: keep the code, the old message stays.
  }
  return status;
}

/// Runs `body`, mapping every exception to a status and a message.
template <typename Body>
hps_status_t guarded(Body&& body) noexcept {
  try {
    body();
    return HPS_OK;
  } catch (const hps::ConfigError& e) {
    return fail(HPS_ERROR_CONFIG, e.what());
  } catch (const hps::InvalidArgument& e) {
    return fail(HPS_ERROR_INVALID_ARGUMENT, e.what());
  } catch (const hps::NotFound& e) {
    return fail(HPS_ERROR_NOT_FOUND, e.what());
  } catch (const hps::IOError& e) {
    return fail(HPS_ERROR_IO, e.what());
  } catch (const hps::BackendUnavailable& e) {
    return fail(HPS_ERROR_BACKEND_UNAVAILABLE, e.what());
  } catch (const hps::OutOfMemory& e) {
    return fail(HPS_ERROR_OUT_OF_MEMORY, e.what());
  } catch (const std::bad_alloc&) {
    return fail(HPS_ERROR_OUT_OF_MEMORY, "out of host memory (std::bad_alloc)");
  } catch (const std::exception& e) {
    return fail(HPS_ERROR_INTERNAL, e.what());
  } catch (...) {
    return fail(HPS_ERROR_INTERNAL, "unknown exception");
  }
}

/// Throws InvalidArgument naming `name` when `p` is NULL.
void need(const void* p, const char* name) {
  HPS_EXPECTS(p != nullptr, hps::InvalidArgument, "argument '", name, "' is NULL");
}

hps::ParameterServer& server_of(hps_server_t* server) {
  need(server, "server");
  return *server->server;
}

// Takes the dtype's address: a C caller may pass any int, and loading an out-of-range value as the
// enum type is undefined behaviour in C++ (UBSan: "not a valid value for type 'hps_key_dtype'").
hps::KeyDtype key_dtype(const hps_key_dtype_t* given) {
  static_assert(sizeof(hps_key_dtype_t) == sizeof(int));
  int dtype = 0;
  std::memcpy(&dtype, given, sizeof dtype);
  switch (dtype) {
    case HPS_KEY_INT32: return hps::KeyDtype::kInt32;
    case HPS_KEY_INT64: return hps::KeyDtype::kInt64;
    case HPS_KEY_UINT32: return hps::KeyDtype::kUInt32;
    case HPS_KEY_UINT64: return hps::KeyDtype::kUInt64;
  }
  HPS_FAIL(hps::InvalidArgument, "key dtype ", dtype, " is not an hps_key_dtype_t");
}

hps::TableRef table_ref(hps_table_t t) { return hps::TableRef{t.model, t.table}; }

/// The one place that says how a (device, stream) pair of the ABI becomes the core's DeviceBuffers.
hps::DeviceBuffers device_buffers(int device, void* stream) {
  HPS_EXPECTS(device >= 0, hps::InvalidArgument, "device ", device, " is neither a CUDA ordinal nor HPS_HOST (-1)");
  hps::DeviceBuffers where;
  where.device = device;
  where.stream = hps::StreamView::cuda(stream);  // NULL: the legacy default stream, as c_api.h says
  return where;
}

hps::ServerOptions server_options(const hps_server_options_t* options) {
  hps::ServerOptions out;
  if (options == nullptr) return out;
  HPS_EXPECTS(options->struct_size >= offsetof(hps_server_options_t, lookup_spin_us) + sizeof(int64_t),
              hps::InvalidArgument, "options->struct_size ", options->struct_size,
              " is too small (initialise options with hps_server_options_init)");
  out.lookup_threads = options->lookup_threads;
  out.lookup_spin_us = options->lookup_spin_us < 0 ? -1 : static_cast<long>(options->lookup_spin_us);
  return out;
}

/// Forwards load progress to the caller's hps_progress_fn.
class ProgressAdapter final : public hps::LoadObserver {
 public:
  ProgressAdapter(hps_progress_fn fn, void* user) : fn_(fn), user_(user) {}
  void begin(const std::string& what, std::size_t total) override {
    what_ = what;
    done_ = 0;
    total_ = total;
    fn_(user_, what_.c_str(), 0, total_);
  }
  void advance(std::size_t rows) override {
    done_ += rows;
    fn_(user_, what_.c_str(), done_, total_);
  }
  void end() override {
    if (done_ != total_) fn_(user_, what_.c_str(), total_, total_);
  }

 private:
  hps_progress_fn fn_;
  void* user_;
  std::string what_;
  std::size_t done_ = 0, total_ = 0;
};

/// Wraps an acquired server in its process-wide handle (one more reference to it).
hps_server_t* handle_for(std::shared_ptr<hps::ParameterServer> server) {
  std::lock_guard lock(handles_mutex);
  auto& map = handles();
  auto it = map.find(server.get());
  if (it != map.end()) {
    ++it->second->refs;
    return it->second;  // `server` (a duplicate reference) is dropped; the handle holds one
  }
  auto handle = std::make_unique<hps_server_t>();
  handle->id = hps::server_id(*server);
  handle->server = std::move(server);
  handle->refs = 1;
  map.emplace(handle->server.get(), handle.get());
  return handle.release();
}

template <typename Acquire>
hps_status_t acquire(const hps_server_options_t* options, hps_server_t** out, Acquire&& acquire_fn) {
  return guarded([&] {
    need(out, "server");
    const hps::ServerOptions opts = server_options(options);
    std::unique_ptr<ProgressAdapter> progress;
    // The progress fields are read only when the caller's struct_size covers them.
    if (options != nullptr && options->struct_size >= offsetof(hps_server_options_t, progress_user) + sizeof(void*) &&
        options->progress != nullptr) {
      progress = std::make_unique<ProgressAdapter>(options->progress, options->progress_user);
    }
    std::shared_ptr<hps::ParameterServer> server = acquire_fn(opts, progress.get());
    *out = handle_for(std::move(server));
  });
}

char* copy_out(const std::string& text) {
  char* out = static_cast<char*>(std::malloc(text.size() + 1));
  if (out == nullptr) throw std::bad_alloc();
  std::memcpy(out, text.c_str(), text.size() + 1);
  return out;
}

}  // namespace

extern "C" {

const char* hps_version(void) { return HPS_VERSION_STRING; }

int hps_abi_version(void) { return HPS_C_ABI_VERSION; }

const char* hps_last_error(void) { return last_error.c_str(); }

const char* hps_status_name(hps_status_t status) {
  switch (status) {
    case HPS_OK: return "HPS_OK";
    case HPS_ERROR_CONFIG: return "HPS_ERROR_CONFIG";
    case HPS_ERROR_INVALID_ARGUMENT: return "HPS_ERROR_INVALID_ARGUMENT";
    case HPS_ERROR_NOT_FOUND: return "HPS_ERROR_NOT_FOUND";
    case HPS_ERROR_IO: return "HPS_ERROR_IO";
    case HPS_ERROR_BACKEND_UNAVAILABLE: return "HPS_ERROR_BACKEND_UNAVAILABLE";
    case HPS_ERROR_OUT_OF_MEMORY: return "HPS_ERROR_OUT_OF_MEMORY";
    case HPS_ERROR_INTERNAL: return "HPS_ERROR_INTERNAL";
  }
  return "HPS_ERROR_UNKNOWN_STATUS";
}

void hps_free(char* text) { std::free(text); }

hps_status_t hps_cuda_device_count(int* count) {
  return guarded([&] {
    need(count, "count");
    *count = hps::cuda_device_count();
  });
}

void hps_server_options_init(hps_server_options_t* options) {
  if (options == nullptr) return;
  std::memset(options, 0, sizeof(*options));
  options->struct_size = sizeof(*options);
  options->lookup_threads = 0;
  options->lookup_spin_us = -1;
  options->progress = nullptr;
  options->progress_user = nullptr;
}

hps_status_t hps_server_acquire_file(const char* path, const hps_server_options_t* options, hps_server_t** server) {
  return acquire(options, server, [&](const hps::ServerOptions& opts, hps::LoadObserver* observer) {
    need(path, "path");
    return hps::acquire_server_file(path, opts, observer);
  });
}

hps_status_t hps_server_acquire_json(const char* json_text, const char* base_dir, const hps_server_options_t* options,
                                     hps_server_t** server) {
  return acquire(options, server, [&](const hps::ServerOptions& opts, hps::LoadObserver* observer) {
    need(json_text, "json_text");
    return hps::acquire_server_json(json_text, base_dir != nullptr ? base_dir : "", opts, observer);
  });
}

hps_status_t hps_server_acquire_id(const char* id, const hps_server_options_t* options, hps_server_t** server) {
  return acquire(options, server, [&](const hps::ServerOptions& opts, hps::LoadObserver* observer) {
    need(id, "id");
    return hps::acquire_server_id(id, opts, observer);
  });
}

hps_status_t hps_server_retain(hps_server_t* server) {
  return guarded([&] {
    need(server, "server");
    std::lock_guard lock(handles_mutex);
    ++server->refs;
  });
}

hps_status_t hps_server_release(hps_server_t* server) {
  if (server == nullptr) return HPS_OK;
  return guarded([&] {
    std::shared_ptr<hps::ParameterServer> last;  // dropped after the lock: freeing may take long
    {
      std::lock_guard lock(handles_mutex);
      if (--server->refs != 0) return;
      handles().erase(server->server.get());
      last = std::move(server->server);
    }
    delete server;
    last.reset();
  });
}

hps_status_t hps_server_id(hps_server_t* server, const char** id) {
  return guarded([&] {
    need(server, "server");
    need(id, "id");
    *id = server->id.c_str();
  });
}

hps_status_t hps_server_config_json(hps_server_t* server, char** json) {
  return guarded([&] {
    hps::ParameterServer& ps = server_of(server);
    need(json, "json");
    *json = copy_out(hps::config_to_json(ps.config()));
  });
}

hps_status_t hps_server_key64(hps_server_t* server, int* key64) {
  return guarded([&] {
    hps::ParameterServer& ps = server_of(server);
    need(key64, "key64");
    *key64 = ps.key64() ? 1 : 0;
  });
}

hps_status_t hps_server_gpu_enabled(hps_server_t* server, int* enabled) {
  return guarded([&] {
    hps::ParameterServer& ps = server_of(server);
    need(enabled, "enabled");
    *enabled = ps.gpu_enabled() ? 1 : 0;
  });
}

hps_status_t hps_table_by_name(hps_server_t* server, const char* model, const char* table, hps_table_t* out) {
  return guarded([&] {
    hps::ParameterServer& ps = server_of(server);
    need(model, "model");
    need(table, "table");
    need(out, "out");
    const hps::TableRef ref = ps.find_table(std::string(model), std::string(table));
    *out = hps_table_t{static_cast<uint32_t>(ref.model), static_cast<uint32_t>(ref.table)};
  });
}

hps_status_t hps_table_by_index(hps_server_t* server, const char* model, size_t index, hps_table_t* out) {
  return guarded([&] {
    hps::ParameterServer& ps = server_of(server);
    need(model, "model");
    need(out, "out");
    const hps::TableRef ref = ps.find_table(std::string(model), index);
    *out = hps_table_t{static_cast<uint32_t>(ref.model), static_cast<uint32_t>(ref.table)};
  });
}

hps_status_t hps_table_dim(hps_server_t* server, hps_table_t table, size_t* dim) {
  return guarded([&] {
    hps::ParameterServer& ps = server_of(server);
    need(dim, "dim");
    *dim = ps.dim(table_ref(table));
  });
}

hps_status_t hps_lookup(hps_server_t* server, hps_table_t table, const void* keys, hps_key_dtype_t dtype, size_t n,
                        float* out, int device, void* stream) {
  return guarded([&] {
    hps::ParameterServer& ps = server_of(server);
    const hps::KeyDtype kd = key_dtype(&dtype);
    if (n > 0) {
      need(keys, "keys");
      need(out, "out");
    }
    if (device == HPS_HOST) {
      ps.lookup(table_ref(table), keys, kd, n, out);
    } else {
      ps.lookup(table_ref(table), keys, kd, n, out, device_buffers(device, stream));
    }
  });
}

hps_status_t hps_lookup_many(hps_server_t* server, size_t count, const hps_table_t* tables, const void* const* keys,
                             hps_key_dtype_t dtype, const size_t* n, float* const* out, int device, void* stream) {
  return guarded([&] {
    hps::ParameterServer& ps = server_of(server);
    const hps::KeyDtype kd = key_dtype(&dtype);
    if (count == 0) return;
    need(tables, "tables");
    need(keys, "keys");
    need(n, "n");
    need(out, "out");
    std::vector<hps::TableRef> refs(count);
    for (size_t i = 0; i < count; ++i) {
      refs[i] = table_ref(tables[i]);
      HPS_EXPECTS(n[i] == 0 || (keys[i] != nullptr && out[i] != nullptr), hps::InvalidArgument, "argument 'keys[",
                  i, "]' or 'out[", i, "]' is NULL");
    }
    hps::DeviceBuffers where;  // host
    if (device != HPS_HOST) where = device_buffers(device, stream);
    ps.lookup_many(count, refs.data(), keys, kd, n, out, where);
  });
}

hps_status_t hps_update(hps_server_t* server, hps_table_t table, const void* keys, hps_key_dtype_t dtype, size_t n,
                        const float* rows) {
  return guarded([&] {
    hps::ParameterServer& ps = server_of(server);
    const hps::KeyDtype kd = key_dtype(&dtype);
    if (n > 0) {
      need(keys, "keys");
      need(rows, "rows");
    }
    ps.update(table_ref(table), keys, kd, n, rows);
  });
}

hps_status_t hps_erase(hps_server_t* server, hps_table_t table, const void* keys, hps_key_dtype_t dtype, size_t n,
                       size_t* erased) {
  return guarded([&] {
    hps::ParameterServer& ps = server_of(server);
    const hps::KeyDtype kd = key_dtype(&dtype);
    if (n > 0) need(keys, "keys");
    const std::size_t count = ps.erase(table_ref(table), keys, kd, n);
    if (erased != nullptr) *erased = count;
  });
}

hps_status_t hps_refresh(hps_server_t* server, const char* model) {
  return guarded([&] {
    hps::ParameterServer& ps = server_of(server);
    need(model, "model");
    ps.refresh(model);
  });
}

hps_status_t hps_stats_json(hps_server_t* server, char** json) {
  return guarded([&] {
    hps::ParameterServer& ps = server_of(server);
    need(json, "json");
    *json = copy_out(hps::to_json(ps.stats()));
  });
}

hps_status_t hps_prometheus(hps_server_t* server, char** text) {
  return guarded([&] {
    hps::ParameterServer& ps = server_of(server);
    need(text, "text");
    *text = copy_out(ps.prometheus());
  });
}

hps_status_t hps_update_sources_json(hps_server_t* server, char** json) {
  return guarded([&] {
    hps::ParameterServer& ps = server_of(server);
    need(json, "json");
    *json = copy_out(hps::to_json(ps.update_source_stats()));
  });
}

}  // extern "C"
