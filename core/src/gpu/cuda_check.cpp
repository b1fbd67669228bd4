#include "gpu/cuda_check.hpp"

#include <algorithm>

namespace hps::cuda {

void throw_cuda_error(cudaError_t error, const char* expression, const char* file, int line) {
  // Clear a non-sticky error so that it does not resurface in an unrelated later call.
  (void)cudaGetLastError();
  const auto message = detail::concat("CUDA error ", cudaGetErrorName(error), " (", cudaGetErrorString(error),
                                      ") in ", expression, " at ", file, ":", line);
  if (error == cudaErrorMemoryAllocation) throw OutOfMemory(message);
  throw Error(message);
}

DeviceGuard::DeviceGuard(int device) {
  HPS_CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ != device) {
    HPS_CUDA_CHECK(cudaSetDevice(device));
    changed_ = true;
  }
}

DeviceGuard::~DeviceGuard() {
  if (changed_) (void)cudaSetDevice(previous_);
}

Stream::Stream() { HPS_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }

Stream::~Stream() {
  if (stream_ != nullptr) (void)cudaStreamDestroy(stream_);
}

Event::Event() { HPS_CUDA_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming)); }

Event::~Event() {
  if (event_ != nullptr) (void)cudaEventDestroy(event_);
}

DeviceAllocation::DeviceAllocation(std::size_t bytes, cudaStream_t stream) : bytes_(bytes) {
  if (bytes == 0) return;
  HPS_CUDA_CHECK(cudaMalloc(&ptr_, bytes));
  const cudaError_t status = cudaMemsetAsync(ptr_, 0, bytes, stream);
  if (status != cudaSuccess) {
    (void)cudaFree(ptr_);
    ptr_ = nullptr;
    HPS_CUDA_CHECK(status);
  }
}

DeviceAllocation DeviceAllocation::in_stream_order(std::size_t bytes, cudaStream_t stream) {
  DeviceAllocation allocation;
  allocation.bytes_ = bytes;
  if (bytes == 0) return allocation;
  HPS_CUDA_CHECK(cudaMallocAsync(&allocation.ptr_, bytes, stream));
  allocation.free_stream_ = stream;  // from here on the destructor frees it in stream order
  HPS_CUDA_CHECK(cudaMemsetAsync(allocation.ptr_, 0, bytes, stream));
  return allocation;
}

DeviceAllocation::~DeviceAllocation() {
  if (ptr_ == nullptr) return;
  if (free_stream_ != nullptr) {
    (void)cudaFreeAsync(ptr_, free_stream_);
  } else {
    (void)cudaFree(ptr_);
  }
}

std::size_t grown_size(std::size_t needed, std::size_t current) {
  // 1.5x growth, 256-byte granules: a batch slightly larger than the last one does not
  // reallocate every call.
  const std::size_t target = std::max(needed, current + current / 2);
  return (target + 255) / 256 * 256;
}

StreamBuffer::~StreamBuffer() {
  // The owner has synchronised every stream that used the buffer before destroying it.
  if (ptr_ != nullptr) (void)cudaFree(ptr_);
}

bool StreamBuffer::reserve(std::size_t bytes, cudaStream_t stream) {
  if (bytes <= bytes_) return false;
  const std::size_t size = grown_size(bytes, bytes_);
  release(stream);
  HPS_CUDA_CHECK(cudaMallocAsync(&ptr_, size, stream));
  bytes_ = size;
  return true;
}

void StreamBuffer::release(cudaStream_t stream) {
  if (ptr_ == nullptr) return;
  HPS_CUDA_CHECK(cudaFreeAsync(ptr_, stream));
  ptr_ = nullptr;
  bytes_ = 0;
}

PinnedBuffer::~PinnedBuffer() {
  if (ptr_ != nullptr) (void)cudaFreeHost(ptr_);
}

bool PinnedBuffer::reserve(std::size_t bytes) {
  if (bytes <= bytes_) return false;
  const std::size_t size = grown_size(bytes, bytes_);
  if (ptr_ != nullptr) {
    HPS_CUDA_CHECK(cudaFreeHost(ptr_));
    ptr_ = nullptr;
    bytes_ = 0;
  }
  HPS_CUDA_CHECK(cudaHostAlloc(&ptr_, size, cudaHostAllocPortable));
  bytes_ = size;
  return true;
}

}  // namespace hps::cuda
