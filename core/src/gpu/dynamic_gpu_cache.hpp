// The dynamic GPU cache: at most `capacity` rows in sets of 8 slots, each key placed in the emptier
// of its two candidate sets (residents move to their other set to make room), LRU-like
// replacement over a key's 16 candidate slots once the cache holds `capacity` keys, lock-free
// (seqlock-validated) readers, and a lookup that answers misses through the caller's
// MissResolver and inserts the rows found. Design: docs/gpu_cache.md.
#pragma once

#include "gpu/gpu_cache_base.hpp"

namespace hps::cuda {

class DynamicGpuCache final : public GpuCacheBase {
 public:
  explicit DynamicGpuCache(const GpuCacheOptions& options);
  ~DynamicGpuCache() override;

  GpuLookupResult lookup(const void* keys, KeyDtype dtype, bool key64, std::size_t n, float* out, StreamView stream,
                         const MissResolver& resolve, const InsertGuard& guard) override;
  std::size_t size() const override;
  /// Keys held at most (the option); the table has about 11% more slots, so that this many keys
  /// fit in their candidate sets without evictions.
  std::size_t capacity() const override { return static_cast<std::size_t>(view_.capacity); }
  std::size_t memory_bytes() const override;
  /// Defaults of a dynamic cache come from the resolver on the host: nothing to count here.
  std::size_t defaults_served() override { return 0; }

  /// Internal (tests, benchmarks): the writer counters (host wait on the writer stream).
  DynamicCounters counters() const;
  std::uint64_t slots() const { return view_.num_sets * kSlotsPerSet; }
  /// Sets allocated for `capacity` keys.
  static std::uint64_t sets_for(std::size_t capacity);

 protected:
  void enqueue_write(const WriteBatch& batch, WriteKind kind) override;
  std::uint64_t refresh_units() const override { return view_.num_sets; }
  std::uint64_t keys_per_unit() const override { return kSlotsPerSet; }
  void enqueue_dump(std::uint64_t first, std::uint64_t end, std::int64_t* keys_out, unsigned long long* count) override;

 private:
  /// The miss path of one lookup: dedup, resolve on the host, upload, scatter, insert.
  void resolve_misses(LookupScratch& s, std::size_t n, std::size_t misses, bool key64, float* out, cudaStream_t stream,
                      const MissResolver& resolve, const InsertGuard& guard, GpuLookupResult& result);
  /// The same for a small miss set, deduplicated on the host; `missed_on_host`: the missed keys
  /// if the status read already brought them, else null (they are copied down).
  void resolve_misses_on_host(LookupScratch& s, std::size_t n, std::size_t misses, const std::int64_t* missed_on_host,
                              float* out, cudaStream_t stream, const MissResolver& resolve, const InsertGuard& guard,
                              GpuLookupResult& result);
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

  DeviceAllocation meta_, records_, rows_, locks_, counters_;
  DynamicTableView view_;
  std::size_t table_bytes_ = 0;
};

}  // namespace hps::cuda
