// libFuzzer target: the TensorRT plugin's creation fields (hps_trt::parse_fields), what an ONNX
// graph's HPS_TRT node carries. TensorRT-free: the core of adapters/tensorrt.
//
// Input: records of u8 name | u8 type | i8 length | u8 flags | data bytes. name 0-4 is one of the
// plugin's field names, 5 a name read from the data, 6 none (null); type is TensorRT's raw
// PluginFieldType value (out-of-range ones included); flags & 1 passes no data pointer. As
// TensorRT promises, a data pointer given points at `length` elements of `type`: the harness
// copies that many (zero-padded) into a buffer of exactly that size, so ASan sees any read past it.
//
// Properties: parse_fields returns a PluginConfig or throws hps_trt::PluginError; a config it
// returns obeys its rules and survives serialize/deserialize.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "hps_trt/error.hpp"
#include "hps_trt/fields.hpp"
#include "hps_trt/state.hpp"

namespace {

std::size_t element_bytes(std::int32_t type) {
  switch (type) {
    case 0: case 4: case 9: return 2;   // float16, int16, bfloat16
    case 1: case 5: return 4;           // float32, int32
    case 2: case 10: return 8;          // float64, int64
    case 7: return 72;                  // Dims: nbDims + 8 x int64
    default: return 1;                  // int8, char, unknown (bytes) and anything else
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto& known = hps_trt::creation_fields();
  std::vector<hps_trt::FieldView> fields;
  std::vector<std::unique_ptr<std::uint8_t[]>> buffers;  // each field's data, exactly its size
  std::vector<std::string> names;
  names.reserve(size / 4 + 1);  // views point into these strings: no reallocation
  std::size_t at = 0;
  while (at + 4 <= size && fields.size() < 16) {
    const std::uint8_t name = data[at] % 7;
    const auto type = static_cast<std::int32_t>(static_cast<std::int8_t>(data[at + 1]));
    const auto length = static_cast<std::int32_t>(static_cast<std::int8_t>(data[at + 2]));
    const bool no_data = data[at + 3] & 1;
    at += 4;
    const std::size_t bytes = length > 0 ? static_cast<std::size_t>(length) * element_bytes(type) : 0;
    auto buffer = std::make_unique<std::uint8_t[]>(bytes + (bytes == 0));
    const std::size_t copied = std::min(bytes, size - at);
    std::memcpy(buffer.get(), data + at, copied);
    at += copied;
    hps_trt::FieldView field;
    if (name < known.size()) {
      field.name = known[name].name;
    } else if (name == known.size()) {
      names.emplace_back(reinterpret_cast<const char*>(buffer.get()), strnlen(reinterpret_cast<const char*>(buffer.get()), bytes));
      field.name = names.back().c_str();
    }
    field.type = static_cast<hps_trt::FieldType>(type);
    field.length = length;
    field.data = no_data ? nullptr : buffer.get();
    buffers.push_back(std::move(buffer));
    fields.push_back(field);
  }
  hps_trt::PluginConfig config;
  try {
    config = hps_trt::parse_fields(fields.empty() ? nullptr : fields.data(), static_cast<std::int32_t>(fields.size()));
  } catch (const hps_trt::PluginError&) {
    return 0;
  }
  if (config.ps_config_file.empty() || config.model_name.empty() || config.table_id < 0 || config.emb_vec_size <= 0) {
    hps_fuzz::fail("parse_fields returned a config its rules refuse");
  }
  const std::vector<std::uint8_t> state = hps_trt::serialize(config);
  try {
    if (!(hps_trt::deserialize(state.data(), state.size()) == config)) hps_fuzz::fail("the state reads back differently");
  } catch (const hps_trt::PluginError& e) {
    hps_fuzz::fail(std::string("the state of an accepted config does not read back: ") + e.what());
  }
  return 0;
}
