#include "tiers/redis/reply_reader.hpp"

#include <cstdlib>
#include <cstring>
#include <new>

namespace hps::redis {

namespace {

constexpr std::size_t kInitialBytes = std::size_t{256} << 10;
// A read is offered at least this much room: fewer, larger reads.
constexpr std::size_t kMinRoom = std::size_t{64} << 10;
// Nesting deeper than any reply the tier asks for (CLUSTER SLOTS: 3) means a broken stream.
constexpr std::size_t kMaxDepth = 16;

// Reply objects are allocated the way hiredis allocates them (malloc family), so that
// freeReplyObject frees them.
redisReply* new_reply(int type) {
  auto* r = static_cast<redisReply*>(std::calloc(1, sizeof(redisReply)));
  if (!r) throw std::bad_alloc();
  r->type = type;
  return r;
}

redisReply* new_string(int type, const char* data, std::size_t len) {
  redisReply* r = new_reply(type);
  r->str = static_cast<char*>(std::malloc(len + 1));
  if (!r->str) {
    std::free(r);
    throw std::bad_alloc();
  }
  std::memcpy(r->str, data, len);
  r->str[len] = '\0';  // callers use the text as a C string (error prefixes)
  r->len = len;
  return r;
}

// A RESP integer ("-12", "3"); false when the text is not one.
bool parse_integer(const char* p, const char* end, long long& value) {
  bool negative = false;
  if (p < end && *p == '-') {
    negative = true;
    ++p;
  }
  if (p == end || end - p > 19) return false;
  long long v = 0;
  for (; p < end; ++p) {
    if (*p < '0' || *p > '9') return false;
    v = v * 10 + (*p - '0');
  }
  value = negative ? -v : v;
  return true;
}

}  // namespace

ReplyReader::ReplyReader() : buf_(kInitialBytes) {}

ReplyReader::~ReplyReader() { discard(); }

void ReplyReader::discard() {
  // An array in progress is attached to its parent only when complete: each frame owns its own.
  for (Frame& f : stack_) {
    if (f.array) freeReplyObject(f.array);
  }
  stack_.clear();
  if (root_) freeReplyObject(root_);
  root_ = nullptr;
}

std::pair<char*, std::size_t> ReplyReader::space() {
  if (pos_ == end_) pos_ = end_ = 0;
  const std::size_t held = end_ - pos_;
  const std::size_t want = std::max(kMinRoom, need_ > held ? need_ - held : 0);
  if (buf_.size() - end_ < want) {
    // Only the unparsed tail (at most one partial item) moves.
    if (pos_ > 0) {
      std::memmove(buf_.data(), buf_.data() + pos_, held);
      pos_ = 0;
      end_ = held;
    }
    if (buf_.size() - end_ < want) buf_.resize(std::max(buf_.size() * 2, end_ + want));
  }
  return {buf_.data() + end_, buf_.size() - end_};
}

int ReplyReader::next(RowSink* sink, redisReply** reply) {
  *reply = nullptr;
  if (!error_.empty()) return -1;
  while (!done_) {
    const int status = item(sink);
    if (status <= 0) return status;
  }
  *reply = root_;
  root_ = nullptr;
  done_ = false;
  sinking_ = false;
  return 1;
}

void ReplyReader::place(redisReply* r, bool copied) {
  for (;;) {
    if (stack_.empty()) {
      root_ = r;
      done_ = true;
      return;
    }
    Frame& f = stack_.back();
    if (f.array) {
      f.array->element[f.next] = r;
    } else if (!copied) {  // an element of the sink's array that was not a row
      if (r->type != REDIS_REPLY_NIL) ++f.sink->bad;
      freeReplyObject(r);
    }
    copied = false;
    if (++f.next < f.size) return;
    // The array is complete: it is the item to place in its own parent.
    if (f.array) {
      r = f.array;
    } else {
      r = new_reply(REDIS_REPLY_ARRAY);
      r->elements = f.size;  // no element objects: the rows went to the sink
    }
    stack_.pop_back();
  }
}

int ReplyReader::item(RowSink* sink) {
  const char* p = buf_.data() + pos_;
  const std::size_t avail = end_ - pos_;
  if (avail < 3) return 0;
  const auto* cr = static_cast<const char*>(std::memchr(p + 1, '\r', avail - 1));
  if (!cr || static_cast<std::size_t>(cr - p) + 2 > avail) return 0;
  if (cr[1] != '\n') {
    error_ = "protocol error: a line not ended by CRLF";
    return -1;
  }
  const std::size_t header = static_cast<std::size_t>(cr - p) + 2;
  const char type = p[0];
  if (type == '+' || type == '-') {
    pos_ += header;
    need_ = 0;
    place(new_string(type == '+' ? REDIS_REPLY_STATUS : REDIS_REPLY_ERROR, p + 1, header - 3), false);
    return 1;
  }
  long long value = 0;
  if ((type != ':' && type != '$' && type != '*') || !parse_integer(p + 1, cr, value)) {
    error_ = std::string("protocol error: unexpected reply line starting with '") + type + "'";
    return -1;
  }
  if (type == ':') {
    pos_ += header;
    need_ = 0;
    redisReply* r = new_reply(REDIS_REPLY_INTEGER);
    r->integer = value;
    place(r, false);
    return 1;
  }
  if (value < 0) {  // "$-1" / "*-1": nil
    pos_ += header;
    need_ = 0;
    place(new_reply(REDIS_REPLY_NIL), false);
    return 1;
  }
  const auto n = static_cast<std::size_t>(value);
  if (type == '$') {
    const std::size_t total = header + n + 2;
    if (avail < total) {
      need_ = total;  // space() makes room for the whole string
      return 0;
    }
    if (p[header + n] != '\r' || p[header + n + 1] != '\n') {
      error_ = "protocol error: a bulk string not ended by CRLF";
      return -1;
    }
    pos_ += total;
    need_ = 0;
    if (sinking_ && stack_.size() == 1) {
      const Frame& f = stack_.back();
      if (n == f.sink->row_bytes) {
        const std::size_t i = f.sink->index[f.next];
        std::memcpy(f.sink->base + i * n, p + header, n);
        f.sink->found[i] = 1;
        place(nullptr, true);
        return 1;
      }
    }
    place(new_string(REDIS_REPLY_STRING, p + header, n), false);
    return 1;
  }
  // '*': an array of n items.
  pos_ += header;
  need_ = 0;
  if (n == 0) {
    place(new_reply(REDIS_REPLY_ARRAY), false);
    return 1;
  }
  if (stack_.size() >= kMaxDepth) {
    error_ = "protocol error: replies nested too deep";
    return -1;
  }
  if (stack_.empty() && root_ == nullptr && sink != nullptr && n == sink->count) {
    sinking_ = true;
    sink->bad = 0;
    stack_.push_back(Frame{nullptr, sink, n, 0});
    return 1;
  }
  redisReply* r = new_reply(REDIS_REPLY_ARRAY);
  r->element = static_cast<redisReply**>(std::calloc(n, sizeof(redisReply*)));
  if (!r->element) {
    std::free(r);
    throw std::bad_alloc();
  }
  r->elements = n;
  stack_.push_back(Frame{r, nullptr, n, 0});
  return 1;
}

}  // namespace hps::redis
