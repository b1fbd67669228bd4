// The Redis Cluster tier (`volatile_db.type: redis_cluster`): one table's rows in a Redis Cluster
// that many hps processes share.
//
// Layout: a table is split into `num_partitions` partitions (a fixed 64-bit mix of the key, modulo
// the count). Partition p is one Redis hash `hps{<slot tag>}<tag>/p<p>v` (field = the key's 8
// bytes, value = the row's raw fp32 bytes); the hash tag puts the whole partition on one slot, so
// one HMGET or HSET serves many keys, and spreads the table's partitions evenly over the slots
// (src/tiers/redis/partition_layout.hpp). Where eviction needs it (evict_oldest, evict_least_used,
// with a finite overflow_margin) a sorted set `...t` on the same slot holds each row's access time
// or count. `hps{<tag>}m` is the table's load marker; it records the partition count and layout
// the table was written with, and a table already stored is read under those, whatever this
// server's num_partitions (which applies when the table is written anew). A table never loaded
// (a cache filled by promotions) gets a marker holding only the layout of the first server to use
// it, so every server reads it under one layout (load_marker() still answers none).
//
// Faults: a lookup never returns a wrong row and never waits past `operation_timeout_ms`: keys whose
// node failed or timed out are reported not found (they fall through) and counted. Writes retry
// through redirects and failovers until the timeout, then throw IOError; nothing is dropped
// silently. The tier reconnects and refreshes its slot map by itself on later calls.
//
// Ownership: the tier owns its cluster client (connections are shared by every table of this
// process that uses the same cluster and credentials). Threads: every method may be called from
// many threads at once, except that one load (begin_load .. end_load) runs on one thread, and no
// other call may run while begin_load does (it may switch the table to another layout: the server
// calls it while building the table, before the table serves).
//
// The server builds it through the tier factory (tier_factory.hpp) as the chain's volatile_db;
// its counters reach stats() and prometheus() through Tier::event_counters().
#pragma once

#include "hps/export.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "hps/config.hpp"
#include "hps/tiers/bulk_loadable.hpp"
#include "hps/tiers/tier.hpp"

namespace hps HPS_EXPORT {

/// Fault and protocol events of one Redis Cluster tier, since it was created. The connection
/// counters (redirects, reconnects, refreshes, timeouts, node errors) belong to the cluster client,
/// which tables of one process share, so they count that client's events.
struct RedisClusterCounters {
  std::uint64_t fallthrough_keys = 0;   ///< lookup keys reported missing because their node failed
  std::uint64_t failed_writes = 0;      ///< write calls that threw because Redis could not take them
  std::uint64_t evicted_rows = 0;       ///< rows removed by overflow resolution
  std::uint64_t bad_rows = 0;           ///< stored values of the wrong size (reported missing)
  std::uint64_t timeouts = 0;           ///< operations that ran past operation_timeout_ms
  std::uint64_t node_errors = 0;        ///< connection failures and error replies from nodes
  std::uint64_t moved_redirects = 0;    ///< MOVED replies (each triggers a slot map refresh)
  std::uint64_t ask_redirects = 0;      ///< ASK replies (followed with ASKING)
  std::uint64_t reconnects = 0;         ///< connections opened after a connection was lost
  std::uint64_t slot_map_refreshes = 0; ///< CLUSTER SLOTS reads
  /// Lookup keys a node answered as not stored (misses that are not fall-throughs). After a
  /// failover, keys the new master never received count here: Redis replicates asynchronously.
  std::uint64_t absent_keys = 0;
};

/// A Redis Cluster table is also its own bulk loader (BulkLoadable): the server loads it through
/// the chain's load path, with the table's load marker (`hps{<tag>}m`) and a load lock
/// (`hps{<tag>}l`) that servers sharing the cluster honour, so they load a table once.
class RedisClusterTier : public Tier, public BulkLoadable {
 public:
  BulkLoadable* bulk_loader() override { return this; }
  /// The partition of `key` among `partitions`: a fixed 64-bit mix (splitmix64's finalizer) modulo
  /// the count, so every process and every version of hps agrees where a key lives (changing it
  /// would orphan stored rows).
  static std::size_t partition_of(std::int64_t key, std::size_t partitions);
  /// One lookup call pipelines every node from one poll loop; split over threads it sent each node
  /// a command per partition per chunk (benchmarks/RESULTS.md: 1.6x the wall time at 2,048 keys).
  bool serves_whole_batches() const override { return true; }
  /// counters() as name/value pairs, for the server's per-tier metrics (hps_tier_<name>_total).
  std::vector<TierCounter> event_counters() const override;

  // BulkLoadable: load_marker() (the marker recorded by the last completed load, if any),
  // clear() (every row of this table, its eviction metadata and its load marker), bulk_insert()
  // (insert(), which extends the load lock while this tier holds it), begin_load(), finish().
  /// Starts loading the table from a source whose signature is `marker`, for servers that share
  /// the cluster: returns false when the table already holds exactly that (nothing to load).
  /// Otherwise takes the table's load lock (waiting while another server loads it, then checking
  /// the marker again), clears the table (under the layout it was stored with), switches to this
  /// server's num_partitions and the newest layout, and returns true; the caller fills it and calls
  /// end_load() (= finish()). The lock expires 60 s after the last write of the load, so a crashed
  /// loader never blocks the others for long; destroying the tier mid-load releases it at once.
  bool begin_load(const std::string& marker) override = 0;
  /// Records `marker` and releases the load lock.
  virtual void end_load(const std::string& marker) = 0;
  void finish(const std::string& marker) override { end_load(marker); }
  void bulk_insert(const std::int64_t* keys, const float* rows, std::size_t n) override { insert(keys, rows, n); }

  virtual void set_load_marker(const std::string& marker) = 0;
  virtual RedisClusterCounters counters() const = 0;
  /// The table tag this tier stores ("hps_et.<model>.<table>").
  virtual const std::string& tag() const = 0;
};

/// True when this build has the Redis Cluster tier (hiredis was found).
bool redis_available();

/// Connects to the cluster named by config.address (any reachable seed) and returns the tier of
/// table `table_tag`. Throws BackendUnavailable when the build has no Redis support, no seed can
/// be reached, the server is not in cluster mode or AUTH fails; ConfigError for settings this tier
/// cannot honour (TLS: hiredis 0.14 has none). `evict_on_overflow` false: the cluster holds the
/// table's only copy (no tier below it), so a write that would take a partition past
/// overflow_margin is refused with NoRoom instead of evicting rows stored nowhere else.
std::shared_ptr<RedisClusterTier> make_redis_cluster_tier(const VolatileDbConfig& config, const std::string& table_tag,
                                                          std::size_t dim, bool evict_on_overflow = true);

}  // namespace hps
