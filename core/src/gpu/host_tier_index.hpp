// The host-tier index: one per dynamic GPU cache whose table's CPU-memory tier is a HashMapTier
// made GPU-visible. In HBM it maps every key of the tier to the address of its record in the
// tier's arena (page-locked and mapped, so the device reads it over PCIe), so the lookup's miss
// kernel finds a missed row without the host (host_tier_kernels.cu; docs/gpu_cache.md).
//
// Coherence: the index is the tier's RecordListener. The tier reports records added and removed
// under its partition locks (queued here, cheap) and calls flush() before each write call returns;
// flush applies everything queued on the index's own stream and waits for it, so once a tier
// write returns, no lookup started later finds the old mapping. A mapping that lags (the write
// call has not returned yet) costs at most a retry: readers check the record's header checksum and
// key, and a dead or reused record means the key was removed during the lookup. Removals leave
// tombstones; after removals of 1/16 of the slots, a flush also sweeps away those that no probe
// passes (launch_tier_sweep), so a tier whose keys come and go keeps short probes.
//
// Growth: a flush whose adds would fill the index past its load limit first builds a larger
// generation beside the current one (launch_tier_rehash copies every live entry), applies its adds
// there and publishes it in the view's current word, which the miss kernel reads when it runs; a
// lookup that read the older generation asks the current one again before it calls a key absent
// (host_tier_kernels.cu). An older generation is freed by the first flush that finds no lookup
// reading the index (the miss kernel's blocks count themselves in TierCounters::readers while they
// read it): lookups that start later read the newer one. The generations held stay within the HBM
// share. If a larger generation does not fit, the adds are dropped and the index becomes incomplete
// (keys it lacks go to the host path, with a warning), as an index that may not grow.
//
// Threads: records_added/removed from tier writers under partition locks (queue mutex); flush
// and census from any thread (one at a time applies, the others wait for it, so every caller returns after
// its own notifications are applied); view() and the counters from lookups at any time.
// Ownership: shares the tier (the records it points into live as long as the tier does) and
// removes itself from the tier's listeners before it is destroyed.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gpu/cuda_check.hpp"
#include "gpu/kernel_types.hpp"
#include "hps/tiers/hash_map_tier.hpp"
#include "hps/tiers/record_hooks.hpp"

namespace hps::cuda {

class HostTierIndex final : public RecordListener {
 public:
  /// Builds the index of `tier` on `device` (current) and attaches it, or returns null and says
  /// why in *why_not: the device cannot use host pointers of registered memory, or the index would
  /// take more than `hbm_share` of the device's memory (its generations together, as it grows), or
  /// the allocation failed. The tier must already be registered
  /// (make_gpu_visible).
  static std::unique_ptr<HostTierIndex> create(int device, std::shared_ptr<HashMapTier> tier, bool last_tier,
                                               float default_value, double hbm_share, int sm_count,
                                               std::string* why_not);
  ~HostTierIndex() override;
  HostTierIndex(const HostTierIndex&) = delete;
  HostTierIndex& operator=(const HostTierIndex&) = delete;

  void records_added(const std::int64_t* keys, const void* const* records, std::size_t n) override;
  void records_removed(const std::int64_t* keys, const void* const* records, std::size_t n) override;
  void flush() override;

  const HostTierView& view() const { return view_; }
  /// A key absent from the index is in no tier: the hash map is the table's last tier and no
  /// notification was ever dropped for want of room.
  bool absent_means_default() const { return last_tier_ && complete_.load(std::memory_order_acquire); }
  /// The generations held, the counters and the staging buffer.
  std::size_t device_bytes() const { return device_bytes_.load(std::memory_order_relaxed); }
  /// Entries of the current generation, the times the index grew, and the generations it holds now
  /// (the current one and those a lookup may still read); diagnostics and tests: they wait for a
  /// flush that is applying.
  std::uint64_t slots() const;
  std::size_t growths() const;
  std::size_t held_generations() const;
  /// Device counters (host wait on the index's own stream only).
  TierCounters counters() const;
  /// The current generation's entries by state, counted on the host from a copy of them
  /// (diagnostics and tests: it waits for the index's stream and copies every entry).
  struct Census {
    std::uint64_t empty = 0, tombstones = 0, live = 0;
  };
  Census census() const;

 private:
  HostTierIndex(int device, std::shared_ptr<HashMapTier> tier, bool last_tier, std::uint64_t slots,
                std::size_t hbm_budget, float default_value, int sm_count);
  void queue(bool added, const std::int64_t* keys, const void* const* records, std::size_t n);

  /// One generation of entries and its descriptor (HBM, in the order of the index's stream, so that
  /// freeing one never waits for the device).
  struct Generation {
    DeviceAllocation entries, descriptor;
    TierTable table() const {
      return TierTable{static_cast<TierEntry*>(entries.get()), entries.bytes() / sizeof(TierEntry)};
    }
  };
  /// Allocates a generation of `slots` empty entries, or throws OutOfMemory.
  Generation allocate_generation(std::uint64_t slots);
  /// Enqueues the writes of `generation`'s descriptor and of its address into the current word.
  void publish(const Generation& generation);
  /// Makes room for `adds` more keys (apply_mutex_ held): builds and publishes a larger generation
  /// when they would pass the load limit. False: there is no room and none could be made.
  bool make_room(std::int64_t adds);
  /// Frees every generation but the current one (apply_mutex_ held; the caller has seen no reader
  /// since the current one was published).
  void free_older_generations();
  TierTable current() const { return generations_.back().table(); }
  void count_device_bytes();

  struct Run {
    bool added;
    std::size_t begin, end;  // into pending_keys_/pending_records_
  };

  int device_;
  std::shared_ptr<HashMapTier> tier_;
  bool last_tier_;
  int sm_count_;
  std::size_t hbm_budget_;  // bytes all generations together may take (host_tier_index_hbm_share)
  Stream stream_;
  DeviceAllocation counters_, current_word_;
  std::vector<Generation> generations_;  // the last is current (apply_mutex_; only flush changes it)
  std::size_t growths_ = 0;               // apply_mutex_
  HostTierView view_;
  std::atomic<std::size_t> device_bytes_{0};  // read by stats() without waiting for a flush
  std::atomic<bool> complete_{true};
  std::atomic<bool> attached_{false};
  std::int64_t live_estimate_ = 0;  // adds - removes applied (apply_mutex_)
  std::uint64_t removed_since_sweep_ = 0;  // entries removed since the last sweep (apply_mutex_)

  std::mutex queue_mutex_;  // guards the pending_* vectors
  std::vector<Run> runs_;
  std::vector<std::int64_t> pending_keys_;
  std::vector<std::uint64_t> pending_records_;

  mutable std::mutex apply_mutex_;  // one flush applies at a time; guards the staging buffers
  PinnedBuffer staging_host_;
  StreamBuffer staging_device_;
};

}  // namespace hps::cuda
