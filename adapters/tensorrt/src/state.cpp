// The versioned binary state of a plugin (see state.hpp for the format).
#include "hps_trt/state.hpp"

#include <cstring>
#include <string>

#include "hps_trt/error.hpp"

namespace hps_trt {
namespace {

constexpr std::size_t kHeaderBytes = 4 + 2 + 2 + 4 + 4;

std::uint32_t fnv1a(const std::uint8_t* data, std::size_t n) {
  std::uint32_t hash = 2166136261u;
  for (std::size_t i = 0; i < n; ++i) hash = (hash ^ data[i]) * 16777619u;
  return hash;
}

void put_u32(std::vector<std::uint8_t>& out, std::uint32_t value) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::uint8_t>(value >> (8 * i)));
}

void put_string(std::vector<std::uint8_t>& out, const std::string& text) {
  put_u32(out, static_cast<std::uint32_t>(text.size()));
  out.insert(out.end(), text.begin(), text.end());
}

/// Reads the payload front to back; every read names the field when the bytes run out.
class Reader {
 public:
  Reader(const std::uint8_t* data, std::size_t size, std::size_t base) : data_(data), size_(size), base_(base) {}

  std::uint32_t u32(const char* what) {
    need(4, what);
    std::uint32_t value = 0;
    for (int i = 0; i < 4; ++i) value |= static_cast<std::uint32_t>(data_[at_ + i]) << (8 * i);
    at_ += 4;
    return value;
  }

  std::uint8_t u8(const char* what) {
    need(1, what);
    return data_[at_++];
  }

  std::string string(const char* what) {
    const std::uint32_t n = u32(what);
    need(n, what);
    std::string text(reinterpret_cast<const char*>(data_ + at_), n);
    at_ += n;
    return text;
  }

  std::size_t left() const { return size_ - at_; }
  std::size_t offset() const { return base_ + at_; }

 private:
  void need(std::size_t n, const char* what) const {
    if (size_ - at_ < n) {
      throw PluginError("malformed plugin state: " + std::string(what) + " at byte " + std::to_string(base_ + at_) +
                        " needs " + std::to_string(n) + " bytes, " + std::to_string(size_ - at_) + " remain");
    }
  }

  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t base_;
  std::size_t at_ = 0;
};

}  // namespace

std::vector<std::uint8_t> serialize(const PluginConfig& config) {
  std::vector<std::uint8_t> payload;
  put_string(payload, config.ps_config_file);
  put_string(payload, config.model_name);
  put_u32(payload, static_cast<std::uint32_t>(config.table_id));
  put_u32(payload, static_cast<std::uint32_t>(config.emb_vec_size));
  payload.push_back(static_cast<std::uint8_t>(config.output_type));

  std::vector<std::uint8_t> out(kStateMagic, kStateMagic + 4);
  out.push_back(static_cast<std::uint8_t>(kStateVersion & 0xff));
  out.push_back(static_cast<std::uint8_t>(kStateVersion >> 8));
  out.push_back(0);
  out.push_back(0);
  put_u32(out, static_cast<std::uint32_t>(payload.size()));
  put_u32(out, fnv1a(payload.data(), payload.size()));
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

PluginConfig deserialize(const void* data, std::size_t size) {
  if (data == nullptr && size != 0) throw PluginError("malformed plugin state: no data");
  const auto* bytes = static_cast<const std::uint8_t*>(data);
  if (size < kHeaderBytes) {
    throw PluginError("malformed plugin state: " + std::to_string(size) + " bytes, shorter than the " +
                      std::to_string(kHeaderBytes) + "-byte header");
  }
  if (std::memcmp(bytes, kStateMagic, 4) != 0) {
    throw PluginError("not an HPS_TRT plugin state: the first 4 bytes are not \"HPST\" (an engine built with "
                      "another plugin of the same name, such as HugeCTR's, cannot be read by this one)");
  }
  Reader header(bytes + 4, kHeaderBytes - 4, 4);
  const std::uint32_t words = header.u32("version");
  const std::uint16_t version = static_cast<std::uint16_t>(words & 0xffff);
  if (version != kStateVersion) {
    throw PluginError("plugin state version " + std::to_string(version) + "; this plugin reads version " +
                      std::to_string(kStateVersion) + " (rebuild the engine with this plugin)");
  }
  const std::uint32_t payload_bytes = header.u32("payload size");
  const std::uint32_t checksum = header.u32("checksum");
  if (size - kHeaderBytes != payload_bytes) {
    throw PluginError("malformed plugin state: the header announces " + std::to_string(payload_bytes) +
                      " payload bytes, " + std::to_string(size - kHeaderBytes) + " follow it");
  }
  if (fnv1a(bytes + kHeaderBytes, payload_bytes) != checksum) {
    throw PluginError("malformed plugin state: checksum mismatch (the engine file is damaged)");
  }
  Reader payload(bytes + kHeaderBytes, payload_bytes, kHeaderBytes);
  const std::string config_file = payload.string("ps_config_file");
  const std::string model = payload.string("model_name");
  const auto table_id = static_cast<std::int32_t>(payload.u32("table_id"));
  const auto emb_vec_size = static_cast<std::int32_t>(payload.u32("emb_vec_size"));
  const std::uint8_t output = payload.u8("output type");
  if (payload.left() != 0) {
    throw PluginError("malformed plugin state: " + std::to_string(payload.left()) + " unread bytes at byte " +
                      std::to_string(payload.offset()));
  }
  if (output > static_cast<std::uint8_t>(OutputType::kFloat16)) {
    throw PluginError("malformed plugin state: output type " + std::to_string(output) + " (0 float32, 1 float16)");
  }
  // The same rules as creation fields, so a state never describes a plugin creation would refuse.
  const std::string dtype = output_type_name(static_cast<OutputType>(output));
  const FieldView fields[] = {
      {"ps_config_file", config_file.data(), FieldType::kChar, static_cast<std::int32_t>(config_file.size())},
      {"model_name", model.data(), FieldType::kChar, static_cast<std::int32_t>(model.size())},
      {"table_id", &table_id, FieldType::kInt32, 1},
      {"emb_vec_size", &emb_vec_size, FieldType::kInt32, 1},
      {"emb_vec_dtype", dtype.data(), FieldType::kChar, static_cast<std::int32_t>(dtype.size())},
  };
  return parse_fields(fields, 5);
}

}  // namespace hps_trt
