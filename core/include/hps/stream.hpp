// StreamView: the CUDA stream a device call runs on, as the caller gave it.
//
// It holds a cudaStream_t as void* so that public headers need no CUDA header. A default-
// constructed view is *unset*: device calls refuse it (InvalidArgument) rather than fall back to
// CUDA's legacy default stream, which would serialise with every other stream of the process.
// StreamView::cuda(handle) names a stream explicitly; a null handle there explicitly means the
// legacy default stream (what a framework's "current stream" may be).
//
// Ownership: a view borrows the stream; the caller keeps it alive for the call.
// Threads: a plain value, freely copied.
#pragma once

#include "hps/export.hpp"

namespace hps HPS_EXPORT {

class StreamView {
 public:
  /// Unset: no stream was given.
  constexpr StreamView() = default;
  /// The CUDA stream `handle` (a cudaStream_t); nullptr is the legacy default stream, on purpose.
  static constexpr StreamView cuda(void* handle) { return StreamView(handle); }

  constexpr bool is_set() const { return set_; }
  /// The cudaStream_t (nullptr: the legacy default stream, or an unset view; check is_set()).
  constexpr void* handle() const { return handle_; }

 private:
  constexpr explicit StreamView(void* handle) : handle_(handle), set_(true) {}
  void* handle_ = nullptr;
  bool set_ = false;
};

}  // namespace hps
