// The sizing functions `hps validate` plans memory with: the GPU caches' and the host-tier index's
// allocations (hps/gpu/cache_sizing.hpp) against sizes worked out by hand from the layouts in
// core/src/gpu/kernel_types.hpp, the hash map's records and index against record_hooks.hpp and
// its growth rule, and the plan of a loaded hash map against what the tier reports it uses.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <set>
#include <vector>

#include "hps/config.hpp"
#include "hps/error.hpp"
#include "hps/gpu/cache_sizing.hpp"
#include "hps/model_io.hpp"
#include "hps/parameter_server.hpp"
#include "hps/tiers/hash_map_tier.hpp"
#include "hps/tiers/tier_factory.hpp"
#include "temp_dir.hpp"

namespace {

using hps::CacheDtype;
using hps::EmbeddingCacheType;
using hps::HashMapOptions;
using hps::OverflowPolicy;
using hps_test::TempDir;

constexpr std::size_t kUnbounded = std::numeric_limits<std::size_t>::max();

// ---- GPU caches ------------------------------------------------------------------------------------

TEST(GpuCacheSizing, CapacityFollowsTheCacheType) {
  EXPECT_EQ(hps::gpu_cache_capacity(EmbeddingCacheType::kDynamic, 0.2, 200), 64u);   // 40, raised to 64
  EXPECT_EQ(hps::gpu_cache_capacity(EmbeddingCacheType::kDynamic, 0.5, 1001), 501u);  // 500.5 rounded up
  EXPECT_EQ(hps::gpu_cache_capacity(EmbeddingCacheType::kDynamic, 1.0, 0), 64u);
  EXPECT_EQ(hps::gpu_cache_capacity(EmbeddingCacheType::kStatic, 0.2, 1000), 1000u);  // every row
  EXPECT_EQ(hps::gpu_cache_capacity(EmbeddingCacheType::kStatic, 0.2, 0), 1u);
}

struct DynamicCase {
  std::size_t capacity, dim;
  CacheDtype dtype;
  std::uint64_t sets;
  std::size_t total;
};

TEST(GpuCacheSizing, DynamicCacheByHand) {
  // slots = max(ceil(capacity / 0.96), capacity + 1), sets = max(2, ceil(slots / 8)); bytes = 8 x sets
  // x (4 meta + 8 tag + dim x value) + 4 x ceil(sets / 32) locks + 40 counters.
  const DynamicCase cases[] = {
      // 1000 / 0.96 = 1041.7 -> 1042 slots -> 131 sets (1048 slots): 4192 + 8384 + 67072 + 20 + 40
      {1000, 16, CacheDtype::kFloat32, 131, 79708},
      // 64 / 0.96 = 66.7 -> 67 -> 9 sets (72 slots): 288 + 576 + 2304 + 4 + 40
      {64, 8, CacheDtype::kFloat32, 9, 3212},
      // the same sets, fp16 rows of 4: 288 + 576 + 576 + 4 + 40
      {64, 4, CacheDtype::kFloat16, 9, 1484},
      // 1 key: 2 slots, but never fewer than 2 sets (16 slots): 64 + 128 + 16 x 3 x 4 + 4 + 40
      {1, 3, CacheDtype::kFloat32, 2, 428},
      // 10^6 / 0.96 = 1041666.7 -> 1041667 -> 130209 sets (1041672 slots), 4070 lock words:
      // 4166688 + 8333376 + 1041672 x 128 x 2 + 16280 + 40
      {1000000, 128, CacheDtype::kFloat16, 130209, 279184416},
  };
  for (const DynamicCase& c : cases) {
    SCOPED_TRACE(testing::Message() << "capacity " << c.capacity << ", dim " << c.dim);
    const hps::DynamicGpuCacheSize size = hps::dynamic_gpu_cache_size(c.capacity, c.dim, c.dtype);
    EXPECT_EQ(size.sets, c.sets);
    EXPECT_EQ(size.slots, c.sets * 8);
    EXPECT_EQ(size.meta_bytes, c.sets * 8 * 4);
    EXPECT_EQ(size.tag_bytes, c.sets * 8 * 8);
    EXPECT_EQ(size.row_bytes, c.sets * 8 * c.dim * (c.dtype == CacheDtype::kFloat16 ? 2 : 4));
    EXPECT_EQ(size.lock_bytes, (c.sets + 31) / 32 * 4);
    EXPECT_EQ(size.counter_bytes, 40u);
    EXPECT_EQ(size.total(), c.total);
  }
}

TEST(GpuCacheSizing, StaticCacheByHand) {
  // max(capacity, 8) buckets of two 16-byte entries, the rows, a 4-byte free id per row, 16 counters.
  hps::StaticGpuCacheSize size = hps::static_gpu_cache_size(1000, 16, CacheDtype::kFloat32);
  EXPECT_EQ(size.buckets, 1000u);
  EXPECT_EQ(size.total(), 32000u + 64000u + 4000u + 16u);
  size = hps::static_gpu_cache_size(1000, 16, CacheDtype::kFloat16);
  EXPECT_EQ(size.row_bytes, 32000u);
  EXPECT_EQ(size.total(), 68016u);
  size = hps::static_gpu_cache_size(3, 4, CacheDtype::kFloat32);  // 8 buckets at least
  EXPECT_EQ(size.buckets, 8u);
  EXPECT_EQ(size.total(), 256u + 48u + 12u + 16u);
}

TEST(GpuCacheSizing, HostTierIndexByHand) {
  // ceil(min(capacity, 1.5 x rows + 65536) / 0.7) entries of 16 bytes, at least 1024.
  EXPECT_EQ(hps::host_tier_index_slots(1000, kUnbounded), 95766u);  // 67036 / 0.7 = 95765.7
  EXPECT_EQ(hps::host_tier_index_bytes(1000, kUnbounded), 95766u * 16);
  EXPECT_EQ(hps::host_tier_index_slots(2000000, kUnbounded), 4379338u);  // 3065536 / 0.7 = 4379337.1
  EXPECT_EQ(hps::host_tier_index_slots(2000000, 1000000), 1428572u);     // the capacity: 1428571.4
  EXPECT_EQ(hps::host_tier_index_slots(0, 100), 1024u);                  // 143, raised to 1024
  EXPECT_EQ(hps::host_tier_index_bytes(200, 240), 1024u * 16);
}

TEST(GpuCacheSizing, HostTierIndexGrowthByHand) {
  // The next generation: max(2 x slots, ceil(1.5 x rows / 0.7)).
  EXPECT_EQ(hps::host_tier_index_grown_slots(95766, 81402), 191532u);     // 174433.0 < twice the entries
  EXPECT_EQ(hps::host_tier_index_grown_slots(1024, 1000000), 2142858u);   // 2142857.1 > 2048
  EXPECT_EQ(hps::host_tier_index_grown_slots(100000, 93334), 200002u);    // 200001.4: the rows decide
}

// ---- the hash map ----------------------------------------------------------------------------------

HashMapOptions options(std::size_t partitions, std::size_t margin, OverflowPolicy policy) {
  HashMapOptions o;
  o.num_partitions = partitions;
  o.overflow_margin = margin;
  o.overflow_policy = policy;
  return o;
}

TEST(HashMapSizing, RecordBytesFollowTheRecordLayout) {
  // header 8 + key 8 [+ metadata 8] + 4 x dim, rounded up to 8 (record_hooks.hpp).
  const HashMapOptions plain = options(1, kUnbounded, OverflowPolicy::kEvictRandom);
  const HashMapOptions ranked = options(1, kUnbounded, OverflowPolicy::kEvictLeastUsed);
  const HashMapOptions aged = options(1, kUnbounded, OverflowPolicy::kEvictOldest);
  const std::size_t dims[] = {1, 3, 4, 8, 33};
  const std::size_t plain_bytes[] = {24, 32, 32, 48, 152};   // 20, 28, 32, 48, 148 rounded up
  const std::size_t ranked_bytes[] = {32, 40, 40, 56, 160};  // 28, 36, 40, 56, 156 rounded up
  for (std::size_t i = 0; i < std::size(dims); ++i) {
    EXPECT_EQ(plain.record_bytes(dims[i]), plain_bytes[i]) << "dim " << dims[i];
    EXPECT_EQ(ranked.record_bytes(dims[i]), ranked_bytes[i]) << "dim " << dims[i];
    EXPECT_EQ(aged.record_bytes(dims[i]), ranked_bytes[i]) << "dim " << dims[i];
    // and the tier lays its records out so
    EXPECT_EQ(hps::HashMapTier(dims[i], ranked).record_layout().record_bytes, ranked_bytes[i]);
  }
}

TEST(HashMapSizing, IndexStartsAtTheReserveAndDoublesPastLoadFourFifths) {
  EXPECT_EQ(HashMapOptions::index_slots(0, 0), 16u);
  EXPECT_EQ(HashMapOptions::index_slots(0, 12), 16u);    // 12 <= 0.8 x 16
  EXPECT_EQ(HashMapOptions::index_slots(0, 13), 32u);
  EXPECT_EQ(HashMapOptions::index_slots(0, 100), 128u);  // 100 <= 102.4
  EXPECT_EQ(HashMapOptions::index_slots(0, 103), 256u);
  EXPECT_EQ(HashMapOptions::index_slots(10, 5), 16u);     // 10 / 0.8 + 1 = 13.5: below the minimum
  EXPECT_EQ(HashMapOptions::index_slots(120, 108), 151u); // 120 / 0.8 + 1
  EXPECT_EQ(HashMapOptions::index_slots(120, 121), 302u); // 121 > 0.8 x 151 = 120.8: doubles
}

TEST(HashMapSizing, ReservedRowsAreAnEvenShareWithHeadroom) {
  EXPECT_EQ(options(2, kUnbounded, OverflowPolicy::kEvictRandom).reserved_per_partition(200), 121u);  // 100 + 5 + 16
  EXPECT_EQ(options(2, 120, OverflowPolicy::kEvictRandom).reserved_per_partition(200), 120u);         // the margin
  EXPECT_EQ(options(3, kUnbounded, OverflowPolicy::kEvictRandom).reserved_per_partition(1000), 365u);  // 333 + 16 + 16
}

// Keys per partition, counted here by the tier's own partition function.
std::vector<std::size_t> count_by_partition(const std::vector<std::int64_t>& keys, std::size_t partitions) {
  std::vector<std::set<std::int64_t>> distinct(partitions);
  for (std::int64_t key : keys) distinct[HashMapOptions::partition_of(key, partitions)].insert(key);
  std::vector<std::size_t> counts;
  for (const auto& set : distinct) counts.push_back(set.size());
  return counts;
}

// A tier loaded as the server loads it (reserve, then insert) uses what the plan says, less only
// its bookkeeping (page table, the tier object: under 1% of the plan here, and a free list that
// holds up to 8 bytes per evicted row).
void expect_plan_matches_tier(const HashMapOptions& opts, std::size_t dim, std::size_t n) {
  std::vector<std::int64_t> keys(n);
  for (std::size_t i = 0; i < n; ++i) keys[i] = static_cast<std::int64_t>(i * 7919 + 3);
  std::vector<float> rows(n * dim, 1.0f);
  hps::HashMapTier tier(dim, opts);
  tier.reserve(n);
  tier.insert(keys.data(), rows.data(), n);
  const hps::HashMapFootprint plan = hps::hash_map_footprint(opts, dim, n, count_by_partition(keys, opts.num_partitions));
  std::size_t held = 0, slots = 0;
  for (std::size_t count : count_by_partition(keys, opts.num_partitions)) {
    held += std::min(count, opts.overflow_margin);
    slots += HashMapOptions::index_slots(opts.reserved_per_partition(n), std::min(count, opts.overflow_margin));
  }
  EXPECT_EQ(plan.rows, held);
  EXPECT_EQ(plan.records_bytes, held * opts.record_bytes(dim));
  EXPECT_EQ(plan.index_bytes, slots * 8);
  const std::size_t used = tier.memory_bytes();
  EXPECT_GE(used, plan.total());
  EXPECT_LE(used - plan.total(), plan.total() / 100 + 8 * tier.evictions())
      << "tier " << used << " bytes, plan " << plan.total() << ", " << tier.evictions() << " evictions";
}

TEST(HashMapSizing, PlanMatchesALoadedTier) {
  expect_plan_matches_tier(options(4, kUnbounded, OverflowPolicy::kEvictRandom), 16, 50000);
  expect_plan_matches_tier(options(3, kUnbounded, OverflowPolicy::kEvictOldest), 5, 20000);
}

TEST(HashMapSizing, PlanMatchesATierThatEvicted) {
  // Each partition gets about 10,000 keys and holds at most 6,000: it fills to its margin.
  const HashMapOptions opts = options(2, 6000, OverflowPolicy::kEvictLeastUsed);
  expect_plan_matches_tier(opts, 8, 20000);
  const hps::HashMapFootprint plan = hps::hash_map_footprint(opts, 8, 20000, {10100, 9900});
  EXPECT_EQ(plan.rows, 12000u);
  EXPECT_EQ(plan.index_slots, 2 * (6000 * 10 / 8 + 1));  // reserved at the margin, never doubled
}

TEST(HashMapSizing, FootprintWantsACountPerPartition) {
  EXPECT_THROW(hps::hash_map_footprint(options(2, kUnbounded, OverflowPolicy::kEvictRandom), 4, 0, {1}),
               hps::InvalidArgument);
}

TEST(HashMapSizing, FillRowsIsTheRateRoundedUpAtMostTheCapacity) {
  EXPECT_EQ(hps::fill_rows(kUnbounded, 1.0, 200), 200u);
  EXPECT_EQ(hps::fill_rows(kUnbounded, 0.25, 201), 51u);  // 50.25
  EXPECT_EQ(hps::fill_rows(120, 1.0, 200), 120u);
}

// ---- keys per partition from the table files -----------------------------------------------------

TEST(VolatileKeysPerPartition, CountsRepeatsExceptWhereAPartitionOverflows) {
  TempDir dir;
  // 1000 distinct keys, then the first 300 again: 1300 rows.
  std::vector<std::int64_t> keys;
  for (std::int64_t k = 0; k < 1000; ++k) keys.push_back(k * 31 + 5);
  for (std::size_t i = 0; i < 300; ++i) keys.push_back(keys[i]);
  const std::vector<float> rows(keys.size() * 2, 0.5f);
  const std::string folder = (dir / "t").string();
  hps::write_sparse_model(folder, keys.data(), rows.data(), keys.size(), 2, nullptr);

  hps::Config config;
  config.volatile_db.num_partitions = 2;
  // Unbounded: every row counts (the files' rows, repeats included).
  std::vector<std::size_t> counts = hps::volatile_keys_per_partition(config, folder, 2, keys.size());
  std::vector<std::size_t> with_repeats(2, 0);
  for (std::int64_t key : keys) ++with_repeats[HashMapOptions::partition_of(key, 2)];
  EXPECT_EQ(counts, with_repeats);
  // A margin below every partition's count: each is counted with its keys once.
  config.volatile_db.overflow_margin = 100;
  counts = hps::volatile_keys_per_partition(config, folder, 2, keys.size());
  EXPECT_EQ(counts, count_by_partition(keys, 2));
  // The last 300 rows only: the repeated keys, each once.
  const std::vector<std::int64_t> tail(keys.end() - 300, keys.end());
  counts = hps::volatile_keys_per_partition(config, folder, 2, 300);
  EXPECT_EQ(counts, count_by_partition(tail, 2));
  // More rows than the files have: all of them.
  EXPECT_EQ(hps::volatile_keys_per_partition(config, folder, 2, 1 << 20), count_by_partition(keys, 2));

  config.volatile_db.type = hps::VolatileDbType::kDisabled;
  EXPECT_THROW(hps::volatile_keys_per_partition(config, folder, 2, 10), hps::ConfigError);
}

}  // namespace
