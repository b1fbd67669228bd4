// Writer kernels of the static cache's hash index (upsert, erase, refresh), the capacity
// pre-check, the dump of a bucket range, and the initialisation of the free-row stack.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "gpu/kernel_types.hpp"

namespace hps::cuda {

/// Fills the free-row stack with every row id and sets free_top = capacity.
void launch_static_init(const StaticTableView& table, cudaStream_t stream);

/// Adds to counters->absent the number of batch keys the index does not hold (the caller zeroes
/// it first): an upsert of the batch needs that many free rows.
void launch_static_count_absent(const StaticTableView& table, const WriteBatch& batch, int sm_count,
                                cudaStream_t stream);

/// Applies `batch`: kInsert/kUpdate upsert, kErase removes, kRefresh overwrites found keys that
/// are present and removes the others. Keys of an upsert batch must be unique and must fit
/// (checked beforehand with launch_static_count_absent).
void launch_static_write(const StaticTableView& table, bool half, const WriteBatch& batch, WriteKind kind,
                         int sm_count, cudaStream_t stream);

/// Appends the keys of occupied entries in buckets [first_bucket, end_bucket) to keys_out.
void launch_static_dump(const StaticTableView& table, std::uint64_t first_bucket, std::uint64_t end_bucket,
                        std::int64_t* keys_out, unsigned long long* count, int sm_count, cudaStream_t stream);

}  // namespace hps::cuda
