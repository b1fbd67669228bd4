// Per-table lookup metrics: counters and latency histograms, updated without locks.
//
// Tiers are entries by name (TierStats), not fixed slots: a new tier adds an entry, and the JSON
// and Prometheus output below take it up without edits here or in the bindings.
//
// Latency: `latency_seconds` (Prometheus hps_lookup_latency_seconds) times host lookups, which
// are complete when they return. Device lookups return once their work is queued on the caller's
// stream, so their host time is recorded apart, as device_call_latency_seconds
// (hps_device_call_latency_seconds): what the call cost the calling thread, not the rows' latency.
//
// Ownership: TableStats are plain values; TableMetrics belongs to its table.
//
// Threads: record_* may be called from many threads at once; snapshot() reads a consistent-enough
// view (each counter is exact, counters are not read atomically together).
#pragma once

#include "hps/export.hpp"

#include <array>
#include <atomic>
#include <memory>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "hps/tiers/tier.hpp"  // TierCounter

namespace hps HPS_EXPORT {

/// One tier's share of a table: the GPU cache first ("gpu_cache"), then each host tier role of the
/// chain by its config name ("volatile_db", "persistent_db"), in cascade order.
struct TierStats {
  std::string name;
  std::uint64_t hits = 0;   ///< key positions this tier answered
  std::uint64_t rows = 0;   ///< rows it holds for the table now (0 where the tier is absent)
  std::uint64_t bytes = 0;  ///< memory it holds for the table (device bytes for the GPU cache)
  /// The tier's own event counters (Tier::event_counters(): a Redis Cluster's fall-throughs,
  /// timeouts, redirects...); empty for tiers that count none, or are absent.
  std::vector<TierCounter> counters;
  /// `rows` is the backend's estimate, not a count (RocksDB: off after erases and overwrites).
  bool rows_estimated = false;
};

/// A latency histogram's summary, in seconds (all 0 before the first call).
struct LatencyStats {
  std::uint64_t count = 0;
  double p50 = 0, p90 = 0, p99 = 0, max = 0;
  double sum = 0;
  /// Cumulative histogram: (upper bound in seconds, calls at or below it).
  std::vector<std::pair<double, std::uint64_t>> buckets;
};

struct TableStats {
  std::string model;
  std::string table;
  std::uint64_t lookups = 0;      ///< lookup calls, host and device
  /// Counts are of key positions: a key asked for twice in one call counts twice.
  std::uint64_t keys = 0;  ///< keys asked for
  std::vector<TierStats> tiers;  ///< the GPU cache, then each host tier role, in cascade order
  std::uint64_t defaults = 0;  ///< keys stored nowhere, answered with the table's default row
  std::uint64_t updated_keys = 0;
  std::uint64_t erased_keys = 0;
  std::uint64_t promoted_keys = 0;  ///< rows copied up into a faster tier after a miss
  /// Host lookups (host keys and output): from the call to its return, when the rows are complete.
  LatencyStats latency;
  /// Device lookups: the host time of the call (enqueueing the GPU work and resolving misses on the
  /// host), NOT until the rows are ready; those are ready later, in the caller's stream order.
  /// Measuring that would take a host synchronisation (or a host callback) per call, which the
  /// lookup path must not pay, so device calls get their own, honestly named, histogram.
  LatencyStats device_call_latency;
};

/// Log-linear histogram of durations: 8 sub-buckets per power of two from 1 µs to about 1 h.
class LatencyHistogram {
 public:
  static constexpr int kSubBuckets = 8;
  static constexpr int kOctaves = 32;
  static constexpr int kBuckets = kSubBuckets * kOctaves + 1;

  void record(double seconds);
  std::uint64_t count() const;
  double sum() const;
  double max() const;
  /// Upper bound of the bucket holding quantile q (0..1).
  double quantile(double q) const;
  /// (upper bound, cumulative count) for a fixed, coarse set of Prometheus bucket bounds.
  std::vector<std::pair<double, std::uint64_t>> cumulative(const std::vector<double>& bounds) const;

 private:
  static int bucket_of(double seconds);
  static double upper_bound(int bucket);

  std::array<std::atomic<std::uint64_t>, kBuckets> counts_{};
  std::atomic<std::uint64_t> sum_ns_{0};
  std::atomic<std::uint64_t> max_ns_{0};
};

struct TableMetrics {
  /// `tier_names` name the tiers whose hits are counted, in the order of TableStats::tiers.
  explicit TableMetrics(std::vector<std::string> tier_names);
  TableMetrics(const TableMetrics&) = delete;
  TableMetrics& operator=(const TableMetrics&) = delete;

  const std::vector<std::string>& tier_names() const { return tier_names_; }
  /// The hit counter of tier `index` (an index into tier_names()).
  std::atomic<std::uint64_t>& hits(std::size_t index) { return hits_[index]; }

  std::atomic<std::uint64_t> lookups{0};
  std::atomic<std::uint64_t> keys{0};
  std::atomic<std::uint64_t> defaults{0};
  std::atomic<std::uint64_t> updated_keys{0};
  std::atomic<std::uint64_t> erased_keys{0};
  std::atomic<std::uint64_t> promoted_keys{0};
  LatencyHistogram latency;              ///< host lookups, until the rows are complete
  LatencyHistogram device_call_latency;  ///< device lookups, the host time of the call (see TableStats)

  /// Fills the counter and latency fields of `out` and its `tiers` (names and hits; not rows or
  /// bytes, which the tiers themselves know).
  void snapshot(TableStats& out) const;

 private:
  std::vector<std::string> tier_names_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> hits_;
};

/// Prometheus text exposition (version 0.0.4) of the given tables. Each tier counter `name`
/// (TierStats::counters) is a family hps_tier_<name>_total labelled model, table and tier.
std::string to_prometheus(const std::vector<TableStats>& stats);

/// The given tables as a JSON array of objects, one per table: the shape hps.HPS.stats() returns
/// and the C ABI's hps_stats_json() gives (model, table, lookups, keys, hits{tier: n}, defaults,
/// updated_keys, erased_keys, promoted_keys, latency_seconds{p50, p90, p99, max, sum} of host
/// lookups, tier_rows{tier: n}, tier_bytes{tier: n}, device_call_latency_seconds{p50, p90, p99,
/// max, sum, count} of device lookups). Tiers appear in the order of TableStats::tiers.
std::string to_json(const std::vector<TableStats>& stats);

}  // namespace hps
