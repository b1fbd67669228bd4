// libFuzzer target: the TensorRT plugin's serialized state (hps_trt::deserialize), what an engine
// file hands the plugin back. TensorRT-free: the core of adapters/tensorrt.
//
// Input: u8 mode | state bytes. mode & 1: before parsing, set the header's payload size and
// checksum to match the bytes that follow (a damaged engine rarely gets past the checksum, a
// crafted one does: this reaches the payload parser).
//
// Properties: deserialize returns a PluginConfig or throws hps_trt::PluginError; a config it
// returns obeys the creation-field rules and serializes to a state that reads back as itself.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "hps_trt/error.hpp"
#include "hps_trt/state.hpp"

namespace {

constexpr std::size_t kHeaderBytes = 16;

void put_u32(std::uint8_t* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}

std::uint32_t fnv1a(const std::uint8_t* data, std::size_t n) {  // the state's checksum (FNV-1a, 32 bits)
  std::uint32_t hash = 2166136261u;
  for (std::size_t i = 0; i < n; ++i) hash = (hash ^ data[i]) * 16777619u;
  return hash;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  std::vector<std::uint8_t> state(data + 1, data + size);
  if ((data[0] & 1) && state.size() >= kHeaderBytes) {
    const std::size_t payload = state.size() - kHeaderBytes;
    put_u32(state.data() + 8, static_cast<std::uint32_t>(payload));
    put_u32(state.data() + 12, fnv1a(state.data() + kHeaderBytes, payload));
  }
  hps_trt::PluginConfig config;
  try {
    config = hps_trt::deserialize(state.empty() ? nullptr : state.data(), state.size());
  } catch (const hps_trt::PluginError&) {
    return 0;
  }
  if (config.ps_config_file.empty() || config.model_name.empty() || config.table_id < 0 || config.emb_vec_size <= 0 ||
      config.ps_config_file.find('\0') != std::string::npos || config.model_name.find('\0') != std::string::npos) {
    hps_fuzz::fail("deserialize returned a config that creation fields would refuse");
  }
  const std::vector<std::uint8_t> again = hps_trt::serialize(config);
  try {
    if (!(hps_trt::deserialize(again.data(), again.size()) == config)) {
      hps_fuzz::fail("a serialized config reads back differently");
    }
  } catch (const hps_trt::PluginError& e) {
    hps_fuzz::fail(std::string("a serialized config does not read back: ") + e.what());
  }
  return 0;
}
