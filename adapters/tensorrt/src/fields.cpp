// Parsing and validating the plugin's creation fields.
#include "hps_trt/fields.hpp"

#include <array>
#include <cstring>
#include <string>

#include "hps_trt/error.hpp"

namespace hps_trt {
namespace {

const char* type_name(FieldType type) {
  switch (type) {
    case FieldType::kFloat16: return "FLOAT16";
    case FieldType::kFloat32: return "FLOAT32";
    case FieldType::kFloat64: return "FLOAT64";
    case FieldType::kInt8: return "INT8";
    case FieldType::kInt16: return "INT16";
    case FieldType::kInt32: return "INT32";
    case FieldType::kChar: return "CHAR";
    case FieldType::kDims: return "DIMS";
    case FieldType::kBFloat16: return "BF16";
    case FieldType::kInt64: return "INT64";
    default: return "UNKNOWN";
  }
}

std::string read_string(const FieldView& field) {
  if (field.type != FieldType::kChar) {
    throw PluginError(std::string("field ") + field.name + " must be CHAR (a string), got " + type_name(field.type));
  }
  if (field.length < 0 || (field.length > 0 && field.data == nullptr)) {
    throw PluginError(std::string("field ") + field.name + " has length " + std::to_string(field.length) +
                      (field.data == nullptr ? " and no data" : ""));
  }
  // TensorRT passes the string's characters, with or without a terminating NUL: stop at the first.
  const char* text = static_cast<const char*>(field.data);
  std::size_t n = 0;
  while (n < static_cast<std::size_t>(field.length) && text[n] != '\0') ++n;
  if (n == 0) throw PluginError(std::string("field ") + field.name + " is an empty string");
  return std::string(text, n);
}

std::int64_t read_int(const FieldView& field) {
  if (field.type != FieldType::kInt32 && field.type != FieldType::kInt64) {
    throw PluginError(std::string("field ") + field.name + " must be INT32 (or INT64), got " + type_name(field.type));
  }
  if (field.length != 1 || field.data == nullptr) {
    throw PluginError(std::string("field ") + field.name + " must hold one integer, got " +
                      std::to_string(field.length));
  }
  if (field.type == FieldType::kInt32) {
    std::int32_t value;
    std::memcpy(&value, field.data, sizeof value);
    return value;
  }
  std::int64_t value;
  std::memcpy(&value, field.data, sizeof value);
  return value;
}

}  // namespace

const std::vector<FieldView>& creation_fields() {
  static const std::vector<FieldView> fields = {
      {"ps_config_file", nullptr, FieldType::kChar, 0},
      {"model_name", nullptr, FieldType::kChar, 0},
      {"table_id", nullptr, FieldType::kInt32, 1},
      {"emb_vec_size", nullptr, FieldType::kInt32, 1},
      {"emb_vec_dtype", nullptr, FieldType::kChar, 0},
  };
  return fields;
}

const char* output_type_name(OutputType type) { return type == OutputType::kFloat16 ? "float16" : "float32"; }

PluginConfig parse_fields(const FieldView* fields, std::int32_t count) {
  if (count < 0 || (count > 0 && fields == nullptr)) {
    throw PluginError("no field collection given (expected ps_config_file, model_name, table_id, emb_vec_size)");
  }
  PluginConfig config;
  std::array<bool, 5> seen{};
  const auto& known = creation_fields();
  for (std::int32_t i = 0; i < count; ++i) {
    const FieldView& field = fields[i];
    if (field.name == nullptr) throw PluginError("field " + std::to_string(i) + " has no name");
    std::size_t which = known.size();
    for (std::size_t k = 0; k < known.size(); ++k) {
      if (std::strcmp(field.name, known[k].name) == 0) which = k;
    }
    if (which == known.size()) {
      throw PluginError(std::string("unknown field ") + field.name +
                        " (the fields are ps_config_file, model_name, table_id, emb_vec_size and optionally "
                        "emb_vec_dtype)");
    }
    if (seen[which]) throw PluginError(std::string("field ") + field.name + " is given twice");
    seen[which] = true;
    switch (which) {
      case 0: config.ps_config_file = read_string(field); break;
      case 1: config.model_name = read_string(field); break;
      case 2: {
        const std::int64_t value = read_int(field);
        if (value < 0 || value > INT32_MAX) {
          throw PluginError("field table_id must be a table index >= 0, got " + std::to_string(value));
        }
        config.table_id = static_cast<std::int32_t>(value);
        break;
      }
      case 3: {
        const std::int64_t value = read_int(field);
        if (value <= 0 || value > INT32_MAX) {
          throw PluginError("field emb_vec_size must be a row width > 0, got " + std::to_string(value));
        }
        config.emb_vec_size = static_cast<std::int32_t>(value);
        break;
      }
      default: {
        const std::string dtype = read_string(field);
        if (dtype == "float32") {
          config.output_type = OutputType::kFloat32;
        } else if (dtype == "float16") {
          config.output_type = OutputType::kFloat16;
        } else {
          throw PluginError("field emb_vec_dtype must be \"float32\" or \"float16\", got \"" + dtype + "\"");
        }
      }
    }
  }
  std::string missing;
  for (std::size_t k = 0; k < 4; ++k) {
    if (!seen[k]) missing += (missing.empty() ? "" : ", ") + std::string(known[k].name);
  }
  if (!missing.empty()) {
    throw PluginError("missing field" + std::string(missing.find(',') == std::string::npos ? " " : "s ") + missing +
                      " (an HPS_TRT node carries ps_config_file, model_name, table_id and emb_vec_size)");
  }
  return config;
}

}  // namespace hps_trt
