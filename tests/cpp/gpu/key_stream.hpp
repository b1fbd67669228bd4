// Test keys drawn from a universe, Zipf-distributed over its order or uniform: the GPU suites'
// shared workload. Single-threaded (one generator per caller).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace hps_test {

/// Draws n keys from `universe`, Zipf-distributed over its order (alpha > 0) or uniform (alpha 0).
class KeyStream {
 public:
  KeyStream(std::vector<std::int64_t> universe, double alpha, std::uint64_t seed)
      : universe_(std::move(universe)), rng_(seed) {
    if (alpha > 0) {
      cdf_.resize(universe_.size());
      double sum = 0;
      for (std::size_t i = 0; i < universe_.size(); ++i) cdf_[i] = (sum += 1.0 / std::pow(static_cast<double>(i + 1), alpha));
      for (auto& c : cdf_) c /= sum;
    }
  }
  std::vector<std::int64_t> draw(std::size_t n) {
    std::vector<std::int64_t> keys(n);
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    std::uniform_int_distribution<std::size_t> index(0, universe_.size() - 1);
    for (auto& k : keys) {
      if (cdf_.empty()) {
        k = universe_[index(rng_)];
      } else {
        const auto at = std::lower_bound(cdf_.begin(), cdf_.end(), unit(rng_)) - cdf_.begin();
        k = universe_[std::min<std::size_t>(static_cast<std::size_t>(at), universe_.size() - 1)];
      }
    }
    return keys;
  }

 private:
  std::vector<std::int64_t> universe_;
  std::vector<double> cdf_;
  std::mt19937_64 rng_;
};

}  // namespace hps_test
