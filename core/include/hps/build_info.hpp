// What this build of libhps_core was built with (CMake's feature options as resolved).
#pragma once

#include "hps/export.hpp"

#include <string>

namespace hps HPS_EXPORT {

/// One JSON object: {"gpu_cache": bool, "rocksdb": bool, "redis": bool, "kafka": bool, "tf_op": bool,
/// "tensorrt_plugin": bool}. `hps --version` prints it; the server warns from it.
std::string build_features();

}  // namespace hps
