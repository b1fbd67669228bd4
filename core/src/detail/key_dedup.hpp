// Deduplication of the keys one call sends down to the next tier (internal).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "detail/hashing.hpp"

namespace hps {

/// Collects the distinct keys among positions not yet found, and for each such position the
/// index of its key among them. Sized by the call, reused across calls (keep one per thread).
class KeyDedup {
 public:
  /// Considers keys[i] for every i < n with skip[i] == 0 (skip may be null: every position).
  void build(const std::int64_t* keys, const std::uint8_t* skip, std::size_t n) {
    unique_.clear();
    slot_of_.resize(n);
    std::size_t capacity = 16;
    while (capacity < 2 * n) capacity *= 2;
    table_.assign(capacity, kEmpty);
    const std::size_t mask = capacity - 1;
    for (std::size_t i = 0; i < n; ++i) {
      if (skip && skip[i]) continue;
      const std::int64_t key = keys[i];
      std::size_t s = static_cast<std::size_t>(splitmix64(key)) & mask;
      while (true) {
        const std::uint32_t u = table_[s];
        if (u == kEmpty) {
          table_[s] = static_cast<std::uint32_t>(unique_.size());
          slot_of_[i] = static_cast<std::uint32_t>(unique_.size());
          unique_.push_back(key);
          break;
        }
        if (unique_[u] == key) {
          slot_of_[i] = u;
          break;
        }
        s = (s + 1) & mask;
      }
    }
  }

  std::size_t unique_count() const { return unique_.size(); }
  const std::int64_t* unique_keys() const { return unique_.data(); }
  /// For each considered position, the index of its key in unique_keys().
  const std::uint32_t* slot_of_position() const { return slot_of_.data(); }

 private:
  static constexpr std::uint32_t kEmpty = 0xffffffffu;
  std::vector<std::uint32_t> table_;
  std::vector<std::int64_t> unique_;
  std::vector<std::uint32_t> slot_of_;
};

}  // namespace hps
