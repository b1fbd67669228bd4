// CUDA-free, compiled in every build (core/CMakeLists.txt); the CUDA files of core/src/gpu/
// allocate by it.
#include "hps/gpu/cache_sizing.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string_view>

#include "gpu/kernel_types.hpp"

namespace hps {

namespace {
constexpr double kHostTierIndexLoad = 0.7;  // entries per slot the host-tier index is sized for
}  // namespace

std::size_t gpu_cache_capacity(EmbeddingCacheType type, double gpucacheper, std::size_t table_rows) {
  if (type == EmbeddingCacheType::kStatic) return std::max<std::size_t>(table_rows, 1);
  return std::max<std::size_t>(64, static_cast<std::size_t>(std::ceil(gpucacheper * static_cast<double>(table_rows))));
}

std::size_t gpu_cache_value_bytes(CacheDtype dtype) { return dtype == CacheDtype::kFloat16 ? 2 : 4; }

DynamicGpuCacheSize dynamic_gpu_cache_size(std::size_t capacity, std::size_t dim, CacheDtype dtype) {
  using cuda::kSlotsPerSet;
  // Slots for capacity / kTargetLoad rows (at least 2 sets: a key's two sets must differ), so that
  // `capacity` keys fit without evictions (docs/gpu_cache.md), and always one slot more than the
  // capacity, so a new key can be placed while the cache is one short of full.
  const auto wanted = static_cast<std::uint64_t>(std::ceil(static_cast<double>(capacity) / cuda::kTargetLoad));
  const std::uint64_t slots = std::max<std::uint64_t>(wanted, static_cast<std::uint64_t>(capacity) + 1);
  DynamicGpuCacheSize size;
  size.sets = std::max<std::uint64_t>(2, (slots + kSlotsPerSet - 1) / kSlotsPerSet);
  size.slots = size.sets * kSlotsPerSet;
  size.meta_bytes = size.slots * sizeof(std::uint32_t);
  size.tag_bytes = size.slots * sizeof(std::uint64_t);
  size.row_bytes = size.slots * dim * gpu_cache_value_bytes(dtype);
  size.lock_bytes = (size.sets + 31) / 32 * sizeof(std::uint32_t);
  size.counter_bytes = sizeof(cuda::DynamicCounters);
  return size;
}

StaticGpuCacheSize static_gpu_cache_size(std::size_t capacity, std::size_t dim, CacheDtype dtype) {
  StaticGpuCacheSize size;
  size.buckets = std::max<std::uint64_t>(capacity, 8);
  size.entry_bytes = size.buckets * cuda::kEntriesPerBucket * sizeof(cuda::IndexEntry);
  size.row_bytes = capacity * dim * gpu_cache_value_bytes(dtype);
  size.free_row_bytes = capacity * sizeof(std::uint32_t);
  size.counter_bytes = sizeof(cuda::StaticCounters);
  return size;
}

std::uint64_t host_tier_index_slots(std::size_t rows, std::size_t capacity) {
  const double wanted = std::min(static_cast<double>(capacity), 1.5 * static_cast<double>(rows) + 65536.0);
  return std::max<std::uint64_t>(1024, static_cast<std::uint64_t>(std::ceil(wanted / kHostTierIndexLoad)));
}

std::uint64_t host_tier_index_grown_slots(std::uint64_t slots, std::size_t rows) {
  const auto wanted = static_cast<std::uint64_t>(std::ceil(1.5 * static_cast<double>(rows) / kHostTierIndexLoad));
  return std::max(2 * slots, wanted);
}

std::size_t host_tier_index_bytes(std::size_t rows, std::size_t capacity) {
  return host_tier_index_slots(rows, capacity) * sizeof(cuda::TierEntry);
}

bool gpu_visible_host_tier_switched_off() {
  const char* value = std::getenv("HPS_GPU_VISIBLE_HOST_TIER");
  return value != nullptr && std::string_view(value) == "0";
}

}  // namespace hps
