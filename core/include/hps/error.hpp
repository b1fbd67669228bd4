// Error types of the hps core.
//
// Every failure the core reports is an exception derived from hps::Error (itself a
// std::runtime_error). Python maps each class to an exception that is also the matching builtin
// (ConfigError is a ValueError, NotFound a KeyError, ...); the C API turns them into codes.
// Nothing in the core calls exit() or abort(), or prints and carries on after a failed check.
#pragma once

#include "hps/export.hpp"

#include <sstream>
#include <stdexcept>
#include <string>

namespace hps HPS_EXPORT {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The configuration is malformed: bad JSON, an unknown key, a wrong type or an out-of-range value.
/// The message names the JSON path.
class ConfigError : public Error {
 public:
  using Error::Error;
};

/// A call got an argument it cannot use: wrong key width, lossy key conversion, wrong row size.
class InvalidArgument : public Error {
 public:
  using Error::Error;
};

/// A model or table name that the server does not hold.
class NotFound : public Error {
 public:
  using Error::Error;
};

/// A file or database could not be read or written, or holds something other than expected.
class IOError : public Error {
 public:
  using Error::Error;
};

/// A backend the configuration asks for is not built in, or cannot be reached.
class BackendUnavailable : public Error {
 public:
  using Error::Error;
};

/// A tier cannot take what it was asked to hold.
class OutOfMemory : public Error {
 public:
  using Error::Error;
};

/// A tier that must not evict (it holds the only copy of its rows) has no room for new keys: the
/// write was refused whole, and retrying it cannot succeed until rows are erased.
class NoRoom : public OutOfMemory {
 public:
  using OutOfMemory::OutOfMemory;
};

namespace detail {
template <typename... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}
}  // namespace detail

}  // namespace hps

/// Throws `ErrorType` with the streamed message parts when `cond` is false.
/// Example: HPS_EXPECTS(n <= cap, hps::InvalidArgument, "batch of ", n, " keys exceeds ", cap);
#define HPS_EXPECTS(cond, ErrorType, ...)                        \
  do {                                                           \
    if (!(cond)) throw ErrorType(::hps::detail::concat(__VA_ARGS__)); \
  } while (0)

#define HPS_FAIL(ErrorType, ...) throw ErrorType(::hps::detail::concat(__VA_ARGS__))
