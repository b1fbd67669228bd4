#include "hps/parameter_server.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <numeric>
#include <optional>
#include <shared_mutex>
#include <thread>
#include <unordered_map>
#include <utility>

#include "hps/error.hpp"
#include "hps/gpu/cache_sizing.hpp"
#include "hps/gpu/gpu_cache.hpp"
#include "hps/model_io.hpp"
#include "hps/tiers/bulk_loadable.hpp"
#include "hps/tiers/hash_map_tier.hpp"
#include "hps/tiers/tier_factory.hpp"
#include "detail/key_dedup.hpp"
#include "detail/stream_fanout.hpp"
#include "detail/thread_pool.hpp"
#include "warm_start.hpp"
#if defined(HPS_HAVE_KAFKA)
#include "hps/updates/kafka_wire.hpp"
#include "updates/kafka_source.hpp"
#endif

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

// A table's mutation epoch: the updates and erases begun (high 32 bits, wrapping) and those still
// running (low 32 bits). A lookup may promote the rows it read from a lower tier only if the epoch
// it read before reading was quiet (nothing running) and is unchanged when the rows are inserted.
// (One odd/even counter is not enough: two overlapping mutations make it even while both run.)
constexpr std::uint64_t kMutationBegun = std::uint64_t{1} << 32;
constexpr std::uint64_t kMutationsRunning = kMutationBegun - 1;

bool quiet(std::uint64_t epoch) { return (epoch & kMutationsRunning) == 0; }

// Announces an update or erase in the epoch for its lifetime, and before it writes anything waits
// for the promotions that checked the epoch before the announcement (they hold `promotions`
// shared from their check to the end of their insert). A check after the announcement fails, so
// once the mutation writes, no promotion of an older row can land after it; that matters where a
// tier's insert_if_absent cannot check the epoch atomically with its write (Redis: one round trip).
class MutationScope {
 public:
  MutationScope(std::atomic<std::uint64_t>& epoch, std::shared_mutex& promotions) : epoch_(epoch) {
    epoch_.fetch_add(kMutationBegun + 1, std::memory_order_acq_rel);
    std::unique_lock drain(promotions);
  }
  ~MutationScope() { epoch_.fetch_sub(1, std::memory_order_acq_rel); }
  MutationScope(const MutationScope&) = delete;
  MutationScope& operator=(const MutationScope&) = delete;

 private:
  std::atomic<std::uint64_t>& epoch_;
};

// Counts one lookup call of n keys that began at `start`, into `histogram` (host lookups and
// device calls are timed apart: see metrics.hpp).
void record_lookup(TableMetrics& metrics, LatencyHistogram& histogram, std::size_t n,
                   std::chrono::steady_clock::time_point start) {
  metrics.lookups.fetch_add(1, std::memory_order_relaxed);
  metrics.keys.fetch_add(n, std::memory_order_relaxed);
  histogram.record(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
}

// The GPU cache's entry in a table's metrics comes first, then the host tier roles.
constexpr std::size_t kGpuCacheStats = 0;
std::vector<std::string> stats_names(const TierFactory& factory) {
  std::vector<std::string> names{"gpu_cache"};
  names.insert(names.end(), factory.tier_names().begin(), factory.tier_names().end());
  return names;
}

class NullObserver final : public LoadObserver {
 public:
  void begin(const std::string&, std::size_t) override {}
  void advance(std::size_t) override {}
  void end() override {}
};

}  // namespace

constexpr std::size_t kNone = static_cast<std::size_t>(-1);

struct TableState {
  explicit TableState(std::vector<std::string> stats_names) : metrics(std::move(stats_names)) {}

  std::string model;
  std::string name;
  std::string tag;
  std::size_t dim = 0;
  float default_value = 0;
  std::size_t rows = 0;  // rows in the table files (or the persistent tier) at start
  bool loaded_from_files = false;  // the tier of record was (re)loaded from the files at this start

  // The host tiers, fastest first (never empty). Roles come from the entries, never from names.
  std::vector<ChainTier> chain;
  std::size_t durable = kNone;          // index of the store of record in `chain`, kNone without one
  const ChainTier* read_only = nullptr;  // a tier that refuses writes, if any
  bool promotes = false;                // some tier takes promotions from one below it
  // A tier other servers share (Redis Cluster), which keeps how far their update sources applied
  // the table's topic (BulkLoadable::applied_offsets); null when the chain has none.
  BulkLoadable* shared_progress = nullptr;
  // Where that tier's writers had got to when this server found it current at start, without a
  // store of its own: the update source starts there (empty: at the topic's beginning).
  std::map<std::int32_t, std::int64_t> shared_start;

  std::vector<int> devices;                     // deployed_device_list
  std::vector<std::unique_ptr<GpuCache>> caches;  // one per device, empty without GPU caches

  // Updates and erases begun and running; see MutationScope.
  std::atomic<std::uint64_t> epoch{0};
  // Held shared by a promotion from its epoch check to the end of its insert; see MutationScope.
  std::shared_mutex promotions;
  TableMetrics metrics;
  // Distinct keys the last GPU lookup sent to the host: a hint that the next one will too.
  std::atomic<std::size_t> last_gpu_misses{0};
};

// Stats slot of a chain tier.
inline std::size_t stats_slot(const ChainTier& tier) { return 1 + tier.name_index; }

struct ModelState {
  const ModelConfig* config = nullptr;
  std::vector<std::unique_ptr<TableState>> tables;
};

// The server's update path as one source sees it: resolves tables by name, applies through
// ParameterServer::update/erase, and counts what happened. Never lets an exception reach the source.
class SourceSink final : public UpdateSink {
 public:
  SourceSink(ParameterServer& server, std::string name) : server_(server), name_(std::move(name)) {}

  void received(std::size_t messages) noexcept override { received_.fetch_add(messages, std::memory_order_relaxed); }
  bool update(const std::string& model, const std::string& table, const void* keys, KeyDtype dtype, std::size_t n,
              const float* rows) noexcept override {
    return apply("update", model, table, n, [&](TableRef ref) {
      try {
        server_.update(ref, keys, dtype, n, rows);
      } catch (const NoRoom&) {
        update_row_by_row(ref, model + "/" + table, keys, dtype, n, rows);
      }
    });
  }
  bool erase(const std::string& model, const std::string& table, const void* keys, KeyDtype dtype,
             std::size_t n) noexcept override {
    return apply("erase", model, table, n, [&](TableRef ref) { server_.erase(ref, keys, dtype, n); });
  }
  void error(const std::string& message) noexcept override { count_error(message); }
  bool drop_cached(const std::string& model, const std::string& table, const void* keys, KeyDtype dtype,
                   std::size_t n) noexcept override {
    return guarded("dropping the cached rows", model, table,
                   [&](TableRef ref) { server_.drop_cached(ref, keys, dtype, n); });
  }

  UpdateSourceStats stats() const {
    UpdateSourceStats out;
    out.name = name_;
    out.received = received_.load(std::memory_order_relaxed);
    out.applied = applied_.load(std::memory_order_relaxed);
    out.rows = rows_.load(std::memory_order_relaxed) - dropped_rows_.load(std::memory_order_relaxed);
    out.errors = errors_.load(std::memory_order_relaxed);
    std::lock_guard lock(error_mutex_);
    out.last_error = last_error_;
    return out;
  }

 private:
  template <typename Fn>
  bool apply(const char* what, const std::string& model, const std::string& table, std::size_t n, Fn&& fn) noexcept {
    if (!guarded(what, model, table, std::forward<Fn>(fn))) return false;
    applied_.fetch_add(1, std::memory_order_relaxed);
    rows_.fetch_add(n, std::memory_order_relaxed);
    return true;
  }
  // Runs fn on the table; an exception is counted as an error of the source, never thrown.
  template <typename Fn>
  bool guarded(const char* what, const std::string& model, const std::string& table, Fn&& fn) noexcept {
    try {
      fn(server_.find_table(model, table));
      return true;
    } catch (const std::exception& e) {
      count_error(std::string(what) + " of " + model + "/" + table + ": " + e.what());
    } catch (...) {
      count_error(std::string(what) + " of " + model + "/" + table + ": unknown exception");
    }
    return false;
  }
  // A table with no room for some new keys (a volatile_db without a persistent_db cannot evict)
  // would refuse the batch at every retry: apply it row by row instead, so the updates of keys it
  // holds land, and count the rows it has no room for as dropped.
  void update_row_by_row(TableRef ref, const std::string& name, const void* keys, KeyDtype dtype, std::size_t n,
                         const float* rows) {
    const std::size_t dim = server_.dim(ref);
    const auto* key_bytes = static_cast<const char*>(keys);
    std::size_t dropped = 0;
    std::string why;
    for (std::size_t i = 0; i < n; ++i) {
      try {
        server_.update(ref, key_bytes + i * key_dtype_size(dtype), dtype, 1, rows + i * dim);
      } catch (const NoRoom& e) {
        if (dropped++ == 0) why = e.what();
      }
    }
    if (dropped > 0) {
      dropped_rows_.fetch_add(dropped, std::memory_order_relaxed);
      count_error("update of " + name + ": " + std::to_string(dropped) + " of " + std::to_string(n) +
                  " rows dropped: " + why);
    }
  }
  void count_error(const std::string& message) noexcept {
    errors_.fetch_add(1, std::memory_order_relaxed);
    try {
      std::lock_guard lock(error_mutex_);
      last_error_ = message;
    } catch (...) {  // out of memory for the message: the count above still tells
    }
  }

  ParameterServer& server_;
  const std::string name_;
  std::atomic<std::uint64_t> received_{0}, applied_{0}, rows_{0}, errors_{0};
  std::atomic<std::uint64_t> dropped_rows_{0};  // of rows_: refused by a table without room
  mutable std::mutex error_mutex_;
  std::string last_error_;
};

struct SourceEntry {
  std::unique_ptr<SourceSink> sink;  // outlives the source's use of it: the source stops first
  std::unique_ptr<UpdateSource> source;
};

struct ParameterServer::Impl {
  Config config;
  std::unique_ptr<ThreadPool> pool;  // lookup_threads - 1 workers; null when lookups use one thread
  std::unique_ptr<TierFactory> factory;  // builds each table's chain; keeps shared backends open
  std::vector<std::string> stats_names;  // "gpu_cache", then the factory's tier roles
  std::vector<ModelState> models;
  std::unordered_map<std::string, std::size_t> model_index;
  bool gpu_enabled = false;
  mutable std::mutex sources_mutex;  // guards `sources` (not the sources' own work)
  std::vector<SourceEntry> sources;

  TableState& table(TableRef ref) {
    HPS_EXPECTS(ref.model < models.size() && ref.table < models[ref.model].tables.size(), NotFound,
                "no table (", ref.model, ", ", ref.table, ") in this server");
    return *models[ref.model].tables[ref.table];
  }

  void build_model(const ModelConfig& model, LoadObserver& observer);
  // `where` locates the table in the config as a JSON path, for messages.
  void load_table(TableState& table, const ModelConfig& model, const TableConfig& config, const std::string& where,
                  LoadObserver& observer);
  void build_gpu_caches(TableState& table, const ModelConfig& model, const TableConfig& config);
  // Lets the dynamic caches answer misses from the hash-map tier on the device, where they can.
  void attach_host_tier(TableState& table, const ModelConfig& model);

  // The host cascade over positions: writes every row, sets found[i] where a tier held keys[i],
  // and counts the answers per tier into the table's metrics.
  void cascade(TableState& table, const std::int64_t* keys, std::size_t n, float* rows, std::uint8_t* found);
  // Copies the distinct keys tier `from` found (unique_found[u] == level) into every tier above it
  // that takes promotions, unless the table's mutation epoch moved since `epoch` was read.
  void promote(TableState& table, std::size_t from, std::uint8_t level, const std::int64_t* unique_keys,
               const float* unique_rows, const std::uint8_t* unique_found, std::size_t unique, std::size_t hits,
               std::uint64_t epoch);
  // The cascade, split into chunks over the pool's threads when the batch is large.
  void resolve(TableState& table, const std::int64_t* keys, std::size_t n, float* rows, std::uint8_t* found);
  // Whether resolve() splits this table's lookups over the pool: not when the chain's first tier
  // serves whole batches better (Tier::serves_whole_batches: Redis Cluster).
  bool splits_lookups(const TableState& table) const {
    return pool && !table.chain.empty() && !table.chain.front().tier->serves_whole_batches();
  }
};

// ---- construction ---------------------------------------------------------------------------------

void check_config_loadable(const Config& config) {
  HPS_EXPECTS(!config.models.empty(), ConfigError, "models: at least one model is required");
  // Tier backends are the factory's to check; update sources are the server's.
#if !defined(HPS_HAVE_KAFKA)
  HPS_EXPECTS(config.update_source.type == UpdateSourceType::kNone, BackendUnavailable,
              "update_source.type kafka_message_queue: this build of hps has no Kafka consumer (built without the "
              "librdkafka headers, HPS_WITH_KAFKA); remove update_source and apply updates with update()");
#else
  HPS_EXPECTS(config.update_source.type == UpdateSourceType::kNone || !config.persistent_db.read_only ||
                  config.persistent_db.type == PersistentDbType::kDisabled,
              ConfigError, "update_source: streamed updates need a writable persistent_db (read_only is set)");
#endif
  TierFactory::check(config);
}

ParameterServer::ParameterServer(Config config, LoadObserver* observer, ServerOptions options)
    : impl_(std::make_unique<Impl>()) {
  const std::size_t threads = options.lookup_threads ? options.lookup_threads : default_lookup_threads();
  if (threads > 1) impl_->pool = std::make_unique<ThreadPool>(threads - 1, lookup_spin(options.lookup_spin_us));
  NullObserver quiet;
  LoadObserver& progress = observer ? *observer : quiet;
  impl_->config = std::move(config);
  const Config& cfg = impl_->config;
  check_config_loadable(cfg);  // before the factory opens (and maybe creates) a database
  impl_->factory = std::make_unique<TierFactory>(cfg);
  impl_->stats_names = stats_names(*impl_->factory);
  impl_->gpu_enabled = cuda_device_count() > 0 &&
                       std::any_of(cfg.models.begin(), cfg.models.end(), [](const ModelConfig& m) { return m.gpucache; });
  for (const ModelConfig& model : cfg.models) impl_->build_model(model, progress);
#if defined(HPS_HAVE_KAFKA)
  if (cfg.update_source.type == UpdateSourceType::kKafka) {
    const bool durable = std::any_of(impl_->models.begin(), impl_->models.end(), [](const ModelState& m) {
      return std::any_of(m.tables.begin(), m.tables.end(), [](const auto& t) { return t->durable != kNone; });
    });
    kafka::KafkaSourceOptions options = kafka::kafka_source_options(cfg, durable);
    // Tables in a tier other servers share: start where their writers got to (a server without a
    // durable tier would otherwise replay each topic from its beginning, writing older rows over
    // newer ones in the shared tier), and record how far this one gets.
    std::unordered_map<std::string, BulkLoadable*> progress;
    for (const ModelState& m : impl_->models) {
      for (const auto& t : m.tables) {
        const std::string topic = kafka::topic_name(t->model, t->name);
        if (!t->shared_progress || !options.topics.count(topic)) continue;
        progress[topic] = t->shared_progress;
        if (!t->shared_start.empty()) options.shared_start[topic] = t->shared_start;
      }
    }
    if (!progress.empty()) {
      options.record_applied = [progress](const std::string& topic, const std::map<std::int32_t, std::int64_t>& next) {
        const auto it = progress.find(topic);
        return it == progress.end() ? std::map<std::int32_t, std::int64_t>{} : it->second->record_applied_offsets(next);
      };
      // Without a durable tier of its own, the shared tier and the GPU caches are all this server
      // keeps: it need not write what another server has written already (and newer rows since).
      if (!durable) {
        options.shared_frontier = [progress](const std::string& topic) -> std::map<std::int32_t, std::int64_t> {
          const auto it = progress.find(topic);
          return it == progress.end() ? std::map<std::int32_t, std::int64_t>{} : it->second->applied_offsets();
        };
      }
    }
    add_update_source(kafka::make_kafka_source(std::move(options)));
  }
#endif
}

ParameterServer::~ParameterServer() {
  if (!impl_) return;
  // Sources first: once stop() returns none calls update() again, so the tiers may go.
  for (auto& entry : impl_->sources) entry.source->stop();
  impl_->sources.clear();
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
    auto table = std::make_unique<TableState>(stats_names);
    table->model = model.name;
    table->name = table_config.name;
    table->tag = table_tag(model.name, table_config.name);
    table->dim = table_config.dim;
    table->default_value = table_config.default_value;
    table->devices = model.deployed_device_list;
    const std::string where = "models[" + std::to_string(models.size()) + "].sparse_files[" +
                              std::to_string(state.tables.size()) + "] (" + model.name + "/" + table_config.name + ")";
    load_table(*table, model, table_config, where, observer);
    if (gpu_enabled && model.gpucache) build_gpu_caches(*table, model, table_config);
    state.tables.push_back(std::move(table));
  }
  model_index.emplace(model.name, models.size());
  models.push_back(std::move(state));
}

void ParameterServer::Impl::load_table(TableState& table, const ModelConfig& model, const TableConfig& tc,
                                       const std::string& where, LoadObserver& observer) {
  const std::string label = model.name + "/" + tc.name;  // progress lines name the table, not its place
  table.chain = factory->build(table.tag, tc.dim, where);
  for (std::size_t t = 0; t < table.chain.size(); ++t) {
    const ChainTier& tier = table.chain[t];
    if (tier.durable) table.durable = t;  // the lowest durable tier is the store of record
    if (tier.read_only && !table.read_only) table.read_only = &tier;
    if (tier.takes_promotions && t + 1 < table.chain.size()) table.promotes = true;
  }
  ChainTier* store = table.durable == kNone ? nullptr : &table.chain[table.durable];
  BulkLoadable* loader = store ? store->tier->bulk_loader() : nullptr;

  // The table files' signature, read once when something needs it (the files may be absent when
  // nothing loads from them: a read-only store).
  std::optional<std::string> files_signature;
  auto signature = [&]() -> const std::string& {
    if (!files_signature) files_signature = inspect_sparse_model(tc.sparse_file, tc.dim).signature;
    return *files_signature;
  };

  // A 32-bit model's keys are checked in the files before any tier is emptied to load them, so
  // files with a key it cannot take leave the stored rows as they were (the load would throw half-way).
  bool keys_checked = config.supportlonglong;
  auto check_keys_before_emptying = [&](const BulkLoadable* tier_loader, const std::string& marker) {
    if (keys_checked || (tier_loader != nullptr && tier_loader->load_marker() == marker)) return;
    check_sparse_model_keys(tc.sparse_file, tc.dim, config.supportlonglong);
    keys_checked = true;
  };

  // The store of record: (re)load it from the table files unless it already holds exactly them
  // (begin_load says; a current store keeps the updates it took since).
  bool files_in_store = false;
  if (store && store->load_from_files) {
    const SparseModelInfo info = inspect_sparse_model(tc.sparse_file, tc.dim);
    table.rows = info.rows;
    files_signature = info.signature;
    check_keys_before_emptying(loader, info.signature);
    files_in_store = loader ? loader->begin_load(info.signature) : true;
  }

  // Tiers above the store filled at start (all of them when there is no store: they hold every row).
  // One that keeps a load marker (a tier servers share) is filled only when it does not hold this
  // source already; its marker is the files' signature, or the store's own marker when the store
  // is not loaded from the files. Its begin_load may wait for another server loading it.
  std::vector<ChainTier*> fills;
  std::vector<BulkLoadable*> fill_loaders;  // fills[i]'s bulk loader, or null: filled with insert()
  std::string fill_marker;
  for (ChainTier& tier : table.chain) {
    if (tier.durable || !tier.fill_at_start) continue;
    BulkLoadable* fill_loader = tier.tier->bulk_loader();
    if (fill_loader) {
      if (fill_marker.empty()) {
        fill_marker = store && !store->load_from_files && !store->source_marker.empty() ? store->source_marker
                                                                                       : signature();
      }
      if (!store) check_keys_before_emptying(fill_loader, fill_marker);  // loaded from the files
      table.shared_progress = fill_loader;
      if (!fill_loader->begin_load(fill_marker)) {  // current
        // Read before the GPU caches warm from it: updates applied after this point come again.
        if (!store) table.shared_start = fill_loader->applied_offsets();
        continue;
      }
    }
    fills.push_back(&tier);
    fill_loaders.push_back(fill_loader);
  }
  auto fill = [&](std::size_t i, const std::int64_t* keys, const float* rows, std::size_t n) {
    if (fill_loaders[i]) {
      fill_loaders[i]->bulk_insert(keys, rows, n);
    } else {
      fills[i]->tier->insert(keys, rows, n);
    }
  };
  auto budget_of = [](const ChainTier& tier, std::size_t rows) {
    return fill_rows(tier.tier->capacity(), tier.fill_rate, rows);
  };
  auto names_of = [](const std::vector<ChainTier*>& tiers, const std::vector<std::size_t>& budgets) {
    std::string names;
    for (std::size_t i = 0; i < tiers.size(); ++i) {
      if (budgets[i]) names += (names.empty() ? " " : " + ") + tiers[i]->name;
    }
    return names;
  };

  if (files_in_store || (!fills.empty() && !store)) {
    // One pass over the files feeds every tier that loads.
    SparseModelReader reader(tc.sparse_file, tc.dim);
    table.rows = reader.rows();
    if (!store) {
      check_table_fits(config, tc.sparse_file, tc.dim, where);  // before any row is stored
    }
    std::vector<std::size_t> budgets;
    // A tier filled with part of the table takes the file's last rows, not its first: a key that
    // appears again later in the file then holds its last occurrence there, as in the store.
    std::vector<std::size_t> first_filled;
    for (ChainTier* tier : fills) {
      budgets.push_back(budget_of(*tier, reader.rows()));
      first_filled.push_back(reader.rows() - std::min(budgets.back(), reader.rows()));
      if (budgets.back()) tier->tier->reserve(budgets.back());
    }
    std::size_t chunk_start = 0;  // the file row of the chunk's first row
    std::string what = label + ": table files ->";
    if (files_in_store) what += " " + store->name;
    const std::string filled = names_of(fills, budgets);
    if (!filled.empty()) what += files_in_store ? " +" + filled.substr(1) : filled;
    observer.begin(what, reader.rows());
    reader.for_each_chunk(load_chunk_rows(tc.dim), [&](const std::int64_t* file_keys, const float* rows,
                                                       const std::int64_t*, std::size_t n) {
      std::vector<std::int64_t> keys(n);
      // Checked here too (where nothing was emptied first), so an error names the key's file position.
      check_int64_keys(file_keys, n, config.supportlonglong, chunk_start, tc.sparse_file + "/key");
      canonicalize_keys(file_keys, KeyDtype::kInt64, n, config.supportlonglong, keys.data(),
                        tc.sparse_file + "/key");
      if (files_in_store) {
        if (loader) {
          loader->bulk_insert(keys.data(), rows, n);
        } else {
          store->tier->insert(keys.data(), rows, n);
        }
      }
      for (std::size_t i = 0; i < fills.size(); ++i) {
        const std::size_t skip = std::min(n, first_filled[i] - std::min(first_filled[i], chunk_start));
        if (skip < n) fill(i, keys.data() + skip, rows + skip * tc.dim, n - skip);
      }
      chunk_start += n;
      observer.advance(n);
    });
    observer.end();
    if (files_in_store && loader) loader->finish(reader.info().signature);  // what was read, not re-inspected
    table.loaded_from_files = files_in_store || (!store && fills.size() == table.chain.size());
  } else if (!fills.empty()) {
    // The store is current (it may hold updates newer than the files): fill from it.
    const std::size_t stored = store->tier->size();
    if (table.rows == 0) table.rows = stored;
    std::vector<std::size_t> budgets;
    std::size_t most = 0;
    for (ChainTier* tier : fills) {
      budgets.push_back(budget_of(*tier, stored));
      if (budgets.back()) tier->tier->reserve(budgets.back());
      most = std::max(most, budgets.back());
    }
    if (most > 0) {
      observer.begin(label + ": " + store->name + " ->" + names_of(fills, budgets), most);
      store->tier->for_each(load_chunk_rows(tc.dim), [&](const std::int64_t* keys, const float* rows, std::size_t n) {
        std::size_t advanced = 0;
        for (std::size_t i = 0; i < fills.size(); ++i) {
          const std::size_t take = std::min(n, budgets[i]);
          if (take) fill(i, keys, rows, take);
          budgets[i] -= take;
          advanced = std::max(advanced, take);
        }
        observer.advance(advanced);
      });
      observer.end();
    }
  }
  // Filled tiers that keep a marker record it (and release their load lock).
  for (BulkLoadable* fill_loader : fill_loaders) {
    if (fill_loader) fill_loader->finish(fill_marker);
  }
  // Rows at start, when no file said: what the lowest tier holding any has.
  for (std::size_t t = table.chain.size(); t-- > 0 && table.rows == 0;) table.rows = table.chain[t].tier->size();
}

void ParameterServer::Impl::attach_host_tier(TableState& table, const ModelConfig& model) {
  if (!model.gpu_visible_host_tier) return;
  if (gpu_visible_host_tier_switched_off()) return;
  auto hash_map = std::dynamic_pointer_cast<HashMapTier>(table.chain.front().tier);
  if (!hash_map) return;  // a Redis Cluster volatile_db (or none): not in this process's memory
  auto warn = [&](const std::string& why) {
    std::fprintf(stderr, "hps: warning: %s/%s: GPU cache misses take the host path: %s\n", table.model.c_str(),
                 table.name.c_str(), why.c_str());
  };
  try {
    make_gpu_visible(*hash_map);
  } catch (const Error& e) {
    warn(e.what());
    return;
  }
  HostTierLink link;
  link.tier = hash_map;
  link.last_tier = table.chain.size() == 1;
  link.hbm_share = model.host_tier_index_hbm_share;
  for (auto& cache : table.caches) {
    std::string why;
    try {
      if (!cache->attach_host_tier(link, &why)) warn(why);
    } catch (const Error& e) {  // a CUDA failure building the index: the host path still serves
      warn(e.what());
    }
  }
}

namespace {
/// The tier holding every row of the table: its store of record, or without one its last tier
/// (filled with the whole table at start).
const ChainTier& tier_of_record(const TableState& table) {
  return table.chain[table.durable != kNone ? table.durable : table.chain.size() - 1];
}
/// Rows a static cache must hold: the files' rows when the tier of record was just loaded from
/// them, else the rows the tier holds now, counted (RocksDB only estimates its size; the tier may
/// hold keys added by updates since the files were loaded, or fewer).
std::size_t rows_to_hold(const TableState& table) {
  if (table.loaded_from_files) return table.rows;
  Tier& source = *tier_of_record(table).tier;
  if (!source.size_is_estimate()) return source.size();
  std::size_t rows = 0;
  source.for_each(std::size_t{1} << 16, [&](const std::int64_t*, const float*, std::size_t n) { rows += n; });
  return rows;
}
}  // namespace

void ParameterServer::Impl::build_gpu_caches(TableState& table, const ModelConfig& model, const TableConfig& tc) {
  const int devices = cuda_device_count();
  const bool is_static = model.embedding_cache_type == EmbeddingCacheType::kStatic;
  const std::size_t static_rows = is_static ? rows_to_hold(table) : 0;  // a static cache holds the whole table
  for (int device : model.deployed_device_list) {
    HPS_EXPECTS(device < devices, ConfigError, "models[", model_index.size(), "].deployed_device_list (", model.name,
                "): device ", device,
                " does not exist (this machine has ", devices, " CUDA device", devices == 1 ? "" : "s", ")");
    GpuCacheOptions options;
    options.device = device;
    options.dim = tc.dim;
    options.is_static = is_static;
    options.dtype = tc.cache_dtype;
    options.default_value = tc.default_value;
    options.hit_rate_threshold = model.hit_rate_threshold;
    options.capacity = gpu_cache_capacity(model.embedding_cache_type, model.gpucacheper,
                                          is_static ? static_rows : table.rows);
    table.caches.push_back(GpuCache::create(options));
  }
  if (!is_static) attach_host_tier(table, model);
  // Warm start (docs/architecture.md, "Loading"): the static cache takes the whole table, a dynamic
  // one with init_ec the most frequent keys when a meta file ranks them, else the first rows; the
  // rows always come from the tier holding every row (it may be newer than the files).
  if (!is_static && !model.init_ec) return;
  const ChainTier& source = tier_of_record(table);
  const std::size_t capacity = table.caches.front()->capacity();
  const WarmStart warm = warm_start_rows(
      *source.tier, tc.sparse_file, config.supportlonglong, capacity, /*whole_table=*/is_static, load_chunk_rows(tc.dim),
      [&](const std::int64_t* keys, const float* rows, std::size_t n) {
        for (auto& cache : table.caches) cache->insert(keys, rows, n);
      });
  if (!warm.unranked_because.empty()) {
    std::fprintf(stderr, "hps: warning: %s/%s: the GPU cache is warmed in the order of %s, not by the table files' "
                 "key frequencies: %s\n", table.model.c_str(), table.name.c_str(), source.name.c_str(),
                 warm.unranked_because.c_str());
  }
  // A static cache answers every key it lacks with the default row, so it must hold them all (more
  // rows than counted: another server added keys to a shared tier meanwhile).
  HPS_EXPECTS(!is_static || warm.left_out == 0, ConfigError, "models[", model_index.size(), "] (", model.name, "/",
              tc.name, "): the static GPU cache was sized for the ", capacity, " rows ", source.name,
              " held, but it held ", warm.given + warm.left_out,
              " while the cache was filled (rows added meanwhile); start the server again");
}

// ---- lookups ----------------------------------------------------------------------------------------

void ParameterServer::Impl::cascade(TableState& table, const std::int64_t* keys, std::size_t n, float* rows,
                                    std::uint8_t* found) {
  if (n == 0) return;
  const std::size_t dim = table.dim;
  const std::vector<ChainTier>& chain = table.chain;
  // The first tier sees every position when duplicates cost it nothing (memory); below it, and
  // for a first tier that does not, only distinct keys travel.
  std::size_t next = 0;
  if (chain.front().probes_positions) {
    const std::size_t first_hits = chain.front().tier->find(keys, n, rows, found);
    table.metrics.hits(stats_slot(chain.front())).fetch_add(first_hits, std::memory_order_relaxed);
    if (first_hits == n) return;
    next = 1;
  } else {
    std::memset(found, 0, n);
  }

  // The misses go down as one batch of distinct keys.
  thread_local KeyDedup dedup;
  dedup.build(keys, found, n);
  const std::size_t unique = dedup.unique_count();
  const std::int64_t* unique_keys = dedup.unique_keys();
  // Every position considered and every key distinct (the usual batch below a Redis or RocksDB
  // first tier): distinct key u is position u, so the tiers write the output in place and nothing is
  // scattered afterwards (a row copy per key less).
  const bool in_place = next == 0 && unique == n;
  thread_local std::vector<float> unique_row_buffer;
  if (!in_place) unique_row_buffer.resize(unique * dim);
  float* const unique_rows = in_place ? rows : unique_row_buffer.data();
  // 0: found nowhere yet; k > 0: found by tier next + k - 1.
  thread_local std::vector<std::uint8_t> unique_found;
  unique_found.assign(unique, 0);
  thread_local std::vector<std::size_t> level_hits;  // positions answered by tier next + k
  level_hits.assign(chain.size() - next, 0);

  const std::uint64_t epoch = table.epoch.load(std::memory_order_acquire);
  std::size_t missing = unique;
  for (std::size_t t = next; t < chain.size() && missing > 0; ++t) {
    const auto level = static_cast<std::uint8_t>(t - next + 1);
    std::size_t hits = 0;
    if (t == next) {
      // Every distinct key is still missing: the tier reads and writes the batch in place.
      hits = chain[t].tier->find(unique_keys, unique, unique_rows, unique_found.data());
    } else {
      // A deeper tier: only keys every tier above missed, compacted into a batch of their own.
      thread_local std::vector<std::int64_t> deep_keys;
      thread_local std::vector<std::uint32_t> deep_slot;
      thread_local std::vector<float> deep_rows;
      thread_local std::vector<std::uint8_t> deep_found;
      deep_keys.clear();
      deep_slot.clear();
      for (std::size_t u = 0; u < unique; ++u) {
        if (unique_found[u]) continue;
        deep_keys.push_back(unique_keys[u]);
        deep_slot.push_back(static_cast<std::uint32_t>(u));
      }
      deep_rows.resize(deep_keys.size() * dim);
      deep_found.resize(deep_keys.size());
      hits = chain[t].tier->find(deep_keys.data(), deep_keys.size(), deep_rows.data(), deep_found.data());
      for (std::size_t d = 0; d < deep_keys.size() && hits > 0; ++d) {
        if (!deep_found[d]) continue;
        std::memcpy(unique_rows + std::size_t{deep_slot[d]} * dim, &deep_rows[d * dim], dim * 4);
        unique_found[deep_slot[d]] = level;
      }
    }
    missing -= hits;
    if (hits > 0 && table.promotes && quiet(epoch)) {
      promote(table, t, level, unique_keys, unique_rows, unique_found.data(), unique, hits, epoch);
    }
  }
  for (std::size_t u = 0; u < unique; ++u) {
    if (!unique_found[u]) std::fill_n(unique_rows + u * dim, dim, table.default_value);
  }
  // Scatter each distinct miss to every position that asked for it.
  std::size_t defaults = 0;
  const std::uint32_t* slot_of = dedup.slot_of_position();
  for (std::size_t i = 0; i < n; ++i) {
    if (found[i]) continue;
    const std::uint32_t u = slot_of[i];
    if (!in_place) std::memcpy(rows + i * dim, unique_rows + std::size_t{u} * dim, dim * 4);
    const std::uint8_t level = unique_found[u];
    found[i] = level != 0;
    if (level) {
      level_hits[level - 1] += 1;
    } else {
      defaults += 1;
    }
  }
  for (std::size_t k = 0; k < level_hits.size(); ++k) {
    table.metrics.hits(stats_slot(chain[next + k])).fetch_add(level_hits[k], std::memory_order_relaxed);
  }
  table.metrics.defaults.fetch_add(defaults, std::memory_order_relaxed);
}

void ParameterServer::Impl::promote(TableState& table, std::size_t from, std::uint8_t level,
                                    const std::int64_t* unique_keys, const float* unique_rows,
                                    const std::uint8_t* unique_found, std::size_t unique, std::size_t hits,
                                    std::uint64_t epoch) {
  const std::size_t dim = table.dim;
  // Promote only rows really found (by tier `from`), and only if no update or erase began since the read.
  std::vector<std::int64_t> promote_keys;
  std::vector<float> promote_rows;
  promote_keys.reserve(hits);
  promote_rows.reserve(hits * dim);
  for (std::size_t u = 0; u < unique; ++u) {
    if (unique_found[u] != level) continue;
    promote_keys.push_back(unique_keys[u]);
    promote_rows.insert(promote_rows.end(), &unique_rows[u * dim], &unique_rows[(u + 1) * dim]);
  }
  std::size_t promoted = 0;
  const auto unchanged = [&table, epoch] { return table.epoch.load(std::memory_order_acquire) == epoch; };
  std::shared_lock gate(table.promotions);  // from the check to the end of the inserts
  for (std::size_t t = 0; t < from && unchanged(); ++t) {
    if (!table.chain[t].takes_promotions) continue;
    promoted += table.chain[t].tier->insert_if_absent(promote_keys.data(), promote_rows.data(),
                                                      promote_keys.size(), unchanged);
  }
  table.metrics.promoted_keys.fetch_add(promoted, std::memory_order_relaxed);
}

void ParameterServer::Impl::resolve(TableState& table, const std::int64_t* keys, std::size_t n, float* rows,
                                    std::uint8_t* found) {
  const std::size_t chunks =
      splits_lookups(table) ? std::min(kChunksPerThread * pool->concurrency(), n / kMinKeysPerChunk) : 1;
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
  record_lookup(table.metrics, table.metrics.latency, n, start);
}

void ParameterServer::lookup(TableRef ref, const void* keys, KeyDtype dtype, std::size_t n, float* out,
                             const DeviceBuffers& where) {
  if (where.device < 0) return lookup(ref, keys, dtype, n, out);
  TableState& table = impl_->table(ref);
  HPS_EXPECTS(where.stream.is_set(), InvalidArgument, "lookup(", table.model, "/", table.name, ") on device ",
              where.device, ": no stream given; pass the caller's stream (StreamView::cuda(handle); a null handle "
              "means the legacy default stream)");
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
  if (impl_->splits_lookups(table) && table.last_gpu_misses.load(std::memory_order_relaxed) >= 2 * kMinKeysPerChunk) {
    impl_->pool->nudge();
  }
  const GpuLookupResult result = cache.lookup(
      keys, dtype, key64(), n, out, where.stream,
      [this, &table](const std::int64_t* miss_keys, std::size_t m, float* rows, std::uint8_t* found) {
        impl_->resolve(table, miss_keys, m, rows, found);
      },
      [&table, epoch] { return quiet(epoch) && table.epoch.load(std::memory_order_acquire) == epoch; });
  table.metrics.hits(kGpuCacheStats).fetch_add(result.hits, std::memory_order_relaxed);
  table.last_gpu_misses.store(result.missed_unique, std::memory_order_relaxed);
  // The host time of the call: the rows are complete later, in stream order (see metrics.hpp).
  record_lookup(table.metrics, table.metrics.device_call_latency, n, start);
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
  if (where.device < 0) {
    // Every table's keys are checked (and made canonical) before any row is written: a bad key for
    // a later table must leave the earlier tables' outputs untouched, as a failed call promises
    // (found by fuzz_c_api: they were written before the error).
    std::vector<CanonicalKeys> canonical;
    canonical.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
      canonical.emplace_back(keys[i], dtype, n[i], key64(), "keys[" + std::to_string(i) + "]");
    }
    return side_by_side([&](std::size_t i) {
      lookup(tables[i], canonical[i].data(), KeyDtype::kInt64, n[i], out[i]);
    });
  }
  HPS_EXPECTS(where.stream.is_set(), InvalidArgument, "lookup_many on device ", where.device,
              ": no stream given; pass the caller's stream (StreamView::cuda(handle); a null handle means the "
              "legacy default stream)");
  StreamFanout fanout(where.device, where.stream.handle(), count);
  side_by_side([&](std::size_t i) { run(i, DeviceBuffers{where.device, StreamView::cuda(fanout.stream(i))}); });
  fanout.join();
}

// ---- updates ----------------------------------------------------------------------------------------

void ParameterServer::update(TableRef ref, const void* keys, KeyDtype dtype, std::size_t n, const float* rows) {
  TableState& table = impl_->table(ref);
  HPS_EXPECTS(!table.read_only, InvalidArgument, "update(", table.model, "/", table.name, "): ",
              table.read_only ? table.read_only->name : "", " is read-only, so the update could not be stored durably");
  if (n == 0) return;
  const CanonicalKeys canonical(keys, dtype, n, key64());
  MutationScope scope(table.epoch, table.promotions);
  std::vector<ChainTier>& chain = table.chain;
  // The store of record first: once it holds the rows, the update is durable.
  if (table.durable != kNone) chain[table.durable].tier->insert(canonical.data(), rows, n);
  try {
    for (std::size_t t = chain.size(); t-- > 0;) {  // then the tiers above it, bottom up
      if (t != table.durable) chain[t].tier->insert(canonical.data(), rows, n);
    }
    for (auto& cache : table.caches) cache->update(canonical.data(), rows, n);
  } catch (...) {
    // Never leave a stale copy above a tier that took the new rows: drop the cached copies (and
    // the other tiers' copies when a store of record holds the truth), then report the failure.
    for (auto& cache : table.caches) cache->erase(canonical.data(), n);
    if (table.durable != kNone) {
      for (std::size_t t = 0; t < chain.size(); ++t) {
        if (t != table.durable) chain[t].tier->erase(canonical.data(), n);
      }
    }
    throw;
  }
  table.metrics.updated_keys.fetch_add(n, std::memory_order_relaxed);
}

std::size_t ParameterServer::erase(TableRef ref, const void* keys, KeyDtype dtype, std::size_t n) {
  TableState& table = impl_->table(ref);
  HPS_EXPECTS(!table.read_only, InvalidArgument, "erase(", table.model, "/", table.name, "): ",
              table.read_only ? table.read_only->name : "", " is read-only");
  if (n == 0) return 0;
  const CanonicalKeys canonical(keys, dtype, n, key64());
  // Count distinct keys some tier holds, before removing them.
  std::vector<std::int64_t> distinct(canonical.data(), canonical.data() + n);
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  std::vector<std::uint8_t> held(distinct.size(), 0), found(distinct.size());
  std::vector<float> scratch(distinct.size() * table.dim);
  for (const ChainTier& tier : table.chain) {
    tier.tier->find(distinct.data(), distinct.size(), scratch.data(), found.data());
    for (std::size_t i = 0; i < distinct.size(); ++i) held[i] |= found[i];
  }
  MutationScope scope(table.epoch, table.promotions);
  // Bottom up, as update(): the store of record first.
  for (std::size_t t = table.chain.size(); t-- > 0;) table.chain[t].tier->erase(distinct.data(), distinct.size());
  for (auto& cache : table.caches) cache->erase(distinct.data(), distinct.size());
  const auto count = static_cast<std::size_t>(std::count(held.begin(), held.end(), 1));
  table.metrics.erased_keys.fetch_add(count, std::memory_order_relaxed);
  return count;
}

void ParameterServer::drop_cached(TableRef ref, const void* keys, KeyDtype dtype, std::size_t n) {
  TableState& table = impl_->table(ref);
  if (n == 0 || table.caches.empty()) return;
  const CanonicalKeys canonical(keys, dtype, n, key64());
  MutationScope scope(table.epoch, table.promotions);  // a lookup's insertion of a row it read before refuses
  for (auto& cache : table.caches) cache->erase(canonical.data(), n);
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
      // Dynamic caches with a GPU-visible hash map answer misses on the device too: rows read from
      // the hash map move to its entry, defaults to `defaults`.
      std::uint64_t device_defaults = 0, tier_rows = 0, index_bytes = 0;
      for (const auto& cache : table->caches) {
        device_defaults += cache->defaults_served();
        tier_rows += cache->host_tier_rows_served();
        index_bytes += cache->host_tier_index_bytes();
      }
      table->metrics.snapshot(s);
      TierStats& gpu = s.tiers[kGpuCacheStats];
      device_defaults = std::min<std::uint64_t>(device_defaults, gpu.hits);  // a kernel may finish before lookup() counts
      gpu.hits -= device_defaults;
      s.defaults += device_defaults;
      tier_rows = std::min<std::uint64_t>(tier_rows, gpu.hits);
      gpu.hits -= tier_rows;
      s.tiers[stats_slot(table->chain.front())].hits += tier_rows;
      std::uint64_t cache_table_bytes = 0, cache_capacity = 0;
      for (const auto& cache : table->caches) {
        gpu.rows += cache->size();
        gpu.bytes += cache->memory_bytes();
        cache_table_bytes += cache->table_bytes();
        cache_capacity += cache->capacity();
      }
      if (cache_capacity > 0) {
        gpu.counters.push_back({"table_bytes_per_row", cache_table_bytes / cache_capacity,
                                "Device bytes of the GPU cache tables per row they can hold (rows, keys, metadata).",
                                true});
      }
      if (index_bytes > 0) {
        const std::uint64_t tier_rows_now = table->chain.front().tier->size();
        gpu.counters.push_back({"host_tier_index_bytes", index_bytes,
                                "Device bytes of the GPU index of the CPU-memory tier (all devices).", true});
        gpu.counters.push_back({"host_tier_index_bytes_per_row",
                                tier_rows_now == 0 ? 0 : index_bytes / tier_rows_now,
                                "Device bytes of that index per row of the CPU-memory tier.", true});
        gpu.counters.push_back({"host_tier_rows_served", tier_rows,
                                "Key positions the GPU answered with a row read from the CPU-memory tier over PCIe."});
      }
      for (const ChainTier& tier : table->chain) {
        TierStats& entry = s.tiers[stats_slot(tier)];
        entry.rows += tier.tier->size();
        entry.rows_estimated = entry.rows_estimated || tier.tier->size_is_estimate();
        entry.bytes += tier.tier->memory_bytes();
        entry.counters = tier.tier->event_counters();
      }
      out.push_back(std::move(s));
    }
  }
  return out;
}

std::string ParameterServer::prometheus() const { return to_prometheus(stats()) + to_prometheus(update_source_stats()); }

// ---- update sources ------------------------------------------------------------------------------

void ParameterServer::add_update_source(std::unique_ptr<UpdateSource> source) {
  HPS_EXPECTS(source != nullptr, InvalidArgument, "add_update_source: the source is null");
  SourceEntry entry;
  entry.sink = std::make_unique<SourceSink>(*this, source->name());
  entry.source = std::move(source);
  // Started outside the lock: a source may feed updates (and so take table locks) as it starts.
  entry.source->start(*entry.sink);
  std::lock_guard lock(impl_->sources_mutex);
  impl_->sources.push_back(std::move(entry));
}

void ParameterServer::drain_update_sources() {
  std::vector<UpdateSource*> sources;
  {
    std::lock_guard lock(impl_->sources_mutex);
    for (auto& entry : impl_->sources) sources.push_back(entry.source.get());
  }
  for (UpdateSource* source : sources) source->drain();  // sources are only removed by the destructor
}

std::vector<UpdateSourceStats> ParameterServer::update_source_stats() const {
  std::lock_guard lock(impl_->sources_mutex);
  std::vector<UpdateSourceStats> out;
  for (const auto& entry : impl_->sources) {
    out.push_back(entry.sink->stats());
    out.back().lag = entry.source->lag();
  }
  return out;
}

}  // namespace hps
