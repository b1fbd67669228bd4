// Host-side CUDA helpers of the GPU cache: the error-checking macro and small RAII owners
// (device guard, stream, event, device and pinned buffers).
//
// Every CUDA call goes through HPS_CUDA_CHECK, which throws hps::OutOfMemory for allocation
// failures and hps::Error (with the call, file and line) for everything else; nothing here exits
// or aborts. Destructors never throw: they release what they own and ignore late errors.
//
// Ownership: each wrapper owns its handle or allocation and is movable, not copyable.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <utility>

#include "hps/error.hpp"

namespace hps::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t error, const char* expression, const char* file, int line);

}  // namespace hps::cuda

/// Throws hps::Error (hps::OutOfMemory for allocation failures) naming the call and file:line.
#define HPS_CUDA_CHECK(expression)                                                  \
  do {                                                                              \
    const cudaError_t hps_cuda_status_ = (expression);                              \
    if (hps_cuda_status_ != cudaSuccess)                                            \
      ::hps::cuda::throw_cuda_error(hps_cuda_status_, #expression, __FILE__, __LINE__); \
  } while (0)

/// Checks the launch of the kernel just issued (bad configuration, missing kernel image...).
#define HPS_CUDA_CHECK_LAUNCH() HPS_CUDA_CHECK(cudaGetLastError())

namespace hps::cuda {

/// Makes `device` current for the scope and restores the caller's device afterwards.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
  bool changed_ = false;
};

/// A non-blocking stream (never synchronises with the legacy default stream).
class Stream {
 public:
  Stream();
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

/// An event without timing (cheapest kind), used only for ordering.
class Event {
 public:
  Event();
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

/// Device memory of the cache's tables (cudaMalloc), zero-filled in the order of `stream`. Or,
/// made by in_stream_order, allocated and freed in the order of that stream (cudaMallocAsync /
/// cudaFreeAsync), so that freeing it never waits for the device (cudaFree would): the stream must
/// then outlive it, and the owner makes sure that no other stream still reads it when it goes.
class DeviceAllocation {
 public:
  DeviceAllocation() = default;
  DeviceAllocation(std::size_t bytes, cudaStream_t stream);
  static DeviceAllocation in_stream_order(std::size_t bytes, cudaStream_t stream);
  ~DeviceAllocation();
  DeviceAllocation(DeviceAllocation&& other) noexcept { swap(other); }
  DeviceAllocation& operator=(DeviceAllocation&& other) noexcept {
    swap(other);
    return *this;
  }
  void* get() const { return ptr_; }
  std::size_t bytes() const { return bytes_; }

 private:
  void swap(DeviceAllocation& other) noexcept {
    std::swap(ptr_, other.ptr_);
    std::swap(bytes_, other.bytes_);
    std::swap(free_stream_, other.free_stream_);
  }
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
  cudaStream_t free_stream_ = nullptr;  // in stream order: the stream it is freed on; else null (cudaFree)
};

/// Device scratch memory that grows with the calls, allocated and freed in stream order
/// (cudaMallocAsync / cudaFreeAsync), so growing never synchronises the device. The owner makes
/// sure, with events, that no other stream still uses the old block when it grows.
class StreamBuffer {
 public:
  StreamBuffer() = default;
  ~StreamBuffer();
  StreamBuffer(const StreamBuffer&) = delete;
  StreamBuffer& operator=(const StreamBuffer&) = delete;
  /// Makes room for at least `bytes` (contents are not kept). Returns true when it reallocated.
  bool reserve(std::size_t bytes, cudaStream_t stream);
  void release(cudaStream_t stream);
  void* get() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  std::size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

/// Page-locked host memory (the staging buffers of every host<->device copy). The owner makes
/// sure, with events, that no copy still reads or writes it when it grows or is destroyed.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  ~PinnedBuffer();
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  bool reserve(std::size_t bytes);
  void* get() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  std::size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

/// Rounds a byte count up so buffers grow geometrically (fewer reallocations).
std::size_t grown_size(std::size_t needed, std::size_t current);

}  // namespace hps::cuda
