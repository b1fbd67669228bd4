// What the dynamic and the static GPU cache share: validation, the writer side (one host mutex
// and one internal writer stream per cache, so writers serialise among themselves and never
// block readers), host batches staged to the device and deduplicated there (the last row of a
// repeated key wins), refresh window by window, the lookup scratch pool and the key error message.
//
// Ownership: owns the writer stream, the staging buffers and the scratch pool. The derived class
// owns the table and must call shutdown() first thing in its destructor, so no queued kernel
// still uses the table when it is freed.
#pragma once

#include <cuda_runtime_api.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

#include "gpu/cuda_check.hpp"
#include "gpu/kernel_types.hpp"
#include "gpu/lookup_scratch.hpp"
#include "hps/gpu/gpu_cache.hpp"

namespace hps::cuda {

class GpuCacheBase : public GpuCache {
 public:
  const GpuCacheOptions& options() const override { return options_; }
  void insert(const std::int64_t* keys, const float* rows, std::size_t n) override;
  void update(const std::int64_t* keys, const float* rows, std::size_t n) override;
  void erase(const std::int64_t* keys, std::size_t n) override;
  void refresh(double window, const MissResolver& resolve) override;
  void drain() override;

  /// Internal (benchmarks): the shape of the lookup kernel; zero fields pick automatically.
  void set_probe_shape(ProbeShape shape) { probe_shape_ = shape; }

 protected:
  explicit GpuCacheBase(const GpuCacheOptions& options);
  ~GpuCacheBase() override = default;

  /// Waits for every queued write and pooled lookup work; called by derived destructors.
  void shutdown() noexcept;

  /// Enqueues a kernel applying `batch` (device memory) on the writer stream. Called with the
  /// writer mutex held. May synchronise the writer stream (the static capacity check does).
  virtual void enqueue_write(const WriteBatch& batch, WriteKind kind) = 0;
  /// Refresh walks [0, refresh_units()) (sets or buckets), each holding at most keys_per_unit() keys.
  virtual std::uint64_t refresh_units() const = 0;
  virtual std::uint64_t keys_per_unit() const = 0;
  /// Appends the keys held in units [first, end) to keys_out and their number to *count.
  virtual void enqueue_dump(std::uint64_t first, std::uint64_t end, std::int64_t* keys_out,
                            unsigned long long* count) = 0;

  void check_lookup_arguments(const void* keys, KeyDtype dtype, std::size_t n, const float* out) const;
  /// Throws InvalidArgument naming keys[position] and its value (read back from the device).
  [[noreturn]] void throw_invalid_key(const void* keys, KeyDtype dtype, bool key64, unsigned long long position,
                                      cudaStream_t stream) const;

  bool half() const { return options_.dtype == CacheDtype::kFloat16; }
  cudaStream_t writer_stream() const { return writer_stream_->get(); }
  std::size_t staging_device_bytes() const;

  GpuCacheOptions options_;
  int sm_count_ = 0;
  ProbeShape probe_shape_{};
  std::atomic<std::uint32_t> epoch_{1};  ///< lookup counter: the LRU clock
  std::unique_ptr<Stream> writer_stream_;
  std::mutex writer_mutex_;             ///< serialises writers (and guards write_generation_)
  std::uint64_t write_generation_ = 0;  ///< bumped by insert/update/erase; refresh checks it
  ScratchPool scratch_;

 private:
  /// Device staging of a host batch (writer mutex held).
  struct Staging {
    StreamBuffer keys, sorted_keys, unique_keys;
    StreamBuffer order, sorted_order, unique_order;
    StreamBuffer count, rows, temp;
  };
  /// Buffers of refresh (refresh mutex held).
  struct RefreshBuffers {
    StreamBuffer keys, count, rows;
    PinnedBuffer keys_host, rows_host;
  };

  void write_from_host(const std::int64_t* keys, const float* rows, std::size_t n, WriteKind kind);
  /// One refresh window; false when a concurrent write made its rows stale (nothing applied).
  bool refresh_window(std::uint64_t first, std::uint64_t end, const MissResolver& resolve);

  Staging staging_;
  std::mutex refresh_mutex_;
  RefreshBuffers refresh_;
};

}  // namespace hps::cuda
