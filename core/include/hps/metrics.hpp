// Per-table lookup metrics: counters and a latency histogram, updated without locks.
//
// Threads: record_* may be called from many threads at once; snapshot() reads a consistent-enough
// view (each counter is exact, counters are not read atomically together).
#pragma once

#include "hps/export.hpp"

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace HPS_EXPORT hps {

/// The tiers a key can be answered from, in cascade order.
enum class TierLevel : int { kGpuCache = 0, kVolatile = 1, kPersistent = 2 };
constexpr int kNumTierLevels = 3;
const char* to_string(TierLevel level);

struct TableStats {
  std::string model;
  std::string table;
  std::uint64_t lookups = 0;      ///< lookup calls
  /// Counts are of key positions: a key asked for twice in one call counts twice.
  std::uint64_t keys = 0;  ///< keys asked for
  std::array<std::uint64_t, kNumTierLevels> hits{};  ///< keys answered by each tier
  std::uint64_t defaults = 0;  ///< keys stored nowhere, answered with the table's default row
  std::uint64_t updated_keys = 0;
  std::uint64_t erased_keys = 0;
  std::uint64_t promoted_keys = 0;  ///< rows copied up into a faster tier after a miss
  /// Lookup latency in seconds: p50, p90, p99, max (0 when no lookup ran).
  double latency_p50 = 0, latency_p90 = 0, latency_p99 = 0, latency_max = 0;
  double latency_sum = 0;  ///< seconds, over all lookups
  /// Cumulative histogram: (upper bound in seconds, lookups at or below it).
  std::vector<std::pair<double, std::uint64_t>> latency_buckets;
  /// Rows and host bytes each tier holds for this table now (0 where a tier is absent).
  std::array<std::uint64_t, kNumTierLevels> tier_rows{};
  std::array<std::uint64_t, kNumTierLevels> tier_bytes{};
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
  std::atomic<std::uint64_t> lookups{0};
  std::atomic<std::uint64_t> keys{0};
  std::array<std::atomic<std::uint64_t>, kNumTierLevels> hits{};
  std::atomic<std::uint64_t> defaults{0};
  std::atomic<std::uint64_t> updated_keys{0};
  std::atomic<std::uint64_t> erased_keys{0};
  std::atomic<std::uint64_t> promoted_keys{0};
  LatencyHistogram latency;

  /// Fills the counter and latency fields of `out` (not model, table or tier sizes).
  void snapshot(TableStats& out) const;
};

/// Prometheus text exposition (version 0.0.4) of the given tables.
std::string to_prometheus(const std::vector<TableStats>& stats);

/// The given tables as a JSON array of objects, one per table: the shape hps.HPS.stats() returns
/// and the C ABI's hps_stats_json() gives (model, table, lookups, keys, hits{tier: n}, defaults,
/// updated_keys, erased_keys, promoted_keys, latency_seconds{p50, p90, p99, max, sum},
/// tier_rows{tier: n}, tier_bytes{tier: n}).
std::string to_json(const std::vector<TableStats>& stats);

}  // namespace hps
