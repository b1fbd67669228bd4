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

/// The shape of the mixes below: xorshift, multiply, xorshift, multiply, xorshift. Bijective for
/// odd multipliers; the constants pick the mix.
HPS_HASH_INLINE std::uint64_t xorshift_multiply(std::uint64_t x, int s1, std::uint64_t m1, int s2, std::uint64_t m2,
                                                int s3) {
  x ^= x >> s1;
  x *= m1;
  x ^= x >> s2;
  x *= m2;
  x ^= x >> s3;
  return x;
}

/// splitmix64's finalizer, a bijective 64-bit mixer: distinct keys get distinct hashes, and
/// every output bit depends on every key bit, so both halves can be used independently.
HPS_HASH_INLINE std::uint64_t splitmix64(std::int64_t key) {
  return xorshift_multiply(static_cast<std::uint64_t>(key), 30, 0xbf58476d1ce4e5b9ULL, 27, 0x94d049bb133111ebULL, 31);
}

/// MurmurHash3's 64-bit finaliser (fmix64), a bijective mix: the GPU caches spread structured keys
/// (sequential ids, keys with a common stride) over sets and buckets with it.
HPS_HASH_INLINE std::uint64_t murmur3_fmix64(std::int64_t key) {
  return xorshift_multiply(static_cast<std::uint64_t>(key), 33, 0xff51afd7ed558ccdULL, 33, 0xc4ceb9fe1a85ec53ULL, 33);
}

/// The inverse of murmur3_fmix64 (xorshifts by 33 are their own inverse; the multipliers' inverses
/// mod 2^64, in reverse order): the dynamic GPU cache stores hashes and recovers keys from them.
HPS_HASH_INLINE std::int64_t murmur3_fmix64_inverse(std::uint64_t h) {
  return static_cast<std::int64_t>(xorshift_multiply(h, 33, 0x9cb4b2f8129337dbULL, 33, 0x4f74430c22a54005ULL, 33));
}

/// A second bijective mix of an already mixed key hash (splitmix64 of it plus the golden ratio), so
/// that a key's two candidate sets in the dynamic GPU cache are independent of each other and of
/// its digest.
HPS_HASH_INLINE std::uint64_t rehash(std::uint64_t h) {
  return splitmix64(static_cast<std::int64_t>(h + 0x9E3779B97F4A7C15ULL));
}

}  // namespace hps

#undef HPS_HASH_INLINE
