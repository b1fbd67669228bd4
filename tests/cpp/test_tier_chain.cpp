// The tier chain: the conformance suite on every tier TierFactory builds (parametrised over the
// factory's own output), the chain's roles, and lookups through the whole chain with both key
// widths and duplicate keys, against an independent oracle.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <random>

#include "hps/error.hpp"
#include "hps/model_io.hpp"
#include "hps/parameter_server.hpp"
#include "hps/tiers/bulk_loadable.hpp"
#include "hps/tiers/hash_map_tier.hpp"
#include "hps/tiers/rocksdb_tier.hpp"  // rocksdb_available
#include "hps/tiers/tier_factory.hpp"
#include "temp_dir.hpp"
// tier_conformance.hpp's expect_size() trips GCC's -Wdangling-else (see test_rocksdb_tier.cpp).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdangling-else"
#include "tier_conformance.hpp"
#pragma GCC diagnostic pop

namespace fs = std::filesystem;

using hps_test::TempDir;

namespace {

// A config that enables every tier role this build can serve, so the factory builds its longest chain.
hps::Config all_tiers(const fs::path& db) {
  hps::Config c;
  c.volatile_db.type = hps::VolatileDbType::kHashMap;
  c.volatile_db.num_partitions = 3;
  if (hps::rocksdb_available()) {
    c.persistent_db.type = hps::PersistentDbType::kRocksDb;
    c.persistent_db.path = db.string();
  }
  return c;
}

std::size_t expected_chain_length() { return hps::rocksdb_available() ? 2 : 1; }

// Tier `Index` of the chain the factory builds from all_tiers(), for a fresh table each call.
template <std::size_t Index>
struct ChainTierFactory {
  static constexpr bool kExactSize = Index == 0;  // RocksDB's size() is an estimate

  static std::shared_ptr<hps::Tier> make(std::size_t dim) {
    struct Owner {
      TempDir dir;  // declared first: removed after the store closed
      hps::Config config;
      std::unique_ptr<hps::TierFactory> factory;
      std::shared_ptr<hps::Tier> tier;
    };
    auto owner = std::make_shared<Owner>();
    owner->config = all_tiers(owner->dir / "db");
    owner->factory = std::make_unique<hps::TierFactory>(owner->config);
    auto chain = owner->factory->build("hps_et.conformance.t", dim, "conformance/t");
    if (chain.size() <= Index) return nullptr;  // not in this build; the test below skips it
    owner->tier = chain[Index].tier;
    return std::shared_ptr<hps::Tier>(owner, owner->tier.get());
  }
};

}  // namespace

namespace hps_test {
INSTANTIATE_TYPED_TEST_SUITE_P(ChainTier0, TierConformance, ChainTierFactory<0>);
#ifdef HPS_HAVE_ROCKSDB
INSTANTIATE_TYPED_TEST_SUITE_P(ChainTier1, TierConformance, ChainTierFactory<1>);
#endif
}  // namespace hps_test

// Fails when the factory learns a new tier and nobody instantiated the suite above for it.
TEST(TierChain, ConformanceCoversEveryTierTheFactoryBuilds) {
  TempDir dir;
  const hps::Config config = all_tiers(dir / "db");
  hps::TierFactory factory(config);
  const auto chain = factory.build("hps_et.m.t", 4, "m/t");
  EXPECT_EQ(chain.size(), expected_chain_length());
#ifndef HPS_HAVE_ROCKSDB
  EXPECT_EQ(chain.size(), 1u);
#endif
}

TEST(TierChain, RolesComeFromTheConfig) {
  TempDir dir;
  hps::Config config = all_tiers(dir / "db");
  config.volatile_db.cache_missed_embeddings = true;
  config.volatile_db.initialize_after_startup = false;
  config.volatile_db.initial_cache_rate = 0.25;
  hps::TierFactory factory(config);
  EXPECT_EQ(factory.tier_names(), (std::vector<std::string>{"volatile_db", "persistent_db"}));
  const auto chain = factory.build("hps_et.m.t", 4, "m/t");
  ASSERT_EQ(chain.size(), expected_chain_length());
  EXPECT_EQ(chain[0].name, "volatile_db");
  EXPECT_EQ(chain[0].name_index, 0u);
  EXPECT_FALSE(chain[0].durable);
  EXPECT_TRUE(chain[0].takes_promotions);
  EXPECT_TRUE(chain[0].probes_positions);
  EXPECT_EQ(chain[0].tier->bulk_loader(), nullptr);
  EXPECT_DOUBLE_EQ(chain[0].fill_rate, 0.25);
  if (chain.size() < 2) return;
  // With a persistent tier, the hash map fills at start only when asked to.
  EXPECT_FALSE(chain[0].fill_at_start);
  EXPECT_EQ(chain[1].name, "persistent_db");
  EXPECT_EQ(chain[1].name_index, 1u);
  EXPECT_TRUE(chain[1].durable);
  EXPECT_FALSE(chain[1].read_only);
  EXPECT_FALSE(chain[1].takes_promotions);
  EXPECT_FALSE(chain[1].probes_positions);
  ASSERT_NE(chain[1].tier->bulk_loader(), nullptr);

  // The bulk-load side: rows, marker, and clear() dropping both.
  hps::BulkLoadable& loader = *chain[1].tier->bulk_loader();
  EXPECT_FALSE(loader.load_marker().has_value());
  const std::vector<std::int64_t> keys = {5, -7, 9};
  const auto rows = hps_test::rows_for(keys, 4);
  loader.bulk_insert(keys.data(), rows.data(), keys.size());
  loader.finish("files v1");
  EXPECT_EQ(loader.load_marker(), std::optional<std::string>("files v1"));
  std::vector<float> out(keys.size() * 4);
  std::vector<std::uint8_t> found(keys.size());
  EXPECT_EQ(chain[1].tier->find(keys.data(), keys.size(), out.data(), found.data()), keys.size());
  EXPECT_EQ(out, rows);
  loader.clear();
  EXPECT_FALSE(loader.load_marker().has_value());
  EXPECT_EQ(chain[1].tier->find(keys.data(), keys.size(), out.data(), found.data()), 0u);
}

TEST(TierChain, NoTierIsAConfigError) {
  hps::Config config;
  config.volatile_db.type = hps::VolatileDbType::kDisabled;
  // Refused before any table is built, by the check `hps validate` runs too.
  EXPECT_THROW(hps::TierFactory::check(config), hps::ConfigError);
  EXPECT_THROW(hps::TierFactory factory(config), hps::ConfigError);
}

#ifdef HPS_HAVE_ROCKSDB

// Lookups through the whole chain (a hash map too small for the table over RocksDB), int32 and
// int64 keys, duplicates in every batch, checked row by row against a std::map oracle; promotions
// and updates keep the oracle's answer.
TEST(TierChain, LookupsThroughTheChainMatchTheOracle) {
  for (bool key64 : {true, false}) {
    SCOPED_TRACE(key64 ? "int64 keys" : "int32 keys");
    TempDir dir;
    const std::size_t dim = 5, rows = 4000;
    std::map<std::int64_t, std::vector<float>> oracle;
    std::vector<std::int64_t> keys(rows);
    std::vector<float> values(rows * dim);
    for (std::size_t i = 0; i < rows; ++i) {
      keys[i] = (static_cast<std::int64_t>(i) - 2000) * 7;  // negative keys too; they fit int32
      hps_test::fill_row(keys[i], dim, &values[i * dim]);
      oracle[keys[i]].assign(&values[i * dim], &values[(i + 1) * dim]);
    }
    hps::write_sparse_model((dir / "t").string(), keys.data(), values.data(), rows, dim);
    hps::Config config = all_tiers(dir / "db");
    config.supportlonglong = key64;
    config.volatile_db.overflow_margin = 200;  // 3 partitions x 200 rows: most rows live only below
    config.volatile_db.cache_missed_embeddings = true;
    hps::ModelConfig model;
    model.name = "m";
    hps::TableConfig table;
    table.name = "t";
    table.sparse_file = (dir / "t").string();
    table.dim = dim;
    table.default_value = -2.0f;
    model.tables.push_back(table);
    config.models.push_back(model);
    hps::ParameterServer ps(config, nullptr, hps::ServerOptions{1});
    const auto ref = ps.find_table("m", "t");

    std::mt19937 rng(key64 ? 1 : 2);
    std::uint64_t positions = 0;
    for (int round = 0; round < 6; ++round) {
      std::vector<std::int32_t> batch(3000);
      for (auto& k : batch) {
        const int pick = static_cast<int>(rng() % 10);
        k = pick == 0 ? static_cast<std::int32_t>(rng() % 100000) * 7 + 3             // absent
                      : static_cast<std::int32_t>(keys[rng() % (pick < 5 ? 50 : rows)]);  // hot duplicates
      }
      if (round == 3) {  // an update in the middle: new rows for some keys
        std::vector<std::int64_t> changed = {keys[0], keys[1], keys[3999]};
        auto fresh = hps_test::rows_for(changed, dim, 0.5f);
        ps.update(ref, changed.data(), hps::KeyDtype::kInt64, changed.size(), fresh.data());
        for (std::size_t i = 0; i < changed.size(); ++i) oracle[changed[i]].assign(&fresh[i * dim], &fresh[(i + 1) * dim]);
      }
      std::vector<float> out(batch.size() * dim, 99.0f);
      if (key64) {
        std::vector<std::int64_t> wide(batch.begin(), batch.end());
        ps.lookup(ref, wide.data(), hps::KeyDtype::kInt64, wide.size(), out.data());
      } else {
        ps.lookup(ref, batch.data(), hps::KeyDtype::kInt32, batch.size(), out.data());
      }
      positions += batch.size();
      for (std::size_t i = 0; i < batch.size(); ++i) {
        const auto it = oracle.find(batch[i]);
        for (std::size_t j = 0; j < dim; ++j) {
          const float want = it == oracle.end() ? -2.0f : it->second[j];
          ASSERT_EQ(out[i * dim + j], want) << "round " << round << " key " << batch[i];
        }
      }
    }
    const auto s = ps.stats()[0];
    ASSERT_EQ(s.tiers.size(), 3u);
    EXPECT_EQ(s.tiers[0].hits + s.tiers[1].hits + s.tiers[2].hits + s.defaults, positions);
    EXPECT_GT(s.tiers[1].hits, 0u);
    EXPECT_GT(s.tiers[2].hits, 0u);
    EXPECT_GT(s.promoted_keys, 0u);
    EXPECT_LE(s.tiers[1].rows, 600u);
  }
}

// A chain whose first tier sees only distinct keys (persistent_db alone): duplicates and misses are
// answered by it through the deduplicated path, counted under its name, every position once.
TEST(TierChain, PersistentOnlyChainSeesDistinctKeys) {
  TempDir dir;
  const std::size_t dim = 3;
  std::vector<std::int64_t> keys = {10, -20, 30, 40};
  const auto values = hps_test::rows_for(keys, dim);
  hps::write_sparse_model((dir / "t").string(), keys.data(), values.data(), keys.size(), dim);
  hps::Config config = all_tiers(dir / "db");
  config.volatile_db.type = hps::VolatileDbType::kDisabled;
  hps::ModelConfig model;
  model.name = "m";
  hps::TableConfig table;
  table.name = "t";
  table.sparse_file = (dir / "t").string();
  table.dim = dim;
  table.default_value = 7.0f;
  model.tables.push_back(table);
  config.models.push_back(model);
  hps::ParameterServer ps(config);
  const auto ref = ps.find_table("m", "t");
  const std::vector<std::int64_t> batch = {30, 30, 5, -20, 5, 10, 30};
  std::vector<float> out(batch.size() * dim);
  ps.lookup(ref, batch.data(), hps::KeyDtype::kInt64, batch.size(), out.data());
  for (std::size_t i = 0; i < batch.size(); ++i) {
    std::vector<float> want(dim, 7.0f);
    if (batch[i] != 5) hps_test::fill_row(batch[i], dim, want.data());
    EXPECT_EQ(std::vector<float>(out.begin() + i * dim, out.begin() + (i + 1) * dim), want) << "position " << i;
  }
  const auto s = ps.stats()[0];
  EXPECT_EQ(s.tiers[1].name, "volatile_db");
  EXPECT_EQ(s.tiers[1].hits, 0u);
  EXPECT_EQ(s.tiers[2].hits, 5u);
  EXPECT_EQ(s.defaults, 2u);
  // Writes go to the one tier; a read-only-free chain accepts them.
  const std::vector<float> fresh(dim, 1.25f);
  const std::int64_t key = 5;
  ps.update(ref, &key, hps::KeyDtype::kInt64, 1, fresh.data());
  ps.lookup(ref, &key, hps::KeyDtype::kInt64, 1, out.data());
  EXPECT_EQ(std::vector<float>(out.begin(), out.begin() + dim), fresh);
  EXPECT_EQ(ps.erase(ref, batch.data(), hps::KeyDtype::kInt64, batch.size()), 4u);  // 30, 5, -20, 10
}

#endif  // HPS_HAVE_ROCKSDB

// A load of the table files that did not finish leaves part of the rows in RocksDB. A server that
// loads the store reloads it; one that only reads it (read_only, or initialize_after_startup false)
// used to serve the partial table, answering the rest with default rows: now it refuses.
TEST(TierChain, ATableWhoseLoadDidNotFinishIsRefusedByAServerThatDoesNotLoadIt) {
  if (!hps::rocksdb_available()) GTEST_SKIP() << "this build has no RocksDB";
  TempDir dir;
  const std::vector<std::int64_t> keys = {1, 2, 3};
  const auto rows = hps_test::rows_for(keys, 4);
  const hps::Config writer = all_tiers(dir / "db");  // (the factory keeps a reference to its config)
  {
    hps::TierFactory factory(writer);
    const auto chain = factory.build("hps_et.m.t", 4, "m/t");
    hps::BulkLoadable& loader = *chain.back().tier->bulk_loader();
    ASSERT_TRUE(loader.begin_load("files v1"));
    loader.bulk_insert(keys.data(), rows.data(), keys.size());
    // No finish(): the writer was killed here.
  }
  for (const bool read_only : {true, false}) {
    hps::Config config = all_tiers(dir / "db");
    config.persistent_db.read_only = read_only;
    config.persistent_db.initialize_after_startup = false;
    hps::TierFactory factory(config);
    try {
      factory.build("hps_et.m.t", 4, "m/t");
      ADD_FAILURE() << "a partial table was served (read_only " << read_only << ")";
    } catch (const hps::ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("holds part of its rows"), std::string::npos) << e.what();
    }
  }
  // A server that loads the store starts the load again (the marker is not the files').
  hps::TierFactory factory(writer);
  const auto chain = factory.build("hps_et.m.t", 4, "m/t");
  hps::BulkLoadable& loader = *chain.back().tier->bulk_loader();
  EXPECT_TRUE(loader.begin_load("files v1"));
  loader.bulk_insert(keys.data(), rows.data(), keys.size());
  loader.finish("files v1");
  EXPECT_FALSE(loader.begin_load("files v1"));  // current now
}

// Without a persistent tier, a bounded hash map must hold each partition's distinct keys. The check
// counts keys with repeats first (no keys held in memory) and counts distinct keys only where that
// goes over: a partition whose repeats alone pass its room still fits.
TEST(TierChain, KeysATableRepeatsCountOnceAgainstAPartitionsRoom) {
  TempDir dir;
  std::vector<std::int64_t> keys;
  for (std::int64_t k = 0; keys.size() < 800; ++k) {
    if (hps::HashMapOptions::partition_of(k, 2) == 0) keys.push_back(k);
  }
  for (std::size_t i = 0; i < 400; ++i) keys.push_back(keys[i]);  // 1,200 rows, 800 distinct keys, partition 0
  const std::vector<float> rows(keys.size(), 1.0f);
  hps::write_sparse_model((dir / "t").string(), keys.data(), rows.data(), keys.size(), 1);
  hps::Config config = all_tiers(dir / "db");
  config.persistent_db.type = hps::PersistentDbType::kDisabled;
  config.volatile_db.num_partitions = 2;
  config.volatile_db.overflow_margin = 800;
  EXPECT_NO_THROW(hps::check_table_fits(config, (dir / "t").string(), 1, "m/t"));
  config.volatile_db.overflow_margin = 799;
  try {
    hps::check_table_fits(config, (dir / "t").string(), 1, "m/t");
    ADD_FAILURE() << "800 distinct keys fit a partition of 799";
  } catch (const hps::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("the table's 1200 rows put 800 distinct keys in partition 0"),
              std::string::npos)
        << e.what();
  }
}
