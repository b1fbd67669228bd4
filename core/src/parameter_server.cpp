#include "hps/parameter_server.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <numeric>
#include <thread>
#include <unordered_map>

#include "hps/error.hpp"
#include "hps/gpu/gpu_cache.hpp"
#include "hps/tiers/hash_map_tier.hpp"
#include "hps/model_io.hpp"
#include "hps/tiers/redis_cluster_tier.hpp"
#include "hps/tiers/rocksdb_tier.hpp"
#include "detail/key_dedup.hpp"
#include "detail/stream_fanout.hpp"
#include "detail/thread_pool.hpp"

namespace hps {

namespace {

// Rows per chunk when streaming table files into the tiers: large enough for efficient batched
// writes, small enough that loading never holds much beyond its destination.
std::size_t load_chunk_rows(std::size_t dim) { return std::max<std::size_t>(1, (std::size_t{16} << 20) / (dim * 4)); }

// Keys per chunk when one lookup is split over threads: below this, a chunk's fixed costs (its
// grouping by partition, a partition lock) outweigh its keys.
constexpr std::size_t kMinKeysPerChunk = 128;
// Chunks per thread: more chunks than threads, taken one by one, keep every thread busy when one
// starts late (a vCPU that was asleep or preempted) instead of the call waiting for its share.
constexpr std::size_t kChunksPerThread = 4;

std::size_t default_lookup_threads() {
  return std::clamp<std::size_t>(std::thread::hardware_concurrency(), 1, 16);
}

std::chrono::microseconds lookup_spin(long requested) {
  if (requested >= 0) return std::chrono::microseconds{requested};
  constexpr long kDefaultSpinUs = 200;
  const char* env = std::getenv("HPS_LOOKUP_SPIN_US");
  if (env == nullptr || *env == '\0') return std::chrono::microseconds{kDefaultSpinUs};
  char* end = nullptr;
  const long value = std::strtol(env, &end, 10);
  HPS_EXPECTS(*end == '\0' && value >= 0, InvalidArgument, "HPS_LOOKUP_SPIN_US: expected microseconds >= 0, found '",
              env, "'");
  return std::chrono::microseconds{value};
}

// Bumps a table's mutation epoch to odd on construction and back to even on destruction, so
// promotions that read a lower tier while an update or erase runs can tell and stand back.
class MutationScope {
 public:
  explicit MutationScope(std::atomic<std::uint64_t>& epoch) : epoch_(epoch) { epoch_.fetch_add(1, std::memory_order_acq_rel); }
  ~MutationScope() { epoch_.fetch_add(1, std::memory_order_acq_rel); }
  MutationScope(const MutationScope&) = delete;
  MutationScope& operator=(const MutationScope&) = delete;

 private:
  std::atomic<std::uint64_t>& epoch_;
};

// Counts one lookup call of n keys that began at `start`.
void record_lookup(TableMetrics& metrics, std::size_t n, std::chrono::steady_clock::time_point start) {
  metrics.lookups.fetch_add(1, std::memory_order_relaxed);
  metrics.keys.fetch_add(n, std::memory_order_relaxed);
  metrics.latency.record(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
}

class NullObserver final : public LoadObserver {
 public:
  void begin(const std::string&, std::size_t) override {}
  void advance(std::size_t) override {}
  void end() override {}
};

}  // namespace

struct TableState {
  std::string model;
  std::string name;
  std::string tag;
  std::size_t dim = 0;
  float default_value = 0;
  std::size_t rows = 0;  // rows in the table files (or the persistent tier) at start

  std::shared_ptr<Tier> volatile_tier;    // may be null
  std::shared_ptr<Tier> persistent_tier;  // may be null
  bool persistent_read_only = false;
  bool promote_missed = false;  // cache_missed_embeddings with both tiers present

  std::vector<int> devices;                     // deployed_device_list
  std::vector<std::unique_ptr<GpuCache>> caches;  // one per device, empty without GPU caches

  // Even while no update or erase runs; see MutationScope.
  std::atomic<std::uint64_t> epoch{0};
  TableMetrics metrics;
  // Distinct keys the last GPU lookup sent to the host: a hint that the next one will too.
  std::atomic<std::size_t> last_gpu_misses{0};
};

struct ModelState {
  const ModelConfig* config = nullptr;
  std::vector<std::unique_ptr<TableState>> tables;
};

struct ParameterServer::Impl {
  Config config;
  std::unique_ptr<ThreadPool> pool;  // lookup_threads - 1 workers; null when lookups use one thread
  std::shared_ptr<RocksDbStore> rocksdb;
  std::vector<ModelState> models;
  std::unordered_map<std::string, std::size_t> model_index;
  bool gpu_enabled = false;

  TableState& table(TableRef ref) {
    HPS_EXPECTS(ref.model < models.size() && ref.table < models[ref.model].tables.size(), NotFound,
                "no table (", ref.model, ", ", ref.table, ") in this server");
    return *models[ref.model].tables[ref.table];
  }

  void check_backends() const;
  void build_model(const ModelConfig& model, LoadObserver& observer);
  void load_table(TableState& table, const ModelConfig& model, const TableConfig& config, LoadObserver& observer);
  void build_gpu_caches(TableState& table, const ModelConfig& model, const TableConfig& config);

  // The host cascade over positions: writes every row, sets found[i] where a tier held keys[i],
  // and counts the answers per tier into the table's metrics.
  void cascade(TableState& table, const std::int64_t* keys, std::size_t n, float* rows, std::uint8_t* found);
  // The cascade, split into chunks over the pool's threads when the batch is large.
  void resolve(TableState& table, const std::int64_t* keys, std::size_t n, float* rows, std::uint8_t* found);
};

// ---- construction ---------------------------------------------------------------------------------

void ParameterServer::Impl::check_backends() const {
  HPS_EXPECTS(config.volatile_db.type != VolatileDbType::kRedisCluster || redis_available(), BackendUnavailable,
              "volatile_db.type redis_cluster: this build of hps has no Redis Cluster tier (install libhiredis-dev "
              "and reinstall hps)");
  HPS_EXPECTS(config.update_source.type == UpdateSourceType::kNone, BackendUnavailable,
              "update_source.type kafka_message_queue: this build has no Kafka consumer yet; remove update_source "
              "and apply updates with update()");
  if (config.persistent_db.type == PersistentDbType::kRocksDb) {
    HPS_EXPECTS(rocksdb_available(), BackendUnavailable,
                "persistent_db.type rocks_db: this build has no RocksDB tier (install librocksdb-dev and reinstall hps)");
  }
}

ParameterServer::ParameterServer(Config config, LoadObserver* observer, ServerOptions options)
    : impl_(std::make_unique<Impl>()) {
  const std::size_t threads = options.lookup_threads ? options.lookup_threads : default_lookup_threads();
  if (threads > 1) impl_->pool = std::make_unique<ThreadPool>(threads - 1, lookup_spin(options.lookup_spin_us));
  NullObserver quiet;
  LoadObserver& progress = observer ? *observer : quiet;
  impl_->config = std::move(config);
  const Config& cfg = impl_->config;
  HPS_EXPECTS(!cfg.models.empty(), ConfigError, "models: at least one model is required");
  impl_->check_backends();
  impl_->gpu_enabled = cuda_device_count() > 0 &&
                       std::any_of(cfg.models.begin(), cfg.models.end(), [](const ModelConfig& m) { return m.gpucache; });
  if (cfg.persistent_db.type == PersistentDbType::kRocksDb) impl_->rocksdb = RocksDbStore::open(cfg.persistent_db);
  for (const ModelConfig& model : cfg.models) impl_->build_model(model, progress);
}

ParameterServer::~ParameterServer() {
  if (!impl_) return;
  // Let queued GPU cache insertions finish before their tables go away.
  for (auto& model : impl_->models) {
    for (auto& table : model.tables) {
      for (auto& cache : table->caches) cache->drain();
    }
  }
}

void ParameterServer::Impl::build_model(const ModelConfig& model, LoadObserver& observer) {
  HPS_EXPECTS(!model_index.count(model.name), ConfigError, "models: model '", model.name, "' appears twice");
  ModelState state;
  state.config = &model;
  for (const TableConfig& table_config : model.tables) {
    auto table = std::make_unique<TableState>();
    table->model = model.name;
    table->name = table_config.name;
    table->tag = table_tag(model.name, table_config.name);
    table->dim = table_config.dim;
    table->default_value = table_config.default_value;
    table->devices = model.deployed_device_list;
    load_table(*table, model, table_config, observer);
    if (gpu_enabled && model.gpucache) build_gpu_caches(*table, model, table_config);
    state.tables.push_back(std::move(table));
  }
  model_index.emplace(model.name, models.size());
  models.push_back(std::move(state));
}

void ParameterServer::Impl::load_table(TableState& table, const ModelConfig& model, const TableConfig& tc,
                                       LoadObserver& observer) {
  const VolatileDbConfig& vcfg = config.volatile_db;
  const PersistentDbConfig& pcfg = config.persistent_db;
  const std::string where = model.name + "/" + tc.name;

  // The persistent tier: (re)load it from the table files unless it already holds exactly them.
  bool files_in_persistent = false;
  if (rocksdb) {
    table.persistent_read_only = pcfg.read_only;
    if (pcfg.read_only) {
      HPS_EXPECTS(rocksdb->has_table(table.tag), ConfigError, "persistent_db.read_only is true but the database at ",
                  rocksdb->path(), " holds no table '", table.tag, "' (", where,
                  "); build it once without read_only");
      table.persistent_tier = rocksdb->open_table(table.tag, tc.dim);
    } else if (pcfg.initialize_after_startup) {
      const SparseModelInfo info = inspect_sparse_model(tc.sparse_file, tc.dim);
      table.rows = info.rows;
      if (rocksdb->has_table(table.tag) && rocksdb->load_marker(table.tag) == info.signature) {
        table.persistent_tier = rocksdb->open_table(table.tag, tc.dim);  // current: keep its updates
      } else {
        if (rocksdb->has_table(table.tag)) rocksdb->drop_table(table.tag);
        table.persistent_tier = rocksdb->open_table(table.tag, tc.dim);
        files_in_persistent = true;
      }
    } else {
      table.persistent_tier = rocksdb->open_table(table.tag, tc.dim);
    }
  }

  // The volatile tier.
  HashMapTier* hash_map = nullptr;
  if (vcfg.type == VolatileDbType::kHashMap) {
    auto tier = std::make_shared<HashMapTier>(tc.dim, HashMapOptions::from_config(vcfg));
    hash_map = tier.get();
    table.volatile_tier = std::move(tier);
  }
  // Redis Cluster: a cluster that already holds this table, loaded from these files (its load
  // marker), is current and shared: keep it, with the updates other servers made since.
  std::shared_ptr<RedisClusterTier> redis;
  std::string redis_marker;
  if (vcfg.type == VolatileDbType::kRedisCluster) {
    redis = make_redis_cluster_tier(vcfg, table.tag, tc.dim);
    table.volatile_tier = redis;
    if (vcfg.initialize_after_startup || !table.persistent_tier) {
      // A read-only persistent tier is the source (the files may be absent): its path is the marker.
      redis_marker = table.persistent_read_only ? "persistent_db " + pcfg.path
                                                : inspect_sparse_model(tc.sparse_file, tc.dim).signature;
      if (!redis->begin_load(redis_marker)) redis.reset();  // current (maybe loaded by another server just now)
    }
  }
  table.promote_missed = vcfg.cache_missed_embeddings && table.volatile_tier && table.persistent_tier;

  HPS_EXPECTS(table.volatile_tier || table.persistent_tier, ConfigError, "models[", where,
              "]: no tier holds this table's rows: enable volatile_db or persistent_db");

  // Without a persistent tier the volatile tier must hold every row, or rows would be lost.
  const bool volatile_is_only_store = !table.persistent_tier;
  const bool fill_volatile = table.volatile_tier && (vcfg.initialize_after_startup || volatile_is_only_store) &&
                             (vcfg.type != VolatileDbType::kRedisCluster || redis);
  const std::size_t vcap = table.volatile_tier ? table.volatile_tier->capacity() : 0;

  if (files_in_persistent || (fill_volatile && !table.persistent_tier)) {
    // One pass over the files feeds both tiers.
    SparseModelReader reader(tc.sparse_file, tc.dim);
    table.rows = reader.rows();
    if (volatile_is_only_store) check_table_fits(config, reader.rows(), where);
    std::size_t volatile_budget = 0;
    if (fill_volatile) {
      volatile_budget = std::min(vcap, static_cast<std::size_t>(std::ceil(vcfg.initial_cache_rate * reader.rows())));
      if (hash_map) hash_map->reserve(volatile_budget);
    }
    std::string what = where + ": table files ->";
    if (files_in_persistent) what += " persistent_db";
    if (volatile_budget) what += files_in_persistent ? " + volatile_db" : " volatile_db";
    observer.begin(what, reader.rows());
    reader.for_each_chunk(load_chunk_rows(tc.dim), [&](const std::int64_t* file_keys, const float* rows,
                                                       const std::int64_t*, std::size_t n) {
      std::vector<std::int64_t> keys(n);
      canonicalize_keys(file_keys, KeyDtype::kInt64, n, config.supportlonglong, keys.data(),
                        tc.sparse_file + "/key");
      if (files_in_persistent) rocksdb->bulk_insert(table.tag, keys.data(), rows, n);
      if (volatile_budget) {
        const std::size_t take = std::min(n, volatile_budget);
        table.volatile_tier->insert(keys.data(), rows, take);
        volatile_budget -= take;
      }
      observer.advance(n);
    });
    observer.end();
    if (files_in_persistent) {
      rocksdb->flush(table.tag);
      rocksdb->set_load_marker(table.tag, reader.info().signature);  // what was read, not re-inspected
    }
  } else if (fill_volatile) {
    // The persistent tier is current (it may hold updates newer than the files): fill from it.
    const std::size_t stored = table.persistent_tier->size();
    if (table.rows == 0) table.rows = stored;
    std::size_t budget =
        std::min(vcap, static_cast<std::size_t>(std::ceil(vcfg.initial_cache_rate * static_cast<double>(stored))));
    if (budget > 0) {
      if (hash_map) hash_map->reserve(budget);
      observer.begin(where + ": persistent_db -> volatile_db", budget);
      table.persistent_tier->for_each(load_chunk_rows(tc.dim), [&](const std::int64_t* keys, const float* rows,
                                                                    std::size_t n) {
        const std::size_t take = std::min(n, budget);
        if (take) table.volatile_tier->insert(keys, rows, take);
        budget -= take;
        observer.advance(take);
      });
      observer.end();
    }
  }
  if (redis && !redis_marker.empty()) redis->end_load(redis_marker);
  if (table.rows == 0 && table.persistent_tier) table.rows = table.persistent_tier->size();
  if (table.rows == 0 && table.volatile_tier) table.rows = table.volatile_tier->size();
}

void ParameterServer::Impl::build_gpu_caches(TableState& table, const ModelConfig& model, const TableConfig& tc) {
  const int devices = cuda_device_count();
  const bool is_static = model.embedding_cache_type == EmbeddingCacheType::kStatic;
  for (int device : model.deployed_device_list) {
    HPS_EXPECTS(device < devices, ConfigError, "models[", model.name, "].deployed_device_list: device ", device,
                " does not exist (this machine has ", devices, " CUDA device", devices == 1 ? "" : "s", ")");
    GpuCacheOptions options;
    options.device = device;
    options.dim = tc.dim;
    options.is_static = is_static;
    options.dtype = tc.cache_dtype;
    options.default_value = tc.default_value;
    options.hit_rate_threshold = model.hit_rate_threshold;
    options.capacity = is_static ? std::max<std::size_t>(table.rows, 1)
                                 : std::max<std::size_t>(64, static_cast<std::size_t>(
                                                                 std::ceil(model.gpucacheper * table.rows)));
    table.caches.push_back(GpuCache::create(options));
  }
  // Warm start: the static cache needs the whole table; the dynamic one takes the most frequent
  // keys when a meta file gives frequencies, the first rows of the files otherwise.
  if (!is_static && !model.init_ec) return;
  SparseModelReader reader(tc.sparse_file, tc.dim);
  const std::size_t capacity = table.caches.front()->capacity();
  std::vector<std::size_t> order(reader.rows());
  std::iota(order.begin(), order.end(), 0);
  if (!is_static && reader.info().has_meta && reader.rows() > capacity) {
    std::vector<std::int64_t> meta(reader.rows());
    reader.read(0, reader.rows(), nullptr, nullptr, meta.data());
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return meta[a] > meta[b]; });
    order.resize(capacity);
    std::sort(order.begin(), order.end());  // read the chosen rows in file order
  } else if (!is_static) {
    order.resize(std::min(order.size(), capacity));
  }
  std::vector<std::int64_t> file_keys, keys;
  std::vector<float> rows;
  const std::size_t chunk = load_chunk_rows(tc.dim);
  for (std::size_t first = 0; first < order.size(); first += chunk) {
    const std::size_t n = std::min(chunk, order.size() - first);
    file_keys.resize(n);
    keys.resize(n);
    rows.resize(n * tc.dim);
    for (std::size_t i = 0; i < n; ++i) reader.read(order[first + i], 1, &file_keys[i], &rows[i * tc.dim], nullptr);
    canonicalize_keys(file_keys.data(), KeyDtype::kInt64, n, config.supportlonglong, keys.data(),
                      tc.sparse_file + "/key");
    for (auto& cache : table.caches) cache->insert(keys.data(), rows.data(), n);
  }
}

void check_table_fits(const Config& config, std::size_t rows, const std::string& where) {
  const VolatileDbConfig& v = config.volatile_db;
  if (config.persistent_db.type != PersistentDbType::kDisabled || v.type != VolatileDbType::kHashMap) return;
  HPS_EXPECTS(v.initial_cache_rate >= 1.0, ConfigError,
              "volatile_db.initial_cache_rate < 1 needs a persistent_db to hold the other rows (", where, ")");
  const std::size_t capacity = HashMapOptions::from_config(v).capacity();
  HPS_EXPECTS(rows <= capacity, ConfigError, where, ": the table has ", rows, " rows but volatile_db holds at most ",
              capacity, " (overflow_margin x num_partitions) and there is no persistent_db for the rest");
}

// ---- lookups ----------------------------------------------------------------------------------------

void ParameterServer::Impl::cascade(TableState& table, const std::int64_t* keys, std::size_t n, float* rows,
                                    std::uint8_t* found) {
  if (n == 0) return;
  const std::size_t dim = table.dim;
  std::size_t volatile_hits = 0;
  if (table.volatile_tier) {
    volatile_hits = table.volatile_tier->find(keys, n, rows, found);
  } else {
    std::memset(found, 0, n);
  }
  table.metrics.hits[static_cast<int>(TierLevel::kVolatile)].fetch_add(volatile_hits, std::memory_order_relaxed);
  if (volatile_hits == n) return;

  // The misses go down as one batch of distinct keys.
  thread_local KeyDedup dedup;
  dedup.build(keys, found, n);
  const std::size_t unique = dedup.unique_count();
  thread_local std::vector<float> unique_rows;
  thread_local std::vector<std::uint8_t> unique_found;
  unique_rows.resize(unique * dim);
  unique_found.assign(unique, 0);

  if (table.persistent_tier) {
    const std::uint64_t epoch = table.epoch.load(std::memory_order_acquire);
    const std::size_t hits = table.persistent_tier->find(dedup.unique_keys(), unique, unique_rows.data(),
                                                         unique_found.data());
    if (table.promote_missed && hits > 0 && epoch % 2 == 0) {
      // Promote only rows really found, and only if no update or erase began since the read.
      std::vector<std::int64_t> promote_keys;
      std::vector<float> promote_rows;
      promote_keys.reserve(hits);
      promote_rows.reserve(hits * dim);
      for (std::size_t u = 0; u < unique; ++u) {
        if (!unique_found[u]) continue;
        promote_keys.push_back(dedup.unique_keys()[u]);
        promote_rows.insert(promote_rows.end(), &unique_rows[u * dim], &unique_rows[(u + 1) * dim]);
      }
      const std::size_t promoted = table.volatile_tier->insert_if_absent(
          promote_keys.data(), promote_rows.data(), promote_keys.size(),
          [&table, epoch] { return table.epoch.load(std::memory_order_acquire) == epoch; });
      table.metrics.promoted_keys.fetch_add(promoted, std::memory_order_relaxed);
    }
  }
  for (std::size_t u = 0; u < unique; ++u) {
    if (!unique_found[u]) std::fill_n(&unique_rows[u * dim], dim, table.default_value);
  }
  // Scatter each distinct miss to every position that asked for it.
  std::size_t persistent_hits = 0, defaults = 0;
  const std::uint32_t* slot_of = dedup.slot_of_position();
  for (std::size_t i = 0; i < n; ++i) {
    if (found[i]) continue;
    const std::uint32_t u = slot_of[i];
    std::memcpy(rows + i * dim, &unique_rows[std::size_t{u} * dim], dim * 4);
    found[i] = unique_found[u];
    (unique_found[u] ? persistent_hits : defaults) += 1;
  }
  table.metrics.hits[static_cast<int>(TierLevel::kPersistent)].fetch_add(persistent_hits, std::memory_order_relaxed);
  table.metrics.defaults.fetch_add(defaults, std::memory_order_relaxed);
}

void ParameterServer::Impl::resolve(TableState& table, const std::int64_t* keys, std::size_t n, float* rows,
                                    std::uint8_t* found) {
  const std::size_t chunks =
      pool ? std::min(kChunksPerThread * pool->concurrency(), n / kMinKeysPerChunk) : std::size_t{1};
  if (chunks <= 1) return cascade(table, keys, n, rows, found);
  const std::size_t per_chunk = (n + chunks - 1) / chunks;
  pool->parallel_for(chunks, [&](std::size_t c) {
    const std::size_t first = c * per_chunk;
    const std::size_t count = std::min(per_chunk, n - first);
    cascade(table, keys + first, count, rows + first * table.dim, found + first);
  });
}

const Config& ParameterServer::config() const { return impl_->config; }
bool ParameterServer::gpu_enabled() const { return impl_->gpu_enabled; }

TableRef ParameterServer::find_table(const std::string& model, const std::string& table) const {
  const auto it = impl_->model_index.find(model);
  if (it == impl_->model_index.end()) return find_table(model, std::size_t{0});  // throws NotFound
  const ModelState& state = impl_->models[it->second];
  std::string names;
  for (std::size_t t = 0; t < state.tables.size(); ++t) {
    if (state.tables[t]->name == table) return TableRef{it->second, t};
    names += (t ? ", " : "") + state.tables[t]->name;
  }
  HPS_FAIL(NotFound, "model '", model, "' has no table '", table, "' (its tables: ", names, ")");
}

TableRef ParameterServer::find_table(const std::string& model, std::size_t table_index) const {
  const auto it = impl_->model_index.find(model);
  if (it == impl_->model_index.end()) {
    std::string names;
    for (const auto& m : impl_->models) names += (names.empty() ? "" : ", ") + m.config->name;
    HPS_FAIL(NotFound, "no model '", model, "' in this server (its models: ", names, ")");
  }
  const std::size_t count = impl_->models[it->second].tables.size();
  HPS_EXPECTS(table_index < count, NotFound, "model '", model, "' has ", count, " table", count == 1 ? "" : "s",
              "; table index ", table_index, " is out of range");
  return TableRef{it->second, table_index};
}

std::size_t ParameterServer::dim(TableRef table) const { return impl_->table(table).dim; }

void ParameterServer::lookup(TableRef ref, const void* keys, KeyDtype dtype, std::size_t n, float* out) {
  TableState& table = impl_->table(ref);
  const auto start = std::chrono::steady_clock::now();
  const CanonicalKeys canonical(keys, dtype, n, key64());
  thread_local std::vector<std::uint8_t> found;
  found.resize(n);
  impl_->resolve(table, canonical.data(), n, out, found.data());
  record_lookup(table.metrics, n, start);
}

void ParameterServer::lookup(TableRef ref, const void* keys, KeyDtype dtype, std::size_t n, float* out,
                             const DeviceBuffers& where) {
  if (where.device < 0) return lookup(ref, keys, dtype, n, out);
  TableState& table = impl_->table(ref);
  const auto it = std::find(table.devices.begin(), table.devices.end(), where.device);
  HPS_EXPECTS(it != table.devices.end(), InvalidArgument, "device ", where.device, " is not in models[",
              table.model, "].deployed_device_list");
  HPS_EXPECTS(!table.caches.empty(), BackendUnavailable, "model '", table.model,
              "' has no GPU cache here (", impl_->gpu_enabled ? "gpucache is false" : "no CUDA device or no CUDA build",
              "); pass host arrays");
  GpuCache& cache = *table.caches[static_cast<std::size_t>(it - table.devices.begin())];
  const auto start = std::chrono::steady_clock::now();
  const std::uint64_t epoch = table.epoch.load(std::memory_order_acquire);
  // Misses are resolved over the thread pool; if the last lookup had enough to split, the workers
  // wake now and their wake-up overlaps the device's probe instead of delaying the resolve.
  if (impl_->pool && table.last_gpu_misses.load(std::memory_order_relaxed) >= 2 * kMinKeysPerChunk) impl_->pool->nudge();
  const GpuLookupResult result = cache.lookup(
      keys, dtype, key64(), n, out, where.stream,
      [this, &table](const std::int64_t* miss_keys, std::size_t m, float* rows, std::uint8_t* found) {
        impl_->resolve(table, miss_keys, m, rows, found);
      },
      [&table, epoch] { return epoch % 2 == 0 && table.epoch.load(std::memory_order_acquire) == epoch; });
  table.metrics.hits[static_cast<int>(TierLevel::kGpuCache)].fetch_add(result.hits, std::memory_order_relaxed);
  table.last_gpu_misses.store(result.missed_unique, std::memory_order_relaxed);
  record_lookup(table.metrics, n, start);
}

void ParameterServer::lookup_many(std::size_t count, const TableRef* tables, const void* const* keys, KeyDtype dtype,
                                  const std::size_t* n, float* const* out, const DeviceBuffers& where) {
  if (count == 0) return;
  for (std::size_t i = 0; i < count; ++i) impl_->table(tables[i]);  // refuse a bad table before any work
  auto run = [&](std::size_t i, const DeviceBuffers& on) { lookup(tables[i], keys[i], dtype, n[i], out[i], on); };
  auto side_by_side = [&](const std::function<void(std::size_t)>& fn) {
    if (impl_->pool) {
      impl_->pool->parallel_for(count, fn);
    } else {
      for (std::size_t i = 0; i < count; ++i) fn(i);
    }
  };
  if (where.device < 0) return side_by_side([&](std::size_t i) { run(i, where); });
  StreamFanout fanout(where.device, where.stream, count);
  side_by_side([&](std::size_t i) { run(i, DeviceBuffers{where.device, fanout.stream(i)}); });
  fanout.join();
}

// ---- updates ----------------------------------------------------------------------------------------

void ParameterServer::update(TableRef ref, const void* keys, KeyDtype dtype, std::size_t n, const float* rows) {
  TableState& table = impl_->table(ref);
  HPS_EXPECTS(!table.persistent_read_only, InvalidArgument, "update(", table.model, "/", table.name,
              "): persistent_db is read-only, so the update could not be stored durably");
  if (n == 0) return;
  const CanonicalKeys canonical(keys, dtype, n, key64());
  MutationScope scope(table.epoch);
  if (table.persistent_tier) table.persistent_tier->insert(canonical.data(), rows, n);
  try {
    if (table.volatile_tier) table.volatile_tier->insert(canonical.data(), rows, n);
    for (auto& cache : table.caches) cache->update(canonical.data(), rows, n);
  } catch (...) {
    // Never leave a stale copy above a tier that took the new rows: drop the cached copies (and
    // the volatile ones when the persistent tier holds the truth), then report the failure.
    for (auto& cache : table.caches) cache->erase(canonical.data(), n);
    if (table.persistent_tier && table.volatile_tier) table.volatile_tier->erase(canonical.data(), n);
    throw;
  }
  table.metrics.updated_keys.fetch_add(n, std::memory_order_relaxed);
}

std::size_t ParameterServer::erase(TableRef ref, const void* keys, KeyDtype dtype, std::size_t n) {
  TableState& table = impl_->table(ref);
  HPS_EXPECTS(!table.persistent_read_only, InvalidArgument, "erase(", table.model, "/", table.name,
              "): persistent_db is read-only");
  if (n == 0) return 0;
  const CanonicalKeys canonical(keys, dtype, n, key64());
  // Count distinct keys some tier holds, before removing them.
  std::vector<std::int64_t> distinct(canonical.data(), canonical.data() + n);
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  std::vector<std::uint8_t> held(distinct.size(), 0), found(distinct.size());
  std::vector<float> scratch(distinct.size() * table.dim);
  for (Tier* tier : {table.volatile_tier.get(), table.persistent_tier.get()}) {
    if (!tier) continue;
    tier->find(distinct.data(), distinct.size(), scratch.data(), found.data());
    for (std::size_t i = 0; i < distinct.size(); ++i) held[i] |= found[i];
  }
  MutationScope scope(table.epoch);
  if (table.persistent_tier) table.persistent_tier->erase(distinct.data(), distinct.size());
  if (table.volatile_tier) table.volatile_tier->erase(distinct.data(), distinct.size());
  for (auto& cache : table.caches) cache->erase(distinct.data(), distinct.size());
  const auto count = static_cast<std::size_t>(std::count(held.begin(), held.end(), 1));
  table.metrics.erased_keys.fetch_add(count, std::memory_order_relaxed);
  return count;
}

void ParameterServer::refresh(const std::string& model) {
  const TableRef first = find_table(model, std::size_t{0});
  const ModelState& state = impl_->models[first.model];
  const double window = state.config->cache_refresh_percentage_per_iteration > 0
                            ? state.config->cache_refresh_percentage_per_iteration
                            : 1.0;
  for (auto& table : state.tables) {
    TableState* t = table.get();
    for (auto& cache : t->caches) {
      cache->refresh(window, [this, t](const std::int64_t* keys, std::size_t n, float* rows, std::uint8_t* found) {
        impl_->resolve(*t, keys, n, rows, found);
      });
    }
  }
}

// ---- metrics -----------------------------------------------------------------------------------------

std::vector<TableStats> ParameterServer::stats() const {
  std::vector<TableStats> out;
  for (const auto& model : impl_->models) {
    for (const auto& table : model.tables) {
      TableStats s;
      s.model = table->model;
      s.table = table->name;
      // Static caches answer unknown keys with the default row on the device and count them there;
      // lookup() counted every position as a cache hit, so move those to `defaults`.
      std::uint64_t device_defaults = 0;
      for (const auto& cache : table->caches) device_defaults += cache->defaults_served();
      table->metrics.snapshot(s);
      const auto gpu = static_cast<int>(TierLevel::kGpuCache);
      device_defaults = std::min<std::uint64_t>(device_defaults, s.hits[gpu]);  // a kernel may finish before lookup() counts
      s.hits[gpu] -= device_defaults;
      s.defaults += device_defaults;
      for (const auto& cache : table->caches) {
        s.tier_rows[gpu] += cache->size();
        s.tier_bytes[gpu] += cache->memory_bytes();
      }
      if (table->volatile_tier) {
        s.tier_rows[static_cast<int>(TierLevel::kVolatile)] = table->volatile_tier->size();
        s.tier_bytes[static_cast<int>(TierLevel::kVolatile)] = table->volatile_tier->memory_bytes();
      }
      if (table->persistent_tier) {
        s.tier_rows[static_cast<int>(TierLevel::kPersistent)] = table->persistent_tier->size();
        s.tier_bytes[static_cast<int>(TierLevel::kPersistent)] = table->persistent_tier->memory_bytes();
      }
      out.push_back(std::move(s));
    }
  }
  return out;
}

std::string ParameterServer::prometheus() const {
  // Redis Cluster fault counters (fall-throughs, timeouts, redirects, reconnects) follow the tables'.
  std::vector<RedisTableCounters> redis;
  for (const auto& model : impl_->models) {
    for (const auto& table : model.tables) {
      if (const auto* tier = dynamic_cast<const RedisClusterTier*>(table->volatile_tier.get())) {
        redis.push_back(RedisTableCounters{table->model, table->name, tier->counters()});
      }
    }
  }
  return to_prometheus(stats()) + redis_cluster_prometheus(redis);
}

}  // namespace hps
