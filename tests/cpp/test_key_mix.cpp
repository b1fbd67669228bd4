// The GPU caches' key mixes (core/src/detail/hashing.hpp), checked on the CPU: the dynamic cache stores
// a key's hash instead of the key and recovers the key with the inverse mix (dumps, miss lists), so
// the inverse must be exact for every 64-bit value. Runs without a GPU.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <random>

#include "detail/hashing.hpp"

using hps::murmur3_fmix64;
using hps::murmur3_fmix64_inverse;

// Values of MurmurHash3's fmix64 from an independent implementation (Python, the published constants).
TEST(KeyMix, Fmix64MatchesTheReference) {
  EXPECT_EQ(murmur3_fmix64(0), 0u);
  EXPECT_EQ(murmur3_fmix64(1), 0xb456bcfc34c2cb2cULL);
  EXPECT_EQ(murmur3_fmix64(2), 0x3abf2a20650683e7ULL);
  EXPECT_EQ(murmur3_fmix64(-1), 0x64b5720b4b825f21ULL);
  EXPECT_EQ(murmur3_fmix64(std::numeric_limits<std::int64_t>::min()), 0x8f780810af31a493ULL);
  EXPECT_EQ(murmur3_fmix64(123456789), 0x8f7c29206384f886ULL);
}

TEST(KeyMix, InverseRecoversEveryKey) {
  for (std::int64_t key : {std::int64_t{0}, std::int64_t{1}, std::int64_t{-1}, std::numeric_limits<std::int64_t>::min(),
                           std::numeric_limits<std::int64_t>::max(), std::int64_t{4294967295}}) {
    EXPECT_EQ(murmur3_fmix64_inverse(murmur3_fmix64(key)), key) << key;
  }
  std::mt19937_64 rng(7);
  for (int i = 0; i < 1000000; ++i) {
    const auto key = static_cast<std::int64_t>(rng());
    ASSERT_EQ(murmur3_fmix64_inverse(murmur3_fmix64(key)), key) << key;
    const std::uint64_t hash = rng();  // and the other way round: every hash is some key's
    ASSERT_EQ(murmur3_fmix64(murmur3_fmix64_inverse(hash)), hash) << hash;
  }
  for (std::int64_t key = -100000; key <= 100000; ++key) {  // sequential ids, as tables have them
    ASSERT_EQ(murmur3_fmix64_inverse(murmur3_fmix64(key)), key) << key;
  }
}
