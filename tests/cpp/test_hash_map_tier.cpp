#include <gtest/gtest.h>

#include <fstream>
#include <numeric>
#include <random>
#include <set>
#include <unistd.h>

#include "hps/error.hpp"
#include "hps/tiers/hash_map_tier.hpp"
#include "tier_conformance.hpp"

using hps::HashMapOptions;
using hps::HashMapTier;
using hps::OverflowPolicy;

struct HashMapFactory {
  static constexpr bool kExactSize = true;
  static std::shared_ptr<hps::Tier> make(std::size_t dim) {
    HashMapOptions options;
    options.num_partitions = 4;
    options.allocation_rate = 4096;  // small pages: many page boundaries in the tests
    return std::make_shared<HashMapTier>(dim, options);
  }
};
INSTANTIATE_TYPED_TEST_SUITE_P(HashMap, TierConformance, HashMapFactory);

namespace {

HashMapOptions bounded(std::size_t margin, OverflowPolicy policy, double target = 0.5) {
  HashMapOptions o;
  o.num_partitions = 1;  // one partition, so the margin bounds the whole table
  o.overflow_margin = margin;
  o.overflow_policy = policy;
  o.overflow_resolution_target = target;
  return o;
}

std::vector<std::uint8_t> found_of(HashMapTier& tier, const std::vector<std::int64_t>& keys) {
  std::vector<float> rows(keys.size() * tier.dim());
  std::vector<std::uint8_t> found(keys.size());
  tier.find(keys.data(), keys.size(), rows.data(), found.data());
  return found;
}

}  // namespace

TEST(HashMapTier, OverflowNeverExceedsTheMargin) {
  for (auto policy : {OverflowPolicy::kEvictRandom, OverflowPolicy::kEvictLeastUsed, OverflowPolicy::kEvictOldest}) {
    HashMapTier tier(2, bounded(100, policy, 0.8));
    for (std::int64_t k = 0; k < 1000; ++k) {
      std::vector<float> row = {1, 2};
      tier.insert(&k, row.data(), 1);
      ASSERT_LE(tier.size(), 100u);
    }
    // Each overflow evicts down to round(100 * 0.8) = 80 rows, then inserts one.
    EXPECT_GE(tier.size(), 80u);
    EXPECT_GT(tier.evictions(), 0u);
    EXPECT_EQ(tier.capacity(), 100u);
  }
}

TEST(HashMapTier, EvictLeastUsedKeepsTheHotKeys) {
  HashMapTier tier(1, bounded(10, OverflowPolicy::kEvictLeastUsed, 0.5));
  std::vector<std::int64_t> keys(10);
  std::iota(keys.begin(), keys.end(), 0);
  std::vector<float> rows(10, 1.0f);
  tier.insert(keys.data(), rows.data(), 10);
  std::vector<std::int64_t> hot = {0, 1, 2, 3};
  for (int i = 0; i < 5; ++i) found_of(tier, hot);
  std::int64_t extra = 100;
  tier.insert(&extra, rows.data(), 1);  // overflow: evict 5 of the 10 (down to 5), then insert
  EXPECT_EQ(tier.size(), 6u);
  for (auto f : found_of(tier, hot)) EXPECT_EQ(f, 1);
  EXPECT_EQ(found_of(tier, {100})[0], 1);
}

TEST(HashMapTier, EvictOldestKeepsTheRecentKeys) {
  HashMapTier tier(1, bounded(10, OverflowPolicy::kEvictOldest, 0.5));
  std::vector<float> row = {1.0f};
  for (std::int64_t k = 0; k < 10; ++k) tier.insert(&k, row.data(), 1);  // key k inserted at time k
  std::vector<std::int64_t> touched = {0, 1};
  found_of(tier, touched);  // now the most recent
  std::int64_t extra = 100;
  tier.insert(&extra, row.data(), 1);
  // Survivors: the 5 most recent of {0..9} by access time: 0, 1 (touched) and 7, 8, 9.
  auto found = found_of(tier, {0, 1, 7, 8, 9, 2, 3, 4, 5, 6, 100});
  EXPECT_EQ(found, (std::vector<std::uint8_t>{1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1}));
}

TEST(HashMapTier, EvictRandomChoosesDifferentVictims) {
  std::set<std::int64_t> ever_evicted;
  HashMapTier tier(1, bounded(64, OverflowPolicy::kEvictRandom, 0.5));
  std::vector<float> row = {1.0f};
  for (std::int64_t k = 0; k < 64; ++k) tier.insert(&k, row.data(), 1);
  std::int64_t extra = 1000;
  tier.insert(&extra, row.data(), 1);
  std::vector<std::int64_t> all(64);
  std::iota(all.begin(), all.end(), 0);
  auto found = found_of(tier, all);
  std::size_t survivors = static_cast<std::size_t>(std::count(found.begin(), found.end(), 1));
  EXPECT_EQ(survivors, 32u);
  // Not simply the first or last 32 keys.
  const auto first_half = std::count(found.begin(), found.begin() + 32, 1);
  EXPECT_GT(first_half, 4);
  EXPECT_LT(first_half, 28);
}

TEST(HashMapTier, LargeBatchesAcrossPartitions) {
  HashMapOptions options;
  options.num_partitions = 7;
  HashMapTier tier(3, options);
  std::mt19937_64 rng(1);
  std::vector<std::int64_t> keys(200000);
  for (auto& k : keys) k = static_cast<std::int64_t>(rng());
  auto rows = hps_test::rows_for(keys, 3);
  tier.insert(keys.data(), rows.data(), keys.size());
  std::vector<std::uint8_t> found(keys.size());
  std::vector<float> out(rows.size());
  EXPECT_EQ(tier.find(keys.data(), keys.size(), out.data(), found.data()), keys.size());
  EXPECT_EQ(out, rows);
  // Erase every other key, the rest must stay intact.
  std::vector<std::int64_t> odd;
  for (std::size_t i = 1; i < keys.size(); i += 2) odd.push_back(keys[i]);
  EXPECT_EQ(tier.erase(odd.data(), odd.size()), odd.size());
  tier.find(keys.data(), keys.size(), out.data(), found.data());
  for (std::size_t i = 0; i < keys.size(); ++i) {
    ASSERT_EQ(found[i], i % 2 == 0 ? 1 : 0) << i;
    if (i % 2 == 0) {
      ASSERT_EQ(out[i * 3 + 2], rows[i * 3 + 2]);
    }
  }
}

namespace {
std::size_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}
}  // namespace

// Raw bytes are key + row (72 at D = 16); a record adds its 8-byte header (for lock-free
// GPU readers, record_hooks.hpp), i.e. 1.11x, and the index about 13 bytes per row.
TEST(HashMapTier, TenMillionRowsStayWithinOnePointThreeFiveOfRawBytes) {
  constexpr std::size_t kRows = 10'000'000, kDim = 16, kChunk = 100'000;
  HashMapOptions options;
  options.num_partitions = 16;
  HashMapTier tier(kDim, options);
  const std::size_t before = resident_bytes();
  std::vector<std::int64_t> keys(kChunk);
  std::vector<float> rows(kChunk * kDim, 0.5f);
  for (std::size_t first = 0; first < kRows; first += kChunk) {
    for (std::size_t i = 0; i < kChunk; ++i) keys[i] = static_cast<std::int64_t>((first + i) * 0x9E3779B97F4A7C15ULL);
    tier.insert(keys.data(), rows.data(), kChunk);
  }
  ASSERT_EQ(tier.size(), kRows);
  const double raw = static_cast<double>(kRows) * (8 + 4 * kDim);
  const double grown = static_cast<double>(resident_bytes() - before);
  EXPECT_LE(static_cast<double>(tier.memory_bytes()), 1.35 * raw) << "memory_bytes " << tier.memory_bytes();
  EXPECT_LE(grown, 1.35 * raw) << "resident growth " << grown << " raw " << raw;
}

// A tier holding the only copy of its rows (no tier below: evict_on_overflow false) refuses a write
// it has no room for, whole, and keeps every row; it used to evict stored rows to make room.
TEST(HashMapTier, AnOnlyCopyTierRefusesAWriteItHasNoRoomForAndKeepsEveryRow) {
  constexpr std::size_t dim = 2;
  HashMapOptions options;
  options.num_partitions = 4;
  options.overflow_margin = 30;
  options.evict_on_overflow = false;
  HashMapTier tier(dim, options);
  // Fill until a partition is full (keys spread unevenly: some partition reaches 30 first).
  std::vector<std::int64_t> held;
  std::vector<float> row(dim);
  for (std::int64_t k = 1; k < 1000; ++k) {
    row.assign(dim, static_cast<float>(k));
    try {
      tier.insert(&k, row.data(), 1);
    } catch (const hps::OutOfMemory& e) {
      EXPECT_NE(std::string(e.what()).find("overflow_margin 30"), std::string::npos) << e.what();
      break;
    }
    held.push_back(k);
  }
  ASSERT_LT(held.size(), 120u);  // stopped at the first full partition, short of 4 x 30
  ASSERT_EQ(tier.size(), held.size());
  // A batch of one new key that fits nowhere plus updates of held keys: refused whole.
  const std::int64_t full_key = static_cast<std::int64_t>(held.size()) + 1;  // the key that was refused
  std::vector<std::int64_t> batch = {held[0], full_key, held[1]};
  std::vector<float> rows(batch.size() * dim, -1.0f);
  EXPECT_THROW(tier.insert(batch.data(), rows.data(), batch.size()), hps::OutOfMemory);
  EXPECT_EQ(tier.size(), held.size());
  EXPECT_EQ(tier.evictions(), 0u);
  std::vector<float> out(held.size() * dim);
  std::vector<std::uint8_t> found(held.size());
  ASSERT_EQ(tier.find(held.data(), held.size(), out.data(), found.data()), held.size());
  for (std::size_t i = 0; i < held.size(); ++i) EXPECT_EQ(out[i * dim], static_cast<float>(held[i])) << held[i];
  // Updates of held keys alone always fit.
  std::vector<float> updated(2 * dim, 7.0f);
  tier.insert(held.data(), updated.data(), 2);
  ASSERT_EQ(tier.find(held.data(), 2, out.data(), found.data()), 2u);
  EXPECT_EQ(out[0], 7.0f);
  EXPECT_EQ(out[dim], 7.0f);
}

// overflow_resolution_target 1 keeps margin - 1 rows, but an overflow still evicts 1% of the margin
// at once: one row per insert meant a scan of the whole partition per insert.
TEST(HashMapTier, ATargetOfOneEvictsAPercentOfTheMarginAtOnce) {
  HashMapOptions options = bounded(1000, OverflowPolicy::kEvictRandom, 1.0);
  HashMapTier tier(1, options);
  std::vector<std::int64_t> keys(1001);
  std::iota(keys.begin(), keys.end(), 0);
  const std::vector<float> rows(keys.size(), 1.0f);
  tier.insert(keys.data(), rows.data(), 1000);
  EXPECT_EQ(tier.evictions(), 0u);
  tier.insert(keys.data() + 1000, rows.data(), 1);
  EXPECT_EQ(tier.evictions(), 10u);
  EXPECT_EQ(tier.size(), 991u);
}
