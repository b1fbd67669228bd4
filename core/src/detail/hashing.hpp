// Key hashing shared by the host tiers (internal).
#pragma once

#include <cstdint>

namespace hps {

/// splitmix64's finalizer, a bijective 64-bit mixer: distinct keys get distinct hashes, and
/// every output bit depends on every key bit, so both halves can be used independently.
inline std::uint64_t splitmix64(std::int64_t key) {
  auto x = static_cast<std::uint64_t>(key);
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

}  // namespace hps
