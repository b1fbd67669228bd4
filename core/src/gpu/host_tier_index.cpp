#include "gpu/host_tier_index.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "gpu/host_tier_kernels.hpp"
#include "hps/gpu/cache_sizing.hpp"
#include "hps/error.hpp"

namespace hps::cuda {

namespace {
constexpr double kMaxIndexLoad = 0.85;  // beyond it the index grows (or, where it may not, adds are dropped)
// A sweep (launch_tier_sweep) after this share of the slots were removed since the last one. Without
// sweeps, a tier whose keys come and go (evictions, Kafka's new keys) turns the index's empty slots
// into tombstones until every probe runs round the whole index: at 0.7 live entries per slot, a
// probe for an absent key took 6 slots fresh, 82 after removals of one index size and all of them
// after 4.5; with a sweep every 1/16 it holds at about 40 (benchmarks/tier_index_churn.cpp, a host
// model of these kernels' rules).
constexpr double kSweepAfterRemovedShare = 1.0 / 16;

void warn_incomplete_once() {
  static std::atomic<bool> warned{false};
  if (warned.exchange(true)) return;
  std::fprintf(stderr,
               "hps: warning: a host-tier index on the GPU is full; keys it cannot hold are served through the "
               "host (correct, slower). Raise host_tier_index_hbm_share so that it can grow.\n");
}
}  // namespace

std::unique_ptr<HostTierIndex> HostTierIndex::create(int device, std::shared_ptr<HashMapTier> tier, bool last_tier,
                                                     float default_value, double hbm_share, int sm_count,
                                                     std::string* why_not) {
  DeviceGuard guard(device);
  std::size_t free_bytes = 0, total_bytes = 0;
  HPS_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  const auto hbm_bytes = static_cast<std::size_t>(hbm_share * static_cast<double>(total_bytes));
  int host_pointers = 0;
  HPS_CUDA_CHECK(cudaDeviceGetAttribute(&host_pointers, cudaDevAttrCanUseHostPointerForRegisteredMem, device));
  if (!host_pointers) {
    *why_not = "device " + std::to_string(device) +
               " cannot read registered host memory through host pointers "
               "(cudaDevAttrCanUseHostPointerForRegisteredMem is 0)";
    return nullptr;
  }
  // The entries `hps validate` plans with (hps/gpu/cache_sizing.hpp).
  const std::uint64_t slots = host_tier_index_slots(tier->size(), tier->capacity());
  const std::size_t bytes = slots * sizeof(TierEntry);
  if (bytes > hbm_bytes) {
    *why_not = "the host-tier index of " + std::to_string(tier->size()) + " rows would take " + std::to_string(bytes) +
               " bytes of device " + std::to_string(device) + ", more than its share (host_tier_index_hbm_share: " +
               std::to_string(hbm_bytes) + " bytes)";
    return nullptr;
  }
  std::unique_ptr<HostTierIndex> index;
  try {
    index.reset(new HostTierIndex(device, std::move(tier), last_tier, slots, hbm_bytes, default_value, sm_count));
  } catch (const OutOfMemory& e) {
    *why_not = std::string("the host-tier index could not be allocated: ") + e.what();
    return nullptr;
  }
  // Reports every record held now (queued under each partition's lock) and flushes.
  try {
    index->tier_->add_record_listener(index.get());
  } catch (...) {
    index->tier_->remove_record_listener(index.get());  // never leave the tier a listener that is going away
    throw;
  }
  index->attached_ = true;
  return index;
}

HostTierIndex::HostTierIndex(int device, std::shared_ptr<HashMapTier> tier, bool last_tier, std::uint64_t slots,
                             std::size_t hbm_budget, float default_value, int sm_count)
    : device_(device), tier_(std::move(tier)), last_tier_(last_tier), sm_count_(sm_count), hbm_budget_(hbm_budget) {
  counters_ = DeviceAllocation(sizeof(TierCounters), stream_.get());
  current_word_ = DeviceAllocation(sizeof(TierTable*), stream_.get());
  generations_.push_back(allocate_generation(slots));
  publish(generations_.back());
  count_device_bytes();
  const RecordLayout layout = tier_->record_layout();
  view_.current = static_cast<const TierTable* const*>(current_word_.get());
  view_.counters = static_cast<TierCounters*>(counters_.get());
  view_.record_bytes = static_cast<std::uint32_t>(layout.record_bytes);
  // The miss kernel reads a record as 8-byte pieces from its start: the key at byte 8, and 4-byte
  // words up to the row's end.
  HPS_EXPECTS(layout.key_offset == 8 && layout.row_offset % 4 == 0 && layout.record_bytes % 8 == 0, InvalidArgument,
              "host-tier index: unexpected record layout (key at " + std::to_string(layout.key_offset) + ", row at " +
                  std::to_string(layout.row_offset) + ", " + std::to_string(layout.record_bytes) + " bytes per record)");
  view_.row_offset = static_cast<std::uint32_t>(layout.row_offset);
  view_.dim = static_cast<std::uint32_t>(layout.dim);
  view_.default_value = default_value;
  // Host wait (construction only): the zeroed index must be visible to lookups on any stream.
  HPS_CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
}

HostTierIndex::Generation HostTierIndex::allocate_generation(std::uint64_t slots) {
  Generation generation;
  // Zeroed: every entry empty.
  generation.entries = DeviceAllocation::in_stream_order(slots * sizeof(TierEntry), stream_.get());
  generation.descriptor = DeviceAllocation::in_stream_order(sizeof(TierTable), stream_.get());
  return generation;
}

void HostTierIndex::publish(const Generation& generation) {
  launch_tier_publish(static_cast<TierTable*>(generation.descriptor.get()), generation.table(),
                      static_cast<const TierTable**>(current_word_.get()), stream_.get());
}

void HostTierIndex::count_device_bytes() {
  std::size_t bytes = counters_.bytes() + current_word_.bytes() + staging_device_.bytes();
  for (const Generation& g : generations_) bytes += g.entries.bytes() + g.descriptor.bytes();
  device_bytes_.store(bytes, std::memory_order_relaxed);
}

std::uint64_t HostTierIndex::slots() const {
  std::lock_guard apply(apply_mutex_);
  return current().slots;
}

std::size_t HostTierIndex::growths() const {
  std::lock_guard apply(apply_mutex_);
  return growths_;
}

std::size_t HostTierIndex::held_generations() const {
  std::lock_guard apply(apply_mutex_);
  return generations_.size();
}

bool HostTierIndex::make_room(std::int64_t adds) {
  const TierTable from = current();
  const auto limit = static_cast<std::int64_t>(kMaxIndexLoad * static_cast<double>(from.slots));
  if (live_estimate_ + adds <= limit) return true;
  const std::uint64_t slots = host_tier_index_grown_slots(from.slots, static_cast<std::size_t>(live_estimate_ + adds));
  std::size_t entry_bytes = slots * sizeof(TierEntry);
  for (const Generation& g : generations_) entry_bytes += g.entries.bytes();
  if (entry_bytes > hbm_budget_) return false;
  Generation next;
  try {
    next = allocate_generation(slots);
  } catch (const OutOfMemory&) {
    return false;
  }
  // On the applies' stream, after every earlier apply: the copy holds the index as the tier left
  // it before this run. Published at once (lookups may use it before the run's adds land, as they
  // may use the current generation before an apply lands: the tier call has not returned yet).
  launch_tier_rehash(from, next.table(), view_.counters, sm_count_, stream_.get());
  publish(next);
  generations_.push_back(std::move(next));
  ++growths_;
  removed_since_sweep_ = 0;  // the new generation has no tombstones
  count_device_bytes();
  return true;
}

void HostTierIndex::free_older_generations() {
  // Freed in the order of the index's stream (after the rehash that read the last of them).
  generations_.erase(generations_.begin(), generations_.end() - 1);
  count_device_bytes();
}

HostTierIndex::~HostTierIndex() {
  if (attached_) tier_->remove_record_listener(this);
  int previous = -1;
  const bool switched =
      cudaGetDevice(&previous) == cudaSuccess && previous != device_ && cudaSetDevice(device_) == cudaSuccess;
  // Host wait (destruction): a queued apply still writes the index, freed next.
  (void)cudaStreamSynchronize(stream_.get());
  generations_.clear();  // on the index's device
  if (switched) (void)cudaSetDevice(previous);
}

void HostTierIndex::queue(bool added, const std::int64_t* keys, const void* const* records, std::size_t n) {
  if (n == 0) return;
  std::lock_guard lock(queue_mutex_);
  const std::size_t begin = pending_keys_.size();
  pending_keys_.insert(pending_keys_.end(), keys, keys + n);
  for (std::size_t i = 0; i < n; ++i) pending_records_.push_back(reinterpret_cast<std::uint64_t>(records[i]));
  // Consecutive notifications of one kind form one run: within it keys are distinct (a key is
  // added again only after its removal, and removed again only after an add).
  if (!runs_.empty() && runs_.back().added == added && runs_.back().end == begin) {
    runs_.back().end = pending_keys_.size();
  } else {
    runs_.push_back(Run{added, begin, pending_keys_.size()});
  }
}

void HostTierIndex::records_added(const std::int64_t* keys, const void* const* records, std::size_t n) {
  queue(true, keys, records, n);
}

void HostTierIndex::records_removed(const std::int64_t* keys, const void* const* records, std::size_t n) {
  queue(false, keys, records, n);
}

void HostTierIndex::flush() {
  // Whoever holds this applies everything queued so far; a caller whose notifications another
  // caller took waits here until they are applied.
  std::lock_guard apply(apply_mutex_);
  std::vector<Run> runs;
  std::vector<std::int64_t> keys;
  std::vector<std::uint64_t> records;
  {
    std::lock_guard lock(queue_mutex_);
    runs.swap(runs_);
    keys.swap(pending_keys_);
    records.swap(pending_records_);
  }
  if (runs.empty()) return;
  DeviceGuard guard(device_);
  const cudaStream_t stream = stream_.get();
  const std::size_t n = keys.size();
  const std::size_t key_bytes = n * sizeof(std::int64_t);
  // The previous flush synchronised the stream, so no copy still reads the staging buffers.
  staging_host_.reserve(2 * key_bytes);
  staging_device_.reserve(2 * key_bytes, stream);
  std::memcpy(staging_host_.get(), keys.data(), key_bytes);
  std::memcpy(staging_host_.as<char>() + key_bytes, records.data(), key_bytes);
  HPS_CUDA_CHECK(cudaMemcpyAsync(staging_device_.get(), staging_host_.get(), 2 * key_bytes, cudaMemcpyHostToDevice,
                                 stream));
  const auto* keys_device = staging_device_.as<std::int64_t>();
  const auto* records_device = reinterpret_cast<const std::uint64_t*>(staging_device_.as<char>() + key_bytes);
  count_device_bytes();  // the staging buffer may have grown
  bool dropped = false;
  for (const Run& run : runs) {
    const auto count = static_cast<std::int64_t>(run.end - run.begin);
    if (run.added && !make_room(count)) {
      // Full: this run's keys are not indexed, so "absent from the index" no longer proves absence.
      complete_.store(false, std::memory_order_release);
      dropped = true;
      continue;
    }
    launch_tier_apply(current(), view_.counters, keys_device + run.begin, records_device + run.begin,
                      run.end - run.begin, run.added, sm_count_, stream);
    live_estimate_ = run.added ? live_estimate_ + count : std::max<std::int64_t>(0, live_estimate_ - count);
    if (!run.added) removed_since_sweep_ += static_cast<std::uint64_t>(count);
  }
  if (static_cast<double>(removed_since_sweep_) >= kSweepAfterRemovedShare * static_cast<double>(current().slots)) {
    launch_tier_sweep(current(), view_.counters, sm_count_, stream);
    removed_since_sweep_ = 0;
  }
  TierCounters counters{};
  HPS_CUDA_CHECK(cudaMemcpyAsync(&counters, view_.counters, sizeof(counters), cudaMemcpyDeviceToHost, stream));
  // Host wait: the tier's write call returns only once the index matches it (RecordListener).
  HPS_CUDA_CHECK(cudaStreamSynchronize(stream));
  if (counters.failed_adds > 0) {
    complete_.store(false, std::memory_order_release);
    dropped = true;
  }
  // The copy ran after the newest generation was published: no block reading the index then means
  // none still holds an older generation, and every lookup starting later loads the newest one.
  if (generations_.size() > 1 && counters.readers == 0) free_older_generations();
  if (dropped) warn_incomplete_once();
}

HostTierIndex::Census HostTierIndex::census() const {
  std::lock_guard apply(apply_mutex_);
  DeviceGuard guard(device_);
  const TierTable table = current();
  std::vector<TierEntry> entries(table.slots);
  HPS_CUDA_CHECK(cudaMemcpyAsync(entries.data(), table.entries, entries.size() * sizeof(TierEntry),
                                 cudaMemcpyDeviceToHost, stream_.get()));
  // Host wait (diagnostics only): on the index's own stream, after its last apply.
  HPS_CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
  Census census;
  for (const TierEntry& e : entries) {
    if (e.record == kTierEmpty) {
      ++census.empty;
    } else if (e.record == kTierTombstone) {
      ++census.tombstones;
    } else if (e.record >= kTierFirstAddress) {
      ++census.live;
    }
  }
  return census;
}

TierCounters HostTierIndex::counters() const {
  DeviceGuard guard(device_);
  TierCounters counters{};
  HPS_CUDA_CHECK(cudaMemcpyAsync(&counters, view_.counters, sizeof(counters), cudaMemcpyDeviceToHost, stream_.get()));
  // Host wait (stats only): on the index's own stream, not on any lookup's.
  HPS_CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
  return counters;
}

}  // namespace hps::cuda
