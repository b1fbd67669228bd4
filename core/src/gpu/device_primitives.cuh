// Device-side building blocks shared by the cache kernels: ordered loads and stores (the PTX
// memory model's .relaxed at GPU scope, and at system scope for host memory), the seqlock
// fences, hash reduction and candidate sets (the mixes are in detail/hashing.hpp), the dynamic cache's
// LRU stamps and slot tags, and row chunks (16-byte vectors where the layout allows, single
// elements otherwise).
//
// Why inline PTX: the seqlock needs loads that are coherent at GPU scope (served by L2, never by
// a stale L1 line), and writers need their stores ordered by fences. Plain loads may hit L1,
// which is not coherent with writers on other SMs.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "detail/hashing.hpp"

namespace hps::cuda {

// ---- ordered memory access -------------------------------------------------------------------

__device__ __forceinline__ uint4 load_relaxed_v4(const void* address) {
  uint4 v;
  asm volatile("ld.relaxed.gpu.global.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(address)
               : "memory");
  return v;
}

__device__ __forceinline__ std::uint32_t load_relaxed_u32(const std::uint32_t* address) {
  std::uint32_t v;
  asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(address) : "memory");
  return v;
}

// The same loads with an L2 evict_last cache policy: for the dynamic cache's meta words (4 bytes per
// slot), which every probe reads and which should stay in L2 while a lookup's rows stream through it.
// (Cache policies need sm_80; older GPUs get the plain loads.)
__device__ __forceinline__ std::uint64_t l2_evict_last_policy() {
  std::uint64_t policy = 0;
#if __CUDA_ARCH__ >= 800
  asm volatile("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;" : "=l"(policy));
#endif
  return policy;
}
__device__ __forceinline__ uint4 load_relaxed_v4_l2_keep(const void* address, std::uint64_t policy) {
#if __CUDA_ARCH__ >= 800
  uint4 v;
  asm volatile("ld.relaxed.gpu.global.L2::cache_hint.v4.u32 {%0,%1,%2,%3}, [%4], %5;"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(address), "l"(policy)
               : "memory");
  return v;
#else
  (void)policy;
  return load_relaxed_v4(address);
#endif
}
__device__ __forceinline__ std::uint32_t load_relaxed_u32_l2_keep(const std::uint32_t* address, std::uint64_t policy) {
#if __CUDA_ARCH__ >= 800
  std::uint32_t v;
  asm volatile("ld.relaxed.gpu.global.L2::cache_hint.u32 %0, [%1], %2;" : "=r"(v) : "l"(address), "l"(policy) : "memory");
  return v;
#else
  (void)policy;
  return load_relaxed_u32(address);
#endif
}

__device__ __forceinline__ std::uint64_t load_relaxed_u64(const void* address) {
  std::uint64_t v;
  asm volatile("ld.relaxed.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(address) : "memory");
  return v;
}

__device__ __forceinline__ std::uint16_t load_relaxed_u16(const void* address) {
  std::uint16_t v;
  asm volatile("ld.relaxed.gpu.global.u16 %0, [%1];" : "=h"(v) : "l"(address) : "memory");
  return v;
}

__device__ __forceinline__ void store_relaxed_v4(void* address, uint4 v) {
  asm volatile("st.relaxed.gpu.global.v4.u32 [%0], {%1,%2,%3,%4};" ::"l"(address), "r"(v.x), "r"(v.y), "r"(v.z),
               "r"(v.w)
               : "memory");
}

__device__ __forceinline__ void store_relaxed_u32(std::uint32_t* address, std::uint32_t v) {
  asm volatile("st.relaxed.gpu.global.u32 [%0], %1;" ::"l"(address), "r"(v) : "memory");
}

__device__ __forceinline__ void store_relaxed_u16(void* address, std::uint16_t v) {
  asm volatile("st.relaxed.gpu.global.u16 [%0], %1;" ::"l"(address), "h"(v) : "memory");
}

__device__ __forceinline__ void store_relaxed_u64(void* address, std::uint64_t v) {
  asm volatile("st.relaxed.gpu.global.u64 [%0], %1;" ::"l"(address), "l"(v) : "memory");
}

/// A pointer published by one kernel for kernels of other streams: what the publisher wrote before
/// its release store is visible after an acquire load that sees it.
__device__ __forceinline__ std::uint64_t load_acquire_u64(const void* address) {
  std::uint64_t v;
  asm volatile("ld.acquire.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(address) : "memory");
  return v;
}

__device__ __forceinline__ void store_release_u64(void* address, std::uint64_t v) {
  asm volatile("st.release.gpu.global.u64 [%0], %1;" ::"l"(address), "l"(v) : "memory");
}

/// Orders every earlier memory access of this thread before every later one, at GPU scope: the
/// seqlock's fence between the row accesses and the version word.
__device__ __forceinline__ void fence_gpu() { asm volatile("fence.acq_rel.gpu;" ::: "memory"); }

__device__ __forceinline__ std::int64_t join_key(std::uint32_t low, std::uint32_t high) {
  return static_cast<std::int64_t>((static_cast<std::uint64_t>(high) << 32) | low);
}

// System scope: host memory read by the device over PCIe while host threads write it (the
// CPU-memory tier's records, read by the host-tier kernels).
__device__ __forceinline__ std::uint64_t load_relaxed_sys_u64(const void* address) {
  std::uint64_t v;
  asm volatile("ld.relaxed.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(address) : "memory");
  return v;
}
/// kBytes (4, 8 or 16) bytes of host memory as 32-bit words, one load (the address aligned to kBytes).
template <int kBytes>
struct SysPiece {
  static constexpr int kWords = kBytes / 4;
  std::uint32_t w[kWords];
};
template <int kBytes>
__device__ __forceinline__ SysPiece<kBytes> load_relaxed_sys_piece(const void* address) {
  SysPiece<kBytes> p;
  if constexpr (kBytes == 4) {
    asm volatile("ld.relaxed.sys.global.u32 %0, [%1];" : "=r"(p.w[0]) : "l"(address) : "memory");
  } else if constexpr (kBytes == 8) {
    asm volatile("ld.relaxed.sys.global.v2.u32 {%0,%1}, [%2];" : "=r"(p.w[0]), "=r"(p.w[1]) : "l"(address) : "memory");
  } else {
    static_assert(kBytes == 16, "4, 8 or 16 bytes");
    asm volatile("ld.relaxed.sys.global.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(p.w[0]), "=r"(p.w[1]), "=r"(p.w[2]), "=r"(p.w[3])
                 : "l"(address)
                 : "memory");
  }
  return p;
}

// ---- hashing (the mixes themselves: detail/hashing.hpp) -------------------------------------------

/// Maps a hash onto [0, range) with a multiply (no division, any range).
__device__ __forceinline__ std::uint64_t reduce_hash(std::uint64_t hash, std::uint64_t range) {
  return __umul64hi(hash, range);
}

/// The dynamic cache's two candidate sets of a key whose mixed hash is `hash`, over `num_sets` >= 2
/// sets: `first` from the hash, `second` from its rehash over the other num_sets - 1 sets, so the
/// two always differ.
__device__ __forceinline__ void candidate_sets(std::uint64_t hash, std::uint64_t num_sets, std::uint32_t& first,
                                               std::uint32_t& second) {
  first = static_cast<std::uint32_t>(reduce_hash(hash, num_sets));
  second = static_cast<std::uint32_t>(reduce_hash(rehash(hash), num_sets - 1));
  second += second >= first ? 1u : 0u;
}

// ---- LRU stamps (dynamic cache) ---------------------------------------------------------------
// A slot's stamp is the low 16 bits of the lookup counter (the epoch) of its last use: 16 bits, so
// that it shares a 64-bit word with 48 bits of the key's hash (slot tags, below). Ages are taken
// modulo 2^16; a difference in the top kStampAheadWindow values is a stamp written by a
// concurrent, later lookup (age 0), not one 60,000 lookups old. So a slot unused for more than
// about 61,000 lookups may look young until the counter comes round again: under churn such a slot
// has long been evicted (a Zipf cache at 20% turns over within hundreds of calls), and at worst it
// is evicted one wrap later.

constexpr std::uint32_t kStampAheadWindow = 4096;

__device__ __forceinline__ std::uint16_t lru_stamp(std::uint32_t epoch) { return static_cast<std::uint16_t>(epoch); }

/// Lookups since `stamp` was written, as seen at `epoch` (0 for a stamp from a later lookup).
__device__ __forceinline__ std::uint32_t stamp_age(std::uint32_t epoch, std::uint16_t stamp) {
  const std::uint32_t age = (epoch - stamp) & 0xFFFFu;
  return age >= 0x10000u - kStampAheadWindow ? 0u : age;
}

// ---- slot tags (dynamic cache) ------------------------------------------------------------------
// A slot's tag holds the high 48 bits of its key's hash and the slot's 16-bit LRU stamp; the low 16
// bits of the hash are the digest in the slot's meta word. The stamp is the tag's low half-word
// (little-endian), so a reader refreshes it with a 2-byte store that leaves the hash bits alone.

constexpr std::uint64_t kTagHashBits = ~std::uint64_t{0xFFFF};

__device__ __forceinline__ std::uint64_t make_tag(std::uint64_t hash, std::uint16_t stamp) {
  return (hash & kTagHashBits) | stamp;
}
__device__ __forceinline__ std::uint16_t tag_stamp(std::uint64_t tag) { return static_cast<std::uint16_t>(tag); }
/// Whether a tag holds `hash`'s high bits (the digest is checked in the meta word).
__device__ __forceinline__ bool tag_matches(std::uint64_t tag, std::uint64_t hash) {
  return ((tag ^ hash) & kTagHashBits) == 0;
}
/// The whole hash of the key in a slot, from its tag and its meta word.
__device__ __forceinline__ std::uint64_t slot_hash(std::uint64_t tag, std::uint32_t meta) {
  return (tag & kTagHashBits) | (meta >> 16);
}
/// The address of a tag's stamp (its low half-word).
__device__ __forceinline__ std::uint16_t* stamp_address(std::uint64_t* tag) {
  return reinterpret_cast<std::uint16_t*>(tag);
}

// ---- row chunks ---------------------------------------------------------------------------------
// A row is read and written as chunks of kElems elements: 16 bytes of storage when the row size
// and the output allow it (4 floats or 8 halves), one element otherwise.

__device__ __forceinline__ float2 half2_bits_to_float2(std::uint32_t bits) {
  __half2 h;
  static_assert(sizeof(h) == sizeof(bits));
  memcpy(&h, &bits, sizeof(bits));
  return __half22float2(h);
}

__device__ __forceinline__ std::uint32_t float2_to_half2_bits(float a, float b) {
  const __half2 h = __floats2half2_rn(a, b);
  std::uint32_t bits;
  memcpy(&bits, &h, sizeof(bits));
  return bits;
}

__device__ __forceinline__ float round_to_half(float v) { return __half2float(__float2half_rn(v)); }

template <typename T, bool kVector>
struct RowChunk;

// Each specialisation: kElems elements per chunk; Bits, the chunk as loaded (held in registers
// until the read is validated, converted to fp32 only when written out); load_relaxed (bits or
// floats), store_relaxed (from floats, for writers), to_output (bits to fp32 output) and
// first_word (32 bits of the loaded data, for ordering dependencies).

template <>
struct RowChunk<float, true> {
  static constexpr int kElems = 4;
  using Bits = uint4;
  __device__ static Bits load_bits(const float* row, std::uint32_t chunk) { return load_relaxed_v4(row + chunk * kElems); }
  __device__ static void to_floats(const Bits& b, float (&v)[kElems]) {
    v[0] = __uint_as_float(b.x), v[1] = __uint_as_float(b.y), v[2] = __uint_as_float(b.z), v[3] = __uint_as_float(b.w);
  }
  __device__ static void to_output(float* out_row, std::uint32_t chunk, const Bits& b) {
    *reinterpret_cast<uint4*>(out_row + chunk * kElems) = b;
  }
  __device__ static std::uint32_t first_word(const Bits& b) { return b.x; }
  __device__ static void load_relaxed(const float* row, std::uint32_t chunk, float (&v)[kElems]) {
    to_floats(load_bits(row, chunk), v);
  }
  __device__ static void store_relaxed(float* row, std::uint32_t chunk, const float (&v)[kElems]) {
    store_relaxed_v4(row + chunk * kElems,
                     make_uint4(__float_as_uint(v[0]), __float_as_uint(v[1]), __float_as_uint(v[2]), __float_as_uint(v[3])));
  }
};

template <>
struct RowChunk<__half, true> {
  static constexpr int kElems = 8;
  using Bits = uint4;
  __device__ static Bits load_bits(const __half* row, std::uint32_t chunk) { return load_relaxed_v4(row + chunk * kElems); }
  __device__ static void to_floats(const Bits& b, float (&v)[kElems]) {
    const float2 a = half2_bits_to_float2(b.x), c = half2_bits_to_float2(b.y);
    const float2 d = half2_bits_to_float2(b.z), e = half2_bits_to_float2(b.w);
    v[0] = a.x, v[1] = a.y, v[2] = c.x, v[3] = c.y, v[4] = d.x, v[5] = d.y, v[6] = e.x, v[7] = e.y;
  }
  __device__ static void to_output(float* out_row, std::uint32_t chunk, const Bits& b) {
    float v[kElems];
    to_floats(b, v);
    auto* out = reinterpret_cast<float4*>(out_row + chunk * kElems);
    out[0] = make_float4(v[0], v[1], v[2], v[3]);
    out[1] = make_float4(v[4], v[5], v[6], v[7]);
  }
  __device__ static std::uint32_t first_word(const Bits& b) { return b.x; }
  __device__ static void load_relaxed(const __half* row, std::uint32_t chunk, float (&v)[kElems]) {
    to_floats(load_bits(row, chunk), v);
  }
  __device__ static void store_relaxed(__half* row, std::uint32_t chunk, const float (&v)[kElems]) {
    store_relaxed_v4(row + chunk * kElems, make_uint4(float2_to_half2_bits(v[0], v[1]), float2_to_half2_bits(v[2], v[3]),
                                                      float2_to_half2_bits(v[4], v[5]), float2_to_half2_bits(v[6], v[7])));
  }
};

template <>
struct RowChunk<float, false> {
  static constexpr int kElems = 1;
  using Bits = std::uint32_t;
  __device__ static Bits load_bits(const float* row, std::uint32_t chunk) {
    return load_relaxed_u32(reinterpret_cast<const std::uint32_t*>(row + chunk));
  }
  __device__ static void to_floats(const Bits& b, float (&v)[kElems]) { v[0] = __uint_as_float(b); }
  __device__ static void to_output(float* out_row, std::uint32_t chunk, const Bits& b) { out_row[chunk] = __uint_as_float(b); }
  __device__ static std::uint32_t first_word(const Bits& b) { return b; }
  __device__ static void load_relaxed(const float* row, std::uint32_t chunk, float (&v)[kElems]) {
    to_floats(load_bits(row, chunk), v);
  }
  __device__ static void store_relaxed(float* row, std::uint32_t chunk, const float (&v)[kElems]) {
    store_relaxed_u32(reinterpret_cast<std::uint32_t*>(row + chunk), __float_as_uint(v[0]));
  }
};

template <>
struct RowChunk<__half, false> {
  static constexpr int kElems = 1;
  using Bits = std::uint32_t;
  __device__ static Bits load_bits(const __half* row, std::uint32_t chunk) { return load_relaxed_u16(row + chunk); }
  __device__ static void to_floats(const Bits& b, float (&v)[kElems]) {
    v[0] = __half2float(__ushort_as_half(static_cast<unsigned short>(b)));
  }
  __device__ static void to_output(float* out_row, std::uint32_t chunk, const Bits& b) {
    out_row[chunk] = __half2float(__ushort_as_half(static_cast<unsigned short>(b)));
  }
  __device__ static std::uint32_t first_word(const Bits& b) { return b; }
  __device__ static void load_relaxed(const __half* row, std::uint32_t chunk, float (&v)[kElems]) {
    to_floats(load_bits(row, chunk), v);
  }
  __device__ static void store_relaxed(__half* row, std::uint32_t chunk, const float (&v)[kElems]) {
    store_relaxed_u16(row + chunk, __half_as_ushort(__float2half_rn(v[0])));
  }
};

/// Plain (weak) access to fp32 rows that no other thread writes concurrently: the caller's output
/// and the staged rows of a write batch.
template <int kElems>
__device__ __forceinline__ void store_output(float* row, std::uint32_t chunk, const float (&v)[kElems]) {
  if constexpr (kElems == 1) {
    row[chunk] = v[0];
  } else {
    auto* out = reinterpret_cast<float4*>(row + chunk * kElems);
#pragma unroll
    for (int q = 0; q < kElems / 4; ++q) out[q] = make_float4(v[4 * q], v[4 * q + 1], v[4 * q + 2], v[4 * q + 3]);
  }
}

template <int kElems>
__device__ __forceinline__ void load_input(const float* row, std::uint32_t chunk, float (&v)[kElems]) {
  if constexpr (kElems == 1) {
    v[0] = row[chunk];
  } else {
    const auto* in = reinterpret_cast<const float4*>(row + chunk * kElems);
#pragma unroll
    for (int q = 0; q < kElems / 4; ++q) {
      const float4 f = in[q];
      v[4 * q] = f.x, v[4 * q + 1] = f.y, v[4 * q + 2] = f.z, v[4 * q + 3] = f.w;
    }
  }
}

/// Lanes below `lane` in the warp (for warp-aggregated compaction).
__device__ __forceinline__ std::uint32_t lanes_below(unsigned lane) { return (1u << lane) - 1u; }

}  // namespace hps::cuda
