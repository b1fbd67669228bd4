// The parameter server: owns the tiers of every table of every model and runs the lookup cascade.
//
//   keys ── [GPU cache] ──► host tier chain (TierFactory: volatile_db, persistent_db) ──► table default
//
// Each table's host tiers form a chain built by TierFactory (tiers/tier_factory.hpp); the cascade
// walks it: misses of one tier go down, deduplicated, as one batch to the next. A key stored in
// some tier is always answered with its stored row; only keys stored nowhere get the table's
// default row. Rows found lower are promoted into tiers that take promotions
// (`cache_missed_embeddings`; never a default row). update() and erase() write through every tier
// (the durable one first) and every GPU cache, so a lookup that starts after they return sees the
// change. Update sources (update_source.hpp) feed update() and erase() while the server runs.
//
// Threads: every public method may be called from many threads at once. Tables share no lock.
// Ownership: pointers passed to a method are borrowed for the call.
#pragma once

#include "hps/export.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "hps/config.hpp"
#include "hps/keys.hpp"
#include "hps/metrics.hpp"
#include "hps/stream.hpp"
#include "hps/update_source.hpp"

namespace hps HPS_EXPORT {

/// Receives progress while the server loads its tables.
class LoadObserver {
 public:
  virtual ~LoadObserver() = default;
  /// A new step: `what` names it (e.g. "dlrm/table3 -> rocksdb"), `total` rows it will process.
  virtual void begin(const std::string& what, std::size_t total) = 0;
  virtual void advance(std::size_t rows) = 0;
  virtual void end() = 0;
};

/// Run-time settings that are not part of the configuration file.
struct ServerOptions {
  /// Threads one lookup may use on the host: a large batch (or a large set of GPU cache misses) is
  /// split into chunks looked up in parallel. 0 = min(16, hardware threads); 1 = the calling thread only.
  std::size_t lookup_threads = 0;
  /// How long idle lookup threads keep polling for the next chunk before they sleep. Waking a
  /// sleeping thread costs tens of microseconds on virtual machines, as much as a small lookup;
  /// polling costs CPU time while idle. Negative: HPS_LOOKUP_SPIN_US from the environment, else 200.
  long lookup_spin_us = -1;
};

/// Every check the server makes on `config` before it opens anything: at least one model, each
/// configured backend and update source built in, at least one tier, a RocksDB path that can be
/// opened. Throws ConfigError or BackendUnavailable. The server runs it first; `hps validate` too.
void check_config_loadable(const Config& config);

/// Throws ConfigError, naming `where`, when the table in `folder` (rows of `dim` floats) cannot be
/// held by `config`'s tiers. Only without a persistent tier is there anything to check: the
/// volatile tier must then take every row (initial_cache_rate 1): a hash map or a Redis Cluster
/// tier by each partition's distinct keys under its own partition function (keys spread by hash,
/// not evenly; rows that repeat a key take no room), read from the key file; the error then names
/// the partition and the margin needed. The server checks this before it
/// stores any row of such a table; `hps validate` checks it from the table files alone.
void check_table_fits(const Config& config, const std::string& folder, std::size_t dim, const std::string& where);

/// Keys of the table in `folder` per partition of `config`'s volatile_db (hash map or Redis
/// Cluster, under its own partition function), over the files' last `last_rows` rows (all of them
/// when there are fewer). A repeated key counts each time, except in a partition whose count
/// passes overflow_margin: that one is counted again with each key once, so min(count,
/// overflow_margin) is exact there (elsewhere an upper bound when keys repeat). check_table_fits
/// and `hps validate`'s memory plan count by it. Throws ConfigError when volatile_db is disabled.
std::vector<std::size_t> volatile_keys_per_partition(const Config& config, const std::string& folder, std::size_t dim,
                                                     std::size_t last_rows);

/// Identifies one table of one model (indexes into the config's models and tables).
struct TableRef {
  std::size_t model = 0;
  std::size_t table = 0;
};

/// Where a call's buffers live.
struct DeviceBuffers {
  int device = -1;     ///< CUDA device of keys and output; -1 = host memory
  /// The stream device calls run on. It must be set for a device call (InvalidArgument otherwise):
  /// the server never picks the legacy default stream by itself. Ignored for host memory.
  StreamView stream;
};

class ParameterServer {
 public:
  /// Builds every tier of every model and loads the table files. Throws ConfigError for a config
  /// the server cannot serve, IOError for unreadable table files or databases,
  /// BackendUnavailable for a backend missing from this build.
  explicit ParameterServer(Config config, LoadObserver* observer = nullptr, ServerOptions options = {});
  ~ParameterServer();
  ParameterServer(const ParameterServer&) = delete;
  ParameterServer& operator=(const ParameterServer&) = delete;

  const Config& config() const;
  bool key64() const { return config().supportlonglong; }

  /// Resolves a table by name or by index; throws NotFound naming what exists.
  TableRef find_table(const std::string& model, const std::string& table) const;
  TableRef find_table(const std::string& model, std::size_t table_index) const;
  std::size_t dim(TableRef table) const;

  /// Writes the rows of keys[0..n) to out[n][dim]. Keys and output in host memory.
  void lookup(TableRef table, const void* keys, KeyDtype dtype, std::size_t n, float* out);

  /// Same with keys and output in CUDA memory on `where.device`, on `where.stream` (which must be
  /// set). Throws BackendUnavailable in builds without CUDA. Its host time is recorded as
  /// device_call_latency (the rows are ready later, in stream order), not as lookup latency.
  void lookup(TableRef table, const void* keys, KeyDtype dtype, std::size_t n, float* out,
              const DeviceBuffers& where);

  /// Several tables in one call: table i gets keys[i] (n[i] keys of `dtype`) and writes out[i].
  /// The tables run side by side: on the host over the lookup threads; on a device each on a
  /// stream of its own that starts after the work queued on `where.stream`, which continues only
  /// after all of them (so their host synchronisations overlap instead of adding up).
  void lookup_many(std::size_t count, const TableRef* tables, const void* const* keys, KeyDtype dtype,
                   const std::size_t* n, float* const* out, const DeviceBuffers& where = {});

  /// Stores rows[n][dim] under keys[0..n) in every tier (persistent first); when it returns, no
  /// lookup sees the old rows. Duplicate keys: the last row wins.
  void update(TableRef table, const void* keys, KeyDtype dtype, std::size_t n, const float* rows);

  /// Removes keys from every tier; afterwards they get the default row. Returns how many of them
  /// some tier held.
  std::size_t erase(TableRef table, const void* keys, KeyDtype dtype, std::size_t n);

  /// Removes keys from the table's GPU caches only: the next lookup of each reads it from the host
  /// tiers, which keep it (an update source that finds a shared tier already holds newer rows than
  /// the ones it is catching up on drops its own cached copies instead of writing them).
  void drop_cached(TableRef table, const void* keys, KeyDtype dtype, std::size_t n);

  /// Re-reads the rows of cached keys of the model's GPU caches from the host tiers.
  void refresh(const std::string& model);

  /// Whether GPU caches serve this server's tables (CUDA present and `gpucache` on).
  bool gpu_enabled() const;

  std::vector<TableStats> stats() const;
  std::string prometheus() const;

  /// Takes ownership of `source` and starts it, feeding this server's update() and erase() (see
  /// update_source.hpp for the path a message takes). Throws what source->start() throws (the
  /// source is then dropped). The destructor stops every source before any tier goes away.
  void add_update_source(std::unique_ptr<UpdateSource> source);
  /// Waits until every source has applied what it received so far.
  void drain_update_sources();
  /// Counters of each source, in the order they were added.
  std::vector<UpdateSourceStats> update_source_stats() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace hps
