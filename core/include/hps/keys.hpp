// Keys: the integer widths the server accepts and the one it stores.
//
// Every tier stores a key as int64 ("canonical key"). A model's key width (HugeCTR's
// `supportlonglong`) decides which values are keys at all:
//  - 64-bit models: every int64 value is a key; int32/uint32 inputs widen losslessly, uint64 inputs
//    above INT64_MAX are refused.
//  - 32-bit models: a key is a 32-bit pattern, stored as its unsigned value 0..2^32-1. An int32
//    input -1 and an int64 input 4294967295 (or -1) name the same key. int64/uint64 values outside
//    [-2^31, 2^32) are refused instead of being truncated (HugeCTR truncated them silently).
// No key value is reserved anywhere: INT64_MAX, -1 and 0 are ordinary keys.
//
// Ownership: the functions here borrow their input pointers for the duration of the call.
#pragma once

#include "hps/export.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace hps HPS_EXPORT {

/// Width and signedness of a key array handed to the server.
enum class KeyDtype : int { kInt32 = 0, kInt64 = 1, kUInt32 = 2, kUInt64 = 3 };

const char* to_string(KeyDtype dtype);

/// Bytes per element of `dtype`.
std::size_t key_dtype_size(KeyDtype dtype);

/// Converts `n` keys of type `dtype` at `keys` to canonical int64 keys in `out` (n elements).
/// `key64` is the model's key width. Throws InvalidArgument naming the first key that cannot be
/// represented, and its position, `what` saying where the keys came from.
void canonicalize_keys(const void* keys, KeyDtype dtype, std::size_t n, bool key64, std::int64_t* out,
                       const std::string& what = "keys");

/// Throws what canonicalize_keys would for the first of `n` int64 keys a model of `key64` width
/// cannot take, its position counted from `first_position` (keys read in chunks from a file).
void check_int64_keys(const std::int64_t* keys, std::size_t n, bool key64, std::size_t first_position,
                      const std::string& what);

/// True when keys of `dtype` are already canonical for the key width, so no copy is needed.
bool keys_are_canonical(KeyDtype dtype, bool key64);

/// Canonical int64 keys for a call: borrows the caller's array when it is already canonical,
/// otherwise converts into an owned buffer sized by the call.
class CanonicalKeys {
 public:
  CanonicalKeys(const void* keys, KeyDtype dtype, std::size_t n, bool key64, const std::string& what = "keys");
  const std::int64_t* data() const { return data_; }
  std::size_t size() const { return n_; }

 private:
  std::vector<std::int64_t> owned_;
  const std::int64_t* data_;
  std::size_t n_;
};

}  // namespace hps
