// The servers the torch ops look rows up in, by the server id the op carries.
//
// Ownership: the cache holds one counted reference (hps_server_acquire_id) per id it has seen, so a
// C++ host (TorchScript, AOTInductor, Triton) that loads only this library keeps its server alive
// between calls; hps_torch_release_servers() drops them (hps.torch.clear_servers calls it).
// Threads: every function may be called from many threads at once.
#pragma once

#include <string>

#include <hps/c_api.h>

namespace hps_torch {

// The server named `id`: an absolute config path (built on first use), a relative path (made
// absolute against the working directory: HugeCTR's ps_config_file), or a live "hps-json:" id.
// Raises a torch error (NOT_FOUND: IndexError) for an id no server answers to.
hps_server_t* server_for(const std::string& id);

// Raises the torch error that fits `status` (INVALID_ARGUMENT: ValueError, NOT_FOUND: IndexError,
// others: RuntimeError), its message prefixed by the status name.
[[noreturn]] void raise_status(hps_status_t status, const std::string& message);

}  // namespace hps_torch

// Drops the cache's references (a server no one else holds is freed). C symbol for ctypes.
extern "C" __attribute__((visibility("default"))) void hps_torch_release_servers();
