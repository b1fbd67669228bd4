// Device-side deduplication (CUB radix sort + run heads) and the scatter of resolved rows.
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>
#include <cuda_fp16.h>

#include "gpu/cuda_check.hpp"
#include "gpu/dedup_kernels.hpp"
#include "gpu/device_primitives.cuh"
#include "gpu/probe_dispatch.cuh"

namespace hps::cuda {
namespace {

using SortKey = unsigned long long;  // sorted as unsigned: only equality matters

__global__ void mark_run_heads_kernel(const std::int64_t* keys, std::size_t n, std::uint32_t* heads) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t j = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < n; j += stride) {
    heads[j] = (j == 0 || keys[j] != keys[j - 1]) ? 1u : 0u;
  }
}

__global__ void compact_heads_kernel(const std::int64_t* keys, const std::uint32_t* heads, const std::uint32_t* ids,
                                     std::size_t n, std::int64_t* unique_keys, unsigned long long* unique_count) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t j = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < n; j += stride) {
    if (heads[j] != 0) unique_keys[ids[j] - 1] = keys[j];
    if (j == n - 1) *unique_count = ids[j];
  }
}

__global__ void keep_last_kernel(const std::int64_t* keys, const std::uint32_t* payload, std::size_t n,
                                 std::int64_t* keys_out, std::uint32_t* payload_out, unsigned long long* count) {
  const unsigned lane = threadIdx.x % 32;
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t base = static_cast<std::size_t>(blockIdx.x) * blockDim.x + (threadIdx.x - lane); base < n;
       base += stride) {
    const std::size_t j = base + lane;
    const bool last = j < n && (j == n - 1 || keys[j] != keys[j + 1]);
    const std::uint32_t votes = __ballot_sync(0xFFFFFFFFu, last);
    if (votes == 0) continue;
    const int leader = __ffs(static_cast<int>(votes)) - 1;
    unsigned long long at = 0;
    if (static_cast<int>(lane) == leader) at = atomicAdd(count, static_cast<unsigned long long>(__popc(votes)));
    at = __shfl_sync(0xFFFFFFFFu, at, leader);
    if (last) {
      at += static_cast<unsigned long long>(__popc(votes & lanes_below(lane)));
      keys_out[at] = keys[j];
      payload_out[at] = payload[j];
    }
  }
}

/// One thread per (entry, chunk of kElems floats).
template <int kElems, bool kRound>
__global__ void scatter_rows_kernel(const float* rows, const std::uint32_t* ids, const std::uint32_t* positions,
                                    std::size_t n, std::uint32_t dim, float* out) {
  const std::uint32_t chunks = dim / kElems;
  const std::size_t total = n * chunks;
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t t = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total; t += stride) {
    const std::size_t j = t / chunks;
    const std::uint32_t c = static_cast<std::uint32_t>(t - j * chunks);
    float v[kElems];
    load_input<kElems>(rows + static_cast<std::size_t>(ids[j] - 1) * dim, c, v);
    if constexpr (kRound) {
#pragma unroll
      for (int q = 0; q < kElems; ++q) v[q] = round_to_half(v[q]);
    }
    store_output<kElems>(out + static_cast<std::size_t>(positions[j]) * dim, c, v);
  }
}

__global__ void fill_sequence_kernel(std::uint32_t* values, std::size_t n) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    values[i] = static_cast<std::uint32_t>(i);
  }
}

}  // namespace

std::size_t sort_temp_bytes(std::size_t n) {
  std::size_t bytes = 0;
  HPS_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, bytes, static_cast<const SortKey*>(nullptr),
                                                 static_cast<SortKey*>(nullptr), static_cast<const std::uint32_t*>(nullptr),
                                                 static_cast<std::uint32_t*>(nullptr), n, 0, 64));
  return bytes;
}

void sort_keys_with_payload(void* temp, std::size_t temp_bytes, const std::int64_t* keys_in, std::int64_t* keys_out,
                            const std::uint32_t* payload_in, std::uint32_t* payload_out, std::size_t n, int key_bits,
                            cudaStream_t stream) {
  if (n == 0) return;
  HPS_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, reinterpret_cast<const SortKey*>(keys_in),
                                                 reinterpret_cast<SortKey*>(keys_out), payload_in, payload_out, n, 0,
                                                 key_bits, stream));
}

std::size_t scan_temp_bytes(std::size_t n) {
  std::size_t bytes = 0;
  HPS_CUDA_CHECK(cub::DeviceScan::InclusiveSum(nullptr, bytes, static_cast<const std::uint32_t*>(nullptr),
                                               static_cast<std::uint32_t*>(nullptr), n));
  return bytes;
}

void unique_sorted_keys(void* temp, std::size_t temp_bytes, const std::int64_t* sorted_keys, std::size_t n,
                        std::uint32_t* head_flags, std::uint32_t* unique_ids, std::int64_t* unique_keys,
                        unsigned long long* unique_count, cudaStream_t stream) {
  if (n == 0) return;
  const unsigned blocks = static_cast<unsigned>(std::min<std::size_t>((n + 255) / 256, 4096));
  mark_run_heads_kernel<<<blocks, 256, 0, stream>>>(sorted_keys, n, head_flags);
  HPS_CUDA_CHECK_LAUNCH();
  HPS_CUDA_CHECK(cub::DeviceScan::InclusiveSum(temp, temp_bytes, head_flags, unique_ids, n, stream));
  compact_heads_kernel<<<blocks, 256, 0, stream>>>(sorted_keys, head_flags, unique_ids, n, unique_keys, unique_count);
  HPS_CUDA_CHECK_LAUNCH();
}

void keep_last_of_runs(const std::int64_t* sorted_keys, const std::uint32_t* sorted_payload, std::size_t n,
                       std::int64_t* keys_out, std::uint32_t* payload_out, unsigned long long* count, int sm_count,
                       cudaStream_t stream) {
  HPS_CUDA_CHECK(cudaMemsetAsync(count, 0, sizeof(*count), stream));
  if (n == 0) return;
  keep_last_kernel<<<grid_blocks(n, 256, sm_count), 256, 0, stream>>>(sorted_keys, sorted_payload, n, keys_out,
                                                                        payload_out, count);
  HPS_CUDA_CHECK_LAUNCH();
}

void scatter_rows(const float* rows, const std::uint32_t* unique_ids, const std::uint32_t* positions, std::size_t n,
                  std::uint32_t dim, bool round_to_half, float* out, int sm_count, cudaStream_t stream) {
  if (n == 0) return;
  const bool vector = dim % 4 == 0 && reinterpret_cast<std::uintptr_t>(out) % 16 == 0;
  const std::size_t work = n * (vector ? dim / 4 : dim);
  const unsigned blocks = grid_blocks(work, 256, sm_count);
  if (vector) {
    if (round_to_half) {
      scatter_rows_kernel<4, true><<<blocks, 256, 0, stream>>>(rows, unique_ids, positions, n, dim, out);
    } else {
      scatter_rows_kernel<4, false><<<blocks, 256, 0, stream>>>(rows, unique_ids, positions, n, dim, out);
    }
  } else if (round_to_half) {
    scatter_rows_kernel<1, true><<<blocks, 256, 0, stream>>>(rows, unique_ids, positions, n, dim, out);
  } else {
    scatter_rows_kernel<1, false><<<blocks, 256, 0, stream>>>(rows, unique_ids, positions, n, dim, out);
  }
  HPS_CUDA_CHECK_LAUNCH();
}

void fill_sequence(std::uint32_t* values, std::size_t n, int sm_count, cudaStream_t stream) {
  if (n == 0) return;
  fill_sequence_kernel<<<grid_blocks(n, 256, sm_count), 256, 0, stream>>>(values, n);
  HPS_CUDA_CHECK_LAUNCH();
}

}  // namespace hps::cuda
