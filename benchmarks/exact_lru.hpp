// An exact LRU cache of keys, the reference the GPU cache's hit rates are compared with
// (gpu_cache_kernels.cu, recency_model.cpp, tests/cpp/gpu/test_gpu_cache.cu). Host only; not
// thread-safe; owns its keys.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

struct ExactLru {
  explicit ExactLru(std::size_t capacity) : capacity(capacity) { where.reserve(capacity * 2); }
  /// Looks up each key in turn (a miss inserts it, evicting the least recent); returns the hits.
  std::size_t access(const std::vector<std::int64_t>& batch) { return access(batch.data(), batch.size()); }
  template <typename Key>
  std::size_t access(const Key* keys, std::size_t n) {
    std::size_t hits = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const auto k = static_cast<std::int64_t>(keys[i]);
      const auto it = where.find(k);
      if (it != where.end()) {
        order.splice(order.begin(), order, it->second);
        ++hits;
        continue;
      }
      order.push_front(k);
      where[k] = order.begin();
      if (order.size() > capacity) {
        where.erase(order.back());
        order.pop_back();
      }
    }
    return hits;
  }

  std::size_t capacity;
  std::list<std::int64_t> order;  // most recent first
  std::unordered_map<std::int64_t, std::list<std::int64_t>::iterator> where;
};
