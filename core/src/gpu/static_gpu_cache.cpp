#include "gpu/static_gpu_cache.hpp"

#include <cuda_fp16.h>

#include <limits>

#include "gpu/static_lookup_kernels.hpp"
#include "hps/gpu/cache_sizing.hpp"
#include "gpu/static_write_kernels.hpp"

namespace hps::cuda {

StaticGpuCache::StaticGpuCache(const GpuCacheOptions& options) : GpuCacheBase(options) {
  HPS_EXPECTS(options_.capacity < std::numeric_limits<std::uint32_t>::max(), InvalidArgument,
              "static GPU cache: capacity ", options_.capacity, " rows exceeds the limit of ",
              std::numeric_limits<std::uint32_t>::max() - 1);
  DeviceGuard guard(options_.device);
  // Two entries per table row at most: the index stays at most half full, so a lookup nearly
  // always ends in its home bucket. The sizes `hps validate` plans with (hps/gpu/cache_sizing.hpp).
  const StaticGpuCacheSize size = static_gpu_cache_size(options_.capacity, options_.dim, options_.dtype);
  const std::uint64_t num_buckets = size.buckets;
  entries_ = DeviceAllocation(size.entry_bytes, writer_stream());  // zero: all empty
  rows_ = DeviceAllocation(size.row_bytes, writer_stream());
  free_rows_ = DeviceAllocation(size.free_row_bytes, writer_stream());
  counters_ = DeviceAllocation(size.counter_bytes, writer_stream());
  table_bytes_ = entries_.bytes() + rows_.bytes() + free_rows_.bytes() + counters_.bytes();
  view_.entries = static_cast<IndexEntry*>(entries_.get());
  view_.rows = rows_.get();
  view_.free_rows = static_cast<std::uint32_t*>(free_rows_.get());
  view_.counters = static_cast<StaticCounters*>(counters_.get());
  view_.num_buckets = num_buckets;
  view_.capacity = static_cast<std::uint32_t>(options_.capacity);
  view_.dim = static_cast<std::uint32_t>(options_.dim);
  default_value_ = half() ? __half2float(__float2half_rn(options_.default_value)) : options_.default_value;
  stats_stream_ = std::make_unique<Stream>();
  launch_static_init(view_, writer_stream());
  // Host wait (construction only): the cache is usable when create() returns.
  HPS_CUDA_CHECK(cudaStreamSynchronize(writer_stream()));
}

StaticGpuCache::~StaticGpuCache() { shutdown(); }

GpuLookupResult StaticGpuCache::lookup(const void* keys, KeyDtype dtype, bool key64, std::size_t n, float* out,
                                       StreamView stream_view, const MissResolver& /*resolve*/,
                                       const InsertGuard& /*guard*/) {
  check_lookup_arguments(keys, dtype, n, out);
  HPS_EXPECTS(stream_view.is_set(), InvalidArgument, "GpuCache::lookup: no stream given (StreamView is unset)");
  GpuLookupResult result;
  if (n == 0) return result;
  DeviceGuard device(options_.device);
  const auto stream = static_cast<cudaStream_t>(stream_view.handle());
  const KeyInput input{keys, dtype, key64};
  // Every position is answered on the device (row or default); the kernel counts the defaults
  // on the device (defaults_served()), so the call never waits to learn how many there were.
  result.hits = n;
  unsigned long long* defaults = &view_.counters->defaults_served;
  if (!keys_can_be_invalid(dtype, key64)) {
    // No host synchronisation at all: one kernel on the caller's stream.
    launch_static_lookup(view_, half(), input, n, out, default_value_, nullptr, nullptr, defaults, probe_shape_,
                         sm_count_, stream);
    return result;
  }
  ScratchPool::Lease lease = scratch_.acquire(stream);
  LookupScratch& s = *lease;
  const LookupScratch::StatusPair ring = s.next_status();  // no misses to report: eager_keys unused
  launch_static_lookup(view_, half(), input, n, out, default_value_, ring.now, ring.next, defaults, probe_shape_,
                       sm_count_, stream);
  auto* status_host = s.status_host.as<LookupStatus>();
  HPS_CUDA_CHECK(cudaMemcpyAsync(status_host, ring.now, sizeof(LookupStatus), cudaMemcpyDeviceToHost, stream));
  // Host wait (only for key dtypes that can hold values outside the model's key width: uint64,
  // or int64 in a 32-bit model): an invalid key must make this call throw.
  HPS_CUDA_CHECK(cudaStreamSynchronize(stream));
  s.done_pending = false;
  s.insert_pending = false;
  if (status_host->first_invalid != kNoInvalidKey) throw_invalid_key(keys, dtype, key64, status_host->first_invalid, stream);
  return result;
}

void StaticGpuCache::enqueue_write(const WriteBatch& batch, WriteKind kind) {
  const cudaStream_t stream = writer_stream();
  if (kind == WriteKind::kInsert || kind == WriteKind::kUpdate) {
    // Capacity check before anything changes, so a batch that does not fit is refused whole.
    HPS_CUDA_CHECK(cudaMemsetAsync(&view_.counters->absent, 0, sizeof(unsigned int), stream));
    launch_static_count_absent(view_, batch, sm_count_, stream);
    const StaticCounters counters = read_counters();
    HPS_EXPECTS(counters.absent <= counters.free_top, OutOfMemory, "static GPU cache: ", counters.absent,
                " new keys do not fit: ", counters.free_top, " of ", view_.capacity,
                " rows are free (the static cache holds at most the capacity it was created with)");
  }
  launch_static_write(view_, half(), batch, kind, sm_count_, stream);
}

void StaticGpuCache::enqueue_dump(std::uint64_t first, std::uint64_t end, std::int64_t* keys_out,
                                  unsigned long long* count) {
  launch_static_dump(view_, first, end, keys_out, count, sm_count_, writer_stream());
}

StaticCounters StaticGpuCache::read_counters() const {
  StaticCounters counters{};
  HPS_CUDA_CHECK(cudaMemcpyAsync(&counters, view_.counters, sizeof(counters), cudaMemcpyDeviceToHost, writer_stream()));
  // Host wait: the counters are needed on the host (capacity check, size()).
  HPS_CUDA_CHECK(cudaStreamSynchronize(writer_stream()));
  return counters;
}

std::size_t StaticGpuCache::defaults_served() {
  DeviceGuard guard(options_.device);
  unsigned long long served = 0;
  // Its own stream: neither the callers' streams nor the writer stream are waited for; lookups
  // still running elsewhere add their defaults when they finish.
  HPS_CUDA_CHECK(cudaMemcpyAsync(&served, &view_.counters->defaults_served, sizeof(served), cudaMemcpyDeviceToHost,
                                 stats_stream_->get()));
  // Host wait (stats only): on the private stream, for the 8-byte copy.
  HPS_CUDA_CHECK(cudaStreamSynchronize(stats_stream_->get()));
  return static_cast<std::size_t>(served);
}

std::size_t StaticGpuCache::size() const {
  DeviceGuard guard(options_.device);
  return view_.capacity - read_counters().free_top;
}

std::size_t StaticGpuCache::memory_bytes() const {
  return table_bytes_ + staging_device_bytes() + scratch_.device_bytes();
}

}  // namespace hps::cuda
