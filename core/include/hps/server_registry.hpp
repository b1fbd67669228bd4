// The process-wide registry of parameter servers: one server per configuration per process.
//
// Every host in a process that names the same configuration (hps.HPS, hps.torch, the C ABI and so
// the TensorFlow op and the TensorRT plugin) gets the same ParameterServer; different
// configurations get different servers. A server is named by its id:
//   - a config file: its absolute, lexically normalized path (enough to rebuild it in another
//     process, which is why exported torch programs carry it);
//   - config JSON text or a parsed Config: "hps-json:<32 hex digits>", a digest of the normalized
//     config (config_to_json), valid only in this process.
//
// Ownership: the registry holds no server alive. acquire_*() return a shared_ptr; when the last
// one is dropped the server is freed (its tiers closed) before the registry forgets it, so a later
// acquire of the same config builds a new server and never races the old one for a RocksDB lock.
// Threads: every function may be called from many threads at once. Concurrent first acquires of one
// config build it once (the first caller builds and gets the progress; the others wait for it). A
// build that throws registers nothing and the exception reaches the caller that built.
#pragma once

#include "hps/export.hpp"

#include <cstddef>
#include <memory>
#include <string>

#include "hps/config.hpp"
#include "hps/parameter_server.hpp"

namespace hps HPS_EXPORT {

/// The id prefix of servers acquired from JSON text or a parsed Config.
inline constexpr const char* kJsonServerIdPrefix = "hps-json:";

/// The server of the config file at `path` (relative: against the working directory). Options
/// left at their defaults (lookup_threads 0, lookup_spin_us < 0) accept whatever the live server
/// runs with; explicit ones that differ from a live server's are an InvalidArgument naming both.
/// `observer` sees the load when this call builds the server.
std::shared_ptr<ParameterServer> acquire_server_file(const std::string& path, const ServerOptions& options = {},
                                                     LoadObserver* observer = nullptr);

/// The server of config JSON text; relative paths in it resolve against `base_dir` ("" = the
/// working directory). Throws ConfigError for invalid JSON.
std::shared_ptr<ParameterServer> acquire_server_json(const std::string& json_text, const std::string& base_dir = "",
                                                     const ServerOptions& options = {},
                                                     LoadObserver* observer = nullptr);

/// The server of an already parsed config (its id is the same as for its JSON text).
std::shared_ptr<ParameterServer> acquire_server_config(const Config& config, const ServerOptions& options = {},
                                                       LoadObserver* observer = nullptr);

/// The server named `id`: the live one, or for an absolute path the server of that file (built if
/// none is live). Throws NotFound for any other id with no live server.
std::shared_ptr<ParameterServer> acquire_server_id(const std::string& id, const ServerOptions& options = {},
                                                   LoadObserver* observer = nullptr);

/// The live server named `id`, or nullptr. Builds nothing.
std::shared_ptr<ParameterServer> find_server(const std::string& id);

/// The registry id of a server the registry built. Throws NotFound for any other server.
/// The reference stays valid as long as the server does.
const std::string& server_id(const ParameterServer& server);

/// The id a config file path or a parsed config would get (builds nothing).
std::string server_id_for_file(const std::string& path);
std::string server_id_for_config(const Config& config);

/// How many servers are live (built and not yet freed).
std::size_t live_server_count();

}  // namespace hps
