#include "hps/keys.hpp"

#include <limits>

#include "hps/error.hpp"

namespace hps {

const char* to_string(KeyDtype dtype) {
  switch (dtype) {
    case KeyDtype::kInt32: return "int32";
    case KeyDtype::kInt64: return "int64";
    case KeyDtype::kUInt32: return "uint32";
    case KeyDtype::kUInt64: return "uint64";
  }
  return "unknown";
}

std::size_t key_dtype_size(KeyDtype dtype) {
  return dtype == KeyDtype::kInt32 || dtype == KeyDtype::kUInt32 ? 4 : 8;
}

bool keys_are_canonical(KeyDtype dtype, bool key64) { return key64 && dtype == KeyDtype::kInt64; }

namespace {

constexpr std::int64_t kTwoPow32 = std::int64_t{1} << 32;

[[noreturn]] void refuse(const std::string& what, std::size_t i, const std::string& value, bool key64) {
  HPS_FAIL(InvalidArgument, what, "[", i, "] = ", value, " is not a ", key64 ? "64" : "32",
           "-bit key", key64 ? " (uint64 values above 9223372036854775807 cannot be stored)"
                             : " (32-bit models take values in [-2147483648, 4294967295]; set "
                               "supportlonglong to true for wider keys)");
}

}  // namespace

void check_int64_keys(const std::int64_t* keys, std::size_t n, bool key64, std::size_t first_position,
                      const std::string& what) {
  if (key64) return;  // every int64 is a key of a 64-bit model
  for (std::size_t i = 0; i < n; ++i) {
    const std::int64_t k = keys[i];
    if (k < std::numeric_limits<std::int32_t>::min() || k >= kTwoPow32) {
      refuse(what, first_position + i, std::to_string(k), key64);
    }
  }
}

void canonicalize_keys(const void* keys, KeyDtype dtype, std::size_t n, bool key64, std::int64_t* out,
                       const std::string& what) {
  switch (dtype) {
    case KeyDtype::kInt32: {
      const auto* in = static_cast<const std::int32_t*>(keys);
      if (key64) {
        for (std::size_t i = 0; i < n; ++i) out[i] = in[i];
      } else {
        for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::uint32_t>(in[i]);
      }
      return;
    }
    case KeyDtype::kUInt32: {
      const auto* in = static_cast<const std::uint32_t*>(keys);
      for (std::size_t i = 0; i < n; ++i) out[i] = in[i];
      return;
    }
    case KeyDtype::kInt64: {
      const auto* in = static_cast<const std::int64_t*>(keys);
      if (key64) {
        for (std::size_t i = 0; i < n; ++i) out[i] = in[i];
        return;
      }
      for (std::size_t i = 0; i < n; ++i) {
        const std::int64_t k = in[i];
        if (k < std::numeric_limits<std::int32_t>::min() || k >= kTwoPow32) refuse(what, i, std::to_string(k), key64);
        out[i] = k < 0 ? k + kTwoPow32 : k;
      }
      return;
    }
    case KeyDtype::kUInt64: {
      const auto* in = static_cast<const std::uint64_t*>(keys);
      const std::uint64_t limit =
          key64 ? static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) : std::uint64_t(kTwoPow32 - 1);
      for (std::size_t i = 0; i < n; ++i) {
        if (in[i] > limit) refuse(what, i, std::to_string(in[i]), key64);
        out[i] = static_cast<std::int64_t>(in[i]);
      }
      return;
    }
  }
  HPS_FAIL(InvalidArgument, what, ": unknown key dtype code ", static_cast<int>(dtype));
}

CanonicalKeys::CanonicalKeys(const void* keys, KeyDtype dtype, std::size_t n, bool key64, const std::string& what)
    : data_(nullptr), n_(n) {
  if (keys_are_canonical(dtype, key64)) {
    data_ = static_cast<const std::int64_t*>(keys);
    return;
  }
  owned_.resize(n);
  canonicalize_keys(keys, dtype, n, key64, owned_.data(), what);
  data_ = owned_.data();
}

}  // namespace hps
