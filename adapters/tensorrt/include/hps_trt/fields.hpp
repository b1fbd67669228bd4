// The plugin's creation fields: what an HPS_TRT node of an ONNX graph carries (HugeCTR's four
// fields, plus an optional output type) and their validation.
//
// The field view mirrors nvinfer1::PluginField (name, data, type, length) with TensorRT's
// PluginFieldType numbering, so this part compiles and is tested without TensorRT; the shell
// copies TensorRT's fields into views.
//
// Ownership: FieldView borrows its name and data for the call; PluginConfig owns its strings.
// Threading: pure functions; safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hps_trt {

/// The plugin's name, version and field names, as TensorRT and the ONNX graph see them.
inline constexpr const char* kPluginName = "HPS_TRT";
inline constexpr const char* kPluginVersion = "1";

/// TensorRT's PluginFieldType values (NvInferPluginBase.h), for the types the plugin reads.
enum class FieldType : std::int32_t { kFloat16 = 0, kFloat32 = 1, kFloat64 = 2, kInt8 = 3, kInt16 = 4, kInt32 = 5,
                                      kChar = 6, kDims = 7, kUnknown = 8, kBFloat16 = 9, kInt64 = 10 };

struct FieldView {
  const char* name = nullptr;
  const void* data = nullptr;
  FieldType type = FieldType::kUnknown;
  std::int32_t length = 0;  // elements (characters for kChar, bytes for kUnknown)
};

/// The element type of the rows the plugin writes.
enum class OutputType : std::int32_t { kFloat32 = 0, kFloat16 = 1 };

struct PluginConfig {
  std::string ps_config_file;  // the hps config the server is built from (a path where the engine runs)
  std::string model_name;
  std::int32_t table_id = -1;  // index of the table in the model
  std::int32_t emb_vec_size = 0;  // floats per row; must equal the table's
  OutputType output_type = OutputType::kFloat32;

  bool operator==(const PluginConfig& other) const = default;
};

/// Field names and types the creator advertises: ps_config_file (kChar), model_name (kChar),
/// table_id (kInt32), emb_vec_size (kInt32), emb_vec_dtype (kChar, optional: "float32" or "float16").
const std::vector<FieldView>& creation_fields();

/// The configuration the fields describe. Required: the four HugeCTR fields; strings may be
/// NUL-terminated or not (the length bounds them); ints may be kInt32 or kInt64 of length 1.
/// Throws PluginError naming the field and what was expected for a missing, repeated, unknown or
/// mistyped field, an empty string, a negative table_id or a non-positive emb_vec_size.
PluginConfig parse_fields(const FieldView* fields, std::int32_t count);

/// "float32" / "float16".
const char* output_type_name(OutputType type);

}  // namespace hps_trt
