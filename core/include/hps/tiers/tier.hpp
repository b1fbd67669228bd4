// The interface every host-side storage tier implements, for one table.
//
// A Tier object holds the rows of one embedding table in one backend (the CPU-memory hash map, a
// RocksDB column family, a Redis Cluster key space). Rows are `dim()` fp32 values; keys are
// canonical int64 keys (see keys.hpp). Every batched call reports a per-key outcome; nothing is
// dropped silently.
//
// Threads: every method may be called from many threads at once.
// Ownership: pointers passed in are borrowed for the duration of the call.
#pragma once

#include "hps/export.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace hps HPS_EXPORT {

class BulkLoadable;

/// One event counter of a tier (faults, redirects, evictions: whatever its backend counts), for
/// the metrics: stats() JSON under tier_counters.<tier>.<name>, Prometheus hps_tier_<name>_total
/// labelled with the tier. `name` is [a-z0-9_]; `help` one sentence for Prometheus' HELP line.
/// A `gauge` is a level that may go down (bytes held), not a count: Prometheus hps_tier_<name>.
struct TierCounter {
  std::string name;
  std::uint64_t value = 0;
  std::string help;
  bool gauge = false;
};

class Tier {
 public:
  virtual ~Tier() = default;

  /// Short name of the backend for messages and metrics ("hash_map", "rocksdb", ...).
  virtual const char* backend_name() const = 0;
  /// Floats per row.
  virtual std::size_t dim() const = 0;

  /// For every i < n: when keys[i] is stored, copies its row to rows[i*dim() ...] and sets
  /// found[i] = 1; otherwise sets found[i] = 0 and leaves that row of `rows` untouched.
  /// A row is copied whole, as it stood before or after any concurrent update, never a mix.
  /// Returns the number of keys found.
  virtual std::size_t find(const std::int64_t* keys, std::size_t n, float* rows, std::uint8_t* found) = 0;

  /// Stores rows[i*dim() ...] under keys[i] for every i < n, replacing what was there. Later
  /// duplicates in one batch win. Once it returns the rows are visible to find().
  virtual void insert(const std::int64_t* keys, const float* rows, std::size_t n) = 0;

  /// Inserts only keys that are not stored yet, and only while `still_valid()` (called under the
  /// tier's own locks) returns true. Used to promote rows read from a lower tier without
  /// overwriting a newer update. Returns the number of rows inserted.
  virtual std::size_t insert_if_absent(const std::int64_t* keys, const float* rows, std::size_t n,
                                       const std::function<bool()>& still_valid) = 0;

  /// Removes the keys; absent keys are ignored. Returns the number of rows removed.
  virtual std::size_t erase(const std::int64_t* keys, std::size_t n) = 0;

  /// Rows stored now (may be an estimate where the backend only keeps one; see each tier).
  virtual std::size_t size() const = 0;
  /// Whether size() is the backend's estimate rather than a count (RocksDB's estimate-num-keys).
  virtual bool size_is_estimate() const { return false; }
  /// Most rows this tier holds before it evicts; SIZE_MAX when unbounded.
  virtual std::size_t capacity() const = 0;
  /// Bytes of host memory this tier holds for the table (0 where it is not in this process).
  virtual std::size_t memory_bytes() const = 0;

  /// Calls fn(keys, rows, n) over every stored row, in chunks of at most `chunk_rows` rows, in an
  /// unspecified order. A snapshot: concurrent updates may or may not be seen.
  virtual void for_each(std::size_t chunk_rows,
                        const std::function<void(const std::int64_t*, const float*, std::size_t)>& fn) = 0;

  /// A hint before a bulk fill of about `rows` rows (a hash map sizes its index once instead of
  /// rehashing as it grows). Does nothing by default.
  virtual void reserve(std::size_t /*rows*/) {}
  /// The tier's bulk-load side (see bulk_loadable.hpp), or null when it has none: the server then
  /// fills it with insert(). Owned by the tier.
  virtual BulkLoadable* bulk_loader() { return nullptr; }
  /// Whether find() serves a whole batch better than the server's chunks of it on several threads
  /// (a network tier whose one call already drives every server at once: splitting only multiplies
  /// its commands and round trips). A lookup whose chain starts with such a tier is not split.
  virtual bool serves_whole_batches() const { return false; }
  /// The tier's event counters since it was created, always the same names in the same order;
  /// none by default. The server's metrics print them under the tier's role name, so a tier that
  /// counts something needs no edits to the metrics code.
  virtual std::vector<TierCounter> event_counters() const { return {}; }
};

}  // namespace hps
