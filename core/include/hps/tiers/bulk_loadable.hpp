// The optional bulk-load side of a host tier: a tier that can take a whole table file quickly and
// remember what it was loaded from (RocksDB does; the hash map does not need to, it starts empty).
//
// The server loads such a tier from the table files only when its load marker differs from the
// files' signature, so a restart keeps rows that update() changed since. A tier exposes this
// through Tier::bulk_loader() (null by default), so the server's load code names no backend.
//
// Threads: loading runs on one thread before the tier serves lookups; the methods need not be
// safe against concurrent use. Ownership: the loader belongs to its tier; pointers passed in are
// borrowed for the call.
#pragma once

#include "hps/export.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace HPS_EXPORT hps {

class BulkLoadable {
 public:
  virtual ~BulkLoadable() = default;

  /// What the tier's rows were last completely loaded from (a signature of table files), if any.
  virtual std::optional<std::string> load_marker() const = 0;
  /// Drops every row and the marker, so a bulk load starts from nothing.
  virtual void clear() = 0;
  /// Writes rows as fast as the backend can (RocksDB: without its write-ahead log). Rows written
  /// this way are durable only after finish().
  virtual void bulk_insert(const std::int64_t* keys, const float* rows, std::size_t n) = 0;
  /// Makes the bulk-written rows durable, then records `marker`: a crash before this returns
  /// leaves the tier "not loaded", never "loaded" with rows missing.
  virtual void finish(const std::string& marker) = 0;
};

}  // namespace hps
