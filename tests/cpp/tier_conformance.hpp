// One conformance suite for every host tier: each backend's test file provides a fixture
//   struct XFactory {
//     static constexpr bool kExactSize = ...;  // false where size() is an estimate
//     static std::shared_ptr<hps::Tier> make(std::size_t dim);  // a fresh, empty table each call
//   };
// (with capacity enough that nothing is evicted) and instantiates:
//   INSTANTIATE_TYPED_TEST_SUITE_P(X, TierConformance, XFactory);
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "hps/tiers/tier.hpp"

namespace hps_test {

/// Deterministic row for a key, distinct per key and per element: the oracle.
inline void fill_row(std::int64_t key, std::size_t dim, float* out, float salt = 0.0f) {
  for (std::size_t j = 0; j < dim; ++j) {
    out[j] = static_cast<float>((key % 100003) * 0.25 + static_cast<double>(j) * 0.5 + salt);
  }
}

inline std::vector<float> rows_for(const std::vector<std::int64_t>& keys, std::size_t dim, float salt = 0.0f) {
  std::vector<float> rows(keys.size() * dim);
  for (std::size_t i = 0; i < keys.size(); ++i) fill_row(keys[i], dim, rows.data() + i * dim, salt);
  return rows;
}

template <typename Factory>
void expect_size(const hps::Tier& tier, std::size_t expected) {
  if constexpr (Factory::kExactSize) {
    EXPECT_EQ(tier.size(), expected);
  }
}

}  // namespace hps_test

// The suite lives at global scope so each backend can instantiate it in its own test file.
using hps_test::expect_size;
using hps_test::fill_row;
using hps_test::rows_for;

template <typename Factory>
class TierConformance : public ::testing::Test {};
TYPED_TEST_SUITE_P(TierConformance);

TYPED_TEST_P(TierConformance, InsertThenFindReturnsRows) {
  for (std::size_t dim : {1u, 3u, 16u, 128u}) {
    auto tier = TypeParam::make(dim);
    ASSERT_EQ(tier->dim(), dim);
    std::vector<std::int64_t> keys;
    for (std::int64_t k = 0; k < 1000; ++k) keys.push_back(k * 7919 - 3000);
    auto rows = rows_for(keys, dim);
    tier->insert(keys.data(), rows.data(), keys.size());
    expect_size<TypeParam>(*tier, keys.size());
    std::vector<float> out(keys.size() * dim, -1.0f);
    std::vector<std::uint8_t> found(keys.size(), 7);
    EXPECT_EQ(tier->find(keys.data(), keys.size(), out.data(), found.data()), keys.size());
    for (auto f : found) ASSERT_EQ(f, 1);
    EXPECT_EQ(out, rows);
  }
}

TYPED_TEST_P(TierConformance, MissLeavesRowUntouched) {
  auto tier = TypeParam::make(4);
  std::vector<std::int64_t> stored = {1, 2, 3};
  auto rows = rows_for(stored, 4);
  tier->insert(stored.data(), rows.data(), stored.size());
  std::vector<std::int64_t> query = {2, 99, 3, -5};
  std::vector<float> out(query.size() * 4, 42.0f);
  std::vector<std::uint8_t> found(query.size(), 7);
  EXPECT_EQ(tier->find(query.data(), query.size(), out.data(), found.data()), 2u);
  EXPECT_EQ(found, (std::vector<std::uint8_t>{1, 0, 1, 0}));
  for (std::size_t j = 0; j < 4; ++j) {
    EXPECT_EQ(out[1 * 4 + j], 42.0f);
    EXPECT_EQ(out[3 * 4 + j], 42.0f);
    EXPECT_EQ(out[0 * 4 + j], rows[1 * 4 + j]);
    EXPECT_EQ(out[2 * 4 + j], rows[2 * 4 + j]);
  }
}

TYPED_TEST_P(TierConformance, OverwriteReplacesRow) {
  auto tier = TypeParam::make(8);
  std::vector<std::int64_t> keys = {10, 20, 30};
  auto old_rows = rows_for(keys, 8);
  auto new_rows = rows_for(keys, 8, 1000.0f);
  tier->insert(keys.data(), old_rows.data(), keys.size());
  tier->insert(keys.data(), new_rows.data(), keys.size());
  expect_size<TypeParam>(*tier, 3u);
  std::vector<float> out(keys.size() * 8);
  std::vector<std::uint8_t> found(keys.size());
  tier->find(keys.data(), keys.size(), out.data(), found.data());
  EXPECT_EQ(out, new_rows);
}

TYPED_TEST_P(TierConformance, EraseRemovesOnlyGivenKeys) {
  auto tier = TypeParam::make(2);
  std::vector<std::int64_t> keys = {1, 2, 3, 4, 5};
  auto rows = rows_for(keys, 2);
  tier->insert(keys.data(), rows.data(), keys.size());
  std::vector<std::int64_t> gone = {2, 4, 77};
  EXPECT_EQ(tier->erase(gone.data(), gone.size()), 2u);
  expect_size<TypeParam>(*tier, 3u);
  std::vector<float> out(keys.size() * 2);
  std::vector<std::uint8_t> found(keys.size());
  EXPECT_EQ(tier->find(keys.data(), keys.size(), out.data(), found.data()), 3u);
  EXPECT_EQ(found, (std::vector<std::uint8_t>{1, 0, 1, 0, 1}));
  // Erased keys can be stored again.
  tier->insert(gone.data(), rows.data(), 1);
  EXPECT_EQ(tier->find(gone.data(), 1, out.data(), found.data()), 1u);
}

TYPED_TEST_P(TierConformance, EmptyBatchesAreNoOps) {
  auto tier = TypeParam::make(4);
  tier->insert(nullptr, nullptr, 0);
  EXPECT_EQ(tier->find(nullptr, 0, nullptr, nullptr), 0u);
  EXPECT_EQ(tier->erase(nullptr, 0), 0u);
  expect_size<TypeParam>(*tier, 0u);
}

TYPED_TEST_P(TierConformance, DuplicateKeysInOneBatch) {
  auto tier = TypeParam::make(3);
  std::vector<std::int64_t> keys = {5, 6, 5, 5};
  std::vector<float> rows = {1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4};
  tier->insert(keys.data(), rows.data(), keys.size());
  expect_size<TypeParam>(*tier, 2u);
  std::vector<std::int64_t> query = {5, 5, 6};
  std::vector<float> out(9);
  std::vector<std::uint8_t> found(3);
  EXPECT_EQ(tier->find(query.data(), 3, out.data(), found.data()), 3u);
  EXPECT_EQ(out, (std::vector<float>{4, 4, 4, 4, 4, 4, 2, 2, 2}));  // the last duplicate won
}

TYPED_TEST_P(TierConformance, ExtremeKeysAreOrdinary) {
  auto tier = TypeParam::make(2);
  std::vector<std::int64_t> keys = {std::numeric_limits<std::int64_t>::max(), std::numeric_limits<std::int64_t>::min(),
                                    -1, 0, 4294967295LL};
  auto rows = rows_for(keys, 2, 0.5f);
  tier->insert(keys.data(), rows.data(), keys.size());
  std::vector<float> out(keys.size() * 2);
  std::vector<std::uint8_t> found(keys.size());
  EXPECT_EQ(tier->find(keys.data(), keys.size(), out.data(), found.data()), keys.size());
  EXPECT_EQ(out, rows);
}

TYPED_TEST_P(TierConformance, InsertIfAbsentKeepsExistingRows) {
  auto tier = TypeParam::make(2);
  std::vector<std::int64_t> keys = {1, 2};
  std::vector<float> rows = {1, 1, 2, 2};
  tier->insert(keys.data(), rows.data(), 1);  // only key 1
  std::vector<float> other = {9, 9, 8, 8};
  EXPECT_EQ(tier->insert_if_absent(keys.data(), other.data(), 2, [] { return true; }), 1u);
  std::vector<float> out(4);
  std::vector<std::uint8_t> found(2);
  tier->find(keys.data(), 2, out.data(), found.data());
  EXPECT_EQ(out, (std::vector<float>{1, 1, 8, 8}));
  std::vector<std::int64_t> more = {3};
  EXPECT_EQ(tier->insert_if_absent(more.data(), other.data(), 1, [] { return false; }), 0u);
  EXPECT_EQ(tier->find(more.data(), 1, out.data(), found.data()), 0u);
}

TYPED_TEST_P(TierConformance, ForEachVisitsEveryRowOnce) {
  auto tier = TypeParam::make(3);
  std::vector<std::int64_t> keys;
  for (std::int64_t k = 0; k < 2500; ++k) keys.push_back(k * 31 - 999);
  auto rows = rows_for(keys, 3);
  tier->insert(keys.data(), rows.data(), keys.size());
  std::vector<std::int64_t> seen;
  tier->for_each(100, [&](const std::int64_t* k, const float* r, std::size_t n) {
    ASSERT_LE(n, 100u);
    for (std::size_t i = 0; i < n; ++i) {
      std::vector<float> expect(3);
      fill_row(k[i], 3, expect.data());
      for (std::size_t j = 0; j < 3; ++j) ASSERT_EQ(r[i * 3 + j], expect[j]);
      seen.push_back(k[i]);
    }
  });
  std::sort(seen.begin(), seen.end());
  auto sorted = keys;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(seen, sorted);
}

TYPED_TEST_P(TierConformance, ConcurrentReadersSeeWholeRows) {
  // Writers flip every row between two versions; readers must see one version or the other in
  // every row, never a mix of the two.
  constexpr std::size_t dim = 64;
  auto tier = TypeParam::make(dim);
  std::vector<std::int64_t> keys;
  for (std::int64_t k = 0; k < 512; ++k) keys.push_back(k);
  std::vector<float> a(keys.size() * dim, 1.0f), b(keys.size() * dim, 2.0f);
  tier->insert(keys.data(), a.data(), keys.size());
  std::atomic<bool> stop{false};
  std::atomic<std::size_t> torn{0}, checked{0};
  std::thread writer([&] {
    // Keep writing until the readers have checked many snapshots (or a time limit passes).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (int round = 0; round < 200 || (checked < 50 && std::chrono::steady_clock::now() < deadline); ++round) {
      tier->insert(keys.data(), (round % 2 ? a : b).data(), keys.size());
    }
    stop = true;
  });
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&] {
      std::vector<float> out(keys.size() * dim);
      std::vector<std::uint8_t> found(keys.size());
      while (!stop) {
        tier->find(keys.data(), keys.size(), out.data(), found.data());
        for (std::size_t i = 0; i < keys.size(); ++i) {
          const float first = out[i * dim];
          for (std::size_t j = 1; j < dim; ++j) {
            if (out[i * dim + j] != first) {
              ++torn;
              break;
            }
          }
        }
        ++checked;
      }
    });
  }
  writer.join();
  for (auto& r : readers) r.join();
  EXPECT_EQ(torn.load(), 0u);
  EXPECT_GT(checked.load(), 0u);
}

REGISTER_TYPED_TEST_SUITE_P(TierConformance, InsertThenFindReturnsRows, MissLeavesRowUntouched,
                            OverwriteReplacesRow, EraseRemovesOnlyGivenKeys, EmptyBatchesAreNoOps,
                            DuplicateKeysInOneBatch, ExtremeKeysAreOrdinary, InsertIfAbsentKeepsExistingRows,
                            ForEachVisitsEveryRowOnce, ConcurrentReadersSeeWholeRows);
