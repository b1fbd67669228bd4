// The one exception type of the TensorRT-free plugin core.
//
// Ownership: a value type. Threading: none (thrown and caught on one thread). The TensorRT shell
// catches it at every entry point TensorRT calls (they are noexcept) and reports its message.
#pragma once

#include <stdexcept>
#include <string>

namespace hps_trt {

/// A bad plugin field, a malformed serialized state, a shape the plugin cannot take, or a failed
/// lookup; what() names the thing and what was expected.
class PluginError : public std::runtime_error {
 public:
  explicit PluginError(const std::string& message) : std::runtime_error("HPS_TRT: " + message) {}
};

}  // namespace hps_trt
