// The CPU-memory tier (HugeCTR's `volatile_db` hash map) for one table.
//
// Layout: keys hash to one of `num_partitions` partitions. A partition is an open-addressing index
// of 8-byte slots (32-bit fingerprint, 32-bit record number) over a value arena: fixed-size
// records {header, key, access metadata, row} in pages of about `allocation_rate` bytes
// (layout: record_hooks.hpp). Pages are never moved, so the arena grows without copying and memory
// stays near the raw key and row bytes (about 1.3x at D=16). Erased records go to a free list and
// are reused.
//
// GPU visibility (optional, installed by the server's GPU layer): a HostMemoryRegistrar
// page-locks the arena as it grows, and RecordListeners hear which record holds which key, so a
// GPU can read rows straight from the arena without any lock (the header's checksum tells it
// whether what it read is whole). Without them the tier behaves as before.
//
// Threads: one reader-writer lock per partition; lookups of a batch take each partition's shared
// lock once (keys are grouped by partition first), writers take it exclusively. Nothing is shared
// between tables, so a write to one table never waits on another.
//
// Overflow: a partition never holds more than `overflow_margin` rows. An insert that would exceed
// it first evicts down to round(overflow_margin * overflow_resolution_target) rows, choosing
// victims by `overflow_policy` (random, least used, oldest) with a linear-time selection.
#pragma once

#include "hps/export.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include <shared_mutex>

#include "hps/config.hpp"
#include "hps/tiers/record_hooks.hpp"
#include "hps/tiers/tier.hpp"

namespace hps HPS_EXPORT {

struct HashMapOptions {
  std::size_t num_partitions = 16;
  std::size_t allocation_rate = std::size_t{256} << 20;
  std::size_t overflow_margin = static_cast<std::size_t>(-1);
  OverflowPolicy overflow_policy = OverflowPolicy::kEvictRandom;
  double overflow_resolution_target = 0.8;
  /// False where the tier holds the only copy of its rows (no tier below it): a write that would
  /// take a partition past overflow_margin is then refused whole (OutOfMemory, nothing written)
  /// instead of evicting rows stored nowhere else.
  bool evict_on_overflow = true;

  static HashMapOptions from_config(const VolatileDbConfig& config);
  /// Most rows the tier holds: overflow_margin per partition (saturating).
  std::size_t capacity() const;
  /// The partition of `key` among `partitions` (keys spread by hash, not evenly).
  static std::size_t partition_of(std::int64_t key, std::size_t partitions);

  /// Bytes of one record of a `dim`-value row (record_hooks.hpp): header 8, key 8, access
  /// metadata 8 (evict_least_used / evict_oldest only), the fp32 row, rounded up to 8.
  std::size_t record_bytes(std::size_t dim) const;
  /// Rows HashMapTier::reserve(rows) sizes each partition's index for: an even share plus 5% and
  /// 16, at most overflow_margin.
  std::size_t reserved_per_partition(std::size_t rows) const;
  /// Index slots (8 bytes each) of a partition reserved for `reserved` rows (0: never reserved)
  /// once it holds `held` rows without erasures: the index starts at 16 slots, or reserved / 0.8
  /// + 1, and doubles whenever a row would take it past load 0.8.
  static std::size_t index_slots(std::size_t reserved, std::size_t held);
};

/// What a hash map tier takes once loaded, as HashMapTier::memory_bytes() counts it, less the
/// small bookkeeping (free list, page table, the tier object).
struct HashMapFootprint {
  std::size_t rows = 0;           ///< rows held, all partitions
  std::size_t record_bytes = 0;   ///< bytes per record
  std::size_t records_bytes = 0;  ///< rows x record_bytes
  std::size_t index_slots = 0;    ///< all partitions
  std::size_t index_bytes = 0;    ///< index_slots x 8
  std::size_t total() const { return records_bytes + index_bytes; }
};

/// The footprint of a tier of `options` for `dim`-value rows after reserve(`reserved`) (0: no
/// reserve) when partition p comes to hold min(keys[p], overflow_margin) rows. `keys` has one
/// count per partition (volatile_keys_per_partition); throws InvalidArgument otherwise.
HashMapFootprint hash_map_footprint(const HashMapOptions& options, std::size_t dim, std::size_t reserved,
                                    const std::vector<std::size_t>& keys);

class HashMapTier final : public Tier {
 public:
  HashMapTier(std::size_t dim, const HashMapOptions& options);
  ~HashMapTier() override;
  HashMapTier(const HashMapTier&) = delete;
  HashMapTier& operator=(const HashMapTier&) = delete;

  const char* backend_name() const override { return "hash_map"; }
  std::size_t dim() const override { return dim_; }
  std::size_t find(const std::int64_t* keys, std::size_t n, float* rows, std::uint8_t* found) override;
  void insert(const std::int64_t* keys, const float* rows, std::size_t n) override;
  std::size_t insert_if_absent(const std::int64_t* keys, const float* rows, std::size_t n,
                               const std::function<bool()>& still_valid) override;
  std::size_t erase(const std::int64_t* keys, std::size_t n) override;
  std::size_t size() const override;
  std::size_t capacity() const override;
  std::size_t memory_bytes() const override;
  void for_each(std::size_t chunk_rows,
                const std::function<void(const std::int64_t*, const float*, std::size_t)>& fn) override;

  /// Sizes the indexes for `rows` rows in all, so a bulk load does not rehash as it grows.
  void reserve(std::size_t rows) override;
  /// Rows evicted so far because a partition overflowed.
  std::size_t evictions() const;

  /// Where header, key and row sit in a record (see record_hooks.hpp).
  RecordLayout record_layout() const;
  /// Registers every stretch of the arena that holds records now, and each new stretch before a
  /// record in it is published; unregisters them all when the tier goes. Once per tier (a second
  /// call throws InvalidArgument).
  void set_host_memory_registrar(std::shared_ptr<HostMemoryRegistrar> registrar);
  /// Reports every record held now to `listener` as added (partition by partition, under each
  /// partition's lock, then flush()), and every later change. The listener must stay alive until
  /// remove_record_listener() returns.
  void add_record_listener(RecordListener* listener);
  void remove_record_listener(RecordListener* listener);

  class Partition;

 private:
  std::size_t dim_;
  HashMapOptions options_;
  std::vector<std::unique_ptr<Partition>> partitions_;
  std::atomic<std::uint32_t> clock_{0};  ///< logical time for evict_oldest, one tick per call
  /// Listeners flushed at the end of every write call (shared: flushing; exclusive: add/remove).
  mutable std::shared_mutex listeners_mutex_;
  std::vector<RecordListener*> listeners_;
  std::atomic<bool> has_listeners_{false};
  std::shared_ptr<HostMemoryRegistrar> registrar_;

  void flush_listeners();
  class ListenerFlush;  ///< flushes the listeners at the end of every write call, also one that throws
};

}  // namespace hps
