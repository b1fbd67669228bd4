// The GPU embedding cache of one table on one device, and the GPU half of the lookup path.
//
// Two kinds (config `embedding_cache_type`):
//  - dynamic: capacity = gpucacheper x table rows, set-associative, LRU-like replacement inside a
//    set. Readers never take a lock: a slot is guarded by a version word (seqlock), and a read
//    that races a writer on that slot is treated as a miss, so it is answered from the host tiers.
//  - static: the whole table on the device behind a GPU hash index, filled at start; a key it does
//    not hold is unknown everywhere and gets the table's default row without leaving the device.
// No key value is reserved (INT64_MAX, -1 and 0 are ordinary keys). Rows may be stored as fp16
// (CacheDtype::kFloat16); lookups always return fp32.
//
// One lookup: probe every key position (no dedup needed on the hit path: a duplicate reads the
// same row); hits are written to the output on the device; the misses are deduplicated on the
// device, copied to the host in one copy through pinned memory, resolved there by the caller's
// MissResolver (the host tiers), copied back in one copy and scattered. Keys the resolver really
// found are inserted into the cache: before lookup() returns when the call's hit rate is below
// `hit_rate_threshold`, later on the cache's own stream otherwise. The rows returned are the same
// either way. The only host synchronisation on the all-hit path is learning that nothing missed.
//
// Threads: lookups on many threads and streams at once are safe, also while update(), erase(),
// insert() or refresh() run. Ownership: pointers are borrowed for the call; the caller's stream
// is used for the caller's work and never synchronised except where documented.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "hps/config.hpp"
#include "hps/export.hpp"
#include "hps/keys.hpp"
#include "hps/stream.hpp"

namespace hps HPS_EXPORT {

/// Number of CUDA devices usable here (0 in builds without CUDA or on machines without a GPU).
int cuda_device_count();

/// Total memory of CUDA device `device`, in bytes (what `hps validate` sets a memory plan
/// against). Throws InvalidArgument for a device that does not exist (always, without CUDA).
std::size_t cuda_device_memory_bytes(int device);

class HashMapTier;

/// Page-locks and maps `tier`'s record arena for every device (cudaHostRegister, portable and
/// mapped), now and as it grows, so GPU caches can read its rows over PCIe (attach_host_tier).
/// Once per tier. Throws BackendUnavailable without CUDA.
void make_gpu_visible(HashMapTier& tier);

/// A GPU-visible CPU-memory tier for a dynamic cache to answer its misses from on the device.
struct HostTierLink {
  std::shared_ptr<HashMapTier> tier;  ///< made GPU-visible first
  /// No tier below it: a key it lacks is in no tier, so the device answers it with the default
  /// row, and a lookup whose keys cannot be invalid never synchronises the host.
  bool last_tier = false;
  double hbm_share = 0.1;  ///< most of the device's memory the index may take
};

struct GpuCacheOptions {
  int device = 0;
  std::size_t dim = 0;
  /// Rows the cache holds at most (dynamic), or rows of the whole table (static).
  std::size_t capacity = 0;
  bool is_static = false;
  CacheDtype dtype = CacheDtype::kFloat32;
  float default_value = 0.0f;
  double hit_rate_threshold = 0.9;
};

/// Resolves keys the cache missed, on the host: fills rows[n][dim] for every key (the table's
/// default row where no tier holds it) and sets found[i] = 1 only where a tier really held keys[i].
/// Keys are unique and canonical.
using MissResolver = std::function<void(const std::int64_t* keys, std::size_t n, float* rows, std::uint8_t* found)>;

/// Called under the cache's writer lock right before rows fetched by a lookup are inserted; false
/// (a concurrent update or erase of this table began after the fetch) skips the insertion.
using InsertGuard = std::function<bool()>;

struct GpuLookupResult {
  std::size_t hits = 0;           ///< key positions answered by the cache (static: all, defaults included)
  std::size_t missed_unique = 0;  ///< distinct keys sent to the resolver
  std::size_t missed_positions = 0;
  std::size_t inserted = 0;  ///< rows queued for insertion into the cache
  /// Dynamic cache with a host tier attached: whether the call returned without waiting for the
  /// device (every position answered there: hits count them all, the split is in the counters).
  bool no_host_wait = false;
};

class GpuCache {
 public:
  /// Throws BackendUnavailable without CUDA, InvalidArgument for a bad device or options,
  /// OutOfMemory when the device cannot hold the cache.
  static std::unique_ptr<GpuCache> create(const GpuCacheOptions& options);
  virtual ~GpuCache() = default;

  virtual const GpuCacheOptions& options() const = 0;

  /// keys: n keys of `dtype` in device memory on options().device; out: n x dim fp32 there.
  /// `key64` is the model's key width (see keys.hpp); invalid keys throw InvalidArgument.
  /// `stream` is a stream of that device, given explicitly (an unset view throws InvalidArgument).
  /// Returns once `out` is complete in stream order.
  /// May be captured in a CUDA graph (cudaStreamBeginCapture on `stream`) when a host tier is
  /// attached as the last tier and the keys cannot be invalid (int32/uint32, or int64 of a 64-bit
  /// model); anything else throws InvalidArgument during capture. Captured lookups do not insert
  /// into the cache; their buffers live as long as the cache.
  virtual GpuLookupResult lookup(const void* keys, KeyDtype dtype, bool key64, std::size_t n, float* out,
                                 StreamView stream, const MissResolver& resolve, const InsertGuard& guard) = 0;

  /// Inserts rows (host memory) into the cache, evicting as needed (dynamic) — warm start and
  /// static fill. Synchronous.
  virtual void insert(const std::int64_t* keys, const float* rows, std::size_t n) = 0;
  /// Overwrites rows of keys the cache holds (a static cache also adds new keys). Synchronous:
  /// when it returns, no lookup started afterwards sees the old rows.
  virtual void update(const std::int64_t* keys, const float* rows, std::size_t n) = 0;
  /// Removes keys from the cache (a static cache answers them with the default afterwards).
  virtual void erase(const std::int64_t* keys, std::size_t n) = 0;
  /// Re-reads every cached key's row through `resolve`, `window` of the sets at a time (0 < window
  /// <= 1); keys the resolver no longer finds are removed, not overwritten with defaults.
  virtual void refresh(double window, const MissResolver& resolve) = 0;

  /// Waits until insertions queued by earlier lookups are done.
  virtual void drain() = 0;

  virtual std::size_t size() const = 0;
  virtual std::size_t capacity() const = 0;
  virtual std::size_t memory_bytes() const = 0;  ///< device bytes
  /// Device bytes of the table alone (slots or index, and rows), without per-call scratch,
  /// staging or the host-tier index: what caching `capacity()` rows costs.
  virtual std::size_t table_bytes() const = 0;

  /// Key positions answered with the table's default row on the device since creation (static
  /// cache: keys the table does not hold; GpuLookupResult::hits counts them too, since a static
  /// lookup never waits to learn how many there were). Reads a device counter, synchronising only
  /// a private stream: lookups still running on other streams may not be counted yet. Meant for
  /// stats, not the lookup path. The dynamic cache counts the defaults it served from an attached
  /// host tier (attach_host_tier); the others come from the MissResolver (the host tiers), which
  /// counts them.
  virtual std::size_t defaults_served() = 0;

  /// Dynamic cache: answer misses from a GPU-visible CPU-memory tier on the device, without the
  /// host (docs/gpu_cache.md, "Misses served from the CPU-memory tier"). false, with the reason
  /// in *why_not, where it cannot (no room for the index, a device that cannot read host
  /// pointers, a static cache); misses then go through the MissResolver as before.
  virtual bool attach_host_tier(const HostTierLink& link, std::string* why_not) {
    *why_not = "only a dynamic GPU cache reads the CPU-memory tier on the device";
    (void)link;
    return false;
  }
  /// Key positions the device answered with a row read from the attached host tier (a private
  /// stream is synchronised, as for defaults_served()). 0 without one.
  virtual std::size_t host_tier_rows_served() { return 0; }
  /// Device bytes of the attached host tier's index (0 without one).
  virtual std::size_t host_tier_index_bytes() const { return 0; }
};

}  // namespace hps
