// Side-by-side device work for one call (internal).
//
// A StreamFanout hands out worker streams of one device that start after the work already queued
// on the caller's stream, and join() makes the caller's stream continue only after all of them.
// Several tables of one lookup_many() call each get a worker stream, so their lookups (each with its
// own host synchronisation) overlap instead of queueing behind each other. Streams and events come
// from a per-device pool and are reused. Builds without CUDA throw BackendUnavailable.
#pragma once

#include <cstddef>
#include <memory>

namespace hps {

class StreamFanout {
 public:
  StreamFanout(int device, void* caller_stream, std::size_t count);
  ~StreamFanout();  // joins if join() was not called
  StreamFanout(const StreamFanout&) = delete;
  StreamFanout& operator=(const StreamFanout&) = delete;

  void* stream(std::size_t i) const;
  /// The caller's stream waits (on the device, not the host) for every worker stream.
  void join();

  struct State;

 private:
  std::unique_ptr<State> state_;
};

}  // namespace hps
