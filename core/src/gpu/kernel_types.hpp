// Plain structs shared by the host classes and the kernels of the GPU cache: the device views of
// the two table layouts, the description of a key array, a batch of rows to write, and the small
// status block a lookup reads back. No device code here, so host .cpp files can include it.
//
// Ownership: views hold raw device pointers owned by the cache object that built them.
#pragma once

#include <cstddef>
#include <cstdint>

#include "hps/keys.hpp"

namespace hps::cuda {

// ---- keys -------------------------------------------------------------------------------------

/// A caller's key array in device memory, converted per key by read_canonical_key().
struct KeyInput {
  const void* keys = nullptr;
  KeyDtype dtype = KeyDtype::kInt64;
  bool key64 = true;
};

/// True when some value of `dtype` is not a key of the model's width, so a lookup must check.
inline bool keys_can_be_invalid(KeyDtype dtype, bool key64) {
  return dtype == KeyDtype::kUInt64 || (dtype == KeyDtype::kInt64 && !key64);
}

// ---- lookup status ------------------------------------------------------------------------------

/// What a lookup learns on the host after its probe: one 16-byte device-to-host read.
struct LookupStatus {
  unsigned long long miss_count;     ///< key positions the probe could not answer
  unsigned long long first_invalid;  ///< lowest position of an invalid key, or kNoInvalidKey
  unsigned long long left_count;     ///< of the misses, positions the host-tier kernel left to the host
  unsigned long long insert_count;   ///< rows the host-tier kernel staged for insertion (may exceed the room)
};
constexpr unsigned long long kNoInvalidKey = ~0ull;

/// A probe also copies the first kEagerMissKeys missed keys next to its status, so a call with
/// that few misses learns them in the same device-to-host read as the count, with no second
/// round trip (a few uncached keys in an otherwise cached batch).
constexpr std::size_t kEagerMissKeys = 256;
struct StatusBlock {
  LookupStatus status;
  std::int64_t eager_keys[kEagerMissKeys];
};

/// Where a probe kernel reports misses and invalid keys. `next` is the other half of a two-entry
/// status ring: the kernel resets it for the following call, which saves a memset launch.
struct MissSink {
  LookupStatus* status = nullptr;
  LookupStatus* next = nullptr;
  std::int64_t* keys = nullptr;        ///< canonical keys of missed positions (compacted)
  std::uint32_t* positions = nullptr;  ///< their positions in the call's key array
  std::int64_t* eager_keys = nullptr;  ///< optional: the first kEagerMissKeys of `keys` again, beside `status`
};

// ---- dynamic (set-associative) table -------------------------------------------------------------
// Sets of kSlotsPerSet slots. Per slot: a 32-bit meta word (16-bit key digest | 16-bit version), a
// 64-bit tag and a row, each in its own array, and a lock bit per set (12.02 bytes besides the row:
// every byte of overhead is a row that could have been cached). The key's hash is a bijective mix
// (murmur3_fmix64), so a slot stores the hash, not the key: its low 16 bits are the digest in the
// meta word, its high 48 bits share the tag with the 16-bit LRU stamp (tag = hash & ~0xFFFF | stamp),
// and the key is the inverse mix of the hash where it is needed (dump). One load of the tag gives a
// reader both the key check and the stamp. The 8 meta words of a set fill one 32-byte sector, so one
// load per candidate set tells a reader which slot may hold its key and that slot's version.
//
// Two-choice placement: a key may live in either of two sets (candidate_sets() in
// device_primitives.cuh), never in both at once once a writer is done. Readers read both sets'
// meta sectors together; writers lock both sets (lower index first).
//
// Version (low 16 bits of the meta word): bit 0 busy (a writer is changing the slot), bit 1
// occupied, bits 2-15 a counter bumped by every write, so a reader that saw the same meta word
// before and after reading a row knows no writer touched the slot in between.

constexpr int kSlotsPerSet = 8;
constexpr int kCandidateSlots = 2 * kSlotsPerSet;  ///< slots a key may occupy: its two sets
constexpr std::uint32_t kMetaBusy = 1u;
constexpr std::uint32_t kMetaOccupied = 2u;
/// Sets are allocated for capacity / kTargetLoad slots: at this load two-choice placement with
/// one- and two-step relocation stores `capacity` random keys without a single eviction (measured
/// by simulation up to 0.96 and on the GPU: docs/gpu_cache.md).
constexpr double kTargetLoad = 0.96;

/// Device counters of a dynamic cache, updated by writer kernels only.
struct DynamicCounters {
  unsigned long long occupied;    ///< keys held; never above the view's capacity
  unsigned long long relocated;   ///< keys moved to their other set to make room (one per move)
  unsigned long long overflowed;  ///< new keys that evicted below the capacity: both sets full, no move found
  unsigned long long dropped;     ///< new keys not stored: at capacity and both sets empty (tiny caches)
  /// (1 << 32) | the lookup epoch of the latest eviction (a new key replacing another); 0: none yet.
  /// A full cache keeps exact recency only within kRecencyWindow lookups of one (dynamic_probe_kernels.cu).
  unsigned long long last_eviction;
};

struct DynamicTableView {
  std::uint32_t* meta = nullptr;       ///< [num_sets * kSlotsPerSet]
  std::uint64_t* tags = nullptr;       ///< [num_sets * kSlotsPerSet]; hash bits | LRU stamp (slot tags, device_primitives.cuh)
  void* rows = nullptr;                ///< [num_sets * kSlotsPerSet][dim], float or __half
  std::uint32_t* set_locks = nullptr;  ///< [ceil(num_sets / 32)], a bit per set; writer threads only, never readers
  DynamicCounters* counters = nullptr;
  std::uint64_t num_sets = 0;          ///< >= 2, so a key's two sets always differ
  std::uint64_t capacity = 0;          ///< keys held at most (< num_sets * kSlotsPerSet)
  std::uint32_t dim = 0;
};

// ---- static (whole table) index -------------------------------------------------------------------
// Open addressing over buckets of 2 entries (one 32-byte sector), linear probing, no relocation.
// An entry is {key, row id, seq}; rows live in a separate arena indexed by row id.
// seq: bit 0 busy, bits 1-2 state (empty / occupied / erased), bits 3-31 a write counter.

constexpr int kEntriesPerBucket = 2;
constexpr std::uint32_t kSeqBusy = 1u;
constexpr std::uint32_t kStateEmpty = 0u;
constexpr std::uint32_t kStateOccupied = 1u;
constexpr std::uint32_t kStateErased = 2u;

struct alignas(16) IndexEntry {
  std::int64_t key;
  std::uint32_t row;
  std::uint32_t seq;
};
static_assert(sizeof(IndexEntry) == 16);

struct StaticCounters {
  unsigned int free_top;     ///< number of free row ids on the free stack
  unsigned int absent;       ///< scratch counter of the capacity pre-check
  unsigned long long defaults_served;  ///< key positions the lookup kernel answered with the default row
};

struct StaticTableView {
  IndexEntry* entries = nullptr;     ///< [num_buckets * kEntriesPerBucket]
  void* rows = nullptr;              ///< [capacity][dim], float or __half
  std::uint32_t* free_rows = nullptr;  ///< stack of free row ids
  StaticCounters* counters = nullptr;
  std::uint64_t num_buckets = 0;
  std::uint32_t capacity = 0;
  std::uint32_t dim = 0;
};

// ---- host-tier index (the GPU-visible CPU-memory tier) -----------------------------------------
// Open addressing (linear probing) over 16-byte entries {key, record address} in HBM, mapping the
// keys of the hash-map tier to their records in page-locked, mapped host memory (host_tier_index.hpp).
// `record` values below kTierFirstAddress are states: empty (ends a probe), claimed (an adder is
// writing the entry), tombstone (removed; probes go on, adders may reuse it).
// Invariant: no slot between a live entry's home and the entry is empty. Adders keep it (they take
// the first tombstone or empty slot from the home), removals keep it (they leave tombstones), and
// so does the sweep, which empties only the tombstones that no live entry's probe passes.

constexpr std::uint64_t kTierEmpty = 0;
constexpr std::uint64_t kTierClaimed = 1;
constexpr std::uint64_t kTierTombstone = 2;
constexpr std::uint64_t kTierFirstAddress = 8;

struct alignas(16) TierEntry {
  std::int64_t key;
  std::uint64_t record;
};
static_assert(sizeof(TierEntry) == 16);

/// Device counters of a host-tier index.
struct TierCounters {
  unsigned long long rows_served;      ///< positions answered with a row read from the host tier
  unsigned long long defaults_served;  ///< positions answered with the default row (key in no tier)
  unsigned long long gave_up;          ///< positions whose record never read whole (left, or default without a host path)
  unsigned long long failed_adds;      ///< index entries that found no room (the index is then incomplete)
  unsigned long long swept;            ///< tombstones the sweeps emptied
  /// Blocks of miss kernels reading the index now. A flush that reads 0 after publishing a
  /// generation frees the older ones: every lookup that starts later reads the new one.
  unsigned long long readers;
};

/// One generation of the index: its entries and their number. The index grows by building a larger
/// generation beside the current one and publishing it (host_tier_index.hpp); a generation's
/// descriptor (in HBM) never changes once published, and an older generation is freed once no
/// lookup reads it (TierCounters::readers).
struct alignas(16) TierTable {
  TierEntry* entries = nullptr;
  std::uint64_t slots = 0;
};

struct HostTierView {
  /// A device word holding the address of the current generation's TierTable (in HBM). The miss
  /// kernel reads it when it runs, so a lookup captured in a CUDA graph before the index grew
  /// reads the grown one when replayed.
  const TierTable* const* current = nullptr;
  TierCounters* counters = nullptr;
  std::uint32_t record_bytes = 0;  ///< records start at page starts plus multiples of it (row alignment)
  std::uint32_t row_offset = 16;
  std::uint32_t dim = 0;
  float default_value = 0;
};

/// One lookup's inputs and outputs of the host-tier kernel (device memory of the lookup).
struct TierSink {
  LookupStatus* status = nullptr;            ///< reads miss_count; adds to left_count, insert_count
  const std::int64_t* miss_keys = nullptr;   ///< the probe's misses
  const std::uint32_t* miss_positions = nullptr;
  std::int64_t* left_keys = nullptr;         ///< misses left to the host path (compacted)
  std::uint32_t* left_positions = nullptr;
  std::int64_t* eager_keys = nullptr;        ///< the first kEagerMissKeys left keys again, beside `status`
  std::int64_t* insert_keys = nullptr;       ///< rows found, staged for insertion into the cache
  float* insert_rows = nullptr;
  std::uint64_t insert_room = 0;             ///< rows insert_keys/insert_rows hold (0: no insertion)
  /// true: a key absent from the index is in no tier (the hash map is the last tier and the index
  /// is complete), so it gets the default row, and a record that never reads stable too (there is
  /// no host path to leave it to). false: both are left to the host path.
  bool absent_is_default = false;
};

// ---- writes -------------------------------------------------------------------------------------

enum class WriteKind : int {
  kInsert,   ///< dynamic: insert or overwrite, evicting LRU-like; static: upsert
  kUpdate,   ///< dynamic: overwrite keys present; static: upsert
  kErase,    ///< remove keys present
  kRefresh,  ///< found[i] ? overwrite if present : remove if present
};

/// Keys and fp32 rows staged on the device for a writer kernel. Entry i writes keys[i] with row
/// rows[(row_index ? row_index[i] : i) * dim]; only i < *count (or n when count is null) are read;
/// found (optional) masks entries for kInsert and chooses the action for kRefresh.
struct WriteBatch {
  const std::int64_t* keys = nullptr;
  const std::uint32_t* row_index = nullptr;
  const float* rows = nullptr;
  const std::uint8_t* found = nullptr;
  const unsigned long long* count = nullptr;
  std::uint64_t n = 0;
};

/// How a lookup kernel is shaped: lanes per key, row chunks per lane held in registers, keys per
/// lane group in flight per iteration. 0 = pick automatically from the row size.
struct ProbeShape {
  int lanes_per_key = 0;
  int chunks_per_lane = 0;
  int keys_per_group = 0;
  /// Order the seqlock's reads with fences (the PTX memory model's own tool) instead of address
  /// dependencies (see docs/gpu_cache.md). Measured by the benchmark; slower.
  bool strict_fences = false;
};

}  // namespace hps::cuda
