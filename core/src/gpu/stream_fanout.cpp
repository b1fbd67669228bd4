#include "detail/stream_fanout.hpp"

#include <cuda_runtime_api.h>

#include <mutex>
#include <vector>

#include "gpu/cuda_check.hpp"

namespace hps {

namespace {

// A worker stream with the event it records when its share of a call is done.
struct Lane {
  cudaStream_t stream = nullptr;
  cudaEvent_t done = nullptr;
};

// Lanes of every device, created on first use and reused by later calls.
class LanePool {
 public:
  static LanePool& instance() {
    static LanePool pool;  // lives to process exit: streams are released with the context
    return pool;
  }

  Lane take(int device) {
    std::lock_guard lock(mutex_);
    if (free_.size() <= static_cast<std::size_t>(device)) free_.resize(static_cast<std::size_t>(device) + 1);
    auto& lanes = free_[static_cast<std::size_t>(device)];
    if (!lanes.empty()) {
      const Lane lane = lanes.back();
      lanes.pop_back();
      return lane;
    }
    Lane lane;
    HPS_CUDA_CHECK(cudaStreamCreateWithFlags(&lane.stream, cudaStreamNonBlocking));
    HPS_CUDA_CHECK(cudaEventCreateWithFlags(&lane.done, cudaEventDisableTiming));
    return lane;
  }

  void give_back(int device, const Lane& lane) {
    std::lock_guard lock(mutex_);
    free_[static_cast<std::size_t>(device)].push_back(lane);
  }

 private:
  std::mutex mutex_;
  std::vector<std::vector<Lane>> free_;
};

}  // namespace

struct StreamFanout::State {
  int device = 0;
  cudaStream_t caller = nullptr;
  cudaEvent_t start = nullptr;  // recorded on the caller's stream: the workers wait for it
  std::vector<Lane> lanes;
  bool joined = false;
};

StreamFanout::StreamFanout(int device, void* caller_stream, std::size_t count) : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.device = device;
  s.caller = static_cast<cudaStream_t>(caller_stream);
  const cuda::DeviceGuard guard(device);  // lanes are created on `device`; the caller's device is restored
  const Lane first = LanePool::instance().take(device);
  s.lanes.push_back(first);
  s.start = first.done;  // this lane's event marks the start; it is recorded again at its end
  HPS_CUDA_CHECK(cudaEventRecord(s.start, s.caller));
  for (std::size_t i = 1; i < count; ++i) s.lanes.push_back(LanePool::instance().take(device));
  for (const Lane& lane : s.lanes) HPS_CUDA_CHECK(cudaStreamWaitEvent(lane.stream, s.start, 0));
}

StreamFanout::~StreamFanout() {
  if (!state_->joined) {
    try {
      join();
    } catch (...) {
      // Destructors must not throw; the error already surfaced (or will) through the lookups.
    }
  }
}

void* StreamFanout::stream(std::size_t i) const { return state_->lanes.at(i).stream; }

void StreamFanout::join() {
  State& s = *state_;
  s.joined = true;
  for (const Lane& lane : s.lanes) {
    HPS_CUDA_CHECK(cudaEventRecord(lane.done, lane.stream));
    HPS_CUDA_CHECK(cudaStreamWaitEvent(s.caller, lane.done, 0));
  }
  // An event may be recorded again once the waits above are enqueued: a wait binds to the
  // record that preceded it.
  for (const Lane& lane : s.lanes) LanePool::instance().give_back(s.device, lane);
}

}  // namespace hps
