// float16 output on a device, in a build without CUDA: there is no device to write to.
#include "hps_trt/error.hpp"
#include "hps_trt/lookup.hpp"

namespace hps_trt {

void to_half_on_device(const float*, void*, std::size_t, int device, void*) {
  throw PluginError("float16 output on device " + std::to_string(device) + ": this plugin was built without CUDA");
}

}  // namespace hps_trt
