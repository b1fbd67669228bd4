// Writer kernels of the dynamic cache (insert with LRU-like eviction, update, erase, refresh) and
// the dump of the keys held by a range of sets. They run on the cache's writer stream, one at a
// time; readers never wait for them.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "gpu/kernel_types.hpp"

namespace hps::cuda {

/// Applies `batch` with `kind` (see WriteKind). `epoch` stamps inserted slots.
void launch_dynamic_write(const DynamicTableView& table, bool half, const WriteBatch& batch, WriteKind kind,
                          std::uint32_t epoch, int sm_count, cudaStream_t stream);

/// Appends the keys of occupied slots in sets [first_set, end_set) to keys_out (unordered) and
/// adds their number to *count (which the caller zeroes).
void launch_dynamic_dump(const DynamicTableView& table, std::uint64_t first_set, std::uint64_t end_set,
                         std::int64_t* keys_out, unsigned long long* count, int sm_count, cudaStream_t stream);

}  // namespace hps::cuda
