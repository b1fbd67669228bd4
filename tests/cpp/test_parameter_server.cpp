#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <random>
#include <thread>
#include <unordered_map>

#include "hps/error.hpp"
#include "hps/model_io.hpp"
#include "hps/parameter_server.hpp"
#include "hps/tiers/redis_cluster_tier.hpp"  // RedisClusterTier::partition_of
#include "temp_dir.hpp"

namespace fs = std::filesystem;
using hps::KeyDtype;

using hps_test::TempDir;

namespace {

// A table on disk plus the oracle of what it holds.
struct TableFixture {
  std::string folder;
  std::size_t dim;
  std::unordered_map<std::int64_t, std::vector<float>> rows;
};

TableFixture make_table(const fs::path& folder, std::size_t n, std::size_t dim, std::int64_t key_base = 0,
                        std::int64_t stride = 3) {
  TableFixture t{folder.string(), dim, {}};
  std::vector<std::int64_t> keys(n);
  std::vector<float> values(n * dim);
  for (std::size_t i = 0; i < n; ++i) {
    keys[i] = key_base + static_cast<std::int64_t>(i) * stride;
    std::vector<float> row(dim);
    for (std::size_t j = 0; j < dim; ++j) row[j] = static_cast<float>(keys[i]) + 0.001f * static_cast<float>(j);
    std::copy(row.begin(), row.end(), values.begin() + static_cast<std::ptrdiff_t>(i * dim));
    t.rows[keys[i]] = row;
  }
  hps::write_sparse_model(t.folder, keys.data(), values.data(), n, dim);
  return t;
}

hps::Config make_config(const std::vector<TableFixture>& tables, const std::string& model = "m") {
  hps::Config c;
  hps::ModelConfig m;
  m.name = model;
  for (std::size_t i = 0; i < tables.size(); ++i) {
    hps::TableConfig t;
    t.name = "t" + std::to_string(i);
    t.sparse_file = tables[i].folder;
    t.dim = tables[i].dim;
    t.default_value = -1.5f;
    m.tables.push_back(t);
  }
  c.models.push_back(m);
  c.volatile_db.num_partitions = 3;
  return c;
}

// Checks every returned row against the oracle (default -1.5 for absent keys).
void expect_rows(const TableFixture& t, const std::vector<std::int64_t>& keys, const std::vector<float>& out) {
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const auto it = t.rows.find(keys[i]);
    for (std::size_t j = 0; j < t.dim; ++j) {
      const float want = it == t.rows.end() ? -1.5f : it->second[j];
      ASSERT_EQ(out[i * t.dim + j], want) << "key " << keys[i] << " element " << j;
    }
  }
}

std::vector<float> lookup(hps::ParameterServer& ps, const std::string& model, std::size_t table,
                          const std::vector<std::int64_t>& keys) {
  const auto ref = ps.find_table(model, table);
  std::vector<float> out(keys.size() * ps.dim(ref), 12345.0f);
  ps.lookup(ref, keys.data(), KeyDtype::kInt64, keys.size(), out.data());
  return out;
}

std::vector<std::int64_t> mixed_keys(const TableFixture& t, std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::int64_t> present;
  for (const auto& [k, _] : t.rows) present.push_back(k);
  std::vector<std::int64_t> keys(n);
  for (auto& k : keys) {
    k = rng() % 4 == 0 ? static_cast<std::int64_t>(rng() % 1000000) * 3 + 1 : present[rng() % present.size()];
  }
  return keys;
}

}  // namespace

TEST(ParameterServer, VolatileOnlyAnswersEveryKey) {
  TempDir dir;
  auto t0 = make_table(dir / "t0", 5000, 8);
  auto t1 = make_table(dir / "t1", 300, 3, -100, 7);
  hps::ParameterServer ps(make_config({t0, t1}));
  auto keys = mixed_keys(t0, 20000, 1);
  expect_rows(t0, keys, lookup(ps, "m", 0, keys));
  auto keys1 = mixed_keys(t1, 999, 2);
  expect_rows(t1, keys1, lookup(ps, "m", 1, keys1));
  const auto stats = ps.stats();
  ASSERT_EQ(stats.size(), 2u);
  EXPECT_EQ(stats[0].keys, keys.size());
  EXPECT_EQ(stats[0].tiers[1].hits + stats[0].defaults, keys.size());
  EXPECT_EQ(stats[0].tiers[1].rows, 5000u);
  // Every tier role is reported, enabled or not, by name and in cascade order.
  ASSERT_EQ(stats[0].tiers.size(), 3u);
  EXPECT_EQ(stats[0].tiers[0].name, "gpu_cache");
  EXPECT_EQ(stats[0].tiers[1].name, "volatile_db");
  EXPECT_EQ(stats[0].tiers[2].name, "persistent_db");
  EXPECT_EQ(stats[0].tiers[2].hits + stats[0].tiers[2].rows, 0u);
  // Host lookups are timed as lookups; no device call ran.
  EXPECT_EQ(stats[0].latency.count, stats[0].lookups);
  EXPECT_EQ(stats[0].device_call_latency.count, 0u);
}

// Found by fuzz_c_api: lookup_many wrote the rows of the tables before the one with a bad key, then
// failed; a failed call must leave every output as it was.
TEST(ParameterServer, LookupManyWithABadKeyWritesNoTable) {
  TempDir dir;
  auto t0 = make_table(dir / "t0", 10, 2);
  auto t1 = make_table(dir / "t1", 10, 2);
  auto config = make_config({t0, t1});
  config.supportlonglong = false;  // 32-bit keys: 2^40 is not one
  hps::ParameterServer ps(config);
  const hps::TableRef refs[] = {ps.find_table("m", 0), ps.find_table("m", 1)};
  const std::int64_t good[] = {0, 3};
  const std::int64_t bad[] = {3, std::int64_t{1} << 40};
  const void* keys[] = {good, bad};
  const std::size_t n[] = {2, 2};
  std::vector<float> out0(4, -7.0f), out1(4, -7.0f);
  float* outs[] = {out0.data(), out1.data()};
  try {
    ps.lookup_many(2, refs, keys, KeyDtype::kInt64, n, outs);
    ADD_FAILURE() << "did not throw";
  } catch (const hps::InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("keys[1][1] = 1099511627776"), std::string::npos) << e.what();
  }
  EXPECT_EQ(out0, std::vector<float>(4, -7.0f));
  EXPECT_EQ(out1, std::vector<float>(4, -7.0f));
  // The same call with good keys writes both.
  keys[1] = good;
  ps.lookup_many(2, refs, keys, KeyDtype::kInt64, n, outs);
  EXPECT_EQ(out0[2], 3.0f);
  EXPECT_EQ(out1[0], 0.0f);
}

TEST(ParameterServer, DeviceLookupRefusesAnUnsetStream) {
  TempDir dir;
  auto t0 = make_table(dir / "t0", 10, 2);
  auto config = make_config({t0});
  config.models[0].gpucache = false;  // so the last device call below fails the same way on a GPU machine
  config.models[0].deployed_device_list = {0};
  hps::ParameterServer ps(config);
  const auto ref = ps.find_table("m", 0);
  std::int64_t key = 0;
  float out[2];
  // Checked before anything else about the device, so it holds in builds and on machines without a GPU.
  try {
    ps.lookup(ref, &key, KeyDtype::kInt64, 1, out, hps::DeviceBuffers{0, {}});
    ADD_FAILURE() << "did not throw";
  } catch (const hps::InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("no stream given"), std::string::npos) << e.what();
  }
  float* outs[] = {out};
  const void* keys[] = {&key};
  const std::size_t n[] = {1};
  EXPECT_THROW(ps.lookup_many(1, &ref, keys, KeyDtype::kInt64, n, outs,
                              hps::DeviceBuffers{0, {}}),
               hps::InvalidArgument);
  // An explicit stream passes that check (a null handle is the legacy default stream, on purpose);
  // without a GPU cache for the model the call then fails for that reason instead.
  EXPECT_THROW(ps.lookup(ref, &key, KeyDtype::kInt64, 1, out, hps::DeviceBuffers{0, hps::StreamView::cuda(nullptr)}),
               hps::BackendUnavailable);
  // Host buffers need no stream.
  ps.lookup(ref, &key, KeyDtype::kInt64, 1, out, hps::DeviceBuffers{});
  EXPECT_EQ(out[0], 0.0f);
}

TEST(ParameterServer, TablesByNameAndErrorsNameWhatExists) {
  TempDir dir;
  auto t0 = make_table(dir / "t0", 10, 2);
  hps::ParameterServer ps(make_config({t0}));
  EXPECT_EQ(ps.find_table("m", "t0").table, 0u);
  try {
    ps.find_table("m", "nope");
    FAIL();
  } catch (const hps::NotFound& e) {
    EXPECT_NE(std::string(e.what()).find("its tables: t0"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ps.find_table("other", 0), hps::NotFound);
  EXPECT_THROW(ps.find_table("m", 1), hps::NotFound);
}

TEST(ParameterServer, EmptyAndKeyWidthChecks) {
  TempDir dir;
  auto t0 = make_table(dir / "t0", 10, 2);
  auto config = make_config({t0});
  config.supportlonglong = false;
  hps::ParameterServer ps(config);
  const auto ref = ps.find_table("m", 0);
  ps.lookup(ref, nullptr, KeyDtype::kInt64, 0, nullptr);  // empty batch
  std::vector<std::int32_t> small = {0, 3, -1};
  std::vector<float> out(6);
  ps.lookup(ref, small.data(), KeyDtype::kInt32, 3, out.data());
  EXPECT_EQ(out[2], 3.0f);
  EXPECT_EQ(out[4], -1.5f);
  std::vector<std::int64_t> wide = {1LL << 40};
  EXPECT_THROW(ps.lookup(ref, wide.data(), KeyDtype::kInt64, 1, out.data()), hps::InvalidArgument);
}

TEST(ParameterServer, ThirtyTwoBitModelRefusesWideFileKeys) {
  TempDir dir;
  auto t0 = make_table(dir / "t0", 10, 2, 1LL << 33);
  auto config = make_config({t0});
  config.supportlonglong = false;
  try {
    hps::ParameterServer ps(config);
    FAIL();
  } catch (const hps::InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("t0/key[0]"), std::string::npos) << e.what();
  }
}

TEST(ParameterServer, UpdateAndEraseAreVisibleAtOnce) {
  TempDir dir;
  auto t0 = make_table(dir / "t0", 100, 4);
  hps::ParameterServer ps(make_config({t0}));
  const auto ref = ps.find_table("m", 0);
  std::vector<std::int64_t> keys = {0, 3, 1000001};
  std::vector<float> rows = {9, 9, 9, 9, 8, 8, 8, 8, 7, 7, 7, 7};
  ps.update(ref, keys.data(), KeyDtype::kInt64, 3, rows.data());
  for (std::size_t i = 0; i < 3; ++i) t0.rows[keys[i]] = std::vector<float>(4, rows[i * 4]);
  expect_rows(t0, keys, lookup(ps, "m", 0, keys));
  std::vector<std::int64_t> gone = {3, 3, 999999, 1000001};
  EXPECT_EQ(ps.erase(ref, gone.data(), KeyDtype::kInt64, gone.size()), 2u);
  t0.rows.erase(3);
  t0.rows.erase(1000001);
  expect_rows(t0, keys, lookup(ps, "m", 0, keys));
}

TEST(ParameterServer, TableLargerThanTheVolatileTierWithoutPersistentIsAConfigError) {
  TempDir dir;
  auto t0 = make_table(dir / "t0", 100, 2);
  auto config = make_config({t0});
  config.volatile_db.overflow_margin = 10;
  config.volatile_db.num_partitions = 2;
  EXPECT_THROW(hps::ParameterServer ps(config), hps::ConfigError);
}

TEST(ParameterServer, CheckTableFitsIsTheRuleTheServerLoadsBy) {
  // A Redis tier, like a hash map, by the distinct keys of each partition (a hash map's own case:
  // test_tier_chain.cpp). Keys 10 + 10 over 2 partitions, then one more in partition 0.
  TempDir dir;
  std::vector<std::int64_t> keys;
  std::size_t in_first = 0;
  for (std::int64_t k = 0; keys.size() < 20; ++k) {
    const bool first = hps::RedisClusterTier::partition_of(k, 2) == 0;
    if (first ? in_first == 10 : keys.size() - in_first == 10) continue;
    in_first += first;
    keys.push_back(k);
  }
  const std::vector<float> rows(21 * 2, 1.0f);
  hps::write_sparse_model((dir / "t20").string(), keys.data(), rows.data(), keys.size(), 2);
  for (std::int64_t k = keys.back() + 1;; ++k) {
    if (hps::RedisClusterTier::partition_of(k, 2) != 0) continue;
    keys.push_back(k);
    break;
  }
  hps::write_sparse_model((dir / "t21").string(), keys.data(), rows.data(), keys.size(), 2);
  const std::string t20 = (dir / "t20").string(), t21 = (dir / "t21").string();
  hps::Config config;
  config.volatile_db.type = hps::VolatileDbType::kRedisCluster;
  config.volatile_db.overflow_margin = 10;
  config.volatile_db.num_partitions = 2;
  EXPECT_NO_THROW(hps::check_table_fits(config, t20, 2, "m/t"));
  try {
    hps::check_table_fits(config, t21, 2, "m/t");
    ADD_FAILURE() << "11 keys fit a partition of 10";
  } catch (const hps::ConfigError& e) {
    EXPECT_STREQ(e.what(), "m/t: the table's 21 rows put 11 distinct keys in partition 0 of the Redis table's 2 (keys "
                           "spread by hash, not evenly), more than its overflow_margin 10, and there is no "
                           "persistent_db for the rest: raise overflow_margin to at least 11");
  }
  config.volatile_db.overflow_margin = static_cast<std::size_t>(-1);  // the default: no bound, no overflow
  EXPECT_NO_THROW(hps::check_table_fits(config, t21, 2, "m/t"));
  config.volatile_db.initial_cache_rate = 0.5;
  EXPECT_THROW(hps::check_table_fits(config, t20, 2, "m/t"), hps::ConfigError);
  config.volatile_db.overflow_margin = 10;
  config.persistent_db.type = hps::PersistentDbType::kRocksDb;  // the rest lives there: anything fits
  EXPECT_NO_THROW(hps::check_table_fits(config, t21, 2, "m/t"));
}

// Without a persistent tier a bounded hash map must hold the table's distinct keys, not its rows: a
// table whose rows repeat keys loads when its keys fit (it used to be refused by its row count), and
// serves each key's last row.
TEST(ParameterServer, AHashMapOnlyTableWhoseRowsRepeatKeysLoadsWhenItsKeysFit) {
  TempDir dir;
  constexpr std::size_t kDim = 2;
  std::vector<std::int64_t> keys;
  for (std::int64_t k = 0; k < 800; ++k) keys.push_back(k);
  for (std::int64_t k = 0; k < 400; ++k) keys.push_back(k);  // 1,200 rows, 800 distinct keys
  std::vector<float> values(keys.size() * kDim);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    values[i * kDim] = static_cast<float>(keys[i]);
    values[i * kDim + 1] = static_cast<float>(i);  // the row's position: the last one must win
  }
  hps::write_sparse_model((dir / "t").string(), keys.data(), values.data(), keys.size(), kDim);
  TableFixture t{(dir / "t").string(), kDim, {}};
  for (std::size_t i = 0; i < keys.size(); ++i) t.rows[keys[i]] = {values[i * kDim], values[i * kDim + 1]};
  auto config = make_config({t});
  config.volatile_db.num_partitions = 1;
  config.volatile_db.overflow_margin = 800;  // 800 rows of room: all the keys, not all the rows
  hps::ParameterServer ps(config);
  std::vector<std::int64_t> wanted(800);
  for (std::int64_t k = 0; k < 800; ++k) wanted[static_cast<std::size_t>(k)] = k;
  expect_rows(t, wanted, lookup(ps, "m", 0, wanted));
  config.volatile_db.overflow_margin = 799;  // one key too many
  EXPECT_THROW(hps::ParameterServer too_small(config), hps::ConfigError);
}

TEST(ParameterServer, ConcurrentLookupsAndUpdatesReturnWholeRows) {
  TempDir dir;
  constexpr std::size_t kDim = 32;
  auto t0 = make_table(dir / "t0", 2000, kDim);
  hps::ParameterServer ps(make_config({t0}));
  const auto ref = ps.find_table("m", 0);
  std::vector<std::int64_t> keys;
  for (const auto& [k, _] : t0.rows) keys.push_back(k);
  std::atomic<bool> stop{false};
  std::atomic<std::size_t> bad{0}, lookups{0};
  std::thread writer([&] {
    std::vector<float> rows(keys.size() * kDim);
    for (int round = 1; !stop; ++round) {
      // Every element of a row carries the same version, so a torn row is visible.
      std::fill(rows.begin(), rows.end(), static_cast<float>(-round));
      ps.update(ref, keys.data(), KeyDtype::kInt64, keys.size(), rows.data());
    }
  });
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r) {
    readers.emplace_back([&, r] {
      std::mt19937_64 rng(r);
      std::vector<std::int64_t> batch(512);
      std::vector<float> out(batch.size() * kDim);
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
      while (std::chrono::steady_clock::now() < deadline) {
        for (auto& k : batch) k = keys[rng() % keys.size()];
        ps.lookup(ref, batch.data(), KeyDtype::kInt64, batch.size(), out.data());
        for (std::size_t i = 0; i < batch.size(); ++i) {
          const float first = out[i * kDim];
          const bool original = first == static_cast<float>(batch[i]);
          for (std::size_t j = 0; j < kDim; ++j) {
            const float want = original ? static_cast<float>(batch[i]) + 0.001f * static_cast<float>(j) : first;
            if (out[i * kDim + j] != want) {
              ++bad;
              break;
            }
          }
        }
        ++lookups;
      }
    });
  }
  for (auto& r : readers) r.join();
  stop = true;
  writer.join();
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_GT(lookups.load(), 10u);
}

TEST(ParameterServer, SeveralModelsInOneServer) {
  TempDir dir;
  auto a = make_table(dir / "a", 50, 2);
  auto b = make_table(dir / "b", 70, 5, 1);
  auto config = make_config({a}, "first");
  config.models.push_back(make_config({b}, "second").models[0]);
  hps::ParameterServer ps(config);
  auto ka = mixed_keys(a, 100, 3);
  auto kb = mixed_keys(b, 100, 4);
  expect_rows(a, ka, lookup(ps, "first", 0, ka));
  expect_rows(b, kb, lookup(ps, "second", 0, kb));
}

#ifdef HPS_HAVE_ROCKSDB

namespace {
hps::Config with_rocksdb(hps::Config config, const fs::path& db, std::size_t margin, bool promote) {
  config.persistent_db.type = hps::PersistentDbType::kRocksDb;
  config.persistent_db.path = db.string();
  config.volatile_db.overflow_margin = margin;
  config.volatile_db.cache_missed_embeddings = promote;
  return config;
}
}  // namespace

TEST(ParameterServer, PersistentTierAnswersWhatTheVolatileTierCannotHold) {
  TempDir dir;
  auto t0 = make_table(dir / "t0", 3000, 6);
  hps::ParameterServer ps(with_rocksdb(make_config({t0}), dir / "db", 100, true));
  auto keys = mixed_keys(t0, 5000, 5);
  expect_rows(t0, keys, lookup(ps, "m", 0, keys));
  const auto s = ps.stats()[0];
  EXPECT_GT(s.tiers[2].hits, 0u);
  EXPECT_GT(s.defaults, 0u);
  EXPECT_EQ(s.tiers[1].hits + s.tiers[2].hits + s.defaults, keys.size());
  EXPECT_GT(s.promoted_keys, 0u);
  // Promotion never brings in rows that exist nowhere: the volatile tier holds only real keys.
  EXPECT_LE(s.tiers[1].rows, 3u * 100u);
  expect_rows(t0, keys, lookup(ps, "m", 0, keys));  // again, now partly from promoted rows
}

TEST(ParameterServer, UpdatesSurviveARestartAndNewFilesReplaceThem) {
  TempDir dir;
  auto t0 = make_table(dir / "t0", 100, 2);
  auto config = with_rocksdb(make_config({t0}), dir / "db", SIZE_MAX, false);
  std::vector<std::int64_t> keys = {0, 3};
  std::vector<float> rows = {5, 5, 6, 6};
  {
    hps::ParameterServer ps(config);
    ps.update(ps.find_table("m", 0), keys.data(), KeyDtype::kInt64, 2, rows.data());
  }
  {
    hps::ParameterServer ps(config);  // same files: the database is current, keep its updates
    EXPECT_EQ(lookup(ps, "m", 0, keys), rows);
  }
  auto t0b = make_table(dir / "t0", 100, 2, 0, 3);  // rewritten files: a new model version
  hps::ParameterServer ps(config);
  expect_rows(t0b, keys, lookup(ps, "m", 0, keys));
}

TEST(ParameterServer, ReadOnlyPersistentTierRefusesUpdates) {
  TempDir dir;
  auto t0 = make_table(dir / "t0", 100, 2);
  auto config = with_rocksdb(make_config({t0}), dir / "db", SIZE_MAX, false);
  { hps::ParameterServer build(config); }
  config.persistent_db.read_only = true;
  hps::ParameterServer ps(config);
  auto keys = mixed_keys(t0, 50, 6);
  expect_rows(t0, keys, lookup(ps, "m", 0, keys));
  std::vector<float> rows(4, 1.0f);
  EXPECT_THROW(ps.update(ps.find_table("m", 0), keys.data(), KeyDtype::kInt64, 2, rows.data()), hps::InvalidArgument);
}

#endif

TEST(ParameterServer, LargeBatchesSplitOverThreadsGiveTheSameRows) {
  TempDir dir;
  auto t0 = make_table(dir / "t0", 20000, 16);
  hps::ParameterServer one(make_config({t0}), nullptr, hps::ServerOptions{1});
  hps::ParameterServer many(make_config({t0}), nullptr, hps::ServerOptions{5});
  auto keys = mixed_keys(t0, 100000, 9);
  const auto rows = lookup(many, "m", 0, keys);
  expect_rows(t0, keys, rows);
  EXPECT_EQ(rows, lookup(one, "m", 0, keys));
  const auto s = many.stats()[0];
  EXPECT_EQ(s.tiers[1].hits + s.defaults, keys.size());  // every chunk counted once
}
