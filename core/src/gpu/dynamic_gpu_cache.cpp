#include "gpu/dynamic_gpu_cache.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>

#include "detail/key_dedup.hpp"
#include "hps/gpu/cache_sizing.hpp"

#include "gpu/dedup_kernels.hpp"
#include "gpu/dynamic_probe_kernels.hpp"
#include "gpu/dynamic_write_kernels.hpp"
#include "gpu/host_tier_kernels.hpp"

namespace hps::cuda {

namespace {
/// Up to this many missed positions, the raw missed keys go to the host and are deduplicated
/// there; above it the device sorts them (a dozen launches and one host wait, but linear in the
/// misses). On the H100 VM the host's dedup of 26,000 keys took 0.4-0.5 ms, the device path less.
constexpr std::size_t kHostDedupMisses = 8192;
/// Missed keys are resolved and uploaded in up to this many slices of at least kSliceKeys keys:
/// the copy of the first slice overlaps the resolving of the second. Each slice pays the lookup
/// threads' dispatch once; at 26,000 distinct misses two slices beat one, four and eight (H100 VM).
constexpr std::size_t kMaxSlices = 2;
constexpr std::size_t kSliceKeys = 2048;
/// Rows of one call the host-tier kernel stages for insertion into the cache at most (by bytes):
/// the staging is reserved before the call knows how many rows it will find.
constexpr std::size_t kMaxInsertBytes = std::size_t{64} << 20;
}  // namespace

DynamicGpuCache::DynamicGpuCache(const GpuCacheOptions& options) : GpuCacheBase(options) {
  DeviceGuard guard(options_.device);
  HPS_EXPECTS(options_.capacity < (std::uint64_t{1} << 34), InvalidArgument, "dynamic GPU cache: capacity ",
              options_.capacity, " rows exceeds the limit of ", (std::uint64_t{1} << 34) - 1);
  // The sizes `hps validate` plans with (hps/gpu/cache_sizing.hpp).
  const DynamicGpuCacheSize size = dynamic_gpu_cache_size(options_.capacity, options_.dim, options_.dtype);
  const std::uint64_t num_sets = size.sets;
  // Zero-filled: every slot starts empty (meta 0 = not occupied), every lock free.
  meta_ = DeviceAllocation(size.meta_bytes, writer_stream());
  tags_ = DeviceAllocation(size.tag_bytes, writer_stream());
  rows_ = DeviceAllocation(size.row_bytes, writer_stream());
  locks_ = DeviceAllocation(size.lock_bytes, writer_stream());  // a bit per set
  counters_ = DeviceAllocation(size.counter_bytes, writer_stream());
  table_bytes_ = meta_.bytes() + tags_.bytes() + rows_.bytes() + locks_.bytes() + counters_.bytes();
  view_.meta = static_cast<std::uint32_t*>(meta_.get());
  view_.tags = static_cast<std::uint64_t*>(tags_.get());
  view_.rows = rows_.get();
  view_.set_locks = static_cast<std::uint32_t*>(locks_.get());
  view_.counters = static_cast<DynamicCounters*>(counters_.get());
  view_.num_sets = num_sets;
  view_.capacity = options_.capacity;
  view_.dim = static_cast<std::uint32_t>(options_.dim);
  // Host wait (construction only): the zeroed table must be visible to lookups on any stream.
  HPS_CUDA_CHECK(cudaStreamSynchronize(writer_stream()));
}

DynamicGpuCache::~DynamicGpuCache() { shutdown(); }

GpuLookupResult DynamicGpuCache::lookup(const void* keys, KeyDtype dtype, bool key64, std::size_t n, float* out,
                                        StreamView stream_view, const MissResolver& resolve, const InsertGuard& guard) {
  check_lookup_arguments(keys, dtype, n, out);
  HPS_EXPECTS(stream_view.is_set(), InvalidArgument, "GpuCache::lookup: no stream given (StreamView is unset)");
  GpuLookupResult result;
  if (n == 0) return result;
  DeviceGuard device(options_.device);
  const auto stream = static_cast<cudaStream_t>(stream_view.handle());
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  HPS_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
  if (capture != cudaStreamCaptureStatusNone) return lookup_captured(keys, dtype, key64, n, out, stream);

  ScratchPool::Lease lease = scratch_.acquire(stream);
  LookupScratch& s = *lease;
  s.miss_keys.reserve(n * sizeof(std::int64_t), stream);
  s.miss_positions.reserve(n * sizeof(std::uint32_t), stream);
  const auto [status, next_status, eager_keys] = s.next_status();
  const MissSink sink{status, next_status, s.miss_keys.as<std::int64_t>(), s.miss_positions.as<std::uint32_t>(),
                      eager_keys};
  launch_probe(KeyInput{keys, dtype, key64}, n, out, sink, stream);

  // Misses served from the CPU-memory tier on the device (docs/gpu_cache.md): the second kernel
  // reads the probe's miss count on the device, so nothing waits for it here.
  const HostTierIndex* tier = tier_index_.get();
  const bool absent_is_default = tier != nullptr && tier->absent_means_default();
  std::size_t room = 0;
  if (tier != nullptr) {
    room = insert_room(n);
    s.left_keys.reserve(n * sizeof(std::int64_t), stream);
    s.left_positions.reserve(n * sizeof(std::uint32_t), stream);
    s.insert_keys.reserve(room * sizeof(std::int64_t), stream);
    s.insert_rows.reserve(room * options_.dim * sizeof(float), stream);
    TierSink tier_sink;
    tier_sink.status = status;
    tier_sink.miss_keys = s.miss_keys.as<std::int64_t>();
    tier_sink.miss_positions = s.miss_positions.as<std::uint32_t>();
    tier_sink.left_keys = s.left_keys.as<std::int64_t>();
    tier_sink.left_positions = s.left_positions.as<std::uint32_t>();
    tier_sink.eager_keys = eager_keys;
    tier_sink.insert_keys = s.insert_keys.as<std::int64_t>();
    tier_sink.insert_rows = s.insert_rows.as<float>();
    tier_sink.insert_room = room;
    tier_sink.absent_is_default = absent_is_default;
    launch_tier_lookup(tier->view(), half(), tier_sink, out, n, sm_count_, stream);
    if (absent_is_default && !keys_can_be_invalid(dtype, key64)) {
      // Every position is answered on the device and no key can be invalid: nothing for the host
      // to learn, so no host wait at all. The rows found are inserted in stream order.
      if (!enqueue_tier_insert(s, &status->insert_count, room, stream, guard)) {
        HPS_CUDA_CHECK(cudaEventRecord(s.done.get(), stream));  // the scratch's next user waits for this call
        s.done_pending = true;
      }
      result.hits = n;
      result.no_host_wait = true;
      return result;
    }
  }

  // One read brings the status and the first missed keys (a status block starts with its status).
  auto* block_host = s.status_host.as<StatusBlock>();
  const std::size_t eager = std::min(n, kEagerMissKeys);
  HPS_CUDA_CHECK(cudaMemcpyAsync(block_host, status, offsetof(StatusBlock, eager_keys) + eager * sizeof(std::int64_t),
                                 cudaMemcpyDeviceToHost, stream));
  // Host wait #1, the only one when every key hits (or was answered from the host tier on the
  // device): the host must learn whether anything is left for it (and whether a key was invalid)
  // before it can either return or resolve the rest.
  HPS_CUDA_CHECK(cudaStreamSynchronize(stream));
  // Everything this scratch queued before is now complete.
  s.done_pending = false;
  s.insert_pending = false;
  const LookupStatus seen = block_host->status;
  if (seen.first_invalid != kNoInvalidKey) throw_invalid_key(keys, dtype, key64, seen.first_invalid, stream);

  MissList list{s.miss_keys.as<std::int64_t>(), s.miss_positions.as<std::uint32_t>()};
  auto misses = static_cast<std::size_t>(seen.miss_count);
  if (tier != nullptr) {
    if (seen.insert_count > 0) enqueue_tier_insert(s, &status->insert_count, room, stream, guard);
    list = MissList{s.left_keys.as<std::int64_t>(), s.left_positions.as<std::uint32_t>()};
    misses = static_cast<std::size_t>(seen.left_count);
  }
  result.hits = n - misses;
  result.missed_positions = misses;
  if (misses == 0) return result;
  HPS_EXPECTS(static_cast<bool>(resolve), InvalidArgument, "GPU cache lookup: ", misses,
              " keys missed and no MissResolver was given");
  if (misses <= kEagerMissKeys) {
    resolve_misses_on_host(s, n, list, misses, block_host->eager_keys, out, stream, resolve, guard, result);
  } else {
    resolve_misses(s, n, list, misses, key64, out, stream, resolve, guard, result);
  }
  return result;
}

void DynamicGpuCache::launch_probe(const KeyInput& input, std::size_t n, float* out, const MissSink& sink,
                                   cudaStream_t stream) {
  const std::uint32_t epoch = epoch_.fetch_add(1, std::memory_order_relaxed) + 1;  // this lookup's LRU time
  launch_dynamic_probe(view_, half(), input, n, out, epoch, sink, probe_shape_, sm_count_, stream);
}

void DynamicGpuCache::enqueue_probe(const std::int64_t* keys, std::size_t n, float* out, const MissSink& sink,
                                    cudaStream_t stream) {
  DeviceGuard device(options_.device);
  launch_probe(KeyInput{keys, KeyDtype::kInt64, true}, n, out, sink, stream);
}

std::size_t DynamicGpuCache::insert_room(std::size_t n) const {
  const std::size_t by_bytes = std::max<std::size_t>(1024, kMaxInsertBytes / (options_.dim * sizeof(float)));
  return std::min({n, static_cast<std::size_t>(view_.capacity), by_bytes});
}

bool DynamicGpuCache::enqueue_tier_insert(LookupScratch& s, const unsigned long long* count, std::size_t room,
                                          cudaStream_t stream, const InsertGuard& guard) {
  if (room == 0) return false;
  // Why the host-side guard suffices although the rows are read by the device later: the
  // insertion is enqueued on the writer stream before lookup() returns. An update or erase that
  // began before this point makes the guard refuse (the rows may predate it). One that begins
  // after it enqueues its own cache write behind this insertion on the same stream, so that write
  // lands last (update overwrites keys present, erase removes them), whatever the rows read.
  std::lock_guard<std::mutex> lock(writer_mutex_);
  if (guard && !guard()) return false;
  HPS_CUDA_CHECK(cudaEventRecord(s.done.get(), stream));
  s.done_pending = true;
  const cudaStream_t writer = writer_stream();
  HPS_CUDA_CHECK(cudaStreamWaitEvent(writer, s.done.get(), 0));
  WriteBatch batch;
  batch.keys = s.insert_keys.as<std::int64_t>();
  batch.rows = s.insert_rows.as<float>();
  batch.count = count;  // may exceed the room: the kernel reads min(*count, n)
  batch.n = room;
  launch_dynamic_write(view_, half(), batch, WriteKind::kInsert, epoch_.load(std::memory_order_relaxed), sm_count_,
                       writer);
  // The next user of this scratch (and of its status entry, which holds the count) waits for it.
  HPS_CUDA_CHECK(cudaEventRecord(s.insert_done.get(), writer));
  s.insert_pending = true;
  return true;
}

DynamicGpuCache::CapturedBuffers::CapturedBuffers(std::size_t bytes) : bytes_(bytes) {
  // An allocation outside the graph (it outlives it): relaxed capture mode lets this thread call
  // cudaMalloc while its stream is being captured.
  cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
  HPS_CUDA_CHECK(cudaThreadExchangeStreamCaptureMode(&mode));
  void* ptr = nullptr;
  const cudaError_t status = cudaMalloc(&ptr, bytes);
  HPS_CUDA_CHECK(cudaThreadExchangeStreamCaptureMode(&mode));
  HPS_CUDA_CHECK(status);
  ptr_ = static_cast<char*>(ptr);
}

DynamicGpuCache::CapturedBuffers::~CapturedBuffers() {
  if (ptr_ != nullptr) (void)cudaFree(ptr_);
}

GpuLookupResult DynamicGpuCache::lookup_captured(const void* keys, KeyDtype dtype, bool key64, std::size_t n, float* out,
                                                 cudaStream_t stream) {
  const HostTierIndex* tier = tier_index_.get();
  HPS_EXPECTS(tier != nullptr && tier->absent_means_default(), InvalidArgument,
              "GPU cache lookup: this lookup is being captured in a CUDA graph, but its misses need the host (",
              tier == nullptr ? "no GPU-visible CPU-memory tier is attached: volatile_db must be a hash_map and "
                                "gpu_visible_host_tier true"
                              : "the hash map has a tier below it, or its GPU index is incomplete",
              "); run it without capture");
  HPS_EXPECTS(!keys_can_be_invalid(dtype, key64), InvalidArgument,
              "GPU cache lookup: this lookup is being captured in a CUDA graph, but ",
              dtype == KeyDtype::kUInt64 ? "uint64" : "int64", " keys of a ", key64 ? "64" : "32",
              "-bit model can be invalid, which only the host can report; pass int32/uint32 keys, or int64 keys with "
              "supportlonglong true");
  // Layout: [status: 2 x LookupStatus][miss keys: n][miss positions: n], 16-byte aligned parts.
  const std::size_t status_bytes = 2 * sizeof(LookupStatus);
  const std::size_t keys_bytes = (n * sizeof(std::int64_t) + 15) / 16 * 16;
  auto buffers = std::make_unique<CapturedBuffers>(status_bytes + keys_bytes + n * sizeof(std::uint32_t));
  auto* status = reinterpret_cast<LookupStatus*>(buffers->get());
  auto* miss_keys = reinterpret_cast<std::int64_t*>(buffers->get() + status_bytes);
  auto* miss_positions = reinterpret_cast<std::uint32_t*>(buffers->get() + status_bytes + keys_bytes);
  // Each replay starts from a zero count (a memset node; the probe's ring reset has no next call here).
  HPS_CUDA_CHECK(cudaMemsetAsync(status, 0, status_bytes, stream));
  const MissSink sink{status, status + 1, miss_keys, miss_positions, nullptr};
  launch_dynamic_probe(view_, half(), KeyInput{keys, dtype, key64}, n, out, epoch_.load(std::memory_order_relaxed),
                       sink, probe_shape_, sm_count_, stream);
  TierSink tier_sink;
  tier_sink.status = status;
  tier_sink.miss_keys = miss_keys;
  tier_sink.miss_positions = miss_positions;
  tier_sink.absent_is_default = true;  // nothing is ever left, so no left list; no insertion in a graph
  launch_tier_lookup(tier->view(), half(), tier_sink, out, n, sm_count_, stream);
  {
    std::lock_guard<std::mutex> lock(captured_mutex_);
    captured_.push_back(std::move(buffers));
  }
  GpuLookupResult result;
  result.hits = n;
  result.no_host_wait = true;
  return result;
}

bool DynamicGpuCache::attach_host_tier(const HostTierLink& link, std::string* why_not) {
  HPS_EXPECTS(link.tier != nullptr, InvalidArgument, "attach_host_tier: no tier given");
  HPS_EXPECTS(tier_index_ == nullptr, InvalidArgument, "attach_host_tier: a host tier is already attached");
  HPS_EXPECTS(link.tier->dim() == options_.dim, InvalidArgument, "attach_host_tier: the tier's rows have ",
              link.tier->dim(), " values, the cache's ", options_.dim);
  tier_index_ = HostTierIndex::create(options_.device, link.tier, link.last_tier, options_.default_value,
                                      link.hbm_share, sm_count_, why_not);
  return tier_index_ != nullptr;
}

std::size_t DynamicGpuCache::defaults_served() {
  return tier_index_ ? static_cast<std::size_t>(tier_index_->counters().defaults_served) : 0;
}

std::size_t DynamicGpuCache::host_tier_rows_served() {
  return tier_index_ ? static_cast<std::size_t>(tier_index_->counters().rows_served) : 0;
}

void DynamicGpuCache::resolve_misses(LookupScratch& s, std::size_t n, MissList list, std::size_t m, bool key64,
                                     float* out, cudaStream_t stream, const MissResolver& resolve,
                                     const InsertGuard& guard, GpuLookupResult& result) {
  if (m <= kHostDedupMisses) return resolve_misses_on_host(s, n, list, m, nullptr, out, stream, resolve, guard, result);
  const std::size_t dim = options_.dim;
  // 1. Deduplicate the missed keys on the device: sort (key, position), then run heads.
  s.sorted_keys.reserve(m * sizeof(std::int64_t), stream);
  s.sorted_positions.reserve(m * sizeof(std::uint32_t), stream);
  s.head_flags.reserve(m * sizeof(std::uint32_t), stream);
  s.unique_ids.reserve(m * sizeof(std::uint32_t), stream);
  s.unique.reserve((m + 1) * sizeof(std::int64_t), stream);
  s.temp.reserve(std::max(sort_temp_bytes(m), scan_temp_bytes(m)), stream);
  auto* unique_count = s.unique.as<unsigned long long>();
  auto* unique_keys = s.unique.as<std::int64_t>() + 1;
  sort_keys_with_payload(s.temp.get(), s.temp.bytes(), list.keys, s.sorted_keys.as<std::int64_t>(), list.positions,
                         s.sorted_positions.as<std::uint32_t>(), m, key64 ? 64 : 32, stream);
  unique_sorted_keys(s.temp.get(), s.temp.bytes(), s.sorted_keys.as<std::int64_t>(), m, s.head_flags.as<std::uint32_t>(),
                     s.unique_ids.as<std::uint32_t>(), unique_keys, unique_count, stream);

  // 2. [count][keys] to pinned host memory in one copy sized for m keys: missed keys are nearly
  // all distinct, so copying the unused tail costs less than a second round trip to size it.
  s.unique_host.reserve((m + 1) * sizeof(std::int64_t));
  auto* count_host = s.unique_host.as<unsigned long long>();
  auto* keys_host = s.unique_host.as<std::int64_t>() + 1;
  HPS_CUDA_CHECK(cudaMemcpyAsync(count_host, unique_count, (m + 1) * sizeof(std::int64_t), cudaMemcpyDeviceToHost,
                                 stream));
  // Host wait #2 (large miss sets): the resolver runs on the host and needs the keys.
  HPS_CUDA_CHECK(cudaStreamSynchronize(stream));
  const auto u = static_cast<std::size_t>(*count_host);
  result.missed_unique = u;

  // 3.-4. Resolve on the host into pinned memory laid out as [rows][found], uploading the rows
  // slice by slice, then the found flags. The stream was synchronised above, so no earlier
  // upload still reads this buffer.
  const std::size_t rows_bytes = u * dim * sizeof(float);
  s.rows_host.reserve(rows_bytes + u);
  s.rows.reserve(rows_bytes + u, stream);
  auto* rows_host = s.rows_host.as<float>();
  auto* found_host = reinterpret_cast<std::uint8_t*>(s.rows_host.as<char>() + rows_bytes);
  const std::size_t found = resolve_and_upload(keys_host, u, rows_host, found_host, s.rows.as<float>(), stream, resolve);
  HPS_CUDA_CHECK(cudaMemcpyAsync(s.rows.as<char>() + rows_bytes, found_host, u, cudaMemcpyHostToDevice, stream));

  // 5. Scatter to every position, insert what was found.
  finish_misses(s, n, m, u, found, unique_keys, s.unique_ids.as<std::uint32_t>(), s.sorted_positions.as<std::uint32_t>(),
                out, stream, guard, result);
}

void DynamicGpuCache::resolve_misses_on_host(LookupScratch& s, std::size_t n, MissList list, std::size_t m,
                                             const std::int64_t* missed_on_host, float* out, cudaStream_t stream,
                                             const MissResolver& resolve, const InsertGuard& guard,
                                             GpuLookupResult& result) {
  // A few thousand misses deduplicate on the host in microseconds, where the device's sort would
  // cost a dozen kernel launches: copy the raw missed keys down instead (unless the status read
  // already brought them).
  const std::size_t dim = options_.dim;
  const std::int64_t* missed = missed_on_host;
  if (missed == nullptr) {
    s.unique_host.reserve(m * sizeof(std::int64_t));
    HPS_CUDA_CHECK(cudaMemcpyAsync(s.unique_host.get(), list.keys, m * sizeof(std::int64_t), cudaMemcpyDeviceToHost,
                                   stream));
    // Host wait #2 (more than kEagerMissKeys misses): the host deduplicates and resolves the missed keys.
    HPS_CUDA_CHECK(cudaStreamSynchronize(stream));
    missed = s.unique_host.as<std::int64_t>();
  }
  thread_local KeyDedup dedup;
  dedup.build(missed, nullptr, m);
  const std::size_t u = dedup.unique_count();
  result.missed_unique = u;

  // Pinned layout, uploaded in one copy: [rows: u x dim][found: u][pad][keys: u][1-based unique id of each miss: m].
  // The stream was synchronised above, so no earlier upload still reads this buffer.
  const std::size_t rows_bytes = u * dim * sizeof(float);
  const std::size_t keys_offset = (rows_bytes + u + 7) / 8 * 8;
  const std::size_t slots_offset = keys_offset + u * sizeof(std::int64_t);
  const std::size_t total = slots_offset + m * sizeof(std::uint32_t);
  s.rows_host.reserve(total);
  char* host = s.rows_host.as<char>();
  auto* found_host = reinterpret_cast<std::uint8_t*>(host + rows_bytes);
  std::memcpy(host + keys_offset, dedup.unique_keys(), u * sizeof(std::int64_t));
  // scatter_rows takes 1-based unique ids (the device path gets them from an inclusive scan).
  auto* ids = reinterpret_cast<std::uint32_t*>(host + slots_offset);
  const std::uint32_t* slot_of = dedup.slot_of_position();
  for (std::size_t i = 0; i < m; ++i) ids[i] = slot_of[i] + 1;
  s.rows.reserve(total, stream);
  const std::size_t found = resolve_and_upload(dedup.unique_keys(), u, reinterpret_cast<float*>(host), found_host,
                                               s.rows.as<float>(), stream, resolve);
  // The rest after the rows: found flags, keys, ids.
  HPS_CUDA_CHECK(cudaMemcpyAsync(s.rows.as<char>() + rows_bytes, host + rows_bytes, total - rows_bytes,
                                 cudaMemcpyHostToDevice, stream));
  finish_misses(s, n, m, u, found, reinterpret_cast<const std::int64_t*>(s.rows.as<char>() + keys_offset),
                reinterpret_cast<const std::uint32_t*>(s.rows.as<char>() + slots_offset), list.positions, out, stream,
                guard, result);
}

std::size_t DynamicGpuCache::resolve_and_upload(const std::int64_t* keys, std::size_t u, float* rows_host,
                                                std::uint8_t* found_host, float* rows_device, cudaStream_t stream,
                                                const MissResolver& resolve) const {
  const std::size_t dim = options_.dim;
  const std::size_t slices = std::clamp<std::size_t>(u / kSliceKeys, 1, kMaxSlices);
  const std::size_t per_slice = (u + slices - 1) / slices;
  std::fill(found_host, found_host + u, std::uint8_t{0});
  for (std::size_t first = 0; first < u; first += per_slice) {
    const std::size_t count = std::min(per_slice, u - first);
    try {
      resolve(keys + first, count, rows_host + first * dim, found_host + first);
    } catch (...) {
      // Host wait (error path only): the slices already queued read this scratch's buffers, which
      // the next call that takes the scratch may fill from another stream.
      cudaStreamSynchronize(stream);
      throw;
    }
    HPS_CUDA_CHECK(cudaMemcpyAsync(rows_device + first * dim, rows_host + first * dim, count * dim * sizeof(float),
                                   cudaMemcpyHostToDevice, stream));
  }
  return static_cast<std::size_t>(std::count_if(found_host, found_host + u, [](std::uint8_t f) { return f != 0; }));
}

void DynamicGpuCache::finish_misses(LookupScratch& s, std::size_t n, std::size_t m, std::size_t u, std::size_t found,
                                    const std::int64_t* unique_keys, const std::uint32_t* unique_of_miss,
                                    const std::uint32_t* positions, float* out, cudaStream_t stream,
                                    const InsertGuard& guard, GpuLookupResult& result) {
  // s.rows on the device holds [rows: u x dim][found: u] (uploaded by the caller on `stream`).
  const std::size_t rows_bytes = u * options_.dim * sizeof(float);
  // Scatter each resolved row to every position that asked for it.
  scatter_rows(s.rows.as<float>(), unique_of_miss, positions, m, static_cast<std::uint32_t>(options_.dim), half(), out,
               sm_count_, stream);
  HPS_CUDA_CHECK(cudaEventRecord(s.done.get(), stream));
  s.done_pending = true;
  if (found == 0) return;

  // Insert the rows really found, guarded, on the writer stream after the upload.
  {
    std::lock_guard<std::mutex> lock(writer_mutex_);
    if (guard && !guard()) return;
    const cudaStream_t writer = writer_stream();
    HPS_CUDA_CHECK(cudaStreamWaitEvent(writer, s.done.get(), 0));
    WriteBatch batch;
    batch.keys = unique_keys;
    batch.rows = s.rows.as<float>();
    batch.found = reinterpret_cast<const std::uint8_t*>(s.rows.as<char>() + rows_bytes);
    batch.n = u;
    launch_dynamic_write(view_, half(), batch, WriteKind::kInsert, epoch_.load(std::memory_order_relaxed), sm_count_,
                         writer);
    HPS_CUDA_CHECK(cudaEventRecord(s.insert_done.get(), writer));
    s.insert_pending = true;
    result.inserted = found;
  }
  const double hit_rate = static_cast<double>(result.hits) / static_cast<double>(n);
  if (hit_rate < options_.hit_rate_threshold) {
    // Host wait (low hit rate only): the cache is cold, so the next lookups should find these
    // rows; waiting here makes the insertion visible before lookup() returns.
    HPS_CUDA_CHECK(cudaEventSynchronize(s.insert_done.get()));
  }
}

void DynamicGpuCache::enqueue_write(const WriteBatch& batch, WriteKind kind) {
  launch_dynamic_write(view_, half(), batch, kind, epoch_.load(std::memory_order_relaxed), sm_count_, writer_stream());
}

void DynamicGpuCache::enqueue_dump(std::uint64_t first, std::uint64_t end, std::int64_t* keys_out,
                                   unsigned long long* count) {
  launch_dynamic_dump(view_, first, end, keys_out, count, sm_count_, writer_stream());
}

DynamicCounters DynamicGpuCache::counters() const {
  DeviceGuard guard(options_.device);
  DynamicCounters counters{};
  // Ordered after every queued insertion on the writer stream.
  HPS_CUDA_CHECK(cudaMemcpyAsync(&counters, view_.counters, sizeof(counters), cudaMemcpyDeviceToHost, writer_stream()));
  // Host wait: the counts are needed on the host.
  HPS_CUDA_CHECK(cudaStreamSynchronize(writer_stream()));
  return counters;
}

std::size_t DynamicGpuCache::size() const { return static_cast<std::size_t>(counters().occupied); }

std::size_t DynamicGpuCache::memory_bytes() const {
  std::size_t captured = 0;
  {
    std::lock_guard<std::mutex> lock(captured_mutex_);
    for (const auto& buffers : captured_) captured += buffers->bytes();
  }
  return table_bytes_ + staging_device_bytes() + scratch_.device_bytes() + host_tier_index_bytes() + captured;
}

}  // namespace hps::cuda
