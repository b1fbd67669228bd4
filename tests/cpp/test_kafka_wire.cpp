// HugeCTR's Kafka message layout and topic names, without a broker: messages packed by hand
// byte by byte parse; every malformed form is refused with a message naming the fault; pack and
// parse agree for both key widths.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "hps/error.hpp"
#include "hps/updates/kafka_wire.hpp"

namespace k = hps::kafka;

namespace {

// A message built the way HugeCTR's producer lays it out, independently of pack_message.
std::vector<unsigned char> by_hand(const std::vector<std::int64_t>& keys, const std::vector<float>& rows,
                                   std::uint32_t dim, std::size_t key_size) {
  std::vector<unsigned char> out = {'H', 'C', 'T', 'R'};
  const std::uint32_t value_size = dim * 4;
  for (int b = 0; b < 4; ++b) out.push_back(static_cast<unsigned char>(value_size >> (8 * b)));
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const auto key = static_cast<std::uint64_t>(keys[i]);
    for (std::size_t b = 0; b < key_size; ++b) out.push_back(static_cast<unsigned char>(key >> (8 * b)));
    const auto* v = reinterpret_cast<const unsigned char*>(rows.data() + i * dim);
    out.insert(out.end(), v, v + value_size);
  }
  return out;
}

std::string error_of(const std::vector<unsigned char>& bytes, std::size_t key_size) {
  try {
    k::parse_message(bytes.data(), bytes.size(), key_size);
  } catch (const hps::InvalidArgument& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(KafkaWire, TopicNames) {
  EXPECT_EQ(k::topic_name("dlrm", "sparse_embedding0"), "hps_et.dlrm.sparse_embedding0");
  const auto t = k::parse_topic("hps_et.dlrm.users.v2");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->model, "dlrm");
  EXPECT_EQ(t->table, "users.v2");
  for (const char* bad : {"hps_et.dlrm", "hps_et..t", "hps_et.m.", "hps.m.t", "xhps_et.m.t", ""}) {
    EXPECT_FALSE(k::parse_topic(bad).has_value()) << bad;
  }
}

TEST(KafkaWire, HandPackedMessagesParseForBothKeyWidths) {
  const std::vector<std::int64_t> keys64 = {1, -7, std::int64_t{1} << 40};
  const std::vector<float> rows = {1, 2, 3, 4, 5, 6};
  for (std::size_t key_size : {std::size_t{4}, std::size_t{8}}) {
    const std::vector<std::int64_t> keys = key_size == 8 ? keys64 : std::vector<std::int64_t>{1, 4294967289, 65536};
    const auto bytes = by_hand(keys, rows, 2, key_size);
    const k::MessageView v = k::parse_message(bytes.data(), bytes.size(), key_size);
    ASSERT_EQ(v.pairs, 3u);
    EXPECT_EQ(v.value_size, 8u);
    for (std::size_t i = 0; i < 3; ++i) {
      EXPECT_EQ(v.key(i), keys[i]);
      float row[2];
      v.copy_value(i, row);
      EXPECT_EQ(row[0], rows[2 * i]);
      EXPECT_EQ(row[1], rows[2 * i + 1]);
    }
    // pack_message writes the same bytes (-7 as a 32-bit pattern is 4294967289).
    const std::vector<std::int64_t> packed_keys = key_size == 8 ? keys64 : std::vector<std::int64_t>{1, -7, 65536};
    const auto packed = k::pack_message(packed_keys.data(), rows.data(), 3, 2, key_size);
    ASSERT_EQ(packed.size(), bytes.size());
    EXPECT_EQ(std::memcmp(packed.data(), bytes.data(), bytes.size()), 0);
  }
}

TEST(KafkaWire, ABeaconHasNoPairs) {
  const auto bytes = by_hand({}, {}, 16, 8);
  const k::MessageView v = k::parse_message(bytes.data(), bytes.size(), 8);
  EXPECT_TRUE(v.beacon());
  EXPECT_EQ(v.value_size, 64u);
}

TEST(KafkaWire, MalformedMessagesAreRefusedWithTheFault) {
  auto good = by_hand({1, 2}, {1, 2, 3, 4}, 2, 8);
  EXPECT_EQ(error_of(good, 8), "");

  auto magic = good;
  magic[0] = 'X';
  EXPECT_EQ(error_of(magic, 8), "wrong magic \"XCTR\": expected \"HCTR\"");

  EXPECT_EQ(error_of({'H', 'C', 'T'}, 8), "message of 3 bytes is shorter than its 8-byte header");

  auto truncated = good;
  truncated.pop_back();
  EXPECT_EQ(error_of(truncated, 8),
            "truncated pair: 31 bytes after the header are not a multiple of 16 (8-byte key + 8-byte value); the "
            "last pair has 15 bytes");

  auto odd_value = by_hand({}, {}, 1, 8);
  odd_value[4] = 6;  // value size 6: not fp32 rows
  EXPECT_EQ(error_of(odd_value, 8), "value size 6 bytes is not a positive multiple of 4 (fp32 rows)");
  odd_value[4] = 0;
  EXPECT_EQ(error_of(odd_value, 8), "value size 0 bytes is not a positive multiple of 4 (fp32 rows)");

  // 8-byte-key pairs read with 4-byte keys leave a remainder: refused, not misread.
  EXPECT_NE(error_of(good, 4).find("truncated pair"), std::string::npos);
  EXPECT_NE(error_of(good, 5).find("key size 5"), std::string::npos);
}

TEST(KafkaWire, KeysThatDoNotFit32BitsAreRefusedWhenPacking) {
  const std::int64_t keys[] = {std::int64_t{1} << 32};
  const float rows[] = {1};
  EXPECT_THROW(k::pack_message(keys, rows, 1, 1, 4), hps::InvalidArgument);
  EXPECT_NO_THROW(k::pack_message(keys, rows, 1, 1, 8));
}
