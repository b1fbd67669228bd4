// Tests of the RocksDB persistent tier: the shared tier conformance suite, persistence across
// reopen and process kill, read-only mode, table management and concurrency.
// Every test works in a fresh temporary folder and removes it.
#include <gtest/gtest.h>

#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "hps/error.hpp"
#include "hps/tiers/rocksdb_tier.hpp"
// tier_conformance.hpp's expect_size() trips GCC's -Wdangling-else (EXPECT_EQ expands to an
// if/else under an unbraced `if constexpr`); that header belongs to the shared suite.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdangling-else"
#include "tier_conformance.hpp"
#pragma GCC diagnostic pop

namespace {

namespace fs = std::filesystem;
using hps_test::fill_row;
using hps_test::rows_for;

/// A fresh folder under the system temp directory, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "hps_rocksdb_test_XXXXXX").string();
    if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const fs::path& path() const { return path_; }
  /// A database folder inside this one (not created).
  std::string db() const { return (path_ / "db").string(); }

 private:
  fs::path path_;
};

hps::PersistentDbConfig db_config(const std::string& path, bool read_only = false) {
  hps::PersistentDbConfig config;
  config.type = hps::PersistentDbType::kRocksDb;
  config.path = path;
  config.num_threads = 2;
  config.read_only = read_only;
  config.max_batch_size = 97;  // small and odd, so batches of a few hundred keys span chunks
  return config;
}

std::shared_ptr<hps::RocksDbStore> open_store(const std::string& path, bool read_only = false) {
  return hps::RocksDbStore::open(db_config(path, read_only));
}

std::vector<std::int64_t> key_range(std::int64_t first, std::size_t n, std::int64_t step = 1) {
  std::vector<std::int64_t> keys(n);
  for (std::size_t i = 0; i < n; ++i) keys[i] = first + static_cast<std::int64_t>(i) * step;
  return keys;
}

/// Asserts that every key is found with exactly the rows given.
void expect_rows(hps::Tier& tier, const std::vector<std::int64_t>& keys, const std::vector<float>& rows) {
  std::vector<float> out(keys.size() * tier.dim(), -1.0f);
  std::vector<std::uint8_t> found(keys.size(), 7);
  EXPECT_EQ(tier.find(keys.data(), keys.size(), out.data(), found.data()), keys.size());
  EXPECT_EQ(out, rows);
}

std::size_t count_found(hps::Tier& tier, const std::vector<std::int64_t>& keys) {
  std::vector<float> out(keys.size() * tier.dim());
  std::vector<std::uint8_t> found(keys.size());
  return tier.find(keys.data(), keys.size(), out.data(), found.data());
}

/// Runs fn and returns the message of the ErrorType it throws (fails the test when it does not).
template <typename ErrorType, typename Fn>
std::string error_message(Fn&& fn) {
  try {
    fn();
  } catch (const ErrorType& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw another exception: " << e.what();
    return {};
  }
  ADD_FAILURE() << "did not throw";
  return {};
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// ---------------------------------------------------------------------------------------------
// The shared conformance suite.

struct RocksDbFactory {
  static constexpr bool kExactSize = false;  // size() is RocksDB's estimate

  /// A tier over a table of a fresh database; the returned pointer also owns the folder, which is
  /// removed after the tier (and with it the store) is gone.
  static std::shared_ptr<hps::Tier> make(std::size_t dim) {
    struct Owner {
      TempDir dir;                      // declared first: destroyed after the store closed
      std::shared_ptr<hps::Tier> tier;  // holds the store
    };
    auto owner = std::make_shared<Owner>();
    owner->tier = open_store(owner->dir.db())->open_table("hps_et.conformance.table", dim);
    return std::shared_ptr<hps::Tier>(owner, owner->tier.get());
  }
};

}  // namespace

namespace hps_test {
INSTANTIATE_TYPED_TEST_SUITE_P(RocksDb, TierConformance, RocksDbFactory);
}  // namespace hps_test

namespace {

// ---------------------------------------------------------------------------------------------
// Persistence and table management.

TEST(RocksDbTier, IsAvailableInThisBuild) { EXPECT_TRUE(hps::rocksdb_available()); }

TEST(RocksDbTier, RowsSurviveCloseAndReopen) {
  TempDir dir;
  const auto keys = key_range(-500, 1000, 13);
  const auto rows = rows_for(keys, 6);
  {
    auto tier = open_store(dir.db())->open_table("hps_et.m.t", 6);
    tier->insert(keys.data(), rows.data(), keys.size());
  }
  auto store = open_store(dir.db());
  EXPECT_EQ(store->tables(), std::vector<std::string>{"hps_et.m.t"});
  auto tier = store->open_table("hps_et.m.t", 6);
  EXPECT_EQ(tier->backend_name(), std::string("rocksdb"));
  expect_rows(*tier, keys, rows);
}

TEST(RocksDbTier, ForEachVisitsKeysInNumericOrder) {
  // The key encoding makes RocksDB's byte order the numeric order, negative keys included.
  TempDir dir;
  auto tier = open_store(dir.db())->open_table("hps_et.m.t", 1);
  std::vector<std::int64_t> keys = {5, -1, INT64_MIN, 0, INT64_MAX, -300, 256, 1};
  const auto rows = rows_for(keys, 1);
  tier->insert(keys.data(), rows.data(), keys.size());
  std::vector<std::int64_t> seen;
  tier->for_each(3, [&](const std::int64_t* k, const float*, std::size_t n) { seen.insert(seen.end(), k, k + n); });
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(seen, keys);
}

TEST(RocksDbTier, TwoTablesAreIndependent) {
  TempDir dir;
  auto store = open_store(dir.db());
  auto a = store->open_table("hps_et.m.a", 2);
  auto b = store->open_table("hps_et.m.b", 5);
  const auto keys = key_range(0, 300);
  const auto rows_a = rows_for(keys, 2, 1.0f);
  const auto rows_b = rows_for(keys, 5, 2.0f);
  a->insert(keys.data(), rows_a.data(), keys.size());
  b->insert(keys.data(), rows_b.data(), 100);  // only the first 100 keys
  EXPECT_EQ(count_found(*b, keys), 100u);
  EXPECT_EQ(b->erase(keys.data(), keys.size()), 100u);
  EXPECT_EQ(count_found(*b, keys), 0u);
  expect_rows(*a, keys, rows_a);
  EXPECT_EQ(store->tables(), (std::vector<std::string>{"hps_et.m.a", "hps_et.m.b"}));
  EXPECT_TRUE(store->has_table("hps_et.m.a"));
  EXPECT_FALSE(store->has_table("hps_et.m.c"));
}

TEST(RocksDbTier, SameTagTwiceSharesTheTable) {
  TempDir dir;
  auto store = open_store(dir.db());
  auto first = store->open_table("hps_et.m.t", 3);
  auto second = store->open_table("hps_et.m.t", 3);
  const auto keys = key_range(10, 50);
  const auto rows = rows_for(keys, 3);
  first->insert(keys.data(), rows.data(), keys.size());
  expect_rows(*second, keys, rows);
}

TEST(RocksDbTier, OpenTableRejectsBadArguments) {
  TempDir dir;
  auto store = open_store(dir.db());
  store->open_table("hps_et.m.t", 3);
  const auto message = error_message<hps::InvalidArgument>([&] { store->open_table("hps_et.m.t", 4); });
  EXPECT_TRUE(contains(message, "dim 3")) << message;
  EXPECT_THROW(store->open_table("hps_et.m.u", 0), hps::InvalidArgument);
  EXPECT_THROW(store->open_table("", 3), hps::InvalidArgument);
  EXPECT_THROW(store->open_table("hps_meta", 3), hps::InvalidArgument);
  EXPECT_THROW(store->open_table("default", 3), hps::InvalidArgument);
}

TEST(RocksDbTier, LoadMarkersSurviveReopen) {
  TempDir dir;
  {
    auto store = open_store(dir.db());
    store->open_table("hps_et.m.a", 2);
    EXPECT_EQ(store->load_marker("hps_et.m.a"), std::nullopt);
    store->set_load_marker("hps_et.m.a", "first");
    store->set_load_marker("hps_et.m.a", "sha256:abc size=42");
    store->set_load_marker("hps_et.m.b", "other");
  }
  auto store = open_store(dir.db());
  EXPECT_EQ(store->load_marker("hps_et.m.a"), std::optional<std::string>("sha256:abc size=42"));
  EXPECT_EQ(store->load_marker("hps_et.m.b"), std::optional<std::string>("other"));
  EXPECT_EQ(store->load_marker("hps_et.m.c"), std::nullopt);
  // Markers are not tables.
  EXPECT_EQ(store->tables(), std::vector<std::string>{"hps_et.m.a"});
}

TEST(RocksDbTier, DropTableRemovesRowsAndMarker) {
  TempDir dir;
  const auto keys = key_range(0, 200);
  const auto rows = rows_for(keys, 4);
  {
    auto store = open_store(dir.db());
    auto dropped = store->open_table("hps_et.m.gone", 4);
    auto kept = store->open_table("hps_et.m.kept", 4);
    dropped->insert(keys.data(), rows.data(), keys.size());
    kept->insert(keys.data(), rows.data(), keys.size());
    store->set_load_marker("hps_et.m.gone", "loaded");
    store->drop_table("hps_et.m.gone");
    EXPECT_FALSE(store->has_table("hps_et.m.gone"));
    EXPECT_EQ(store->load_marker("hps_et.m.gone"), std::nullopt);
    // A tier over a dropped table refuses work instead of touching a dead column family.
    EXPECT_THROW(count_found(*dropped, keys), hps::NotFound);
    EXPECT_THROW(dropped->insert(keys.data(), rows.data(), 1), hps::NotFound);
    EXPECT_THROW(store->drop_table("hps_et.m.gone"), hps::NotFound);
    // The tag can be used again, for an empty table.
    auto again = store->open_table("hps_et.m.gone", 4);
    EXPECT_EQ(count_found(*again, keys), 0u);
    store->drop_table("hps_et.m.gone");
  }
  auto store = open_store(dir.db());
  EXPECT_EQ(store->tables(), std::vector<std::string>{"hps_et.m.kept"});
  expect_rows(*store->open_table("hps_et.m.kept", 4), keys, rows);
}

TEST(RocksDbTier, BulkInsertIsOnDiskWhenItReturns) {
  TempDir dir;
  const auto keys = key_range(1000, 500, 3);
  const auto rows = rows_for(keys, 8);
  {
    auto store = open_store(dir.db());
    EXPECT_THROW(store->bulk_insert("hps_et.m.t", keys.data(), rows.data(), keys.size()), hps::NotFound);
    EXPECT_THROW(store->flush("hps_et.m.t"), hps::NotFound);
    auto tier = store->open_table("hps_et.m.t", 8);
    store->bulk_insert("hps_et.m.t", keys.data(), rows.data(), keys.size());
    store->set_load_marker("hps_et.m.t", "v1");
    expect_rows(*tier, keys, rows);
    store->flush("hps_et.m.t");
  }
  auto store = open_store(dir.db());
  EXPECT_EQ(store->load_marker("hps_et.m.t"), std::optional<std::string>("v1"));
  expect_rows(*store->open_table("hps_et.m.t", 8), keys, rows);
}

TEST(RocksDbTier, InsertIfAbsentCountsEachKeyOnce) {
  TempDir dir;
  auto tier = open_store(dir.db())->open_table("hps_et.m.t", 1);
  std::vector<std::int64_t> keys = {7, 8, 7, 9};
  std::vector<float> rows = {1, 2, 3, 4};
  tier->insert(&keys[3], &rows[3], 1);  // 9 is present
  EXPECT_EQ(tier->insert_if_absent(keys.data(), rows.data(), keys.size(), [] { return true; }), 2u);
  std::vector<float> out(4);
  std::vector<std::uint8_t> found(4);
  EXPECT_EQ(tier->find(keys.data(), keys.size(), out.data(), found.data()), 4u);
  EXPECT_EQ(out, (std::vector<float>{1, 2, 1, 4}));  // the first 7 won, 9 kept its row
  std::vector<std::int64_t> erase = {7, 7, 100};
  EXPECT_EQ(tier->erase(erase.data(), erase.size()), 1u);
}

TEST(RocksDbTier, SizeAndMemoryAreReported) {
  TempDir dir;
  auto tier = open_store(dir.db())->open_table("hps_et.m.t", 4);
  EXPECT_EQ(tier->capacity(), SIZE_MAX);
  const auto keys = key_range(0, 1000);
  const auto rows = rows_for(keys, 4);
  tier->insert(keys.data(), rows.data(), keys.size());
  // An estimate: loose bounds only.
  EXPECT_GE(tier->size(), 500u);
  EXPECT_LE(tier->size(), 2000u);
  EXPECT_GT(tier->memory_bytes(), 0u);
}

/// The value of the tier's counter `name`; fails the test when there is none.
std::uint64_t counter(const hps::Tier& tier, const std::string& name) {
  for (const auto& c : tier.event_counters()) {
    if (c.name == name) {
      EXPECT_TRUE(c.gauge) << name;
      return c.value;
    }
  }
  ADD_FAILURE() << "no counter " << name;
  return 0;
}

TEST(RocksDbTier, BlockCacheUsageIsReportedAndCapped) {
  TempDir dir;
  hps::PersistentDbConfig config = db_config(dir.db());
  config.block_cache_size = std::size_t{1} << 20;
  auto store = hps::RocksDbStore::open(config);
  auto tier = store->open_table("hps_et.m.t", 16);
  EXPECT_EQ(counter(*tier, "block_cache_capacity_bytes"), std::size_t{1} << 20);
  // 50,000 rows of 72 bytes (3.4 MiB) in SST files, more than the cache holds.
  const auto keys = key_range(0, 50000);
  const auto rows = rows_for(keys, 16);
  store->bulk_insert("hps_et.m.t", keys.data(), rows.data(), keys.size());
  store->flush("hps_et.m.t");
  const std::uint64_t before = counter(*tier, "block_cache_usage_bytes");
  // A few neighbouring keys read one or two data blocks (4 KiB each) into the cache.
  const auto few = key_range(0, 10);
  EXPECT_EQ(count_found(*tier, few), few.size());
  const std::uint64_t after_few = counter(*tier, "block_cache_usage_bytes");
  EXPECT_GT(after_few, before);
  EXPECT_LT(after_few, before + (std::size_t{64} << 10)) << "before " << before;
  // Every key: the usage reaches the cap and stays within it; the blocks are released after the reads.
  EXPECT_EQ(count_found(*tier, keys), keys.size());
  const std::uint64_t after_all = counter(*tier, "block_cache_usage_bytes");
  EXPECT_GT(after_all, std::size_t{1} << 19);
  EXPECT_LE(after_all, std::size_t{1} << 20);
  // No data block (4 KiB) stays pinned; RocksDB keeps a small entry of its own pinned (88 bytes
  // with RocksDB 7.8: its cache statistics collector).
  EXPECT_LT(counter(*tier, "block_cache_pinned_bytes"), 4096u);
  // The cache is the store's: a second table reports the same one.
  auto other = store->open_table("hps_et.m.u", 4);
  EXPECT_EQ(counter(*other, "block_cache_usage_bytes"), counter(*tier, "block_cache_usage_bytes"));
}

TEST(RocksDbTier, BlockCacheDefaultsTo256MiB) {
  TempDir dir;
  auto tier = open_store(dir.db())->open_table("hps_et.m.t", 4);
  EXPECT_EQ(counter(*tier, "block_cache_capacity_bytes"), std::size_t{256} << 20);
}

TEST(RocksDbTier, TooSmallCacheOrMemtableSizeIsRefused) {
  // Each case: one size set to a value open() refuses, the key its error names, and why.
  struct Case {
    std::size_t hps::PersistentDbConfig::*field;
    std::size_t value;
    const char* key;
    const char* reason;
  };
  const Case cases[] = {
      {&hps::PersistentDbConfig::block_cache_size, 0, "persistent_db.block_cache_size", "must be positive"},
      {&hps::PersistentDbConfig::memtable_size, 1000, "persistent_db.memtable_size", "found 1000"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.key);
    TempDir dir;
    hps::PersistentDbConfig config = db_config(dir.db());
    config.*c.field = c.value;
    const auto message = error_message<hps::InvalidArgument>([&] { hps::RocksDbStore::open(config); });
    EXPECT_TRUE(contains(message, c.key)) << message;
    EXPECT_TRUE(contains(message, c.reason)) << message;
  }
}

TEST(RocksDbTier, MemtableSizeBoundsTheMemoryOfWrites) {
  // 20,000 rows of 1 KiB (about 20 MiB) written through the WAL, as update() writes them.
  const auto keys = key_range(0, 20000);
  const auto rows = rows_for(keys, 256);
  auto memory_after_writes = [&](std::size_t memtable_size) {
    TempDir dir;
    hps::PersistentDbConfig config = db_config(dir.db());
    config.memtable_size = memtable_size;
    auto tier = hps::RocksDbStore::open(config)->open_table("hps_et.m.t", 256);
    tier->insert(keys.data(), rows.data(), keys.size());
    EXPECT_EQ(count_found(*tier, keys), keys.size());
    return tier->memory_bytes();
  };
  // 2 MiB memtables: full ones are flushed, at most two stay (plus the table readers' indexes and
  // filters, a few hundred KiB here). RocksDB's 64 MiB default keeps all 20 MiB in memory.
  EXPECT_LT(memory_after_writes(std::size_t{2} << 20), std::size_t{6} << 20);
  EXPECT_GT(memory_after_writes(std::size_t{64} << 20), std::size_t{20} << 20);
}

TEST(RocksDbTier, OtherDimOnReopenIsAnIOErrorNamingBothSizes) {
  TempDir dir;
  const auto keys = key_range(0, 10);
  const auto rows = rows_for(keys, 4);
  open_store(dir.db())->open_table("hps_et.m.t", 4)->insert(keys.data(), rows.data(), keys.size());

  auto tier = open_store(dir.db())->open_table("hps_et.m.t", 8);
  const auto message = error_message<hps::IOError>([&] { count_found(*tier, keys); });
  EXPECT_TRUE(contains(message, "hps_et.m.t")) << message;
  EXPECT_TRUE(contains(message, "16 bytes")) << message;
  EXPECT_TRUE(contains(message, "expected 32")) << message;
  EXPECT_THROW(tier->for_each(4, [](const std::int64_t*, const float*, std::size_t) {}), hps::IOError);
}

// ---------------------------------------------------------------------------------------------
// Read-only mode.

/// Name -> (size, mtime) of every file under a folder.
using FolderState = std::map<std::string, std::tuple<std::uintmax_t, fs::file_time_type>>;

FolderState folder_state(const fs::path& root) {
  FolderState state;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    const auto size = entry.is_regular_file() ? entry.file_size() : 0;
    state[fs::relative(entry.path(), root).string()] = {size, entry.last_write_time()};
  }
  return state;
}

TEST(RocksDbTier, ReadOnlyStoreReadsAndNeverWrites) {
  TempDir dir;
  const auto keys = key_range(-50, 300);
  const auto rows = rows_for(keys, 3);
  {
    auto store = open_store(dir.db());
    store->open_table("hps_et.m.t", 3)->insert(keys.data(), rows.data(), keys.size());
    store->open_table("hps_et.m.u", 2);
    store->set_load_marker("hps_et.m.t", "v1");
  }
  const FolderState before = folder_state(dir.db());
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // so a rewritten file shows a new mtime
  {
    auto store = open_store(dir.db(), /*read_only=*/true);
    EXPECT_TRUE(store->read_only());
    EXPECT_EQ(store->tables(), (std::vector<std::string>{"hps_et.m.t", "hps_et.m.u"}));
    EXPECT_EQ(store->load_marker("hps_et.m.t"), std::optional<std::string>("v1"));
    auto tier = store->open_table("hps_et.m.t", 3);
    expect_rows(*tier, keys, rows);
    std::size_t visited = 0;
    tier->for_each(64, [&](const std::int64_t*, const float*, std::size_t n) { visited += n; });
    EXPECT_EQ(visited, keys.size());

    const auto refused = [](const std::string& message) { return contains(message, "read-only"); };
    EXPECT_PRED1(refused, error_message<hps::IOError>([&] { tier->insert(keys.data(), rows.data(), 1); }));
    EXPECT_PRED1(refused, error_message<hps::IOError>([&] { tier->insert(nullptr, nullptr, 0); }));
    EXPECT_PRED1(refused, error_message<hps::IOError>(
                              [&] { tier->insert_if_absent(keys.data(), rows.data(), 1, [] { return true; }); }));
    EXPECT_PRED1(refused, error_message<hps::IOError>([&] { tier->erase(keys.data(), 1); }));
    EXPECT_PRED1(refused, error_message<hps::IOError>([&] { store->drop_table("hps_et.m.t"); }));
    EXPECT_PRED1(refused, error_message<hps::IOError>([&] { store->set_load_marker("hps_et.m.t", "v2"); }));
    EXPECT_PRED1(refused, error_message<hps::IOError>(
                              [&] { store->bulk_insert("hps_et.m.t", keys.data(), rows.data(), 1); }));
    EXPECT_PRED1(refused, error_message<hps::IOError>([&] { store->flush("hps_et.m.t"); }));
    const auto missing = error_message<hps::NotFound>([&] { store->open_table("hps_et.m.missing", 3); });
    EXPECT_TRUE(contains(missing, "hps_et.m.missing")) << missing;
    EXPECT_TRUE(contains(missing, "hps_et.m.t")) << missing;
    EXPECT_TRUE(contains(missing, "hps_et.m.u")) << missing;
  }
  EXPECT_EQ(folder_state(dir.db()), before);
}

TEST(RocksDbTier, ReadOnlyOpenOfAnEmptyFolderNamesThePath) {
  TempDir dir;
  const std::string path = dir.path().string();
  const auto message = error_message<hps::IOError>([&] { open_store(path, /*read_only=*/true); });
  EXPECT_TRUE(contains(message, path)) << message;
  EXPECT_TRUE(fs::is_empty(dir.path()));
  EXPECT_THROW(open_store(dir.db(), /*read_only=*/true), hps::IOError);  // a path that does not exist
  EXPECT_FALSE(fs::exists(dir.db()));
}

// ---------------------------------------------------------------------------------------------
// Crash survival.

/// The child's side: write rows and a marker, signal the parent, die without closing anything.
[[noreturn]] void write_then_die(const std::string& path, const std::vector<std::int64_t>& keys,
                                 const std::vector<float>& rows, int ready_fd) {
  try {
    auto store = open_store(path);
    auto tier = store->open_table("hps_et.m.t", 5);
    tier->insert(keys.data(), rows.data(), keys.size() / 2);
    tier->insert(keys.data() + keys.size() / 2, rows.data() + keys.size() / 2 * 5, keys.size() - keys.size() / 2);
    store->set_load_marker("hps_et.m.t", "written");
    const char byte = 1;
    if (write(ready_fd, &byte, 1) != 1) _exit(3);
    raise(SIGKILL);
  } catch (...) {
    _exit(2);
  }
  _exit(4);
}

TEST(RocksDbTier, WritesSurviveTheProcessBeingKilled) {
  TempDir dir;
  const auto keys = key_range(-2000, 1500, 7);
  const auto rows = rows_for(keys, 5);
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(pipe_fds[0]);
    write_then_die(dir.db(), keys, rows, pipe_fds[1]);
  }
  close(pipe_fds[1]);
  pollfd ready{pipe_fds[0], POLLIN, 0};
  const bool signalled = poll(&ready, 1, 60000) == 1;
  char byte = 0;
  const bool wrote = signalled && read(pipe_fds[0], &byte, 1) == 1;
  close(pipe_fds[0]);
  if (!wrote) kill(child, SIGKILL);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(wrote) << "the child did not finish writing; exit status " << status;
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;

  auto store = open_store(dir.db());
  EXPECT_EQ(store->load_marker("hps_et.m.t"), std::optional<std::string>("written"));
  expect_rows(*store->open_table("hps_et.m.t", 5), keys, rows);
}

// ---------------------------------------------------------------------------------------------
// Concurrency.

TEST(RocksDbTier, ConcurrentOpenFindInsertOnSeveralTables) {
  // Threads open tables (creating them lazily), insert and look up at once. Every row of table i
  // is fill_row(key, dims[i], salt i), so any row found can be checked.
  TempDir dir;
  auto store = open_store(dir.db());
  const std::vector<std::size_t> dims = {1, 4, 9, 16};
  auto tag = [](std::size_t i) { return "hps_et.concurrent.t" + std::to_string(i); };
  std::atomic<bool> stop{false};
  std::atomic<std::size_t> rows_checked{0}, bad_rows{0}, failures{0};

  auto work = [&](unsigned seed) {
    std::mt19937_64 rng(seed);
    std::vector<std::int64_t> keys(64);
    std::vector<float> out, expected;
    std::vector<std::uint8_t> found(keys.size());
    try {
      while (!stop) {
        const std::size_t t = rng() % dims.size();
        const std::size_t dim = dims[t];
        auto tier = store->open_table(tag(t), dim);
        for (auto& k : keys) k = static_cast<std::int64_t>(rng() % 5000) - 2500;
        if (rng() % 2) {
          const auto rows = rows_for(keys, dim, static_cast<float>(t));
          tier->insert(keys.data(), rows.data(), keys.size());
        }
        out.assign(keys.size() * dim, 0.0f);
        tier->find(keys.data(), keys.size(), out.data(), found.data());
        expected.resize(dim);
        for (std::size_t i = 0; i < keys.size(); ++i) {
          if (!found[i]) continue;
          fill_row(keys[i], dim, expected.data(), static_cast<float>(t));
          if (!std::equal(expected.begin(), expected.end(), out.begin() + i * dim)) ++bad_rows;
          ++rows_checked;
        }
      }
    } catch (const std::exception& e) {
      ADD_FAILURE() << e.what();
      ++failures;
    }
  };
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < 6; ++i) threads.emplace_back(work, i + 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  stop = true;
  for (auto& thread : threads) thread.join();

  EXPECT_EQ(failures.load(), 0u);
  EXPECT_EQ(bad_rows.load(), 0u);
  EXPECT_GT(rows_checked.load(), 0u);
  EXPECT_EQ(store->tables().size(), dims.size());
}

}  // namespace
