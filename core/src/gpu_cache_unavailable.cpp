// GpuCache in builds without CUDA: no device is ever visible and creating a cache says why.
#include "hps/error.hpp"
#include "hps/gpu_cache.hpp"

namespace hps {

int cuda_device_count() { return 0; }

std::unique_ptr<GpuCache> GpuCache::create(const GpuCacheOptions& /*options*/) {
  HPS_FAIL(BackendUnavailable,
           "GPU cache: this build of hps has no CUDA support; install the CUDA toolkit (nvcc) and reinstall hps "
           "(or build with HPS_WITH_CUDA=ON) to use GPU caches. The CPU-memory tier serves lookups meanwhile.");
}

}  // namespace hps
