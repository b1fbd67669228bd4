// The checksum a CPU-memory tier record carries in its header once the tier is GPU-visible
// (record_hooks.hpp), so that a reader without the partition lock (a GPU, over PCIe) can read the
// header, key and row all at once and still tell a whole record from one a writer was rewriting.
// Reads of mapped host memory are not ordered among themselves, so a seqlock needs three dependent
// round trips over PCIe (header, then key and row, then the header again); this check needs one.
//
// The sum of one term per 32-bit word (the key's two halves and the row's words, each mixed with
// its position by a bijective 64-bit mix), mixed once more; the header keeps its top 62 bits. The
// sum lets the lanes of a GPU group each add their own share of the row and combine the parts in
// any order. A read that mixes words of two states passes only if the terms of the words that
// differ cancel: about 2^-62 per such read (the self-verifying reads of RDMA key-value stores, as
// in Pilaf). Words equal in both states change nothing, so a read that passes holds a key and row
// that the record held together.
//
// Header only, no state: safe from any thread. Host and device (the miss kernel includes it, and
// tests/cpp/test_hash_map_record_hooks.cpp checks it on the CPU).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "detail/hashing.hpp"

#if defined(__CUDACC__)
#define HPS_CHECKSUM_INLINE __host__ __device__ __forceinline__
#else
#define HPS_CHECKSUM_INLINE inline
#endif

namespace hps::record_checksum {

/// Positions of the key's low and high words (a row has fewer than 2^32 - 2 words).
constexpr std::uint32_t kKeyLowIndex = 0xFFFFFFFEu;
constexpr std::uint32_t kKeyHighIndex = 0xFFFFFFFFu;
/// The header bits the checksum leaves to the flags (busy, live).
constexpr std::uint64_t kFlagBits = 3;

/// The share of word `index` holding `word`. Bijective in (index, word): two different words at
/// one position never give the same term.
HPS_CHECKSUM_INLINE std::uint64_t term(std::uint32_t index, std::uint32_t word) {
  return splitmix64(static_cast<std::int64_t>((static_cast<std::uint64_t>(index) << 32) | word));
}

/// The key's two terms.
HPS_CHECKSUM_INLINE std::uint64_t key_terms(std::int64_t key) {
  const auto bits = static_cast<std::uint64_t>(key);
  return term(kKeyLowIndex, static_cast<std::uint32_t>(bits)) + term(kKeyHighIndex, static_cast<std::uint32_t>(bits >> 32));
}

/// The header bits of a record whose terms add up to `sum` (flags left clear).
HPS_CHECKSUM_INLINE std::uint64_t header_bits(std::uint64_t sum) {
  return murmur3_fmix64(static_cast<std::int64_t>(sum)) & ~kFlagBits;
}

/// The header bits of a record holding `key` and the `dim` 32-bit words at `row` (any type: read
/// through memcpy).
HPS_CHECKSUM_INLINE std::uint64_t of_record(std::int64_t key, const void* row, std::uint32_t dim) {
  std::uint64_t sum = key_terms(key);
  for (std::uint32_t i = 0; i < dim; ++i) {
    std::uint32_t word;
    std::memcpy(&word, static_cast<const char*>(row) + 4 * static_cast<std::size_t>(i), 4);
    sum += term(i, word);
  }
  return header_bits(sum);
}

}  // namespace hps::record_checksum

#undef HPS_CHECKSUM_INLINE
