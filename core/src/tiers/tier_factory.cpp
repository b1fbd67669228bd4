#include "hps/tiers/tier_factory.hpp"

#include <fcntl.h>  // AT_FDCWD, AT_EACCESS
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "hps/error.hpp"
#include "hps/keys.hpp"
#include "hps/model_io.hpp"
#include "hps/parameter_server.hpp"  // check_table_fits and volatile_keys_per_partition, declared with the server that loads by them
#include "hps/tiers/bulk_loadable.hpp"
#include "hps/tiers/hash_map_tier.hpp"
#include "hps/tiers/redis_cluster_tier.hpp"
#include "hps/tiers/rocksdb_tier.hpp"

namespace hps {

namespace {

constexpr const char* kVolatileName = "volatile_db";
constexpr const char* kPersistentName = "persistent_db";
/// A RocksDB table's load marker while it is loaded from files (before the files' signature).
constexpr std::string_view kLoadInProgress = "hps-loading ";

// One RocksDB table as a chain tier that can bulk-load. Clearing drops and recreates the column
// family, which replaces RocksDB's table object, so lookups go through this wrapper (one extra
// virtual call per batch, none per key).
class RocksDbChainTier final : public Tier, public BulkLoadable {
 public:
  RocksDbChainTier(std::shared_ptr<RocksDbStore> store, std::string tag, std::size_t dim)
      : store_(std::move(store)), tag_(std::move(tag)), dim_(dim), table_(store_->open_table(tag_, dim_)) {}

  const char* backend_name() const override { return table_->backend_name(); }
  std::size_t dim() const override { return dim_; }
  std::size_t find(const std::int64_t* keys, std::size_t n, float* rows, std::uint8_t* found) override {
    return table_->find(keys, n, rows, found);
  }
  void insert(const std::int64_t* keys, const float* rows, std::size_t n) override { table_->insert(keys, rows, n); }
  std::size_t insert_if_absent(const std::int64_t* keys, const float* rows, std::size_t n,
                               const std::function<bool()>& still_valid) override {
    return table_->insert_if_absent(keys, rows, n, still_valid);
  }
  std::size_t erase(const std::int64_t* keys, std::size_t n) override { return table_->erase(keys, n); }
  std::size_t size() const override { return table_->size(); }
  bool size_is_estimate() const override { return table_->size_is_estimate(); }
  std::size_t capacity() const override { return table_->capacity(); }
  std::size_t memory_bytes() const override { return table_->memory_bytes(); }
  std::vector<TierCounter> event_counters() const override { return table_->event_counters(); }
  void for_each(std::size_t chunk_rows,
                const std::function<void(const std::int64_t*, const float*, std::size_t)>& fn) override {
    table_->for_each(chunk_rows, fn);
  }
  BulkLoadable* bulk_loader() override { return store_->read_only() ? nullptr : this; }

  std::optional<std::string> load_marker() const override { return store_->load_marker(tag_); }
  bool begin_load(const std::string& marker) override {
    if (load_marker() == marker) return false;
    // Until finish(), a server that reads the store without loading it (read_only, or
    // initialize_after_startup false) can tell this partial table from one never loaded.
    store_->drop_table_for_load(tag_, std::string(kLoadInProgress) + marker);
    table_ = store_->open_table(tag_, dim_);
    return true;
  }
  void clear() override {
    // If dropping fails the old table stays in use; once dropped, it refuses every call (NotFound).
    store_->drop_table(tag_);
    table_ = store_->open_table(tag_, dim_);
  }
  void bulk_insert(const std::int64_t* keys, const float* rows, std::size_t n) override {
    store_->bulk_insert(tag_, keys, rows, n);
  }
  void finish(const std::string& marker) override {
    store_->flush(tag_);
    store_->set_load_marker(tag_, marker);
  }

 private:
  std::shared_ptr<RocksDbStore> store_;
  std::string tag_;
  std::size_t dim_;
  std::shared_ptr<Tier> table_;
};

}  // namespace

void TierFactory::check(const Config& config) {
  HPS_EXPECTS(config.volatile_db.type != VolatileDbType::kRedisCluster || redis_available(), BackendUnavailable,
              "volatile_db.type redis_cluster: this build of hps has no Redis Cluster tier (install libhiredis-dev "
              "and reinstall hps)");
  const bool rocksdb = config.persistent_db.type == PersistentDbType::kRocksDb;
  HPS_EXPECTS(rocksdb || config.volatile_db.type != VolatileDbType::kDisabled, ConfigError,
              "volatile_db.type is disabled and there is no persistent_db: no tier would hold the rows; "
              "use volatile_db.type hash_map or add a persistent_db");
  if (!rocksdb) return;
  HPS_EXPECTS(rocksdb_available(), BackendUnavailable,
              "persistent_db.type rocks_db: this build has no RocksDB tier (install librocksdb-dev and reinstall hps)");
  namespace fs = std::filesystem;
  const PersistentDbConfig& p = config.persistent_db;
  HPS_EXPECTS(!p.path.empty(), ConfigError, "persistent_db.path: empty; name the RocksDB database folder");
  std::error_code ignored;
  const fs::path path(p.path);
  HPS_EXPECTS(!fs::exists(path, ignored) || fs::is_directory(path, ignored), ConfigError, "persistent_db.path: '",
              p.path, "' exists and is not a folder");
  if (p.read_only) {
    HPS_EXPECTS(fs::exists(path / "CURRENT", ignored), ConfigError, "persistent_db.path: no RocksDB database at '",
                p.path, "' and persistent_db.read_only is true, so none is created; build it once without read_only");
  } else {
    // RocksDB creates the database folder but not its parents.
    const fs::path parent = fs::absolute(path, ignored).parent_path();
    HPS_EXPECTS(parent.empty() || fs::is_directory(parent, ignored), ConfigError, "persistent_db.path: the folder '",
                parent.string(), "' that would hold the database '", p.path,
                "' does not exist (hps creates the database folder, not its parents)");
    const fs::path writable = fs::exists(path, ignored) ? path : parent;
    // The effective ids (AT_EACCESS), which the process opens files with; access() checks the real ones.
    HPS_EXPECTS(writable.empty() || ::faccessat(AT_FDCWD, writable.c_str(), W_OK | X_OK, AT_EACCESS) == 0, ConfigError,
                "persistent_db.path: this process cannot write to '", writable.string(), "' (",
                std::strerror(errno), "), where the database '", p.path, "' is kept; set read_only for a "
                "database it may only read");
  }
}

TierFactory::TierFactory(const Config& config) : config_(config), names_{kVolatileName, kPersistentName} {
  check(config);
  if (config.persistent_db.type == PersistentDbType::kRocksDb) rocksdb_ = RocksDbStore::open(config.persistent_db);
}

TierFactory::~TierFactory() = default;

std::vector<ChainTier> TierFactory::build(const std::string& tag, std::size_t dim, const std::string& where) const {
  const VolatileDbConfig& vcfg = config_.volatile_db;
  const PersistentDbConfig& pcfg = config_.persistent_db;
  std::vector<ChainTier> chain;

  if (vcfg.type == VolatileDbType::kHashMap) {
    ChainTier t;
    t.name = kVolatileName;
    t.name_index = 0;
    // Without a persistent tier it is the only store and must hold every row: it refuses a write
    // it has no room for instead of evicting rows stored nowhere else.
    HashMapOptions options = HashMapOptions::from_config(vcfg);
    options.evict_on_overflow = rocksdb_ != nullptr;
    t.tier = std::make_shared<HashMapTier>(dim, options);
    t.takes_promotions = vcfg.cache_missed_embeddings;
    t.probes_positions = true;
    t.fill_at_start = vcfg.initialize_after_startup || !rocksdb_;
    t.fill_rate = vcfg.initial_cache_rate;
    chain.push_back(std::move(t));
  } else if (vcfg.type == VolatileDbType::kRedisCluster) {
    // One table of a cluster that other servers may share. It keeps a load marker and a load lock
    // (its bulk_loader()), so a server fills it at start only when it does not hold that source
    // already, and servers starting together fill it once.
    ChainTier t;
    t.name = kVolatileName;
    t.name_index = 0;
    t.tier = make_redis_cluster_tier(vcfg, tag, dim, /*evict_on_overflow=*/rocksdb_ != nullptr);  // as the hash map's
    t.takes_promotions = vcfg.cache_missed_embeddings;
    t.probes_positions = false;  // a network round trip per batch: it sees distinct keys only
    t.fill_at_start = vcfg.initialize_after_startup || !rocksdb_;
    t.fill_rate = vcfg.initial_cache_rate;
    chain.push_back(std::move(t));
  }

  if (rocksdb_) {
    ChainTier t;
    t.name = kPersistentName;
    t.name_index = 1;
    t.durable = true;
    t.read_only = pcfg.read_only;
    t.load_from_files = pcfg.initialize_after_startup && !pcfg.read_only;
    t.source_marker = "persistent_db " + pcfg.path;
    if (pcfg.read_only) {
      HPS_EXPECTS(rocksdb_->has_table(tag), ConfigError, "persistent_db.read_only is true but the database at ",
                  rocksdb_->path(), " holds no table '", tag, "' (", where, "); build it once without read_only");
    }
    if (!t.load_from_files) {
      const std::optional<std::string> marker = rocksdb_->load_marker(tag);
      HPS_EXPECTS(!marker || marker->rfind(kLoadInProgress, 0) != 0, ConfigError, "persistent_db: the table '", tag,
                  "' in ", rocksdb_->path(), " (", where,
                  ") holds part of its rows: a load of its table files is running in another server, or was "
                  "interrupted; this server does not load it (read_only or initialize_after_startup false), so "
                  "let a server that does finish the load first");
    }
    t.tier = std::make_shared<RocksDbChainTier>(rocksdb_, tag, dim);
    chain.push_back(std::move(t));
  }

  HPS_EXPECTS(!chain.empty(), ConfigError, where, ": no tier holds this table's rows: enable volatile_db or persistent_db");
  return chain;
}

std::size_t fill_rows(std::size_t capacity, double fill_rate, std::size_t table_rows) {
  return std::min(capacity, static_cast<std::size_t>(std::ceil(fill_rate * static_cast<double>(table_rows))));
}

namespace {

// The volatile tier's partition function: a table loaded into Redis is written under this
// server's num_partitions, as the hash map is.
using PartitionOf = std::size_t (*)(std::int64_t, std::size_t);
PartitionOf volatile_partition_of(const VolatileDbConfig& v) {
  return v.type == VolatileDbType::kHashMap ? &HashMapOptions::partition_of : &RedisClusterTier::partition_of;
}

std::vector<std::size_t> keys_per_partition(const Config& config, const SparseModelReader& reader,
                                            const std::string& folder, std::size_t last_rows) {
  const HashMapOptions options = HashMapOptions::from_config(config.volatile_db);
  const std::size_t partitions = options.num_partitions;
  const PartitionOf partition_of = volatile_partition_of(config.volatile_db);
  const std::size_t first_row = reader.rows() - std::min(last_rows, reader.rows());
  // Keys per partition, duplicates counted, a chunk of the key file at a time: an upper bound that
  // settles almost every table without holding its keys. A partition over the margin by it is
  // counted again without duplicates (its keys only, sorted).
  auto for_each_key = [&](const auto& visit) {
    std::vector<std::int64_t> keys;
    reader.for_each_key_chunk([&](const std::int64_t* file_keys, std::size_t first, std::size_t n) {
      const std::size_t skip = std::min(n, first_row - std::min(first_row, first));
      keys.resize(n - skip);
      canonicalize_keys(file_keys + skip, KeyDtype::kInt64, n - skip, config.supportlonglong, keys.data(),
                        folder + "/key");
      for (std::int64_t key : keys) visit(key, partition_of(key, partitions));
    });
  };
  std::vector<std::size_t> per_partition(partitions, 0);
  for_each_key([&](std::int64_t, std::size_t p) { ++per_partition[p]; });
  for (std::size_t p = 0; p < partitions; ++p) {
    if (per_partition[p] <= options.overflow_margin) continue;
    std::vector<std::int64_t> own;
    own.reserve(per_partition[p]);
    for_each_key([&](std::int64_t key, std::size_t q) {
      if (q == p) own.push_back(key);
    });
    std::sort(own.begin(), own.end());
    per_partition[p] = static_cast<std::size_t>(std::unique(own.begin(), own.end()) - own.begin());
  }
  return per_partition;
}

}  // namespace

std::vector<std::size_t> volatile_keys_per_partition(const Config& config, const std::string& folder, std::size_t dim,
                                                     std::size_t last_rows) {
  HPS_EXPECTS(config.volatile_db.type != VolatileDbType::kDisabled, ConfigError,
              "volatile_db is disabled: it has no partitions to count keys for (", folder, ")");
  const SparseModelReader reader(folder, dim);
  return keys_per_partition(config, reader, folder, last_rows);
}

void check_table_fits(const Config& config, const std::string& folder, std::size_t dim, const std::string& where) {
  const VolatileDbConfig& v = config.volatile_db;
  if (config.persistent_db.type != PersistentDbType::kDisabled || v.type == VolatileDbType::kDisabled) return;
  HPS_EXPECTS(v.initial_cache_rate >= 1.0, ConfigError,
              "volatile_db.initial_cache_rate < 1 needs a persistent_db to hold the other rows (", where, ")");
  const SparseModelReader reader(folder, dim);
  const HashMapOptions options = HashMapOptions::from_config(v);
  if (options.overflow_margin == HashMapOptions{}.overflow_margin) return;  // nothing bounds a partition
  // By each partition's distinct keys: rows that repeat a key take no room, and keys do not spread evenly.
  const std::vector<std::size_t> per_partition = keys_per_partition(config, reader, folder, reader.rows());
  const auto fullest = std::max_element(per_partition.begin(), per_partition.end());
  const char* tier = v.type == VolatileDbType::kHashMap ? "hash map" : "Redis table";
  HPS_EXPECTS(*fullest <= options.overflow_margin, ConfigError, where, ": the table's ", reader.rows(),
              " rows put ", *fullest, " distinct keys in partition ", fullest - per_partition.begin(), " of the ", tier, "'s ",
              options.num_partitions, " (keys spread by hash, not evenly), more than its overflow_margin ",
              options.overflow_margin, ", and there is no persistent_db for the rest: raise overflow_margin to at "
              "least ", *fullest);
}

}  // namespace hps
