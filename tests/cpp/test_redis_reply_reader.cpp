// The RESP reader of the Redis Cluster tier, on byte streams written here (no server): every kind
// of reply, rows copied into a sink, and the same results however the stream is split into reads.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "tiers/redis/reply_reader.hpp"

namespace {

using hps::redis::ReplyReader;
using hps::redis::RowSink;

struct Freed {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, Freed>;

std::string bulk(const std::string& s) { return "$" + std::to_string(s.size()) + "\r\n" + s + "\r\n"; }

// Feeds `stream` in reads of the given sizes (cycled), collecting replies; sinks[k] (may be null)
// is the sink of the k-th reply.
std::vector<Reply> read_all(const std::string& stream, const std::vector<std::size_t>& reads,
                            const std::vector<RowSink*>& sinks, std::string* error = nullptr) {
  ReplyReader reader;
  std::vector<Reply> out;
  std::size_t at = 0, r = 0;
  while (at < stream.size()) {
    auto [room, size] = reader.space();
    const std::size_t n = std::min({reads[r++ % reads.size()], size, stream.size() - at});
    std::memcpy(room, stream.data() + at, n);
    reader.commit(n);
    at += n;
    for (;;) {
      RowSink* sink = out.size() < sinks.size() ? sinks[out.size()] : nullptr;
      redisReply* reply = nullptr;
      const int status = reader.next(sink, &reply);
      if (status < 0) {
        if (error) *error = reader.error();
        return out;
      }
      if (status == 0) break;
      out.emplace_back(reply);
    }
  }
  EXPECT_EQ(reader.pending(), 0u);
  return out;
}

std::string row_bytes(float a, float b) {
  const float row[2] = {a, b};
  return std::string(reinterpret_cast<const char*>(row), sizeof row);
}

TEST(RedisReplyReader, EveryKindOfReplyUnderEverySplit) {
  // HMGET of 5 keys into a sink: rows, a nil, a value of the wrong size, a nested array.
  const std::string rows_reply = "*5\r\n" + bulk(row_bytes(1, 2)) + "$-1\r\n" + bulk("short") + "*1\r\n:7\r\n" +
                                 bulk(row_bytes(3, 4));
  const std::string stream = "+OK\r\n" + std::string("-MOVED 3999 127.0.0.1:6381\r\n") + ":-42\r\n" + "$-1\r\n" +
                             bulk("hello") + "*0\r\n" +
                             "*2\r\n*3\r\n:0\r\n:5460\r\n*2\r\n" + bulk("127.0.0.1") + ":30001\r\n" + "*-1\r\n" +
                             rows_reply + bulk(std::string(3u << 20, 'x'));  // larger than the buffer
  for (std::size_t split : {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{7}, std::size_t{64},
                            std::size_t{1} << 20}) {
    SCOPED_TRACE("reads of " + std::to_string(split) + " bytes");
    std::vector<float> out(6 * 2, -1.0f);
    std::vector<std::uint8_t> found(6, 0);
    const std::size_t index[5] = {5, 0, 1, 2, 3};  // element j -> position index[j]
    RowSink sink{reinterpret_cast<char*>(out.data()), index, 5, 8, found.data()};
    std::vector<RowSink*> sinks(7, nullptr);
    sinks.push_back(&sink);  // the 8th reply answers the HMGET
    const auto replies = read_all(stream, {split}, sinks);
    ASSERT_EQ(replies.size(), 9u);
    EXPECT_EQ(replies[0]->type, REDIS_REPLY_STATUS);
    EXPECT_STREQ(replies[0]->str, "OK");
    EXPECT_EQ(replies[1]->type, REDIS_REPLY_ERROR);
    EXPECT_STREQ(replies[1]->str, "MOVED 3999 127.0.0.1:6381");
    EXPECT_EQ(replies[2]->type, REDIS_REPLY_INTEGER);
    EXPECT_EQ(replies[2]->integer, -42);
    EXPECT_EQ(replies[3]->type, REDIS_REPLY_NIL);
    EXPECT_EQ(std::string(replies[4]->str, replies[4]->len), "hello");
    EXPECT_EQ(replies[5]->type, REDIS_REPLY_ARRAY);
    EXPECT_EQ(replies[5]->elements, 0u);
    // CLUSTER SLOTS-like nesting, then a nil array.
    const redisReply* slots = replies[6].get();
    ASSERT_EQ(slots->type, REDIS_REPLY_ARRAY);
    ASSERT_EQ(slots->elements, 2u);
    ASSERT_EQ(slots->element[0]->elements, 3u);
    EXPECT_EQ(slots->element[0]->element[1]->integer, 5460);
    EXPECT_STREQ(slots->element[0]->element[2]->element[0]->str, "127.0.0.1");
    EXPECT_EQ(slots->element[0]->element[2]->element[1]->integer, 30001);
    EXPECT_EQ(slots->element[1]->type, REDIS_REPLY_NIL);
    // The rows went to the sink; the reply only says how many elements there were.
    ASSERT_EQ(replies[7]->type, REDIS_REPLY_ARRAY);
    EXPECT_EQ(replies[7]->elements, 5u);
    EXPECT_EQ(replies[7]->element, nullptr);
    EXPECT_EQ(found, (std::vector<std::uint8_t>{0, 0, 0, 1, 0, 1}));
    EXPECT_EQ(out[5 * 2], 1.0f);
    EXPECT_EQ(out[5 * 2 + 1], 2.0f);
    EXPECT_EQ(out[3 * 2], 3.0f);
    EXPECT_EQ(out[3 * 2 + 1], 4.0f);
    for (std::size_t i : {0u, 1u, 2u, 4u}) EXPECT_EQ(out[i * 2], -1.0f) << "row " << i << " must stay untouched";
    EXPECT_EQ(sink.bad, 2u);  // "short" and the nested array
    ASSERT_EQ(replies[8]->len, 3u << 20);
    EXPECT_EQ(replies[8]->str[(3u << 20) - 1], 'x');
  }
}

TEST(RedisReplyReader, SinkIsUsedOnlyForAnArrayOfItsCount) {
  std::vector<float> out(4, 0.0f);
  std::vector<std::uint8_t> found(2, 0);
  const std::size_t index[2] = {0, 1};
  RowSink sink{reinterpret_cast<char*>(out.data()), index, 2, 8, found.data()};
  // An error instead of the array (a redirect), then an array of another length: reply objects.
  const std::string stream = "-ASK 1 127.0.0.1:1\r\n*1\r\n" + bulk(row_bytes(5, 6));
  const auto replies = read_all(stream, {5}, {&sink, &sink});
  ASSERT_EQ(replies.size(), 2u);
  EXPECT_EQ(replies[0]->type, REDIS_REPLY_ERROR);
  ASSERT_EQ(replies[1]->elements, 1u);
  EXPECT_EQ(replies[1]->element[0]->len, 8u);
  EXPECT_EQ(found, (std::vector<std::uint8_t>{0, 0}));
}

TEST(RedisReplyReader, RandomSplitsGiveTheSameRows) {
  std::mt19937 rng(7);
  const std::size_t count = 2000, dim = 16;
  std::string stream = "*" + std::to_string(count) + "\r\n";
  std::vector<float> expect(count * dim, 0.0f);
  std::vector<std::uint8_t> expect_found(count, 0);
  for (std::size_t j = 0; j < count; ++j) {
    if (rng() % 5 == 0) {
      stream += "$-1\r\n";
      continue;
    }
    std::vector<float> row(dim);
    for (auto& v : row) v = static_cast<float>(rng() % 1000);
    stream += bulk(std::string(reinterpret_cast<const char*>(row.data()), dim * 4));
    const std::size_t i = count - 1 - j;
    std::copy(row.begin(), row.end(), expect.begin() + static_cast<long>(i * dim));
    expect_found[i] = 1;
  }
  std::vector<std::size_t> index(count);
  for (std::size_t j = 0; j < count; ++j) index[j] = count - 1 - j;
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<std::size_t> reads(50);
    for (auto& r : reads) r = 1 + rng() % 3000;
    std::vector<float> out(count * dim, 0.0f);
    std::vector<std::uint8_t> found(count, 0);
    RowSink sink{reinterpret_cast<char*>(out.data()), index.data(), count, dim * 4, found.data()};
    const auto replies = read_all(stream + ":1\r\n", reads, {&sink});
    ASSERT_EQ(replies.size(), 2u);
    EXPECT_EQ(replies[0]->elements, count);
    EXPECT_EQ(replies[1]->integer, 1);
    EXPECT_EQ(found, expect_found);
    EXPECT_EQ(out, expect);
    EXPECT_EQ(sink.bad, 0u);
  }
}

TEST(RedisReplyReader, ProtocolErrorsAreReported) {
  for (const std::string bad : {"?what\r\n", "$abc\r\n", "$3\r\nabcXY", ":1\rX"}) {
    std::string error;
    const auto replies = read_all(bad, {bad.size()}, {}, &error);
    EXPECT_TRUE(replies.empty());
    EXPECT_NE(error.find("protocol error"), std::string::npos) << bad;
  }
}

TEST(RedisReplyReader, AReplyCutShortIsFreedWithTheReader) {
  // A connection dropped mid-reply: the reader holds nested arrays in progress and frees them
  // (AddressSanitizer and LeakSanitizer check this in the sanitizer build).
  ReplyReader reader;
  const std::string partial = "*2\r\n*3\r\n" + bulk("a") + "*2\r\n:1\r\n";
  auto [room, size] = reader.space();
  ASSERT_GE(size, partial.size());
  std::memcpy(room, partial.data(), partial.size());
  reader.commit(partial.size());
  redisReply* reply = nullptr;
  EXPECT_EQ(reader.next(nullptr, &reply), 0);
  EXPECT_EQ(reply, nullptr);
}

}  // namespace
