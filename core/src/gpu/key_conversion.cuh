// Device-side key conversion: the rules of core/src/keys.cpp (canonicalize_keys), applied to each
// key as a kernel reads it, so no separate conversion pass or buffer is needed.
//  - 64-bit models: int32/uint32/int64 widen losslessly; uint64 above INT64_MAX is invalid.
//  - 32-bit models: a key is a 32-bit pattern stored as its unsigned value 0..2^32-1; int64/uint64
//    values outside [-2^31, 2^32) are invalid (never truncated).
#pragma once

#include <cstdint>

#include "gpu/kernel_types.hpp"

namespace hps::cuda {

/// Position marking a key slot of a batch that holds no key (past the end of the call, or invalid).
constexpr std::uint32_t kDeadPosition = 0xFFFFFFFFu;

/// Positions of the K keys a lane group serves in the warp iteration starting at `base`: key k of
/// group g is base + k * kGroupsPerWarp + g (consecutive groups read consecutive keys).
template <int K, int kGroupsPerWarp>
__device__ __forceinline__ void key_positions(std::uint64_t base, unsigned group, std::uint64_t n,
                                              std::uint32_t (&pos)[K]) {
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const std::uint64_t p = base + static_cast<std::uint64_t>(k * kGroupsPerWarp) + group;
    pos[k] = p < n ? static_cast<std::uint32_t>(p) : kDeadPosition;
  }
}

/// Loads the raw bits of keys[pos[k]] for K positions at once (every load is issued before any
/// is used), so the K keys of a lane group travel through memory together.
template <int K>
__device__ __forceinline__ void load_raw_keys(const KeyInput& input, const std::uint32_t (&pos)[K],
                                              std::uint64_t (&raw)[K]) {
  if (input.dtype == KeyDtype::kInt32 || input.dtype == KeyDtype::kUInt32) {
    const auto* keys = static_cast<const std::uint32_t*>(input.keys);
#pragma unroll
    for (int k = 0; k < K; ++k) raw[k] = pos[k] != kDeadPosition ? keys[pos[k]] : 0u;
  } else {
    const auto* keys = static_cast<const std::uint64_t*>(input.keys);
#pragma unroll
    for (int k = 0; k < K; ++k) raw[k] = pos[k] != kDeadPosition ? keys[pos[k]] : 0u;
  }
}

/// Converts the raw bits of one key (as loaded by load_raw_keys) to its canonical value; false
/// when it is not a key of the model's width.
__device__ __forceinline__ bool canonical_from_raw(const KeyInput& input, std::uint64_t raw, std::int64_t& key) {
  constexpr std::int64_t kTwoPow32 = std::int64_t{1} << 32;
  switch (input.dtype) {
    case KeyDtype::kInt32: {
      const auto v = static_cast<std::int32_t>(static_cast<std::uint32_t>(raw));
      key = input.key64 ? static_cast<std::int64_t>(v) : static_cast<std::int64_t>(static_cast<std::uint32_t>(v));
      return true;
    }
    case KeyDtype::kUInt32:
      key = static_cast<std::int64_t>(raw & 0xFFFFFFFFu);
      return true;
    case KeyDtype::kInt64: {
      const auto v = static_cast<std::int64_t>(raw);
      if (input.key64) {
        key = v;
        return true;
      }
      if (v < INT32_MIN || v >= kTwoPow32) return false;
      key = v < 0 ? v + kTwoPow32 : v;
      return true;
    }
    case KeyDtype::kUInt64: {
      const std::uint64_t limit = input.key64 ? static_cast<std::uint64_t>(INT64_MAX) : static_cast<std::uint64_t>(kTwoPow32 - 1);
      if (raw > limit) return false;
      key = static_cast<std::int64_t>(raw);
      return true;
    }
  }
  return false;
}

}  // namespace hps::cuda
