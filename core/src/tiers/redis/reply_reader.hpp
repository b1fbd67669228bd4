// A streaming reader of Redis (RESP2) replies that can copy the rows of an HMGET reply straight
// into the caller's output instead of building reply objects.
//
// Why not hiredis's reader: it copies every byte read into its own buffer, moves the rest of that
// buffer after each reply (so a read holding many replies is moved many times), and allocates an
// object and a string per array element, which the tier then copies again. Here bytes are read
// into this reader's buffer once and a row is copied once, from there to its place in the output;
// only the partial item at the end of a read is moved, before the next read.
//
// Replies that are not rows (errors, redirects, integers, CLUSTER SLOTS, HSCAN, ...) become
// ordinary hiredis `redisReply` objects, allocated as hiredis does, so freeReplyObject frees them.
//
// Ownership: a ReplyReader owns its buffer and the reply it is in the middle of; the RowSink and
// the memory it points to belong to the caller. Threads: one thread at a time (a reader belongs to
// one connection, which one run() call holds).
#pragma once

#include <hiredis/hiredis.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace hps::redis {

/// Where the elements of an array reply go: element j, when it is a string of exactly
/// `row_bytes` bytes, is copied to base + index[j] * row_bytes and found[index[j]] is set to 1.
/// A nil element leaves both untouched; any other element is counted in `bad` and not copied.
/// Used only when the reply is an array of exactly `count` elements; any other reply (an error, a
/// redirect) becomes a reply object as usual.
struct RowSink {
  char* base = nullptr;
  const std::size_t* index = nullptr;
  std::size_t count = 0;
  std::size_t row_bytes = 0;
  std::uint8_t* found = nullptr;
  std::size_t bad = 0;  ///< elements that were neither nil nor a row of row_bytes (last reply)
};

class ReplyReader {
 public:
  ReplyReader();
  ~ReplyReader();
  ReplyReader(const ReplyReader&) = delete;
  ReplyReader& operator=(const ReplyReader&) = delete;

  /// Room to read into (at least a few KiB; more when a long string is known to be coming).
  std::pair<char*, std::size_t> space();
  /// `n` bytes were written at the start of the last space().
  void commit(std::size_t n) { end_ += n; }

  /// Parses the next reply. `sink` (may be null) is where the rows of the command this reply
  /// answers go; the same sink must be passed until the reply is complete. Returns 1 with *reply
  /// set (for a reply that went to the sink: an array reply with `elements` = count and no
  /// `element`s), 0 when more bytes are needed, -1 on a protocol error (see error()).
  int next(RowSink* sink, redisReply** reply);

  /// Bytes read but not yet parsed (non-zero after the last expected reply: the server sent more).
  std::size_t pending() const { return end_ - pos_; }
  const std::string& error() const { return error_; }

 private:
  struct Frame {
    redisReply* array;  // the array being filled; null for one whose elements go to `sink`
    RowSink* sink;
    std::size_t size;
    std::size_t next;
  };
  // Parses one item at pos_; returns 1 (consumed), 0 (incomplete), -1 (error).
  int item(RowSink* sink);
  // Attaches a finished item to its parent (or makes it the root), completing the arrays it
  // finishes. `copied`: the item was a row already copied to the sink (r is null).
  void place(redisReply* r, bool copied);
  void discard();

  std::vector<char> buf_;
  std::size_t pos_ = 0, end_ = 0;
  std::size_t need_ = 0;  // bytes the item at pos_ needs in all (0: unknown)
  std::vector<Frame> stack_;
  redisReply* root_ = nullptr;
  bool done_ = false;
  bool sinking_ = false;  // the root array's elements go to the sink
  std::string error_;
};

}  // namespace hps::redis
