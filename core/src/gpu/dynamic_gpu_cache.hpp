// The dynamic GPU cache: at most `capacity` rows in sets of 8 slots, each key placed in the emptier
// of its two candidate sets (residents move to their other set to make room), LRU-like
// replacement over a key's 16 candidate slots once the cache holds `capacity` keys, lock-free
// (seqlock-validated) readers, and a lookup that answers misses through the caller's
// MissResolver and inserts the rows found. Design: docs/gpu_cache.md.
#pragma once

#include <memory>
#include <mutex>
#include <vector>

#include "gpu/gpu_cache_base.hpp"
#include "gpu/host_tier_index.hpp"

namespace hps::cuda {

class DynamicGpuCache final : public GpuCacheBase {
 public:
  explicit DynamicGpuCache(const GpuCacheOptions& options);
  ~DynamicGpuCache() override;

  GpuLookupResult lookup(const void* keys, KeyDtype dtype, bool key64, std::size_t n, float* out, StreamView stream,
                         const MissResolver& resolve, const InsertGuard& guard) override;
  std::size_t size() const override;
  /// Keys held at most (the option); the table has about 4% more slots (kTargetLoad), so that
  /// this many keys fit in their candidate sets without evictions.
  std::size_t capacity() const override { return static_cast<std::size_t>(view_.capacity); }
  std::size_t memory_bytes() const override;
  std::size_t table_bytes() const override { return table_bytes_; }
  /// Defaults the device served from the attached host tier's index (0 without one; the
  /// resolver on the host counts the others).
  std::size_t defaults_served() override;
  bool attach_host_tier(const HostTierLink& link, std::string* why_not) override;
  std::size_t host_tier_rows_served() override;
  std::size_t host_tier_index_bytes() const override { return tier_index_ ? tier_index_->device_bytes() : 0; }

  /// Internal (tests, benchmarks): the writer counters (host wait on the writer stream).
  DynamicCounters counters() const;
  std::uint64_t slots() const { return view_.num_sets * kSlotsPerSet; }
  /// Internal (kernel benchmark): enqueues the probe kernel alone for n int64 keys of a 64-bit
  /// model, misses to `sink`, on `stream`: the lookup's device work without its host side.
  void enqueue_probe(const std::int64_t* keys, std::size_t n, float* out, const MissSink& sink, cudaStream_t stream);

 protected:
  void enqueue_write(const WriteBatch& batch, WriteKind kind) override;
  std::uint64_t refresh_units() const override { return view_.num_sets; }
  std::uint64_t keys_per_unit() const override { return kSlotsPerSet; }
  void enqueue_dump(std::uint64_t first, std::uint64_t end, std::int64_t* keys_out, unsigned long long* count) override;

 private:
  /// A miss list on the device: the probe's, or what the host-tier kernel left.
  struct MissList {
    const std::int64_t* keys;
    const std::uint32_t* positions;
  };
  /// The miss path of one lookup: dedup, resolve on the host, upload, scatter, insert.
  void resolve_misses(LookupScratch& s, std::size_t n, MissList list, std::size_t misses, bool key64, float* out,
                      cudaStream_t stream, const MissResolver& resolve, const InsertGuard& guard,
                      GpuLookupResult& result);
  /// The same for a small miss set, deduplicated on the host; `missed_on_host`: the missed keys
  /// if the status read already brought them, else null (they are copied down).
  void resolve_misses_on_host(LookupScratch& s, std::size_t n, MissList list, std::size_t misses,
                              const std::int64_t* missed_on_host, float* out, cudaStream_t stream,
                              const MissResolver& resolve, const InsertGuard& guard, GpuLookupResult& result);
  /// Rows the host-tier kernel may stage for insertion in a call of n keys.
  std::size_t insert_room(std::size_t n) const;
  /// Enqueues the probe kernel as a new lookup (advances the LRU clock), misses to `sink`.
  void launch_probe(const KeyInput& input, std::size_t n, float* out, const MissSink& sink, cudaStream_t stream);
  /// Inserts the rows the host-tier kernel staged (count on the device at `count`), guarded, on
  /// the writer stream after the caller's stream reaches this point: no host wait. True when it
  /// enqueued them, having recorded `s.done` on `stream` (false: room 0, or the guard refused).
  bool enqueue_tier_insert(LookupScratch& s, const unsigned long long* count, std::size_t room, cudaStream_t stream,
                           const InsertGuard& guard);
  /// A lookup recorded into a CUDA graph (docs/gpu_cache.md, "Capture").
  GpuLookupResult lookup_captured(const void* keys, KeyDtype dtype, bool key64, std::size_t n, float* out,
                                  cudaStream_t stream);
  /// Runs the resolver over u unique keys into pinned rows_host / found_host, slice by slice, and
  /// queues each slice's rows for upload to rows_device on `stream` as soon as it is ready, so the
  /// copy of one slice overlaps the resolving of the next. Returns how many keys it found. The
  /// found flags are left for the caller's last copy.
  std::size_t resolve_and_upload(const std::int64_t* keys, std::size_t u, float* rows_host, std::uint8_t* found_host,
                                 float* rows_device, cudaStream_t stream, const MissResolver& resolve) const;
  /// After the upload of [rows][found] into s.rows: scatter to `positions`, then the guarded insertion.
  void finish_misses(LookupScratch& s, std::size_t n, std::size_t m, std::size_t u, std::size_t found,
                     const std::int64_t* unique_keys, const std::uint32_t* unique_of_miss, const std::uint32_t* positions,
                     float* out, cudaStream_t stream, const InsertGuard& guard, GpuLookupResult& result);

  DeviceAllocation meta_, tags_, rows_, locks_, counters_;
  DynamicTableView view_;
  std::size_t table_bytes_ = 0;
  std::unique_ptr<HostTierIndex> tier_index_;  ///< set once, before lookups (attach_host_tier)

  /// Buffers of one captured lookup: the graph replays with them, so they live as long as the cache.
  class CapturedBuffers {
   public:
    explicit CapturedBuffers(std::size_t bytes);
    ~CapturedBuffers();
    CapturedBuffers(const CapturedBuffers&) = delete;
    CapturedBuffers& operator=(const CapturedBuffers&) = delete;
    char* get() const { return ptr_; }
    std::size_t bytes() const { return bytes_; }

   private:
    char* ptr_ = nullptr;
    std::size_t bytes_ = 0;
  };
  mutable std::mutex captured_mutex_;
  std::vector<std::unique_ptr<CapturedBuffers>> captured_;
};

}  // namespace hps::cuda
