#include "gpu/gpu_cache_base.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "gpu/dedup_kernels.hpp"

namespace hps::cuda {

namespace {
/// Rows staged per writer chunk: bounded so a warm start of a huge table needs little scratch.
constexpr std::size_t kMaxChunkKeys = std::size_t{1} << 22;
constexpr std::size_t kMaxChunkRowBytes = std::size_t{256} << 20;
/// A refresh window whose rows went stale under a concurrent write is retried this many times.
constexpr int kRefreshAttempts = 3;
}  // namespace

GpuCacheBase::GpuCacheBase(const GpuCacheOptions& options) : options_(options) {
  DeviceGuard guard(options_.device);
  HPS_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count_, cudaDevAttrMultiProcessorCount, options_.device));
  writer_stream_ = std::make_unique<Stream>();
}

void GpuCacheBase::shutdown() noexcept {
  int previous = -1;
  const bool switched = cudaGetDevice(&previous) == cudaSuccess && previous != options_.device &&
                        cudaSetDevice(options_.device) == cudaSuccess;
  // Host wait (destruction): queued writes use the table, which is freed next.
  if (writer_stream_) (void)cudaStreamSynchronize(writer_stream_->get());
  scratch_.clear();
  // Staging buffers were last used on the writer stream, now idle.
  if (switched) (void)cudaSetDevice(previous);
}

void GpuCacheBase::drain() {
  DeviceGuard guard(options_.device);
  // Host wait by contract: the caller asked for queued insertions to be finished.
  HPS_CUDA_CHECK(cudaStreamSynchronize(writer_stream()));
}

void GpuCacheBase::insert(const std::int64_t* keys, const float* rows, std::size_t n) {
  write_from_host(keys, rows, n, WriteKind::kInsert);
}

void GpuCacheBase::update(const std::int64_t* keys, const float* rows, std::size_t n) {
  write_from_host(keys, rows, n, WriteKind::kUpdate);
}

void GpuCacheBase::erase(const std::int64_t* keys, std::size_t n) { write_from_host(keys, nullptr, n, WriteKind::kErase); }

void GpuCacheBase::write_from_host(const std::int64_t* keys, const float* rows, std::size_t n, WriteKind kind) {
  if (n == 0) return;
  HPS_EXPECTS(keys != nullptr, InvalidArgument, "GPU cache write: keys is null for ", n, " keys");
  HPS_EXPECTS(kind == WriteKind::kErase || rows != nullptr, InvalidArgument, "GPU cache write: rows is null for ", n,
              " keys");
  const std::size_t dim = options_.dim;
  const std::size_t chunk_keys = std::max<std::size_t>(1, std::min(kMaxChunkKeys, kMaxChunkRowBytes / (dim * sizeof(float))));
  DeviceGuard guard(options_.device);
  std::lock_guard<std::mutex> lock(writer_mutex_);
  const cudaStream_t stream = writer_stream();
  Staging& s = staging_;
  // Chunks are applied in order on one stream, so a key repeated across chunks ends with the
  // row of its last occurrence, as inside a chunk.
  for (std::size_t begin = 0; begin < n; begin += chunk_keys) {
    const std::size_t c = std::min(chunk_keys, n - begin);
    s.keys.reserve(c * sizeof(std::int64_t), stream);
    s.count.reserve(sizeof(unsigned long long), stream);
    HPS_CUDA_CHECK(cudaMemcpyAsync(s.keys.get(), keys + begin, c * sizeof(std::int64_t), cudaMemcpyHostToDevice, stream));
    WriteBatch batch;
    batch.n = c;
    if (kind == WriteKind::kErase) {
      // Erasing twice is harmless: no deduplication needed.
      batch.keys = s.keys.as<std::int64_t>();
    } else {
      s.rows.reserve(c * dim * sizeof(float), stream);
      HPS_CUDA_CHECK(cudaMemcpyAsync(s.rows.get(), rows + begin * dim, c * dim * sizeof(float), cudaMemcpyHostToDevice,
                                     stream));
      s.sorted_keys.reserve(c * sizeof(std::int64_t), stream);
      s.unique_keys.reserve(c * sizeof(std::int64_t), stream);
      s.order.reserve(c * sizeof(std::uint32_t), stream);
      s.sorted_order.reserve(c * sizeof(std::uint32_t), stream);
      s.unique_order.reserve(c * sizeof(std::uint32_t), stream);
      const std::size_t temp_bytes = sort_temp_bytes(c);
      s.temp.reserve(temp_bytes, stream);
      fill_sequence(s.order.as<std::uint32_t>(), c, sm_count_, stream);
      sort_keys_with_payload(s.temp.get(), s.temp.bytes(), s.keys.as<std::int64_t>(), s.sorted_keys.as<std::int64_t>(),
                             s.order.as<std::uint32_t>(), s.sorted_order.as<std::uint32_t>(), c, 64, stream);
      keep_last_of_runs(s.sorted_keys.as<std::int64_t>(), s.sorted_order.as<std::uint32_t>(), c,
                        s.unique_keys.as<std::int64_t>(), s.unique_order.as<std::uint32_t>(),
                        s.count.as<unsigned long long>(), sm_count_, stream);
      batch.keys = s.unique_keys.as<std::int64_t>();
      batch.row_index = s.unique_order.as<std::uint32_t>();
      batch.rows = s.rows.as<float>();
      batch.count = s.count.as<unsigned long long>();
    }
    enqueue_write(batch, kind);
  }
  // Host wait by contract: insert/update/erase are synchronous, so that a lookup started after
  // they return sees the new state (and the caller may free its arrays).
  HPS_CUDA_CHECK(cudaStreamSynchronize(stream));
  ++write_generation_;
}

void GpuCacheBase::refresh(double window, const MissResolver& resolve) {
  HPS_EXPECTS(window > 0.0 && window <= 1.0, InvalidArgument, "GPU cache refresh: window must be in (0, 1], not ",
              window);
  HPS_EXPECTS(static_cast<bool>(resolve), InvalidArgument, "GPU cache refresh: no resolver given");
  DeviceGuard guard(options_.device);
  std::lock_guard<std::mutex> refresh_lock(refresh_mutex_);
  const std::uint64_t units = refresh_units();
  const auto per_window =
      std::max<std::uint64_t>(1, static_cast<std::uint64_t>(std::ceil(window * static_cast<double>(units))));
  for (std::uint64_t first = 0; first < units; first += per_window) {
    const std::uint64_t end = std::min(units, first + per_window);
    for (int attempt = 0; attempt < kRefreshAttempts; ++attempt) {
      if (refresh_window(first, end, resolve)) break;
    }
  }
}

bool GpuCacheBase::refresh_window(std::uint64_t first, std::uint64_t end, const MissResolver& resolve) {
  const std::size_t dim = options_.dim;
  const std::size_t max_keys = static_cast<std::size_t>((end - first) * keys_per_unit());
  RefreshBuffers& r = refresh_;
  const cudaStream_t stream = writer_stream();
  std::uint64_t generation = 0;
  unsigned long long count = 0;
  {
    std::lock_guard<std::mutex> lock(writer_mutex_);
    generation = write_generation_;
    r.keys.reserve(max_keys * sizeof(std::int64_t), stream);
    r.count.reserve(sizeof(unsigned long long), stream);
    HPS_CUDA_CHECK(cudaMemsetAsync(r.count.get(), 0, sizeof(unsigned long long), stream));
    enqueue_dump(first, end, r.keys.as<std::int64_t>(), r.count.as<unsigned long long>());
    HPS_CUDA_CHECK(cudaMemcpyAsync(&count, r.count.get(), sizeof(count), cudaMemcpyDeviceToHost, stream));
    // Host wait: the number of keys held sizes the copy of the keys to the resolver.
    HPS_CUDA_CHECK(cudaStreamSynchronize(stream));
    if (count == 0) return true;
    r.keys_host.reserve(count * sizeof(std::int64_t));
    HPS_CUDA_CHECK(cudaMemcpyAsync(r.keys_host.get(), r.keys.get(), count * sizeof(std::int64_t),
                                   cudaMemcpyDeviceToHost, stream));
    // Host wait: the resolver runs on the host and reads these keys.
    HPS_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
  // The resolver runs without the writer lock, so lookups can insert meanwhile.
  const std::size_t rows_bytes = count * dim * sizeof(float);
  r.rows_host.reserve(rows_bytes + count);
  auto* rows_host = r.rows_host.as<float>();
  auto* found_host = reinterpret_cast<std::uint8_t*>(r.rows_host.as<char>() + rows_bytes);
  std::fill(found_host, found_host + count, std::uint8_t{0});
  resolve(r.keys_host.as<std::int64_t>(), count, rows_host, found_host);

  std::lock_guard<std::mutex> lock(writer_mutex_);
  // An insert/update/erase ran while we resolved: its rows may be newer than ours. Try again.
  if (write_generation_ != generation) return false;
  r.rows.reserve(rows_bytes + count, stream);
  HPS_CUDA_CHECK(cudaMemcpyAsync(r.rows.get(), r.rows_host.get(), rows_bytes + count, cudaMemcpyHostToDevice, stream));
  WriteBatch batch;
  batch.keys = r.keys.as<std::int64_t>();
  batch.rows = r.rows.as<float>();
  batch.found = reinterpret_cast<const std::uint8_t*>(r.rows.as<char>() + rows_bytes);
  batch.n = count;
  enqueue_write(batch, WriteKind::kRefresh);
  // Host wait: the pinned rows may be rewritten by the next window, and refresh is synchronous.
  HPS_CUDA_CHECK(cudaStreamSynchronize(stream));
  return true;
}

void GpuCacheBase::check_lookup_arguments(const void* keys, KeyDtype dtype, std::size_t n, const float* out) const {
  HPS_EXPECTS(dtype == KeyDtype::kInt32 || dtype == KeyDtype::kInt64 || dtype == KeyDtype::kUInt32 ||
                  dtype == KeyDtype::kUInt64,
              InvalidArgument, "GPU cache lookup: unknown key dtype code ", static_cast<int>(dtype));
  if (n == 0) return;
  HPS_EXPECTS(keys != nullptr, InvalidArgument, "GPU cache lookup: keys is null for ", n, " keys");
  HPS_EXPECTS(out != nullptr, InvalidArgument, "GPU cache lookup: out is null for ", n, " keys");
  // Positions travel as 32-bit values (the all-ones value marks an empty key slot in kernels).
  HPS_EXPECTS(n < std::numeric_limits<std::uint32_t>::max(), InvalidArgument, "GPU cache lookup: a batch of ", n,
              " keys exceeds the limit of ", std::numeric_limits<std::uint32_t>::max() - 1, " keys per call");
}

void GpuCacheBase::throw_invalid_key(const void* keys, KeyDtype dtype, bool key64, unsigned long long position,
                                     cudaStream_t stream) const {
  const std::size_t width = key_dtype_size(dtype);
  unsigned char bytes[8] = {};
  HPS_CUDA_CHECK(cudaMemcpyAsync(bytes, static_cast<const unsigned char*>(keys) + position * width, width,
                                 cudaMemcpyDeviceToHost, stream));
  // Host wait (error path only): the message names the offending value.
  HPS_CUDA_CHECK(cudaStreamSynchronize(stream));
  std::string value;
  if (dtype == KeyDtype::kUInt64) {
    std::uint64_t v = 0;
    std::memcpy(&v, bytes, sizeof(v));
    value = std::to_string(v);
  } else {
    std::int64_t v = 0;
    std::memcpy(&v, bytes, sizeof(v));
    value = std::to_string(v);
  }
  HPS_FAIL(InvalidArgument, "keys[", position, "] = ", value, " is not a ", key64 ? "64" : "32", "-bit key",
           key64 ? " (uint64 values above 9223372036854775807 cannot be stored)"
                 : " (32-bit models take values in [-2147483648, 4294967295]; set supportlonglong to true for wider "
                   "keys)");
}

std::size_t GpuCacheBase::staging_device_bytes() const {
  const Staging& s = staging_;
  return s.keys.bytes() + s.sorted_keys.bytes() + s.unique_keys.bytes() + s.order.bytes() + s.sorted_order.bytes() +
         s.unique_order.bytes() + s.count.bytes() + s.rows.bytes() + s.temp.bytes() + refresh_.keys.bytes() +
         refresh_.count.bytes() + refresh_.rows.bytes();
}

}  // namespace hps::cuda
