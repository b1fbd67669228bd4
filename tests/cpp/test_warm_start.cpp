// The rows a GPU cache starts with (core/src/warm_start.cpp), checked on the CPU against the tier
// they must come from: a hash map tier that took updates and erases after the table files were
// written, so a row read from the files instead would differ.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <vector>

#include "hps/model_io.hpp"
#include "hps/tiers/hash_map_tier.hpp"
#include "warm_start.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;

using hps_test::TempDir;

namespace {

constexpr std::size_t kDim = 4;

std::vector<float> row_of(float value) { return std::vector<float>(kDim, value); }

/// Table files of keys 0..n-1 (row i = i, meta i = `rank(i)`), and a tier holding them with every
/// key's row then updated to 1000 + i and the keys in `erased` removed, as a store that took
/// updates since the files were loaded.
struct Table {
  TempDir dir;
  std::shared_ptr<hps::HashMapTier> tier = std::make_shared<hps::HashMapTier>(kDim, hps::HashMapOptions{});
  std::map<std::int64_t, float> held;  // what the tier holds: key -> value of its row

  Table(std::size_t n, bool with_meta, const std::vector<std::int64_t>& erased,
        const std::function<std::int64_t(std::int64_t)>& rank = nullptr) {
    std::vector<std::int64_t> keys(n), meta(n);
    std::vector<float> file_rows, tier_rows;
    for (std::size_t i = 0; i < n; ++i) {
      keys[i] = static_cast<std::int64_t>(i);
      meta[i] = rank ? rank(keys[i]) : 0;
      for (float v : row_of(static_cast<float>(i))) file_rows.push_back(v);
      for (float v : row_of(1000.0f + static_cast<float>(i))) tier_rows.push_back(v);
      held[keys[i]] = 1000.0f + static_cast<float>(i);
    }
    hps::write_sparse_model((dir / "t").string(), keys.data(), file_rows.data(), n, kDim, with_meta ? meta.data() : nullptr);
    tier->insert(keys.data(), tier_rows.data(), n);
    tier->erase(erased.data(), erased.size());
    for (std::int64_t k : erased) held.erase(k);
  }
};

/// Runs the warm start and returns what it gave, key -> row value, checking every row is whole.
std::map<std::int64_t, float> given_rows(Table& table, std::size_t capacity, hps::WarmStart* result,
                                         bool whole_table = false, bool key64 = true, std::size_t chunk_rows = 3) {
  std::map<std::int64_t, float> given;
  *result = hps::warm_start_rows(*table.tier, (table.dir / "t").string(), key64, capacity, whole_table, chunk_rows,
                                 [&](const std::int64_t* keys, const float* rows, std::size_t n) {
                                   EXPECT_LE(n, chunk_rows);
                                   for (std::size_t i = 0; i < n; ++i) {
                                     for (std::size_t d = 1; d < kDim; ++d) EXPECT_EQ(rows[i * kDim + d], rows[i * kDim]);
                                     EXPECT_TRUE(given.emplace(keys[i], rows[i * kDim]).second) << "key " << keys[i] << " twice";
                                   }
                                 });
  EXPECT_EQ(result->given, given.size());
  return given;
}

}  // namespace

TEST(WarmStart, RoomForEveryRowGivesTheTiersRowsNotTheFiles) {
  Table table(50, /*with_meta=*/false, /*erased=*/{7, 8});
  hps::WarmStart result;
  const auto given = given_rows(table, 100, &result);
  EXPECT_EQ(given, table.held);  // updated rows (1000 + i), erased keys absent
  EXPECT_EQ(result.left_out, 0u);
}

TEST(WarmStart, AWholeTableStartBelowTheRowsGivesThatManyAndCountsTheRest) {
  Table table(50, /*with_meta=*/false, /*erased=*/{});
  hps::WarmStart result;
  const auto given = given_rows(table, 20, &result, /*whole_table=*/true);
  EXPECT_EQ(given.size(), 20u);
  EXPECT_EQ(result.left_out, 30u);
  for (const auto& [key, value] : given) EXPECT_EQ(value, table.held.at(key)) << "key " << key;
}

TEST(WarmStart, APartialStartStopsTheScanOnceTheCacheIsFull) {
  Table table(50, /*with_meta=*/false, /*erased=*/{});
  hps::WarmStart result;
  const auto given = given_rows(table, 20, &result);  // chunks of 3: the seventh gives 2 of its 3, then stops
  EXPECT_EQ(given.size(), 20u);
  EXPECT_EQ(result.left_out, 1u);
  for (const auto& [key, value] : given) EXPECT_EQ(value, table.held.at(key)) << "key " << key;
}

TEST(WarmStart, AWholeTableStartIgnoresTheMetaRanking) {
  Table table(30, /*with_meta=*/true, /*erased=*/{4}, [](std::int64_t k) { return k; });
  hps::WarmStart result;
  const auto given = given_rows(table, 30, &result, /*whole_table=*/true);
  EXPECT_EQ(given, table.held);
}

TEST(WarmStart, MetaRanksTheKeysAndTheTierGivesTheirRows) {
  // Meta = key value, so the most frequent keys are the largest; key 49 was erased since.
  Table table(50, /*with_meta=*/true, /*erased=*/{49}, [](std::int64_t k) { return k; });
  hps::WarmStart result;
  const auto given = given_rows(table, 10, &result);
  std::map<std::int64_t, float> expected;
  for (std::int64_t k = 40; k < 49; ++k) expected[k] = 1000.0f + static_cast<float>(k);
  EXPECT_EQ(given, expected);  // the 10 most frequent but the erased one, with the tier's rows
}

TEST(WarmStart, MetaIsIgnoredWhenEveryRowFits) {
  // The tier also holds a key the files lack (added by an update): only its own order gives it.
  Table table(30, /*with_meta=*/true, /*erased=*/{3}, [](std::int64_t k) { return -k; });
  const std::int64_t added = 1000;
  const auto row = row_of(5.0f);
  table.tier->insert(&added, row.data(), 1);
  table.held[added] = 5.0f;
  hps::WarmStart result;
  const auto given = given_rows(table, 30, &result);
  EXPECT_EQ(given, table.held);
  EXPECT_EQ(result.left_out, 0u);
}

TEST(WarmStart, AbsentTableFilesLeaveTheTiersOrder) {
  // A read-only store of record whose files are gone: the tier alone gives the rows.
  Table table(12, /*with_meta=*/true, /*erased=*/{});
  fs::remove_all((table.dir / "t").string());
  hps::WarmStart result;
  const auto given = given_rows(table, 5, &result);  // no meta to rank by: the tier's first rows
  EXPECT_EQ(given.size(), 5u);
  for (const auto& [key, value] : given) EXPECT_EQ(value, table.held.at(key)) << "key " << key;
}

TEST(WarmStart, FilesThatCannotBeReadLeaveTheTiersOrderAndSayWhy) {
  // A server that does not load the files (over a read-only store) may point at a damaged folder:
  // a meta file shorter than the key file. The files only rank keys, so the tier's first rows come
  // instead, and the reason names the file; before, the warm start threw and the server did not start.
  Table table(50, /*with_meta=*/true, /*erased=*/{}, [](std::int64_t k) { return k; });
  const auto meta_file = table.dir / "t" / "meta";
  fs::resize_file(meta_file, 24);
  hps::WarmStart result;
  const auto given = given_rows(table, 10, &result);
  EXPECT_EQ(given.size(), 10u);
  for (const auto& [key, value] : given) EXPECT_EQ(value, table.held.at(key)) << "key " << key;
  EXPECT_NE(result.unranked_because.find(meta_file.string()), std::string::npos) << result.unranked_because;
  EXPECT_NE(result.unranked_because.find("found 24 bytes"), std::string::npos) << result.unranked_because;
  // A readable meta ranks, and says nothing.
  Table good(50, /*with_meta=*/true, /*erased=*/{}, [](std::int64_t k) { return k; });
  const auto ranked = given_rows(good, 10, &result);
  EXPECT_EQ(ranked.begin()->first, 40);
  EXPECT_TRUE(result.unranked_because.empty());
}

TEST(WarmStart, A32BitModelsFileKeysAreFoundInTheirCanonicalForm) {
  // The file holds key -1, which a 32-bit model stores as 4294967295.
  TempDir dir;
  const std::vector<std::int64_t> keys = {-1, 5, 6};
  const std::vector<std::int64_t> meta = {9, 8, 1};
  std::vector<float> rows;
  for (float v : {1.0f, 2.0f, 3.0f}) {
    for (float x : row_of(v)) rows.push_back(x);
  }
  hps::write_sparse_model((dir / "t").string(), keys.data(), rows.data(), 3, kDim, meta.data());
  hps::HashMapTier tier(kDim, hps::HashMapOptions{});
  const std::vector<std::int64_t> stored = {4294967295LL, 5, 6};
  tier.insert(stored.data(), rows.data(), 3);
  std::map<std::int64_t, float> given;
  const hps::WarmStart result =
      hps::warm_start_rows(tier, (dir / "t").string(), /*key64=*/false, 2, false, 16, [&](const std::int64_t* k, const float* r, std::size_t n) {
        for (std::size_t i = 0; i < n; ++i) given[k[i]] = r[i * kDim];
      });
  EXPECT_EQ(result.given, 2u);
  EXPECT_EQ(given, (std::map<std::int64_t, float>{{4294967295LL, 1.0f}, {5, 2.0f}}));
}

TEST(WarmStart, AKeyTheFilesRepeatAmongTheMostFrequentIsGivenOnce) {
  // Keys 0..9 with meta = key, and key 9 written again last with the top meta: the 3 most frequent
  // positions hold keys 9, 9 and 8; the tier holds row 1000 + k for every key.
  TempDir dir;
  std::vector<std::int64_t> keys(11), meta(11);
  std::vector<float> file_rows(11 * kDim, 0.0f), tier_rows;
  for (std::int64_t k = 0; k < 10; ++k) keys[k] = meta[k] = k;
  keys[10] = 9;
  meta[10] = 100;
  hps::write_sparse_model((dir / "t").string(), keys.data(), file_rows.data(), keys.size(), kDim, meta.data());
  hps::HashMapTier tier(kDim, hps::HashMapOptions{});
  for (std::int64_t k = 0; k < 10; ++k) {
    for (float v : row_of(1000.0f + static_cast<float>(k))) tier_rows.push_back(v);
  }
  tier.insert(keys.data(), tier_rows.data(), 10);
  std::map<std::int64_t, float> given;
  const hps::WarmStart result =
      hps::warm_start_rows(tier, (dir / "t").string(), true, 3, false, 2, [&](const std::int64_t* k, const float* r, std::size_t n) {
        for (std::size_t i = 0; i < n; ++i) EXPECT_TRUE(given.emplace(k[i], r[i * kDim]).second) << "key " << k[i] << " twice";
      });
  EXPECT_EQ(given, (std::map<std::int64_t, float>{{8, 1008.0f}, {9, 1009.0f}}));
  EXPECT_EQ(result.given, 2u);
}
