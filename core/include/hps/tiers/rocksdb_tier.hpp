// The persistent tier (HugeCTR's `persistent_db`): RocksDB, one column family per table.
//
// RocksDbStore owns one database (one folder). Each table is a column family named by its tag
// ("hps_et.<model>.<table>", as HugeCTR); rows are stored under the key's 8 bytes (big-endian with
// the sign bit flipped, so RocksDB's order is numeric order) as raw little-endian fp32 values.
// Writes go through the write-ahead log, so a write that returned survives the process being
// killed. A store opened read-only writes nothing, ever: every write call throws.
//
// The store also remembers, per table, which table files it was loaded from (a column family of
// its own, "hps_meta"), so a restart does not overwrite rows that update() changed since.
//
// Threads: every method may be called concurrently. Ownership: tables returned by open_table()
// keep the store alive.
#pragma once

#include "hps/export.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "hps/config.hpp"
#include "hps/tiers/tier.hpp"

namespace hps HPS_EXPORT {

class RocksDbTable;

/// True when this build has the RocksDB tier.
bool rocksdb_available();

class RocksDbStore : public std::enable_shared_from_this<RocksDbStore> {
 public:
  /// Opens (creating unless read-only) the database at config.path.
  /// Throws BackendUnavailable when built without RocksDB, IOError when it cannot be opened.
  static std::shared_ptr<RocksDbStore> open(const PersistentDbConfig& config);
  virtual ~RocksDbStore() = default;

  virtual const std::string& path() const = 0;
  virtual bool read_only() const = 0;
  /// Tags of the tables the database holds.
  virtual std::vector<std::string> tables() const = 0;
  virtual bool has_table(const std::string& tag) const = 0;
  /// The table's tier, creating the column family if needed (NotFound in a read-only store).
  virtual std::shared_ptr<Tier> open_table(const std::string& tag, std::size_t dim) = 0;
  /// Drops the table and everything in it (IOError in a read-only store).
  virtual void drop_table(const std::string& tag) = 0;
  /// drop_table for a load: the table's load marker becomes `marker` (a load in progress) in the
  /// same write that would remove it, so a crash at any point leaves the marker saying so.
  virtual void drop_table_for_load(const std::string& tag, const std::string& marker) = 0;

  /// What the table was last loaded from (a signature of its table files), if recorded.
  virtual std::optional<std::string> load_marker(const std::string& tag) const = 0;
  virtual void set_load_marker(const std::string& tag, const std::string& marker) = 0;

  /// Writes rows without the write-ahead log, for bulk loads: call flush() after the last chunk,
  /// then set_load_marker() to record that the load completed.
  virtual void bulk_insert(const std::string& tag, const std::int64_t* keys, const float* rows, std::size_t n) = 0;
  virtual void flush(const std::string& tag) = 0;
};

}  // namespace hps
