// The static GPU cache: the whole table on the device behind an open-addressing hash index
// (read-optimised: one 32-byte bucket read per key in the common case). Every key is answered on
// the device: its row, or the default row for a key the table does not hold; no host round trip.
// update() upserts, erase() removes. Design: docs/gpu_cache.md.
#pragma once

#include "gpu/gpu_cache_base.hpp"

namespace hps::cuda {

class StaticGpuCache final : public GpuCacheBase {
 public:
  explicit StaticGpuCache(const GpuCacheOptions& options);
  ~StaticGpuCache() override;

  GpuLookupResult lookup(const void* keys, KeyDtype dtype, bool key64, std::size_t n, float* out, StreamView stream,
                         const MissResolver& resolve, const InsertGuard& guard) override;
  std::size_t size() const override;
  std::size_t capacity() const override { return view_.capacity; }
  std::size_t memory_bytes() const override;
  std::size_t table_bytes() const override { return table_bytes_; }
  std::size_t defaults_served() override;

 protected:
  void enqueue_write(const WriteBatch& batch, WriteKind kind) override;
  std::uint64_t refresh_units() const override { return view_.num_buckets; }
  std::uint64_t keys_per_unit() const override { return kEntriesPerBucket; }
  void enqueue_dump(std::uint64_t first, std::uint64_t end, std::int64_t* keys_out, unsigned long long* count) override;

 private:
  StaticCounters read_counters() const;

  DeviceAllocation entries_, rows_, free_rows_, counters_;
  std::unique_ptr<Stream> stats_stream_;  ///< defaults_served() reads the counter here, waiting for nothing else
  StaticTableView view_;
  float default_value_ = 0.0f;  ///< as served (rounded to half for fp16 tables)
  std::size_t table_bytes_ = 0;
};

}  // namespace hps::cuda
