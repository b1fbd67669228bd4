// The id -> server cache of the torch ops (see servers.h).
#include "servers.h"

#include <filesystem>
#include <mutex>
#include <unordered_map>

#include <c10/util/Exception.h>

namespace hps_torch {
namespace {

std::mutex mutex;
std::unordered_map<std::string, hps_server_t*> servers;  // guarded by mutex; one reference each

constexpr const char* kJsonPrefix = "hps-json:";

std::string normalize(const std::string& id) {
  if (id.rfind(kJsonPrefix, 0) == 0) return id;
  return std::filesystem::absolute(id).lexically_normal().string();
}

}  // namespace

void raise_status(hps_status_t status, const std::string& message) {
  const std::string text = std::string(hps_status_name(status)) + ": " + message;
  switch (status) {
    case HPS_ERROR_INVALID_ARGUMENT:
    case HPS_ERROR_CONFIG:
      TORCH_CHECK_VALUE(false, text);
    case HPS_ERROR_NOT_FOUND:
      TORCH_CHECK_INDEX(false, text);
    default:
      TORCH_CHECK(false, text);
  }
}

hps_server_t* server_for(const std::string& given) {
  // A relative path names a different file after a chdir: key the cache by the absolute one.
  const bool relative = given.rfind(kJsonPrefix, 0) != 0 && (given.empty() || given[0] != '/');
  const std::string id = relative ? normalize(given) : given;
  std::lock_guard lock(mutex);
  auto found = servers.find(id);
  if (found != servers.end()) return found->second;
  hps_server_t* server = nullptr;
  // Under the lock: concurrent first calls of one id build the server once (the core would share
  // it anyway; this keeps the cache at one reference per id).
  const hps_status_t status = hps_server_acquire_id(id.c_str(), nullptr, &server);
  if (status == HPS_ERROR_NOT_FOUND && id.rfind(kJsonPrefix, 0) == 0) {
    raise_status(status, "no parameter server '" + id + "' in this process. Servers given as a dict, an hps.Config "
                 "or an hps.HPS are known only to the process that built the layers; build the layers from a "
                 "config file to run an exported program in another process");
  }
  if (status != HPS_OK) raise_status(status, hps_last_error());
  servers.emplace(id, server);
  return server;
}

}  // namespace hps_torch

void hps_torch_release_servers() {
  std::lock_guard lock(hps_torch::mutex);
  for (auto& [id, server] : hps_torch::servers) hps_server_release(server);
  hps_torch::servers.clear();
}
