// The RocksDB persistent tier (see rocksdb_tier.hpp for the contract).
//
// Built two ways: with HPS_HAVE_ROCKSDB=1 it is the real store; without it rocksdb_available()
// is false and RocksDbStore::open() throws BackendUnavailable saying how to get RocksDB.
//
// Layout of one database folder:
//   column family "<tag>"    one per table: key = encode_key(int64), value = dim fp32 (little-endian)
//   column family "hps_meta" load markers: key = table tag, value = marker string
//   column family "default"  required by RocksDB, unused
//
// Locking:
//   - the store's table map (tag -> RocksDbTableState) has its own reader-writer lock, so creating a
//     table while another is being read is safe (HugeCTR's unprotected handle map was a race);
//   - a tier never touches that map: it holds its RocksDbTableState, so lookups take no lock of ours;
//   - each table has a writer lock: plain writes share it, check-then-write operations
//     (insert_if_absent, erase) and drop_table take it exclusively.
#include "hps/tiers/rocksdb_tier.hpp"

#include "hps/error.hpp"

#if defined(HPS_HAVE_ROCKSDB) && HPS_HAVE_ROCKSDB

#include "detail/tsan_ignore.hpp"

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/env.h>
#include <rocksdb/iterator.h>
#include <rocksdb/options.h>
#include <rocksdb/slice.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <unordered_set>

namespace hps {

namespace {

constexpr const char* kMetaFamily = "hps_meta";
constexpr std::size_t kKeyBytes = 8;
// About 1% false positives: a lookup of an absent key rarely reads a data block.
constexpr double kBloomBitsPerKey = 10;
// RocksDB's info LOG (TolerantInfoLog) is set aside as LOG.old once it passes this size.
constexpr std::uintmax_t kMaxInfoLogBytes = std::uintmax_t{64} << 20;

static_assert(std::endian::native == std::endian::little,
              "rows are stored as raw little-endian fp32 bytes; a big-endian port must swap them");

using EncodedKey = std::array<char, kKeyBytes>;

/// Big-endian with the sign bit flipped, so RocksDB's bytewise order is numeric order.
EncodedKey encode_key(std::int64_t key) {
  const std::uint64_t bits = static_cast<std::uint64_t>(key) ^ (std::uint64_t{1} << 63);
  EncodedKey out;
  for (std::size_t i = 0; i < kKeyBytes; ++i) out[i] = static_cast<char>(bits >> (8 * (kKeyBytes - 1 - i)));
  return out;
}

std::int64_t decode_key(const rocksdb::Slice& bytes, const std::string& tag) {
  HPS_EXPECTS(bytes.size() == kKeyBytes, IOError, "RocksDB table '", tag, "' holds a key of ", bytes.size(),
              " bytes, expected ", kKeyBytes, " (was it written by another program?)");
  std::uint64_t bits = 0;
  for (std::size_t i = 0; i < kKeyBytes; ++i) bits = (bits << 8) | static_cast<std::uint8_t>(bytes[i]);
  return static_cast<std::int64_t>(bits ^ (std::uint64_t{1} << 63));
}

void check_status(const rocksdb::Status& status, const std::string& what) {
  if (!status.ok()) HPS_FAIL(IOError, what, ": ", status.ToString());
}

/// DB::Write, with ThreadSanitizer told to ignore the plain memory accesses inside it. Concurrent
/// writers form a write group whose leader copies every member's batch into one WAL record
/// (DBImpl::MergeBatch -> WriteBatchInternal::Append, seen under gdb) and may insert them into the
/// memtable; RocksDB hands the batches over through atomics in its uninstrumented library, so
/// ThreadSanitizer reports the leader's read of another thread's batch as a race. Sound because
/// everything Write touches is RocksDB's own state or the callers' batches, which no hps code
/// touches until each Write returns; locks and atomics inside it are still tracked.
/// docs/sanitizers.md has the report and the stack.
rocksdb::Status write_batch(rocksdb::DB& db, const rocksdb::WriteOptions& options, rocksdb::WriteBatch& writes) {
  [[maybe_unused]] const TsanIgnoreAccesses ignore;  // (an empty object outside TSan builds)
  rocksdb::Status status = db.Write(options, &writes);
  if (!status.IsIOError()) return status;
  // After an I/O error (a full disk) RocksDB refuses every later write until it is resumed, so
  // writes kept failing once space was back: resume (it fails while the cause stays; Busy while
  // another thread or RocksDB itself resumes) and retry once.
  rocksdb::Status resumed = db.Resume();
  for (int wait = 0; wait < 5 && resumed.IsBusy(); ++wait) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    resumed = db.Resume();
  }
  if (resumed.ok()) return db.Write(options, &writes);
  std::string resuming = resumed.ToString();
  while (!resuming.empty() && (resuming.back() == ' ' || resuming.back() == ':')) resuming.pop_back();
  return rocksdb::Status::IOError(status.getState() != nullptr ? status.getState() : status.ToString(),
                                  "RocksDB takes no more writes until it recovers from this error (resuming: " +
                                      resuming + "); restart the server once the cause is gone");
}

/// RocksDB's info log, in the database folder as RocksDB keeps it, but a line that cannot be
/// written (a full disk) is dropped: Debian's librocksdb (assertions on) aborts the process when its
/// own LOG writer is used after a failed write. Appended to, never rotated while it may be another
/// process's (a server refused by the database lock opens it too), except when over kMaxInfoLogBytes.
class TolerantInfoLog final : public rocksdb::Logger {
 public:
  explicit TolerantInfoLog(const std::string& folder) {
    std::error_code ignored;
    const std::string path = folder + "/LOG";
    if (std::filesystem::file_size(path, ignored) > kMaxInfoLogBytes && !ignored) {
      std::filesystem::rename(path, path + ".old", ignored);
    }
    file_ = std::fopen(path.c_str(), "a");  // null (no such folder yet, or not writable): nothing is logged
  }
  ~TolerantInfoLog() override {
    if (file_ != nullptr) std::fclose(file_);
  }
  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    if (file_ == nullptr) return;
    char stamp[32];
    const std::time_t now = std::time(nullptr);
    std::tm local{};
    std::strftime(stamp, sizeof stamp, "%Y/%m/%d-%H:%M:%S ", localtime_r(&now, &local));
    std::lock_guard<std::mutex> lock(mutex_);
    std::fputs(stamp, file_);
    std::vfprintf(file_, format, ap);
    std::fputc('\n', file_);
    std::fflush(file_);
    std::clearerr(file_);  // a failed write is forgotten, the next line tries again
  }

 private:
  std::FILE* file_ = nullptr;
  std::mutex mutex_;
};

/// Calls fn(begin, count) over [0, n) in consecutive chunks of at most `chunk` elements.
template <typename Fn>
void for_each_chunk(std::size_t n, std::size_t chunk, Fn&& fn) {
  for (std::size_t begin = 0; begin < n; begin += chunk) fn(begin, std::min(chunk, n - begin));
}

std::string join(const std::vector<std::string>& names) {
  if (names.empty()) return "none";
  std::string out;
  for (const auto& name : names) out += (out.empty() ? "'" : ", '") + name + "'";
  return out;
}

bool is_reserved_family(const std::string& name) {
  return name == rocksdb::kDefaultColumnFamilyName || name == kMetaFamily;
}

bool database_exists(const std::string& path) {
  std::error_code ignored;
  return std::filesystem::exists(std::filesystem::path(path) / "CURRENT", ignored);
}

rocksdb::ColumnFamilyOptions family_options(const std::shared_ptr<rocksdb::Cache>& block_cache,
                                            std::size_t memtable_size) {
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = block_cache;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(kBloomBitsPerKey));
  table.whole_key_filtering = true;  // keys are looked up whole, never by prefix
  table.data_block_index_type = rocksdb::BlockBasedTableOptions::kDataBlockBinaryAndHash;
  rocksdb::ColumnFamilyOptions options;
  options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  // A bloom filter over the memtable too, so misses skip its skip-list search.
  options.memtable_whole_key_filtering = true;
  options.memtable_prefix_bloom_size_ratio = 0.02;
  // Writes fill one memtable of this size; a full one is flushed to an SST file while the next
  // fills (max_write_buffer_number stays 2), so a family holds at most twice this much.
  options.write_buffer_size = memtable_size;
  return options;
}

rocksdb::DBOptions database_options(const PersistentDbConfig& config) {
  rocksdb::DBOptions options;
  options.IncreaseParallelism(static_cast<int>(std::clamp<std::size_t>(config.num_threads, 1, 256)));
  options.create_if_missing = !config.read_only;
  options.create_missing_column_families = !config.read_only;
  if (!config.read_only) {  // (a read-only open writes nothing in the folder, not even a LOG)
    std::error_code ignored;
    std::filesystem::create_directory(config.path, ignored);  // (RocksDB would, just after: not its parents)
    options.info_log = std::make_shared<TolerantInfoLog>(config.path);
  }
  // The write-ahead log stays on and is not flushed manually (manual_wal_flush = false): every
  // write hands its log record to the OS before it returns, so it survives the process being
  // killed. WriteOptions::sync stays false: surviving a power loss would cost an fsync per write.
  return options;
}

}  // namespace

/// One table (column family) of an open store. Held by the store's table map and by every tier
/// over the table, so dropping a table never leaves a tier with a dangling handle.
struct RocksDbTableState {
  std::string tag;
  /// 0 until open_table() in this process: the database does not record a table's dim.
  std::atomic<std::size_t> dim{0};
  std::shared_ptr<rocksdb::ColumnFamilyHandle> handle;
  /// Plain writes take it shared; check-then-write operations and drop_table exclusively.
  std::shared_mutex write_mutex;
  std::atomic<bool> dropped{false};
};

class RocksDbStoreImpl final : public RocksDbStore {
 public:
  explicit RocksDbStoreImpl(const PersistentDbConfig& config);
  ~RocksDbStoreImpl() override;

  const std::string& path() const override { return config_.path; }
  bool read_only() const override { return config_.read_only; }
  std::vector<std::string> tables() const override;
  bool has_table(const std::string& tag) const override;
  std::shared_ptr<Tier> open_table(const std::string& tag, std::size_t dim) override;
  void drop_table(const std::string& tag) override;
  void drop_table_for_load(const std::string& tag, const std::string& marker) override;
  std::optional<std::string> load_marker(const std::string& tag) const override;
  void set_load_marker(const std::string& tag, const std::string& marker) override;
  void bulk_insert(const std::string& tag, const std::int64_t* keys, const float* rows, std::size_t n) override;
  void flush(const std::string& tag) override;

  rocksdb::DB& db() const { return *db_; }
  std::size_t max_batch_size() const { return config_.max_batch_size; }
  const rocksdb::Cache& block_cache() const { return *block_cache_; }
  /// Throws IOError when the store is read-only; `what` names the refused operation.
  void expect_writable(const std::string& what) const;

 private:
  /// drop_table, the load marker removed (nullopt) or replaced.
  void drop(const std::string& tag, const std::optional<std::string>& marker);
  void open_database();
  std::vector<std::string> families_to_open(const rocksdb::DBOptions& options) const;
  std::shared_ptr<rocksdb::ColumnFamilyHandle> adopt(rocksdb::ColumnFamilyHandle* handle);
  std::shared_ptr<RocksDbTableState> add_table(rocksdb::ColumnFamilyHandle* handle);
  std::shared_ptr<RocksDbTableState> find_or_create_table(const std::string& tag, std::size_t dim);
  std::shared_ptr<RocksDbTableState> existing_table(const std::string& tag) const;
  std::string missing_table_message(const std::string& tag) const;  // caller holds tables_mutex_
  std::vector<std::string> table_names() const;                      // caller holds tables_mutex_
  void flush_table(const RocksDbTableState& table);

  PersistentDbConfig config_;
  std::shared_ptr<rocksdb::Cache> block_cache_;
  rocksdb::ColumnFamilyOptions family_options_;
  std::unique_ptr<rocksdb::DB> db_;
  std::shared_ptr<rocksdb::ColumnFamilyHandle> default_family_;
  std::shared_ptr<rocksdb::ColumnFamilyHandle> meta_family_;  // null in a read-only store without one
  mutable std::shared_mutex tables_mutex_;
  std::map<std::string, std::shared_ptr<RocksDbTableState>> tables_;
};

namespace {

/// Reusable buffers for batched MultiGet over one column family, one chunk at a time.
class LookupBatch {
 public:
  LookupBatch(rocksdb::DB& db, const RocksDbTableState& table, std::size_t capacity)
      : db_(db), table_(table), keys_(capacity), slices_(capacity), values_(capacity), statuses_(capacity) {}

  /// Looks up keys[0 .. n), n <= capacity.
  void run(const std::int64_t* keys, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      keys_[i] = encode_key(keys[i]);
      slices_[i] = rocksdb::Slice(keys_[i].data(), kKeyBytes);
      values_[i].Reset();  // releases what the previous chunk pinned
    }
    db_.MultiGet(rocksdb::ReadOptions(), table_.handle.get(), n, slices_.data(), values_.data(), statuses_.data());
  }

  /// Whether the i-th key of the last run was found; any failure other than "not found" throws.
  bool found(std::size_t i, std::int64_t key) const {
    if (statuses_[i].ok()) return true;
    if (statuses_[i].IsNotFound()) return false;
    HPS_FAIL(IOError, "RocksDB lookup of key ", key, " in table '", table_.tag, "' failed: ", statuses_[i].ToString());
  }

  const rocksdb::PinnableSlice& value(std::size_t i) const { return values_[i]; }

 private:
  rocksdb::DB& db_;
  const RocksDbTableState& table_;
  std::vector<EncodedKey> keys_;
  std::vector<rocksdb::Slice> slices_;
  std::vector<rocksdb::PinnableSlice> values_;
  std::vector<rocksdb::Status> statuses_;
};

rocksdb::Slice row_slice(const float* rows, std::size_t index, std::size_t dim) {
  return rocksdb::Slice(reinterpret_cast<const char*>(rows + index * dim), dim * sizeof(float));
}

/// Stores rows in one WriteBatch per `batch` keys; within a batch a later duplicate wins.
void write_rows(rocksdb::DB& db, const RocksDbTableState& table, std::size_t dim, std::size_t batch,
                const std::int64_t* keys, const float* rows, std::size_t n, const rocksdb::WriteOptions& options) {
  for_each_chunk(n, batch, [&](std::size_t begin, std::size_t count) {
    rocksdb::WriteBatch writes;
    for (std::size_t i = begin; i < begin + count; ++i) {
      const EncodedKey key = encode_key(keys[i]);
      check_status(writes.Put(table.handle.get(), rocksdb::Slice(key.data(), kKeyBytes), row_slice(rows, i, dim)),
                   "RocksDB write batch for table '" + table.tag + "'");
    }
    check_status(write_batch(db, options, writes), "RocksDB write to table '" + table.tag + "' failed");
  });
}

}  // namespace

/// The Tier over one table of a RocksDbStore.
class RocksDbTable final : public Tier {
 public:
  RocksDbTable(std::shared_ptr<RocksDbStoreImpl> store, std::shared_ptr<RocksDbTableState> table, std::size_t dim)
      : store_(std::move(store)), table_(std::move(table)), dim_(dim) {}

  const char* backend_name() const override { return "rocksdb"; }
  std::size_t dim() const override { return dim_; }

  std::size_t find(const std::int64_t* keys, std::size_t n, float* rows, std::uint8_t* found) override;
  void insert(const std::int64_t* keys, const float* rows, std::size_t n) override;
  std::size_t insert_if_absent(const std::int64_t* keys, const float* rows, std::size_t n,
                               const std::function<bool()>& still_valid) override;
  std::size_t erase(const std::int64_t* keys, std::size_t n) override;
  /// RocksDB's "rocksdb.estimate-num-keys": an estimate, exact only for distinct inserts. Until
  /// compaction merges them, overwritten and erased keys make it wrong in either direction.
  std::size_t size() const override;
  bool size_is_estimate() const override { return true; }
  std::size_t capacity() const override { return SIZE_MAX; }
  /// The table's memtables and table readers (indexes, filters). The block cache is shared by
  /// every table of the store and is not counted: event_counters() reports it.
  std::size_t memory_bytes() const override;
  /// Gauges of the store's block cache (the same values for every table of the store).
  std::vector<TierCounter> event_counters() const override;
  void for_each(std::size_t chunk_rows,
                const std::function<void(const std::int64_t*, const float*, std::size_t)>& fn) override;

 private:
  rocksdb::DB& db() const { return store_->db(); }
  rocksdb::ColumnFamilyHandle* family() const { return table_->handle.get(); }
  std::size_t batch() const { return store_->max_batch_size(); }
  std::size_t row_bytes() const { return dim_ * sizeof(float); }
  void expect_present() const;
  void expect_writable(const char* operation) const;
  /// Copies a stored row to `out` after checking its size.
  void copy_row(const rocksdb::Slice& value, std::int64_t key, float* out) const;
  std::uint64_t int_property(const char* name) const;
  /// Adds to `writes` the keys of the last lookup whose presence equals `want_present`, each key
  /// once (the first occurrence wins): puts of their rows, or deletes when rows is null.
  /// Returns the number of keys added.
  std::size_t stage_writes(const LookupBatch& lookup, const std::int64_t* keys, const float* rows, std::size_t n,
                           bool want_present, rocksdb::WriteBatch& writes) const;
  void commit(rocksdb::WriteBatch& writes);

  // Declared first so it is destroyed last: the handle in table_ needs the open database.
  std::shared_ptr<RocksDbStoreImpl> store_;
  std::shared_ptr<RocksDbTableState> table_;
  std::size_t dim_;
};

// ---------------------------------------------------------------------------------------------
// RocksDbTable

void RocksDbTable::expect_present() const {
  HPS_EXPECTS(!table_->dropped, NotFound, "RocksDB table '", table_->tag, "' in ", store_->path(),
              " was dropped");
}

void RocksDbTable::expect_writable(const char* operation) const {
  store_->expect_writable(std::string(operation) + " on table '" + table_->tag + "'");
}

void RocksDbTable::copy_row(const rocksdb::Slice& value, std::int64_t key, float* out) const {
  HPS_EXPECTS(value.size() == row_bytes(), IOError, "RocksDB table '", table_->tag, "': key ", key, " holds ",
              value.size(), " bytes, expected ", row_bytes(), " (dim ", dim_,
              "); was the table written with another dim?");
  std::memcpy(out, value.data(), value.size());
}

std::size_t RocksDbTable::find(const std::int64_t* keys, std::size_t n, float* rows, std::uint8_t* found) {
  if (n == 0) return 0;
  expect_present();
  LookupBatch lookup(db(), *table_, std::min(n, batch()));
  std::size_t hits = 0;
  for_each_chunk(n, batch(), [&](std::size_t begin, std::size_t count) {
    lookup.run(keys + begin, count);
    for (std::size_t i = 0; i < count; ++i) {
      const std::size_t at = begin + i;
      const bool hit = lookup.found(i, keys[at]);
      if (hit) copy_row(lookup.value(i), keys[at], rows + at * dim_);
      found[at] = hit ? 1 : 0;
      hits += hit;
    }
  });
  return hits;
}

void RocksDbTable::insert(const std::int64_t* keys, const float* rows, std::size_t n) {
  expect_writable("insert");
  std::shared_lock lock(table_->write_mutex);
  expect_present();
  write_rows(db(), *table_, dim_, batch(), keys, rows, n, rocksdb::WriteOptions());
}

std::size_t RocksDbTable::stage_writes(const LookupBatch& lookup, const std::int64_t* keys, const float* rows,
                                       std::size_t n, bool want_present, rocksdb::WriteBatch& writes) const {
  std::unordered_set<std::int64_t> staged;
  for (std::size_t i = 0; i < n; ++i) {
    if (lookup.found(i, keys[i]) != want_present || !staged.insert(keys[i]).second) continue;
    const EncodedKey key = encode_key(keys[i]);
    const rocksdb::Slice key_slice(key.data(), kKeyBytes);
    check_status(rows ? writes.Put(family(), key_slice, row_slice(rows, i, dim_)) : writes.Delete(family(), key_slice),
                 "RocksDB write batch for table '" + table_->tag + "'");
  }
  return staged.size();
}

void RocksDbTable::commit(rocksdb::WriteBatch& writes) {
  check_status(write_batch(db(), rocksdb::WriteOptions(), writes),
               "RocksDB write to table '" + table_->tag + "' failed");
}

std::size_t RocksDbTable::insert_if_absent(const std::int64_t* keys, const float* rows, std::size_t n,
                                           const std::function<bool()>& still_valid) {
  expect_writable("insert_if_absent");
  if (n == 0) return 0;
  // Exclusive: no other write to this table may land between the lookup and the write.
  std::unique_lock lock(table_->write_mutex);
  expect_present();
  LookupBatch lookup(db(), *table_, std::min(n, batch()));
  std::size_t inserted = 0;
  for (std::size_t begin = 0; begin < n; begin += batch()) {
    const std::size_t count = std::min(batch(), n - begin);
    lookup.run(keys + begin, count);
    rocksdb::WriteBatch writes;
    const std::size_t staged = stage_writes(lookup, keys + begin, rows + begin * dim_, count, false, writes);
    if (staged == 0) continue;
    if (still_valid && !still_valid()) break;  // an empty still_valid means "always"
    commit(writes);
    inserted += staged;
  }
  return inserted;
}

std::size_t RocksDbTable::erase(const std::int64_t* keys, std::size_t n) {
  expect_writable("erase");
  if (n == 0) return 0;
  // Exclusive, so the count of keys that existed is exact.
  std::unique_lock lock(table_->write_mutex);
  expect_present();
  LookupBatch lookup(db(), *table_, std::min(n, batch()));
  std::size_t removed = 0;
  for_each_chunk(n, batch(), [&](std::size_t begin, std::size_t count) {
    lookup.run(keys + begin, count);
    rocksdb::WriteBatch writes;
    const std::size_t staged = stage_writes(lookup, keys + begin, nullptr, count, true, writes);
    if (staged > 0) commit(writes);
    removed += staged;
  });
  return removed;
}

std::uint64_t RocksDbTable::int_property(const char* name) const {
  std::uint64_t value = 0;
  return db().GetIntProperty(family(), name, &value) ? value : 0;
}

std::size_t RocksDbTable::size() const { return int_property("rocksdb.estimate-num-keys"); }

std::size_t RocksDbTable::memory_bytes() const {
  return int_property("rocksdb.size-all-mem-tables") + int_property("rocksdb.estimate-table-readers-mem");
}

std::vector<TierCounter> RocksDbTable::event_counters() const {
  const rocksdb::Cache& cache = store_->block_cache();
  return {
      {"block_cache_usage_bytes", cache.GetUsage(),
       "Bytes in the RocksDB block cache (the store's, shared by its tables; persistent_db.block_cache_size caps it).",
       true},
      {"block_cache_pinned_bytes", cache.GetPinnedUsage(),
       "Bytes of that block cache in use by reads in progress (and a small entry of RocksDB's own): not evictable now.",
       true},
      {"block_cache_capacity_bytes", cache.GetCapacity(), "Capacity of that block cache in bytes.", true},
  };
}

void RocksDbTable::for_each(std::size_t chunk_rows,
                            const std::function<void(const std::int64_t*, const float*, std::size_t)>& fn) {
  HPS_EXPECTS(chunk_rows > 0, InvalidArgument, "for_each needs chunk_rows > 0");
  expect_present();
  rocksdb::ReadOptions options;
  options.fill_cache = false;  // a full scan would push the hot rows out of the block cache
  // An iterator reads one implicit snapshot: writes after this line are not seen.
  std::unique_ptr<rocksdb::Iterator> it(db().NewIterator(options, family()));
  std::vector<std::int64_t> keys;
  std::vector<float> rows;
  keys.reserve(chunk_rows);
  rows.reserve(chunk_rows * dim_);
  auto emit = [&] {
    if (!keys.empty()) fn(keys.data(), rows.data(), keys.size());
    keys.clear();
    rows.clear();
  };
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    keys.push_back(decode_key(it->key(), table_->tag));
    rows.resize(rows.size() + dim_);
    copy_row(it->value(), keys.back(), rows.data() + rows.size() - dim_);
    if (keys.size() == chunk_rows) emit();
  }
  check_status(it->status(), "RocksDB scan of table '" + table_->tag + "' failed");
  emit();
}

// ---------------------------------------------------------------------------------------------
// RocksDbStoreImpl

RocksDbStoreImpl::RocksDbStoreImpl(const PersistentDbConfig& config) : config_(config) {
  HPS_EXPECTS(!config_.path.empty(), InvalidArgument, "persistent_db.path is empty");
  HPS_EXPECTS(config_.max_batch_size > 0, InvalidArgument, "persistent_db.max_batch_size must be positive");
  HPS_EXPECTS(config_.block_cache_size > 0, InvalidArgument, "persistent_db.block_cache_size must be positive");
  HPS_EXPECTS(config_.memtable_size >= kMinMemtableBytes, InvalidArgument,
              "persistent_db.memtable_size must be at least ", kMinMemtableBytes, " bytes, found ",
              config_.memtable_size);
  // One LRU block cache per store, shared by its tables. A cap, not an up-front allocation.
  block_cache_ = rocksdb::NewLRUCache(config_.block_cache_size);
  family_options_ = family_options(block_cache_, config_.memtable_size);
  open_database();
}

RocksDbStoreImpl::~RocksDbStoreImpl() {
  if (!db_) return;
  // Every tier holds this store, so none is left: these are the last references to the handles,
  // which must be destroyed before the database closes.
  tables_.clear();
  meta_family_.reset();
  default_family_.reset();
  // A destructor cannot report: nothing is lost if Close fails, every write is in the WAL.
  (void)db_->Close();
  db_.reset();
}

std::vector<std::string> RocksDbStoreImpl::families_to_open(const rocksdb::DBOptions& options) const {
  std::vector<std::string> names;
  if (database_exists(config_.path)) {
    check_status(rocksdb::DB::ListColumnFamilies(options, config_.path, &names),
                 "cannot list the tables of the RocksDB database at '" + config_.path + "'");
  } else {
    HPS_EXPECTS(!config_.read_only, IOError, "no RocksDB database at '", config_.path,
                "' (persistent_db.read_only is set, so none is created)");
    names.push_back(rocksdb::kDefaultColumnFamilyName);
  }
  if (!config_.read_only && std::find(names.begin(), names.end(), kMetaFamily) == names.end()) {
    names.push_back(kMetaFamily);
  }
  return names;
}

void RocksDbStoreImpl::open_database() {
  const rocksdb::DBOptions options = database_options(config_);
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const auto& name : families_to_open(options)) descriptors.emplace_back(name, family_options_);
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  const rocksdb::Status status = config_.read_only
                                     ? rocksdb::DB::OpenForReadOnly(options, config_.path, descriptors, &handles, &db)
                                     : rocksdb::DB::Open(options, config_.path, descriptors, &handles, &db);
  // RocksDB's own words for a held lock ("LOCK: Resource temporarily unavailable") do not say who holds it.
  // Both its messages ("While lock file: <path>/LOCK: ...", "lock hold by current process ... <path>/LOCK") name the file.
  HPS_EXPECTS(!(status.IsIOError() && status.ToString().find("/LOCK") != std::string::npos), IOError, "cannot open the RocksDB database at '", config_.path,
              "': another process (or another server in this process) holds the database; RocksDB lets one "
              "writer open it at a time. Stop that one, share one server, or set persistent_db.read_only: true "
              "(RocksDB: ", status.ToString(), ")");
  check_status(status, std::string("cannot open the RocksDB database at '") + config_.path + "'" +
                           (config_.read_only ? " read-only" : ""));
  db_.reset(db);
  for (auto* handle : handles) {
    if (handle->GetName() == rocksdb::kDefaultColumnFamilyName) {
      default_family_ = adopt(handle);
    } else if (handle->GetName() == kMetaFamily) {
      meta_family_ = adopt(handle);
    } else {
      add_table(handle);
    }
  }
}

std::shared_ptr<rocksdb::ColumnFamilyHandle> RocksDbStoreImpl::adopt(rocksdb::ColumnFamilyHandle* handle) {
  rocksdb::DB* db = db_.get();
  return std::shared_ptr<rocksdb::ColumnFamilyHandle>(handle, [db](auto* h) { db->DestroyColumnFamilyHandle(h); });
}

std::shared_ptr<RocksDbTableState> RocksDbStoreImpl::add_table(rocksdb::ColumnFamilyHandle* handle) {
  auto table = std::make_shared<RocksDbTableState>();
  table->tag = handle->GetName();
  table->handle = adopt(handle);
  tables_[table->tag] = table;
  return table;
}

void RocksDbStoreImpl::expect_writable(const std::string& what) const {
  HPS_EXPECTS(!config_.read_only, IOError, "the RocksDB database at '", config_.path, "' is read-only: ", what,
              " refused");
}

std::vector<std::string> RocksDbStoreImpl::table_names() const {
  std::vector<std::string> names;
  for (const auto& entry : tables_) names.push_back(entry.first);
  return names;
}

std::string RocksDbStoreImpl::missing_table_message(const std::string& tag) const {
  return detail::concat("no table '", tag, "' in the RocksDB database at '", config_.path,
                        "'; it holds: ", join(table_names()));
}

std::vector<std::string> RocksDbStoreImpl::tables() const {
  std::shared_lock lock(tables_mutex_);
  return table_names();
}

bool RocksDbStoreImpl::has_table(const std::string& tag) const {
  std::shared_lock lock(tables_mutex_);
  return tables_.count(tag) > 0;
}

std::shared_ptr<RocksDbTableState> RocksDbStoreImpl::existing_table(const std::string& tag) const {
  std::shared_lock lock(tables_mutex_);
  auto it = tables_.find(tag);
  if (it == tables_.end()) throw NotFound(missing_table_message(tag));
  return it->second;
}

std::shared_ptr<RocksDbTableState> RocksDbStoreImpl::find_or_create_table(const std::string& tag, std::size_t dim) {
  std::unique_lock lock(tables_mutex_);  // rare (once per table), so one exclusive lock keeps it simple
  auto it = tables_.find(tag);
  if (it == tables_.end()) {
    if (config_.read_only) throw NotFound(missing_table_message(tag) + " (read-only: no table is created)");
    rocksdb::ColumnFamilyHandle* handle = nullptr;
    check_status(db_->CreateColumnFamily(family_options_, tag, &handle),
                 "cannot create table '" + tag + "' in the RocksDB database at '" + config_.path + "'");
    it = tables_.find(add_table(handle)->tag);
  }
  RocksDbTableState& table = *it->second;
  if (table.dim == 0) table.dim = dim;
  HPS_EXPECTS(table.dim == dim, InvalidArgument, "RocksDB table '", tag, "' is already open with dim ", table.dim.load(),
              ", not ", dim);
  return it->second;
}

std::shared_ptr<Tier> RocksDbStoreImpl::open_table(const std::string& tag, std::size_t dim) {
  HPS_EXPECTS(dim > 0, InvalidArgument, "RocksDB table '", tag, "': dim must be positive");
  HPS_EXPECTS(!tag.empty() && !is_reserved_family(tag), InvalidArgument, "'", tag,
              "' cannot name a RocksDB table (empty or reserved)");
  auto self = std::static_pointer_cast<RocksDbStoreImpl>(shared_from_this());
  return std::make_shared<RocksDbTable>(std::move(self), find_or_create_table(tag, dim), dim);
}

void RocksDbStoreImpl::drop_table(const std::string& tag) { drop(tag, std::nullopt); }

void RocksDbStoreImpl::drop_table_for_load(const std::string& tag, const std::string& marker) { drop(tag, marker); }

void RocksDbStoreImpl::drop(const std::string& tag, const std::optional<std::string>& marker) {
  expect_writable("drop_table('" + tag + "')");
  std::unique_lock lock(tables_mutex_);
  auto it = tables_.find(tag);
  if (it == tables_.end()) throw NotFound(missing_table_message(tag));
  RocksDbTableState& table = *it->second;
  std::unique_lock writers(table.write_mutex);  // let writes in flight finish first
  // The marker goes first (removed, or replaced by a load's): a crash in between leaves rows
  // without a marker, "not loaded", or marked as a load in progress.
  rocksdb::WriteBatch unmark;  // (every write goes through write_batch, see there)
  check_status(marker ? unmark.Put(meta_family_.get(), tag, *marker) : unmark.Delete(meta_family_.get(), tag),
               "cannot remove the load marker of table '" + tag + "'");
  check_status(write_batch(*db_, rocksdb::WriteOptions(), unmark),
               "cannot remove the load marker of table '" + tag + "'");
  check_status(db_->DropColumnFamily(table.handle.get()), "cannot drop RocksDB table '" + tag + "'");
  table.dropped = true;
  writers.unlock();
  tables_.erase(it);
}

std::optional<std::string> RocksDbStoreImpl::load_marker(const std::string& tag) const {
  if (!meta_family_) return std::nullopt;  // a read-only database written before markers existed
  std::string marker;
  const rocksdb::Status status = db_->Get(rocksdb::ReadOptions(), meta_family_.get(), tag, &marker);
  if (status.IsNotFound()) return std::nullopt;
  check_status(status, "cannot read the load marker of table '" + tag + "'");
  return marker;
}

void RocksDbStoreImpl::set_load_marker(const std::string& tag, const std::string& marker) {
  expect_writable("set_load_marker('" + tag + "')");
  rocksdb::WriteBatch mark;  // (every write goes through write_batch, see there)
  check_status(mark.Put(meta_family_.get(), tag, marker), "cannot write the load marker of table '" + tag + "'");
  check_status(write_batch(*db_, rocksdb::WriteOptions(), mark), "cannot write the load marker of table '" + tag + "'");
}

void RocksDbStoreImpl::flush_table(const RocksDbTableState& table) {
  rocksdb::FlushOptions options;
  options.wait = true;
  check_status(db_->Flush(options, table.handle.get()), "cannot flush RocksDB table '" + table.tag + "'");
}

void RocksDbStoreImpl::bulk_insert(const std::string& tag, const std::int64_t* keys, const float* rows,
                                   std::size_t n) {
  expect_writable("bulk_insert into table '" + tag + "'");
  auto table = existing_table(tag);
  const std::size_t dim = table->dim;
  HPS_EXPECTS(dim > 0, InvalidArgument, "bulk_insert into RocksDB table '", tag,
              "': call open_table(tag, dim) first, the row size is not known");
  std::shared_lock writers(table->write_mutex);
  HPS_EXPECTS(!table->dropped, NotFound, "RocksDB table '", tag, "' was dropped");
  // No WAL: a crash before the caller's flush() loses these rows, but the load marker is only
  // set after that flush, so such a table just counts as "not loaded".
  rocksdb::WriteOptions options;
  options.disableWAL = true;
  write_rows(*db_, *table, dim, config_.max_batch_size, keys, rows, n, options);
}

void RocksDbStoreImpl::flush(const std::string& tag) {
  expect_writable("flush('" + tag + "')");
  flush_table(*existing_table(tag));
}

bool rocksdb_available() { return true; }

std::shared_ptr<RocksDbStore> RocksDbStore::open(const PersistentDbConfig& config) {
  return std::make_shared<RocksDbStoreImpl>(config);
}

}  // namespace hps

#else  // no RocksDB in this build

namespace hps {

bool rocksdb_available() { return false; }

std::shared_ptr<RocksDbStore> RocksDbStore::open(const PersistentDbConfig& config) {
  HPS_FAIL(BackendUnavailable, "persistent_db (RocksDB at '", config.path,
           "') is not available: this build of hps has no RocksDB support. Install librocksdb-dev "
           "(Debian/Ubuntu: apt install librocksdb-dev) and rebuild hps from source; the build "
           "picks RocksDB up by itself (CMake option HPS_WITH_ROCKSDB=ON makes its absence an error)");
}

}  // namespace hps

#endif
