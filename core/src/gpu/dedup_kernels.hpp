// Deduplication of key lists on the device (a lookup's misses, a write batch), and the scatter
// of resolved rows back to every position that asked for them.
//
// Keys are sorted with CUB's radix sort, carrying a 32-bit payload (a position or an index):
// equal keys become neighbours; run heads give the unique keys.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace hps::cuda {

/// Temporary storage bytes sort_keys_with_payload needs for n items.
std::size_t sort_temp_bytes(std::size_t n);

/// Sorts n (key, payload) pairs by key; stable. `key_bits` is 32 when every key is in [0, 2^32)
/// (32-bit models: half the radix passes), else 64.
void sort_keys_with_payload(void* temp, std::size_t temp_bytes, const std::int64_t* keys_in, std::int64_t* keys_out,
                            const std::uint32_t* payload_in, std::uint32_t* payload_out, std::size_t n, int key_bits,
                            cudaStream_t stream);

/// Temporary storage bytes of the inclusive scan used by unique_sorted_keys.
std::size_t scan_temp_bytes(std::size_t n);

/// For sorted keys: unique_ids[j] = 1 + index of keys[j] among the distinct keys (an inclusive
/// scan of run heads); unique_keys receives the distinct keys and *unique_count their number.
void unique_sorted_keys(void* temp, std::size_t temp_bytes, const std::int64_t* sorted_keys, std::size_t n,
                        std::uint32_t* head_flags, std::uint32_t* unique_ids, std::int64_t* unique_keys,
                        unsigned long long* unique_count, cudaStream_t stream);

/// For sorted keys with payloads: keeps the LAST pair of each run of equal keys (the stable sort
/// keeps input order inside a run, so the last is the latest write), compacted into keys_out and
/// payload_out (unordered); *count receives their number (zeroed by this call).
void keep_last_of_runs(const std::int64_t* sorted_keys, const std::uint32_t* sorted_payload, std::size_t n,
                       std::int64_t* keys_out, std::uint32_t* payload_out, unsigned long long* count, int sm_count,
                       cudaStream_t stream);

/// out[positions[j] * dim ...] = rows[(unique_ids[j] - 1) * dim ...] for j < n (fp32 rows), each
/// element rounded to half precision first when `round_to_half` (fp16 caches serve what they store).
void scatter_rows(const float* rows, const std::uint32_t* unique_ids, const std::uint32_t* positions, std::size_t n,
                  std::uint32_t dim, bool round_to_half, float* out, int sm_count, cudaStream_t stream);

/// values[i] = i for i < n (the payload that remembers each key's input index).
void fill_sequence(std::uint32_t* values, std::size_t n, int sm_count, cudaStream_t stream);

}  // namespace hps::cuda
