// TierFactory: the one place that turns the configuration into each table's chain of host tiers.
//
//   chain = [ volatile_db (hash map or Redis Cluster) , persistent_db (RocksDB) ]
//           fastest first, either may be absent
//
// The server's cascade, loading, updates and metrics walk the chain and read each entry's role
// flags, its bulk loader (Tier::bulk_loader()) and its counters (Tier::event_counters()); they name
// no backend. A new tier is added here only.
// Tiers that share a backend across tables (one RocksDB database, one column family per table)
// share it through the factory, which opens it once.
//
// Threads: build() may be called from one thread at a time (the server builds tables in order).
// Ownership: the factory keeps shared backends alive as long as it or any tier it built lives;
// the config passed in must outlive the factory.
#pragma once

#include "hps/export.hpp"

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "hps/config.hpp"
#include "hps/tiers/tier.hpp"

namespace hps HPS_EXPORT {

class RocksDbStore;

/// One tier of a table's chain and the roles it plays.
struct ChainTier {
  /// The config role the tier fills ("volatile_db", "persistent_db"): its name in metrics.
  std::string name;
  std::shared_ptr<Tier> tier;
  /// Index of `name` in TierFactory::tier_names().
  std::size_t name_index = 0;
  /// The store of record: every row of the table lives here; update() writes it first.
  bool durable = false;
  /// Refuses update() and erase() (a read-only persistent_db): they could not be made durable.
  bool read_only = false;
  /// Rows found in a lower tier are copied into this one (cache_missed_embeddings).
  bool takes_promotions = false;
  /// Probed at every key position, duplicates included (an in-memory tier, where a duplicate costs
  /// no more than a dedup table); otherwise the tier only ever sees distinct keys.
  bool probes_positions = false;
  /// Filled at start with up to `fill_rate` of the table's rows (initial_cache_rate).
  bool fill_at_start = false;
  double fill_rate = 1.0;
  /// Loaded from the table files at start unless it already holds exactly them (a durable tier
  /// with initialize_after_startup; see BulkLoadable for the marker).
  bool load_from_files = false;
  /// The load marker that tiers above this one which keep a marker (a Redis Cluster volatile_db)
  /// record when they are filled from this tier rather than from the table files: for a
  /// persistent_db, "persistent_db <path>". Used when this tier is not loaded from the files
  /// (read-only, or initialize_after_startup false), whose signature is the marker otherwise.
  std::string source_marker;
};

/// Rows a tier filled at start takes of a table of `table_rows` rows: `fill_rate` of them, rounded
/// up, at most the tier's `capacity` (the file's last rows; the server loads by it).
std::size_t fill_rows(std::size_t capacity, double fill_rate, std::size_t table_rows);

class TierFactory {
 public:
  /// Checks that this build has every configured backend and opens the shared ones.
  /// Throws BackendUnavailable, IOError (a database that cannot be opened), ConfigError.
  explicit TierFactory(const Config& config);

  /// Every check the constructor makes, without opening or creating anything: the configured
  /// backends are built in, some tier holds the rows, and the RocksDB path can be opened (its
  /// parent folder exists; read-only: a database is there). Throws BackendUnavailable, ConfigError.
  static void check(const Config& config);
  ~TierFactory();
  TierFactory(const TierFactory&) = delete;
  TierFactory& operator=(const TierFactory&) = delete;

  /// The names of the host tier roles the configuration schema has, in cascade order, whether a
  /// config enables them or not: stats report each one, so their keys do not depend on the config.
  const std::vector<std::string>& tier_names() const { return names_; }

  /// The chain of the table `tag` (rows of `dim` floats), fastest tier first. `where` names the
  /// table in messages. Throws ConfigError when no tier would hold the rows, or when a read-only
  /// persistent_db does not have the table.
  std::vector<ChainTier> build(const std::string& tag, std::size_t dim, const std::string& where) const;

 private:
  const Config& config_;
  std::vector<std::string> names_;
  std::shared_ptr<RocksDbStore> rocksdb_;
};

}  // namespace hps
