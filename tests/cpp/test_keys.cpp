#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <vector>

#include "hps/error.hpp"
#include "hps/keys.hpp"

using hps::KeyDtype;

TEST(Keys, Int64IsBorrowedIn64BitModels) {
  std::vector<std::int64_t> keys = {1, -1, std::numeric_limits<std::int64_t>::max()};
  hps::CanonicalKeys canonical(keys.data(), KeyDtype::kInt64, keys.size(), true);
  EXPECT_EQ(canonical.data(), keys.data());  // no copy
}

TEST(Keys, Int32WidensBySignIn64BitModels) {
  std::vector<std::int32_t> keys = {0, -1, 7, std::numeric_limits<std::int32_t>::min()};
  hps::CanonicalKeys canonical(keys.data(), KeyDtype::kInt32, keys.size(), true);
  std::vector<std::int64_t> got(canonical.data(), canonical.data() + keys.size());
  EXPECT_EQ(got, (std::vector<std::int64_t>{0, -1, 7, std::numeric_limits<std::int32_t>::min()}));
}

TEST(Keys, ThirtyTwoBitModelsStoreTheUnsignedPattern) {
  std::vector<std::int32_t> as_int32 = {-1, 5};
  std::vector<std::int64_t> as_int64 = {4294967295LL, -1, 5};
  std::vector<std::int64_t> a(2), b(3);
  hps::canonicalize_keys(as_int32.data(), KeyDtype::kInt32, 2, false, a.data());
  hps::canonicalize_keys(as_int64.data(), KeyDtype::kInt64, 3, false, b.data());
  EXPECT_EQ(a, (std::vector<std::int64_t>{4294967295LL, 5}));
  EXPECT_EQ(b, (std::vector<std::int64_t>{4294967295LL, 4294967295LL, 5}));
}

TEST(Keys, LossyConversionsAreRefusedWithThePosition) {
  std::vector<std::int64_t> wide = {1, 4294967296LL};
  std::vector<std::int64_t> out(2);
  try {
    hps::canonicalize_keys(wide.data(), KeyDtype::kInt64, 2, false, out.data(), "keys");
    FAIL() << "expected InvalidArgument";
  } catch (const hps::InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("keys[1] = 4294967296"), std::string::npos) << e.what();
  }
  std::vector<std::int64_t> low = {-2147483649LL};
  EXPECT_THROW(hps::canonicalize_keys(low.data(), KeyDtype::kInt64, 1, false, out.data()), hps::InvalidArgument);
  std::vector<std::uint64_t> huge = {std::uint64_t{1} << 63};
  EXPECT_THROW(hps::canonicalize_keys(huge.data(), KeyDtype::kUInt64, 1, true, out.data()), hps::InvalidArgument);
  std::vector<std::uint64_t> ok = {(std::uint64_t{1} << 63) - 1};
  hps::canonicalize_keys(ok.data(), KeyDtype::kUInt64, 1, true, out.data());
  EXPECT_EQ(out[0], std::numeric_limits<std::int64_t>::max());
}

TEST(Keys, EmptyBatch) {
  hps::CanonicalKeys canonical(nullptr, KeyDtype::kInt32, 0, true);
  EXPECT_EQ(canonical.size(), 0u);
}
