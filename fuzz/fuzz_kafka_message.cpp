// libFuzzer target: HugeCTR's Kafka update messages (hps::kafka::parse_message, parse_topic), as
// the consumer meets them: bytes from a broker, no broker needed.
//
// Input: u8 selector | message bytes. selector & 1: 8-byte keys, else 4-byte; selector >> 1 is the
// table's dim the consumer checks the value size against (0: take the message's).
//
// Properties: parse_message returns a view or throws hps::InvalidArgument; a view covers exactly
// the message (header + pairs x (key + value)); every key and value it hands out lies inside the
// message (ASan checks the reads) and packing them again gives the same bytes. The same bytes as
// a topic name parse to a model and table that name the topic again, or to nothing.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.hpp"
#include "hps/error.hpp"
#include "hps/updates/kafka_wire.hpp"

namespace kafka = hps::kafka;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::size_t key_size = (data[0] & 1) ? 8 : 4;
  const std::size_t dim = data[0] >> 1;
  const std::uint8_t* message = data + 1;
  const std::size_t length = size - 1;

  const std::string_view topic(reinterpret_cast<const char*>(message), length);
  if (const auto parsed = kafka::parse_topic(topic)) {
    if (parsed->model.empty() || parsed->table.empty() || parsed->model.find('.') != std::string::npos ||
        kafka::topic_name(parsed->model, parsed->table) != topic) {
      hps_fuzz::fail("parse_topic gave model '" + parsed->model + "' and table '" + parsed->table + "'");
    }
  }

  kafka::MessageView view;
  try {
    // A copy of exactly `length` bytes, so ASan sees any read past the message.
    std::vector<std::uint8_t> exact(message, message + length);
    view = kafka::parse_message(exact.empty() ? nullptr : exact.data(), exact.size(), key_size);
    if (kafka::kHeaderBytes + view.pairs * (key_size + view.value_size) != length) {
      hps_fuzz::fail("the view's pairs do not cover the message exactly");
    }
    // What the consumer does next: refuse a value size that is not the table's, copy the rest.
    if (dim != 0 && view.value_size != dim * sizeof(float)) return 0;
    std::vector<std::int64_t> keys(view.pairs);
    std::vector<float> rows(view.pairs * (view.value_size / sizeof(float)));
    for (std::size_t i = 0; i < view.pairs; ++i) {
      keys[i] = view.key(i);
      view.copy_value(i, rows.data() + i * (view.value_size / sizeof(float)));
    }
    if (view.pairs > 0) {
      const auto packed = kafka::pack_message(keys.data(), rows.data(), view.pairs, view.value_size / sizeof(float),
                                              key_size);
      if (packed.size() != length || std::memcmp(packed.data(), message, length) != 0) {
        hps_fuzz::fail("packing the parsed pairs again does not give the message back");
      }
    }
  } catch (const hps::InvalidArgument&) {
    return 0;
  }
  return 0;
}
