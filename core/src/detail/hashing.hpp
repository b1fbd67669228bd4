// Key hashing (internal): the host tiers' partition and bucket mix, and the GPU caches' bijective
// mixes (their placement, and the dynamic cache's recovery of a key from its stored hash). Host and
// device: the kernels include this too, and tests/cpp/test_key_mix.cpp checks the mixes on the CPU.
// Header only, no state: safe from any thread.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define HPS_HASH_INLINE __host__ __device__ __forceinline__
#else
#define HPS_HASH_INLINE inline
#endif

namespace hps {

/// splitmix64's finalizer, a bijective 64-bit mixer: distinct keys get distinct hashes, and
/// every output bit depends on every key bit, so both halves can be used independently.
HPS_HASH_INLINE std::uint64_t splitmix64(std::int64_t key) {
  auto x = static_cast<std::uint64_t>(key);
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

/// MurmurHash3's 64-bit finaliser (fmix64), a bijective mix: the GPU caches spread structured keys
/// (sequential ids, keys with a common stride) over sets and buckets with it.
HPS_HASH_INLINE std::uint64_t murmur3_fmix64(std::int64_t key) {
  auto h = static_cast<std::uint64_t>(key);
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

/// The inverse of murmur3_fmix64 (xorshifts by 33 are their own inverse; the multipliers' inverses
/// mod 2^64): the dynamic GPU cache stores hashes and recovers keys from them.
HPS_HASH_INLINE std::int64_t murmur3_fmix64_inverse(std::uint64_t h) {
  h ^= h >> 33;
  h *= 0x9cb4b2f8129337dbULL;
  h ^= h >> 33;
  h *= 0x4f74430c22a54005ULL;
  h ^= h >> 33;
  return static_cast<std::int64_t>(h);
}

/// A second bijective mix of an already mixed key hash (splitmix64 of it plus the golden ratio), so
/// that a key's two candidate sets in the dynamic GPU cache are independent of each other and of
/// its digest.
HPS_HASH_INLINE std::uint64_t rehash(std::uint64_t h) {
  return splitmix64(static_cast<std::int64_t>(h + 0x9E3779B97F4A7C15ULL));
}

}  // namespace hps

#undef HPS_HASH_INLINE
