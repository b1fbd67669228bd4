// The bijective 64-bit mixes behind the GPU caches' placement: MurmurHash3's finaliser (fmix64),
// its inverse, and a second mix for a key's other candidate set. Host and device: the kernels use
// them, and the CPU test suite (tests/cpp/test_key_mix.cpp) checks the inverse without a GPU.
// Header only, no state: safe from any thread.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define HPS_MIX_INLINE __host__ __device__ __forceinline__
#else
#define HPS_MIX_INLINE inline
#endif

namespace hps::cuda {

/// MurmurHash3's 64-bit finaliser (fmix64), a bijective mix: spreads structured keys (sequential ids,
/// keys with a common stride) over sets and buckets.
HPS_MIX_INLINE std::uint64_t murmur3_fmix64(std::int64_t key) {
  auto h = static_cast<std::uint64_t>(key);
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

/// The inverse of murmur3_fmix64 (xorshifts by 33 are their own inverse; the multipliers' inverses
/// mod 2^64): the dynamic cache stores hashes and recovers keys from them.
HPS_MIX_INLINE std::int64_t murmur3_fmix64_inverse(std::uint64_t h) {
  h ^= h >> 33;
  h *= 0x9cb4b2f8129337dbULL;
  h ^= h >> 33;
  h *= 0x4f74430c22a54005ULL;
  h ^= h >> 33;
  return static_cast<std::int64_t>(h);
}

/// A second bijective mix of an already mixed key hash (a different multiply-xorshift chain), so
/// that a key's two candidate sets are independent of each other and of its digest.
HPS_MIX_INLINE std::uint64_t rehash(std::uint64_t h) {
  h += 0x9E3779B97F4A7C15ULL;
  h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ULL;
  h = (h ^ (h >> 27)) * 0x94D049BB133111EBULL;
  return h ^ (h >> 31);
}

}  // namespace hps::cuda

#undef HPS_MIX_INLINE
