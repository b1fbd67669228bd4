// The device memory of a table's GPU caches and of its host-tier index, from the config alone.
// One formula: the CUDA caches (core/src/gpu/) allocate by these functions, and `hps validate`
// plans with them in every build, CUDA or not. The layout constants (8 slots per set, entry
// sizes, counters) come from core/src/gpu/kernel_types.hpp, the kernels' own header.
//
// Threads: pure functions, safe from any thread. Ownership: values only.
#pragma once

#include "hps/export.hpp"

#include <cstddef>
#include <cstdint>

#include "hps/config.hpp"

namespace hps HPS_EXPORT {

/// Rows each GPU cache of a table is sized for, given the rows the server counts for the table
/// (its files' rows, repeated keys included): a static cache all of them (at least 1), a dynamic
/// one gpucacheper of them, rounded up (at least 64).
std::size_t gpu_cache_capacity(EmbeddingCacheType type, double gpucacheper, std::size_t table_rows);

/// Bytes of one stored value: 2 for fp16 rows, 4 for fp32.
std::size_t gpu_cache_value_bytes(CacheDtype dtype);

/// The device allocations of a dynamic (set-associative) cache of `capacity` keys.
struct DynamicGpuCacheSize {
  std::uint64_t sets = 0;         ///< slots for capacity / 0.96 keys and one spare, at least 2 sets
  std::uint64_t slots = 0;        ///< sets x 8
  std::size_t meta_bytes = 0;     ///< a 32-bit meta word per slot
  std::size_t tag_bytes = 0;      ///< a 64-bit tag per slot
  std::size_t row_bytes = 0;      ///< a row per slot
  std::size_t lock_bytes = 0;     ///< a lock bit per set, in 32-bit words
  std::size_t counter_bytes = 0;  ///< the device counters
  std::size_t total() const { return meta_bytes + tag_bytes + row_bytes + lock_bytes + counter_bytes; }
};
DynamicGpuCacheSize dynamic_gpu_cache_size(std::size_t capacity, std::size_t dim, CacheDtype dtype);

/// The device allocations of a static (whole-table) cache of `capacity` rows.
struct StaticGpuCacheSize {
  std::uint64_t buckets = 0;       ///< max(capacity, 8) buckets of 2 entries: the index stays half full
  std::size_t entry_bytes = 0;     ///< 16-byte index entries
  std::size_t row_bytes = 0;       ///< the row arena
  std::size_t free_row_bytes = 0;  ///< the stack of free row ids (32-bit)
  std::size_t counter_bytes = 0;   ///< the device counters
  std::size_t total() const { return entry_bytes + row_bytes + free_row_bytes + counter_bytes; }
};
StaticGpuCacheSize static_gpu_cache_size(std::size_t capacity, std::size_t dim, CacheDtype dtype);

/// Entries of the host-tier index (the GPU's index of the CPU-memory hash map) for a hash map
/// holding `rows` rows and at most `capacity` (SIZE_MAX: unbounded): room for 1.5 x rows +
/// 65,536 keys (or the capacity, if less) at load 0.7, at least 1,024 entries.
std::uint64_t host_tier_index_slots(std::size_t rows, std::size_t capacity);
/// Its bytes on each device: 16 per entry.
std::size_t host_tier_index_bytes(std::size_t rows, std::size_t capacity);
/// Entries of the index's next generation when adds would fill `slots` past its load limit with
/// `rows` keys: twice as many, or room for 1.5 x rows at load 0.7, whichever is more.
std::uint64_t host_tier_index_grown_slots(std::uint64_t slots, std::size_t rows);
/// Whether HPS_GPU_VISIBLE_HOST_TIER=0 in the environment switches the GPU-visible CPU-memory tier
/// off for this process: the server keeps the host path and the memory plan counts no index.
bool gpu_visible_host_tier_switched_off();

}  // namespace hps
