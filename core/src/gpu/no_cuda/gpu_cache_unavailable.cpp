// GpuCache in builds without CUDA: no device is ever visible and creating a cache says why.
#include "hps/error.hpp"
#include "hps/gpu/gpu_cache.hpp"

namespace hps {

int cuda_device_count() { return 0; }

std::size_t cuda_device_memory_bytes(int device) {
  HPS_FAIL(InvalidArgument, "CUDA device ", device, " does not exist (this build of hps has no CUDA support)");
}

void make_gpu_visible(HashMapTier& /*tier*/) {
  HPS_FAIL(BackendUnavailable, "this build of hps has no CUDA support: no GPU can read the CPU-memory tier");
}

std::unique_ptr<GpuCache> GpuCache::create(const GpuCacheOptions& /*options*/) {
  HPS_FAIL(BackendUnavailable,
           "GPU cache: this build of hps has no CUDA support; install the CUDA toolkit (nvcc) and reinstall hps "
           "(or build with HPS_WITH_CUDA=ON) to use GPU caches. The CPU-memory tier serves lookups meanwhile.");
}

}  // namespace hps

// Without CUDA there are no device streams to fan out over.
#include "detail/stream_fanout.hpp"

namespace hps {

struct StreamFanout::State {};

StreamFanout::StreamFanout(int, void*, std::size_t) {
  HPS_FAIL(BackendUnavailable, "this build of hps has no CUDA support: device lookups are not available");
}
StreamFanout::~StreamFanout() = default;
void* StreamFanout::stream(std::size_t) const { return nullptr; }
void StreamFanout::join() {}

}  // namespace hps
