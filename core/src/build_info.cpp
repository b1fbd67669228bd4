#include "hps/build_info.hpp"

// HPS_BUILT_* are set on this file only by core/CMakeLists.txt.
#if !defined(HPS_BUILT_CUDA) || !defined(HPS_BUILT_ROCKSDB) || !defined(HPS_BUILT_REDIS) || \
    !defined(HPS_BUILT_KAFKA) || !defined(HPS_BUILT_TF) || !defined(HPS_BUILT_TENSORRT)
#error "core/CMakeLists.txt sets HPS_BUILT_* on this file"
#endif

namespace hps {

namespace {
const char* flag(bool on) { return on ? "true" : "false"; }
}  // namespace

std::string build_features() {
  return std::string("{\"gpu_cache\":") + flag(HPS_BUILT_CUDA) + ",\"rocksdb\":" + flag(HPS_BUILT_ROCKSDB) +
         ",\"redis\":" + flag(HPS_BUILT_REDIS) +
         ",\"kafka\":" + flag(HPS_BUILT_KAFKA) + ",\"tf_op\":" + flag(HPS_BUILT_TF) +
         ",\"tensorrt_plugin\":" + flag(HPS_BUILT_TENSORRT) + "}";
}

}  // namespace hps
