// Where a Redis Cluster table's partitions land (tiers/redis/partition_layout.hpp), without a
// server: the slot tags, the spread over masters of equal slot ranges against the old hashed
// names, and the layout line of the load marker. The cluster's own view is checked in
// test_redis_cluster_tier.cpp (RedisTier.PartitionsSpreadOverTheMasters).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "hps/error.hpp"
#include "tiers/redis/partition_layout.hpp"
#include "tiers/redis/slot.hpp"

using hps::redis::PartitionLayout;

namespace {

// The first slot of each of `masters` masters, as `redis-cli --cluster create` assigns them:
// contiguous ranges of 16384 / masters slots, each end rounded to the nearest slot.
std::vector<int> range_starts(int masters) {
  std::vector<int> starts;
  const double per_master = 16384.0 / masters;
  long first = 0;
  double cursor = 0;
  for (int m = 0; m < masters; ++m) {
    starts.push_back(static_cast<int>(first));
    first = std::lround(cursor + per_master - 1) + 1;
    cursor += per_master;
  }
  return starts;
}

// Most minus fewest partitions of the table on one master.
std::size_t imbalance(const PartitionLayout& layout, const std::string& tag, int masters) {
  const std::vector<int> starts = range_starts(masters);
  std::vector<std::size_t> count(masters, 0);
  for (std::size_t p = 0; p < layout.partitions; ++p) {
    const int slot = layout.slot(tag, p);
    ++count[std::upper_bound(starts.begin(), starts.end(), slot) - starts.begin() - 1];
  }
  return *std::max_element(count.begin(), count.end()) - *std::min_element(count.begin(), count.end());
}

}  // namespace

TEST(RedisSlotTag, PutsAKeyOnEverySlot) {
  std::size_t longest = 0;
  for (int slot = 0; slot < hps::redis::kSlotCount; ++slot) {
    const std::string tag = hps::redis::slot_tag(static_cast<std::uint16_t>(slot));
    longest = std::max(longest, tag.size());
    ASSERT_EQ(hps::redis::key_slot("hps{" + tag + "}hps_et.m.t/p0v"), slot) << tag;
  }
  EXPECT_LE(longest, 6u);
}

TEST(RedisPartitionLayout, SpreadSlotsBalanceMastersWhereHashedNamesDoNot) {
  std::size_t cases = 0, spread_off_by_two = 0, spread_worst = 0, hashed_off_by_two_or_more = 0;
  for (int t = 0; t < 100; ++t) {
    const std::string tag = "hps_et.model" + std::to_string(t % 10) + ".sparse_embedding" + std::to_string(t / 10);
    for (std::size_t partitions = 2; partitions <= 64; ++partitions) {
      for (int masters = 2; masters <= 8; ++masters) {
        const std::size_t spread = imbalance(PartitionLayout{PartitionLayout::kSpreadSlots, partitions}, tag, masters);
        ++cases;
        spread_worst = std::max(spread_worst, spread);
        spread_off_by_two += spread >= 2;
        hashed_off_by_two_or_more +=
            imbalance(PartitionLayout{PartitionLayout::kHashedNames, partitions}, tag, masters) >= 2;
      }
    }
  }
  EXPECT_LE(spread_worst, 2u);
  EXPECT_LT(spread_off_by_two, cases / 50) << "of " << cases;  // under 2%: partitions next to a range's end
  EXPECT_GT(hashed_off_by_two_or_more, cases / 2) << "of " << cases;  // what the spread layout mends
}

TEST(RedisPartitionLayout, KeysAreDistinctAndAPartitionsKeysShareItsSlot) {
  for (const int version : {PartitionLayout::kHashedNames, PartitionLayout::kSpreadSlots}) {
    const PartitionLayout layout{version, 40};
    std::set<std::string> names;
    for (std::size_t p = 0; p < layout.partitions; ++p) {
      const std::string value = layout.value_key("hps_et.m.t", p), meta = layout.meta_key("hps_et.m.t", p);
      EXPECT_TRUE(names.insert(value).second && names.insert(meta).second) << value;
      EXPECT_EQ(hps::redis::key_slot(value), layout.slot("hps_et.m.t", p));
      EXPECT_EQ(hps::redis::key_slot(meta), layout.slot("hps_et.m.t", p));  // one slot: a script may use both
      EXPECT_NE(value, layout.value_key("hps_et.m.u", p));  // other tables, other names
    }
  }
  // The names written before layouts were recorded, unchanged.
  EXPECT_EQ((PartitionLayout{PartitionLayout::kHashedNames, 16}).value_key("hps_et.m.t", 7),
            "hps{hps_et.m.t/p7}v");
}

TEST(RedisPartitionLayout, TheLoadMarkerRecordsTheLayout) {
  const PartitionLayout layout{PartitionLayout::kSpreadSlots, 12};
  const std::string stored = layout.stored_marker("files:abc\nwith a newline");
  const auto [read, marker] = PartitionLayout::parse_stored(stored, 99, "test");
  EXPECT_EQ(read, layout);
  EXPECT_EQ(marker, "files:abc\nwith a newline");

  // A marker from before layouts were recorded: the old names, with the configured count.
  const auto [legacy, legacy_marker] = PartitionLayout::parse_stored("files:old", 5, "test");
  EXPECT_EQ(legacy, (PartitionLayout{PartitionLayout::kHashedNames, 5}));
  EXPECT_EQ(legacy_marker, "files:old");
}

TEST(RedisPartitionLayout, ALayoutLineThisBuildCannotReadIsAClearError) {
  auto message_of = [](const std::string& stored) {
    try {
      PartitionLayout::parse_stored(stored, 4, "redis_cluster: table 't'");
    } catch (const hps::IOError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message_of("hps-layout 3 16\nfiles:x").find("stored in layout 3, which this build of hps cannot read"),
            std::string::npos)
      << message_of("hps-layout 3 16\nfiles:x");
  for (const std::string bad : {"hps-layout 2 0\nf", "hps-layout 2\nf", "hps-layout two 16\nf", "hps-layout 2 16"}) {
    const std::string message = message_of(bad);
    EXPECT_NE(message.find("redis_cluster: table 't': the load marker's layout line is malformed"), std::string::npos)
        << bad << " -> " << message;
  }
}
