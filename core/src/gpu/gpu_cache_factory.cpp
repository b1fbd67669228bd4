// GpuCache::create, cuda_device_count and cuda_device_memory_bytes for builds with CUDA.
#include <cuda_runtime_api.h>

#include <cmath>

#include "gpu/cuda_check.hpp"
#include "gpu/dynamic_gpu_cache.hpp"
#include "gpu/static_gpu_cache.hpp"
#include "hps/gpu/gpu_cache.hpp"

namespace hps {

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();  // no driver or no device: this machine has no usable GPU
    return 0;
  }
  return count;
}

std::size_t cuda_device_memory_bytes(int device) {
  const int devices = cuda_device_count();
  HPS_EXPECTS(device >= 0 && device < devices, InvalidArgument, "CUDA device ", device, " does not exist (", devices,
              " CUDA device(s) visible)");
  cudaDeviceProp properties{};
  HPS_CUDA_CHECK(cudaGetDeviceProperties(&properties, device));
  return properties.totalGlobalMem;
}

std::unique_ptr<GpuCache> GpuCache::create(const GpuCacheOptions& options) {
  const int devices = cuda_device_count();
  HPS_EXPECTS(devices > 0, BackendUnavailable, "GPU cache: no CUDA device is visible on this machine");
  HPS_EXPECTS(options.device >= 0 && options.device < devices, InvalidArgument, "GPU cache: device ", options.device,
              " does not exist (", devices, " CUDA device(s) visible)");
  HPS_EXPECTS(options.dim > 0 && options.dim <= (std::size_t{1} << 20), InvalidArgument, "GPU cache: dim must be in [1, ",
              std::size_t{1} << 20, "], not ", options.dim);
  HPS_EXPECTS(options.capacity > 0, InvalidArgument, "GPU cache: capacity must be at least 1 row");
  HPS_EXPECTS(options.dtype == CacheDtype::kFloat32 || options.dtype == CacheDtype::kFloat16, InvalidArgument,
              "GPU cache: unknown cache dtype code ", static_cast<int>(options.dtype));
  HPS_EXPECTS(std::isfinite(options.hit_rate_threshold), InvalidArgument,
              "GPU cache: hit_rate_threshold must be a finite number");
  if (options.is_static) return std::make_unique<cuda::StaticGpuCache>(options);
  return std::make_unique<cuda::DynamicGpuCache>(options);
}

}  // namespace hps
