// The GPU cache in builds without CUDA: no devices, and asking for a cache says why.
#include "hps/error.hpp"
#include "hps/gpu_cache.hpp"

namespace hps {

int cuda_device_count() { return 0; }

std::unique_ptr<GpuCache> GpuCache::create(const GpuCacheOptions&) {
  HPS_FAIL(BackendUnavailable,
           "this build of hps has no CUDA support; install the CUDA toolkit (nvcc) and reinstall hps to use GPU caches");
}

}  // namespace hps
