#include "hps/updates/kafka_wire.hpp"

#include <cstring>

#include "hps/error.hpp"

namespace hps::kafka {

namespace {

std::uint32_t read_u32(const std::byte* p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);  // the wire is little-endian, as is every host hps builds for
  return v;
}

void write_u32(std::byte* p, std::uint32_t v) { std::memcpy(p, &v, 4); }

}  // namespace

std::string topic_name(std::string_view model, std::string_view table) {
  std::string out(kTopicPrefix);
  out.append(model).append(".").append(table);
  return out;
}

std::optional<TopicTable> parse_topic(std::string_view topic) {
  if (topic.substr(0, kTopicPrefix.size()) != kTopicPrefix) return std::nullopt;
  topic.remove_prefix(kTopicPrefix.size());
  const std::size_t dot = topic.find('.');
  if (dot == std::string_view::npos || dot == 0 || dot + 1 == topic.size()) return std::nullopt;
  return TopicTable{std::string(topic.substr(0, dot)), std::string(topic.substr(dot + 1))};
}

std::int64_t MessageView::key(std::size_t i) const {
  const std::byte* p = pairs_data + i * (key_size + value_size);
  if (key_size == 4) return static_cast<std::int64_t>(read_u32(p));
  std::int64_t k;
  std::memcpy(&k, p, 8);
  return k;
}

void MessageView::copy_value(std::size_t i, void* out) const {
  std::memcpy(out, pairs_data + i * (key_size + value_size) + key_size, value_size);
}

MessageView parse_message(const void* data, std::size_t size, std::size_t key_size) {
  HPS_EXPECTS(key_size == 4 || key_size == 8, InvalidArgument, "key size ", key_size, " bytes: expected 4 or 8");
  HPS_EXPECTS(data != nullptr || size == 0, InvalidArgument, "message data is null");
  HPS_EXPECTS(size >= kHeaderBytes, InvalidArgument, "message of ", size, " bytes is shorter than its ",
              kHeaderBytes, "-byte header");
  const auto* bytes = static_cast<const std::byte*>(data);
  const std::uint32_t magic = read_u32(bytes);
  if (magic != kMagic) {
    char shown[5] = {};
    for (int i = 0; i < 4; ++i) {
      const auto c = static_cast<unsigned char>(bytes[i]);
      shown[i] = c >= 32 && c < 127 ? static_cast<char>(c) : '?';
    }
    HPS_FAIL(InvalidArgument, "wrong magic \"", shown, "\": expected \"HCTR\"");
  }
  MessageView view;
  view.value_size = read_u32(bytes + 4);
  view.key_size = key_size;
  HPS_EXPECTS(view.value_size > 0 && view.value_size % 4 == 0, InvalidArgument, "value size ", view.value_size,
              " bytes is not a positive multiple of 4 (fp32 rows)");
  const std::size_t body = size - kHeaderBytes;
  const std::size_t pair = key_size + view.value_size;
  HPS_EXPECTS(body % pair == 0, InvalidArgument, "truncated pair: ", body, " bytes after the header are not a multiple of ",
              pair, " (", key_size, "-byte key + ", view.value_size, "-byte value); the last pair has ", body % pair,
              " bytes");
  view.pairs = body / pair;
  view.pairs_data = bytes + kHeaderBytes;
  return view;
}

std::vector<std::byte> pack_message(const std::int64_t* keys, const float* rows, std::size_t n, std::size_t dim,
                                    std::size_t key_size) {
  HPS_EXPECTS(key_size == 4 || key_size == 8, InvalidArgument, "key size ", key_size, " bytes: expected 4 or 8");
  HPS_EXPECTS(dim > 0, InvalidArgument, "rows of dimension 0 cannot be packed");
  const std::size_t value_size = dim * sizeof(float);
  std::vector<std::byte> out(kHeaderBytes + n * (key_size + value_size));
  write_u32(out.data(), kMagic);
  write_u32(out.data() + 4, static_cast<std::uint32_t>(value_size));
  std::byte* p = out.data() + kHeaderBytes;
  for (std::size_t i = 0; i < n; ++i) {
    if (key_size == 4) {
      HPS_EXPECTS(keys[i] >= -(std::int64_t{1} << 31) && keys[i] < (std::int64_t{1} << 32), InvalidArgument,
                  "key ", keys[i], " at position ", i, " does not fit 32 bits");
      write_u32(p, static_cast<std::uint32_t>(keys[i]));
    } else {
      std::memcpy(p, &keys[i], 8);
    }
    std::memcpy(p + key_size, rows + i * dim, value_size);
    p += key_size + value_size;
  }
  return out;
}

}  // namespace hps::kafka
