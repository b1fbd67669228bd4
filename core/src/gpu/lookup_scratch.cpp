#include "gpu/lookup_scratch.hpp"

namespace hps::cuda {

namespace {
const unsigned long long kFreshFirstInvalid = kNoInvalidKey;
}

LookupScratch::LookupScratch(cudaStream_t first_stream) : stream(first_stream) {
  status.reserve(2 * sizeof(StatusBlock), first_stream);
  HPS_CUDA_CHECK(cudaMemsetAsync(status.get(), 0, 2 * sizeof(StatusBlock), first_stream));
  for (int i = 0; i < 2; ++i) {
    // Copied from the constant, not from a host variable, so the copy may run after this returns.
    HPS_CUDA_CHECK(cudaMemcpyAsync(&status.as<StatusBlock>()[i].status.first_invalid, &kFreshFirstInvalid,
                                   sizeof(kFreshFirstInvalid), cudaMemcpyHostToDevice, first_stream));
  }
  status_host.reserve(sizeof(StatusBlock));
}

LookupScratch::StatusPair LookupScratch::next_status() {
  auto* ring = status.as<StatusBlock>();
  const unsigned now = parity;
  parity ^= 1u;
  return {&ring[now].status, &ring[now ^ 1u].status, ring[now].eager_keys};
}

std::size_t LookupScratch::device_bytes() const {
  return status.bytes() + miss_keys.bytes() + miss_positions.bytes() + sorted_keys.bytes() + sorted_positions.bytes() +
         head_flags.bytes() + unique_ids.bytes() + unique.bytes() + rows.bytes() + temp.bytes() + left_keys.bytes() +
         left_positions.bytes() + insert_keys.bytes() + insert_rows.bytes();
}

ScratchPool::Lease::~Lease() {
  if (scratch_) pool_->give_back(std::move(scratch_));
}

namespace {
/// Whether the insertion that last read `s` has landed. A host query, never a wait.
bool insertion_landed(LookupScratch& s) {
  if (!s.insert_pending) return true;
  const cudaError_t state = cudaEventQuery(s.insert_done.get());
  if (state == cudaErrorNotReady) {
    // Not an error, but some runtimes also leave it as the thread's last error: clear exactly that.
    if (cudaPeekAtLastError() == cudaErrorNotReady) (void)cudaGetLastError();
    return false;
  }
  HPS_CUDA_CHECK(state);
  s.insert_pending = false;
  return true;
}
}  // namespace

ScratchPool::Lease ScratchPool::acquire(cudaStream_t stream) {
  std::unique_ptr<LookupScratch> scratch;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // Preference: this stream's scratch whose insertion landed; any whose insertion landed; a new
    // one while fewer than kScratchesBeforeWaiting exist; this stream's (or any), its insertion
    // awaited on the device below. Back-to-back calls on one stream thus alternate between two
    // scratches instead of each waiting for the insertion of the call before it.
    auto same = idle_.end(), landed = idle_.end();
    for (auto it = idle_.begin(); it != idle_.end(); ++it) {
      const bool mine = (*it)->stream == stream;
      if (mine && same == idle_.end()) same = it;
      if ((mine || landed == idle_.end()) && insertion_landed(**it)) {
        landed = it;
        if (mine) break;
      }
    }
    auto pick = landed;
    if (pick == idle_.end() && !idle_.empty() && created_ >= kScratchesBeforeWaiting) {
      pick = same != idle_.end() ? same : idle_.end() - 1;
    }
    if (pick != idle_.end()) {
      scratch = std::move(*pick);
      idle_.erase(pick);
    } else {
      ++created_;
    }
  }
  if (!scratch) return Lease(this, std::make_unique<LookupScratch>(stream));
  Lease lease(this, std::move(scratch));
  // Device-side ordering only: this stream's work waits for the previous users of the buffers.
  if (lease->insert_pending) {
    HPS_CUDA_CHECK(cudaStreamWaitEvent(stream, lease->insert_done.get(), 0));
    lease->insert_pending = false;  // from here on, ordering flows through this stream
  }
  if (lease->done_pending && lease->stream != stream) {
    HPS_CUDA_CHECK(cudaStreamWaitEvent(stream, lease->done.get(), 0));
  }
  lease->stream = stream;
  return lease;
}

void ScratchPool::give_back(std::unique_ptr<LookupScratch> scratch) {
  std::lock_guard<std::mutex> lock(mutex_);
  idle_.push_back(std::move(scratch));
}

void ScratchPool::clear() noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  // Host waits (destruction): queued copies and kernels still use these buffers.
  for (auto& scratch : idle_) {
    if (scratch->done_pending) (void)cudaEventSynchronize(scratch->done.get());
    if (scratch->insert_pending) (void)cudaEventSynchronize(scratch->insert_done.get());
  }
  idle_.clear();
  created_ = 0;
}

std::size_t ScratchPool::device_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::size_t bytes = 0;
  for (const auto& scratch : idle_) bytes += scratch->device_bytes();
  return bytes;
}

}  // namespace hps::cuda
