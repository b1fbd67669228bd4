// make_gpu_visible: the CUDA HostMemoryRegistrar that page-locks and maps the hash-map tier's
// arena (record_hooks.hpp) for every device.
//
// cudaHostRegister with Portable | Mapped: one registration serves every device, and on 64-bit
// systems with unified addressing a device whose cudaDevAttrCanUseHostPointerForRegisteredMem is
// 1 reads the memory at its host address (HostTierIndex::create checks that per device).
// Threads: called by the tier under a partition lock; the CUDA calls are thread-safe.
#include <cuda_runtime_api.h>

#include <memory>

#include "gpu/cuda_check.hpp"
#include "hps/gpu/gpu_cache.hpp"
#include "hps/tiers/hash_map_tier.hpp"

namespace hps {

namespace {

class CudaHostRegistrar final : public HostMemoryRegistrar {
 public:
  void register_range(void* ptr, std::size_t bytes) override {
    const cudaError_t status = cudaHostRegister(ptr, bytes, cudaHostRegisterPortable | cudaHostRegisterMapped);
    if (status != cudaSuccess) {
      (void)cudaGetLastError();
      HPS_FAIL(OutOfMemory, "volatile_db: cannot page-lock ", bytes, " bytes of the hash map for the GPUs (",
               cudaGetErrorString(status),
               "); raise the locked-memory limit (ulimit -l) or set gpu_visible_host_tier to false");
    }
  }
  void unregister_range(void* ptr, std::size_t /*bytes*/) noexcept override {
    if (cudaHostUnregister(ptr) != cudaSuccess) (void)cudaGetLastError();
  }
};

}  // namespace

void make_gpu_visible(HashMapTier& tier) { tier.set_host_memory_registrar(std::make_shared<CudaHostRegistrar>()); }

}  // namespace hps
