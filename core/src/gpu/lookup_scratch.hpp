// Per-call working memory of lookups, and the pool that hands it out.
//
// A lookup leases one LookupScratch for its whole duration, so concurrent lookups (any threads,
// any streams) never share buffers. Buffers are sized by the call and grow geometrically; they
// are reused by later calls. The pool prefers a scratch last used on the caller's stream whose
// insertion has landed, and makes another (up to kScratchesBeforeWaiting in all) rather than have a
// call wait on the device for the insertion of the call before it: the insertion runs on the
// writer stream once the call's rows are ready, so back-to-back calls would queue behind it.
//
// Reuse across streams and with the writer stream is ordered by events, never by host waits:
//  - `done` is recorded on the caller's stream at the end of a miss path (its last device work);
//    a later call on another stream makes its stream wait for it.
//  - `insert_done` is recorded on the cache's writer stream after an insertion that reads this
//    scratch's unique keys and rows; the next call's stream waits for it before reusing them.
// Pinned host buffers are only rewritten after the caller's stream has been synchronised past
// every copy that used them (see DynamicGpuCache::lookup).
//
// Ownership: the pool owns every scratch; a Lease borrows one and gives it back when destroyed.
#pragma once

#include <cuda_runtime_api.h>

#include <memory>
#include <mutex>
#include <vector>

#include "gpu/cuda_check.hpp"
#include "gpu/kernel_types.hpp"

namespace hps::cuda {

struct LookupScratch {
  explicit LookupScratch(cudaStream_t stream);

  cudaStream_t stream = nullptr;  ///< the stream of the last call that used it
  Event done;
  Event insert_done;
  bool done_pending = false;
  bool insert_pending = false;

  StreamBuffer status;  ///< StatusBlock[2], a ring: each probe resets the status of the next call
  unsigned parity = 0;
  PinnedBuffer status_host;  ///< one StatusBlock

  StreamBuffer miss_keys;         ///< int64[n]
  StreamBuffer miss_positions;    ///< uint32[n]
  StreamBuffer sorted_keys;       ///< int64[m]
  StreamBuffer sorted_positions;  ///< uint32[m]
  StreamBuffer head_flags;        ///< uint32[m]
  StreamBuffer unique_ids;        ///< uint32[m]
  StreamBuffer unique;            ///< [count: u64][keys: int64 x m]
  StreamBuffer rows;              ///< [rows: float x u x dim][found: u8 x u]
  StreamBuffer temp;              ///< CUB temporary storage
  StreamBuffer left_keys;         ///< int64[n]: misses the host-tier kernel left to the host
  StreamBuffer left_positions;    ///< uint32[n]
  StreamBuffer insert_keys;       ///< int64[room]: rows the host-tier kernel found, for insertion
  StreamBuffer insert_rows;       ///< float[room x dim]
  PinnedBuffer unique_host;       ///< [count][keys]
  PinnedBuffer rows_host;         ///< [rows][found]

  struct StatusPair {
    LookupStatus* now;
    LookupStatus* next;
    std::int64_t* eager_keys;  ///< beside `now`
  };
  /// Status entries of this call and of the next one; flips the ring.
  StatusPair next_status();
  std::size_t device_bytes() const;
};

class ScratchPool {
 public:
  class Lease {
   public:
    Lease(ScratchPool* pool, std::unique_ptr<LookupScratch> scratch) : pool_(pool), scratch_(std::move(scratch)) {}
    ~Lease();
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    Lease(Lease&&) noexcept = default;
    Lease& operator=(Lease&&) = delete;
    LookupScratch& operator*() const { return *scratch_; }
    LookupScratch* operator->() const { return scratch_.get(); }

   private:
    ScratchPool* pool_;
    std::unique_ptr<LookupScratch> scratch_;
  };

  /// A scratch for a call on `stream`, already ordered after its previous users (device-side
  /// waits only). The caller's device must be current.
  Lease acquire(cudaStream_t stream);

  /// Waits for all device work that uses pooled scratch and frees it (cache destruction).
  void clear() noexcept;

  std::size_t device_bytes() const;

 private:
  void give_back(std::unique_ptr<LookupScratch> scratch);

  /// Scratches made before a call waits for an insertion instead of making another.
  static constexpr std::size_t kScratchesBeforeWaiting = 4;

  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<LookupScratch>> idle_;
  std::size_t created_ = 0;  ///< scratches made since the last clear(), idle or leased
};

}  // namespace hps::cuda
