// float32 -> float16 rows on the device, for float16 output (a build with CUDA).
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <string>

#include "hps_trt/error.hpp"
#include "hps_trt/lookup.hpp"

namespace hps_trt {
namespace {

__global__ void to_half_kernel(const float* in, __half* out, std::size_t n) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    out[i] = __float2half_rn(in[i]);
  }
}

}  // namespace

void to_half_on_device(const float* in, void* out, std::size_t n, int device, void* stream) {
  int current = 0;
  cudaGetDevice(&current);
  if (current != device) cudaSetDevice(device);
  const unsigned blocks = static_cast<unsigned>(std::min<std::size_t>((n + 255) / 256, 4096));
  to_half_kernel<<<blocks, 256, 0, static_cast<cudaStream_t>(stream)>>>(in, static_cast<__half*>(out), n);
  const cudaError_t error = cudaGetLastError();
  if (current != device) cudaSetDevice(current);
  if (error != cudaSuccess) throw PluginError(std::string("float16 conversion kernel: ") + cudaGetErrorString(error));
}

}  // namespace hps_trt
