// The optional bulk-load side of a host tier: a tier that can take a whole table file quickly and
// remember what it was loaded from (RocksDB does; a Redis Cluster does, shared by many servers;
// the hash map does not need to, it starts empty).
//
// The server loads such a tier only when its load marker differs from the signature of the
// source (the table files, or the tier below it), so a restart keeps rows that update() changed
// since. A load is begin_load(marker) -> bulk_insert()... -> finish(marker). A tier exposes this
// through Tier::bulk_loader() (null by default), so the server's load code names no backend.
//
// Threads: loading runs on one thread of this process before the tier serves its lookups; the
// methods need not be safe against concurrent use within the process, except applied_offsets()
// and record_applied_offsets(), which an update source's thread calls while the tier serves. A
// tier whose rows other processes share (Redis Cluster) makes begin_load..finish exclusive across
// them with a lock (see begin_load). Ownership: the loader belongs to its tier; pointers passed in
// are borrowed.
#pragma once

#include "hps/export.hpp"

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace hps HPS_EXPORT {

class BulkLoadable {
 public:
  virtual ~BulkLoadable() = default;

  /// What the tier's rows were last completely loaded from (a signature of table files), if any.
  virtual std::optional<std::string> load_marker() const = 0;
  /// Drops every row and the marker, so a bulk load starts from nothing.
  virtual void clear() = 0;
  /// Starts a load from a source whose signature is `marker`. Returns false when the tier already
  /// holds exactly that (it is current: nothing to load, and no finish() follows). Otherwise the
  /// tier is left empty (clear()) and true is returned; the caller then bulk_inserts the rows and
  /// calls finish(marker). The default does just that: compare load_marker(), clear().
  /// A tier shared by several servers overrides it to take a load lock across them first
  /// (waiting while another server loads, then comparing the marker again), held until finish()
  /// or until the tier is destroyed (a load that threw), so servers starting together load it once.
  virtual bool begin_load(const std::string& marker) {
    if (load_marker() == marker) return false;
    clear();
    return true;
  }
  /// Writes rows as fast as the backend can (RocksDB: without its write-ahead log). Rows written
  /// this way are durable only after finish().
  virtual void bulk_insert(const std::int64_t* keys, const float* rows, std::size_t n) = 0;
  /// Makes the bulk-written rows durable, then records `marker` (and releases a load lock that
  /// begin_load took): a crash before this returns leaves the tier "not loaded", never "loaded"
  /// with rows missing.
  virtual void finish(const std::string& marker) = 0;

  /// Partition of the table's update topic -> the next offset to read: how far the update sources
  /// of the servers sharing this tier have applied the topic into it since its last load (the
  /// furthest any of them got). A server that finds the tier current at start (begin_load false)
  /// and keeps no store of its own begins there instead of replaying the topic over rows that are
  /// newer, and before each apply leaves out the messages below it (docs/kafka.md). Empty where
  /// nothing was recorded, and for a tier no other server writes (the default). clear() forgets
  /// them with the rows.
  virtual std::map<std::int32_t, std::int64_t> applied_offsets() const { return {}; }
  /// Records that an update source applied the topic's partitions up to (not including) these
  /// offsets; a recorded offset only moves forward. Returns the record as it then stands (what
  /// applied_offsets() would, in the same round trip; empty when the tier no longer holds the load
  /// this server serves). The default keeps nothing.
  virtual std::map<std::int32_t, std::int64_t> record_applied_offsets(
      const std::map<std::int32_t, std::int64_t>& /*next*/) {
    return {};
  }
};

}  // namespace hps
