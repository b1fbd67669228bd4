// The Redis Cluster tier: key layout, batching by partition, overflow and load markers on top of
// ClusterClient (which does the routing, pipelining and retries).
#include "hps/tiers/redis_cluster_tier.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <unistd.h>
#include <unordered_set>
#include <utility>

#include "detail/hashing.hpp"
#include "hps/error.hpp"
#include "tiers/redis/cluster_client.hpp"
#include "tiers/redis/partition_layout.hpp"
#include "tiers/redis/slot.hpp"

namespace hps {

namespace {

using redis::Batch;
using redis::ClusterClient;
using redis::Command;
using redis::RetryPolicy;

constexpr std::size_t kNoLimit = std::numeric_limits<std::size_t>::max();
// Reply bytes one lookup HMGET asks for at most (fewer keys than max_batch_size at large D): Redis
// buffers a command's whole reply before sending it, so a smaller reply stays in the server's
// cache. It is the client's piece size, not a constant of its own: ClusterClient paces a node by
// pieces of about kPieceReplyBytes of reply, and a command larger than a piece would be a piece
// by itself that pacing cannot bound.
constexpr std::size_t kLookupReplyBytes = redis::kPieceReplyBytes;
// Rows one eviction script call removes at most: a script blocks its node while it runs.
constexpr std::size_t kEvictPerCall = 8192;

std::string now_ms() {
  return std::to_string(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

// Evicts down to ARGV[1] rows, at most ARGV[2] of them per call: the lowest-scored members of the
// metadata set first (oldest or least used), then random fields (rows without metadata, and every
// row under evict_random, which keeps none). Returns {evicted, rows still above the target}.
constexpr const char* kEvictScript = R"lua(
local target = tonumber(ARGV[1])
local budget = tonumber(ARGV[2])
local evicted = 0
local excess = redis.call('HLEN', KEYS[1]) - target
while excess > 0 and budget > 0 do
  local n = math.min(excess, budget, 4096)
  local victims = redis.call('ZRANGE', KEYS[2], 0, n - 1)
  if #victims == 0 then
    victims = redis.call('HRANDFIELD', KEYS[1], n)
  end
  if #victims == 0 then break end
  evicted = evicted + redis.call('HDEL', KEYS[1], unpack(victims))
  redis.call('ZREM', KEYS[2], unpack(victims))
  budget = budget - #victims
  excess = redis.call('HLEN', KEYS[1]) - target
end
return {evicted, excess}
)lua";

// Sets fields that are absent; ARGV[1] = metadata mode (0 none, 1 time, 2 count), ARGV[2] = time,
// then key/row pairs. Returns {rows added, rows in the partition}.
constexpr const char* kInsertIfAbsentScript = R"lua(
local mode = ARGV[1]
local added = 0
for i = 3, #ARGV, 2 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
    added = added + 1
    if mode == '1' then redis.call('ZADD', KEYS[2], ARGV[2], ARGV[i])
    elseif mode == '2' then redis.call('ZADD', KEYS[2], 'NX', 0, ARGV[i]) end
  end
end
return {added, redis.call('HLEN', KEYS[1])}
)lua";

// For a tier that must not evict. ARGV[1] = the margin, then key/row pairs: writes them only if
// KEYS[1] then holds at most the margin, else nothing. ARGV[1] = 'count', then keys: writes nothing.
// Returns {1 written or 0 not, rows held, distinct keys of ARGV it does not hold yet}.
const std::string kCountOnly = "count";
constexpr const char* kWriteWithinMarginScript = R"lua(
local count_only = ARGV[1] == 'count'
local step = count_only and 1 or 2
local seen = {}
local new = 0
for i = 2, #ARGV, step do
  if not seen[ARGV[i]] then
    seen[ARGV[i]] = true
    if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 0 then new = new + 1 end
  end
end
local held = redis.call('HLEN', KEYS[1])
if count_only or held + new > tonumber(ARGV[1]) then return {0, held, new} end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return {1, held, new}
)lua";

// Deletes the load lock only if it still holds this loader's token.
constexpr const char* kUnlockScript = R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
)lua";

constexpr const char* kLockMs = "60000";

// Raises recorded offsets (KEYS[1]) while the table holds the load (marker, KEYS[2]) they were applied
// to (ARGV[1]): a server still running on a load another server has since replaced records nothing.
// Then ARGV holds partition/offset pairs; a field only moves forward. Returns the record (HGETALL),
// or nothing for a replaced load.
constexpr const char* kRecordOffsetsScript = R"lua(
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return {} end
for i = 2, #ARGV, 2 do
  local held = redis.call('HGET', KEYS[1], ARGV[i])
  if not held or tonumber(held) < tonumber(ARGV[i + 1]) then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
return redis.call('HGETALL', KEYS[1])
)lua";

// Adds an EVAL of `script` on `slot` taking `key_count` keys (as text); the caller adds the keys,
// then the script's arguments.
Command& add_eval(Batch& batch, std::uint16_t slot, const char* script, const char* key_count) {
  Command& c = batch.add(slot);
  c.arg("EVAL", 4);
  c.arg(script, std::strlen(script));
  c.arg(key_count, std::strlen(key_count));
  return c;
}

// The offsets record of an HGETALL reply (partition / offset pairs as decimal text); fields not
// written by hps are ignored, as rows of another dim are.
std::map<std::int32_t, std::int64_t> parse_offsets(const redisReply* reply) {
  std::map<std::int32_t, std::int64_t> out;
  for (std::size_t j = 0; j + 1 < reply->elements; j += 2) {
    const std::string partition(reply->element[j]->str, reply->element[j]->len);
    const std::string offset(reply->element[j + 1]->str, reply->element[j + 1]->len);
    try {
      out[static_cast<std::int32_t>(std::stol(partition))] = std::stoll(offset);
    } catch (const std::exception&) {
    }
  }
  return out;
}

// Counts one use of each key that has metadata (never creates metadata for absent rows).
constexpr const char* kTouchCountScript = R"lua(
for i = 1, #ARGV do redis.call('ZADD', KEYS[1], 'XX', 'INCR', 1, ARGV[i]) end
return 0
)lua";

// Positions of a batch grouped by partition, in their original order inside each partition (so
// later duplicates are written later and win).
struct Grouping {
  std::vector<std::size_t> begin;  // P + 1 offsets into order
  std::vector<std::size_t> order;  // positions
  void build(const std::int64_t* keys, std::size_t n, std::size_t partitions) {
    thread_local std::vector<std::uint32_t> part;
    part.resize(n);
    begin.assign(partitions + 1, 0);
    for (std::size_t i = 0; i < n; ++i) {
      part[i] = static_cast<std::uint32_t>(RedisClusterTier::partition_of(keys[i], partitions));
      ++begin[part[i] + 1];
    }
    for (std::size_t p = 0; p < partitions; ++p) begin[p + 1] += begin[p];
    std::vector<std::size_t> cursor(begin.begin(), begin.end() - 1);
    order.resize(n);
    for (std::size_t i = 0; i < n; ++i) order[cursor[part[i]]++] = i;
  }
};

std::string count_text(std::size_t n, const char* what) { return std::to_string(n) + " " + what; }

class RedisClusterTierImpl final : public RedisClusterTier {
 public:
  RedisClusterTierImpl(const VolatileDbConfig& config, std::string tag, std::size_t dim, bool evict_on_overflow)
      : dim_(dim),
        tag_(std::move(tag)),
        configured_partitions_(std::max<std::size_t>(1, config.num_partitions)),
        max_batch_(std::max<std::size_t>(1, config.max_batch_size)),
        lookup_batch_(std::min(max_batch_, std::max<std::size_t>(64, kLookupReplyBytes / (dim * sizeof(float) + 16)))),
        margin_(config.overflow_margin),
        refuse_overflow_(!evict_on_overflow && config.overflow_margin != kNoLimit),
        policy_(config.overflow_policy),
        target_(static_cast<std::size_t>(
            std::llround(static_cast<double>(std::min<std::size_t>(config.overflow_margin, std::size_t{1} << 52)) *
                         config.overflow_resolution_target))) {
    HPS_EXPECTS(dim_ > 0, InvalidArgument, "redis_cluster: table '", tag_, "' has dim 0");
    HPS_EXPECTS(!config.enable_tls, ConfigError,
                "volatile_db.enable_tls: TLS to Redis is not supported by this build (hiredis ",
                HIREDIS_MAJOR, ".", HIREDIS_MINOR,
                " has no TLS); reach the cluster over a trusted network or a TLS tunnel (e.g. stunnel) and set "
                "enable_tls to false");
    redis::ClientOptions options;
    options.seeds = redis::ClientOptions::parse_seeds(config.address);
    options.user = config.user_name.empty() ? "default" : config.user_name;
    options.password = config.password;
    options.connections_per_node = std::max<std::size_t>(1, config.num_node_connections);
    options.timeout = std::chrono::milliseconds(std::max<std::size_t>(1, config.operation_timeout_ms));
    client_ = ClusterClient::get(options);

    keep_metadata_ = margin_ != kNoLimit && !refuse_overflow_ && policy_ != OverflowPolicy::kEvictRandom;
    touch_on_find_ = keep_metadata_ && (policy_ == OverflowPolicy::kEvictLeastUsed || config.refresh_time_after_fetch);
    marker_key_ = "hps{" + tag_ + "}m";
    lock_key_ = "hps{" + tag_ + "}l";
    offsets_key_ = "hps{" + tag_ + "}o";
    marker_slot_ = redis::key_slot(marker_key_);
    // A table already in the cluster is read under the layout it was written with. Where the
    // marker's node cannot answer now, this server's layout stands for the time being: begin_load
    // reads the marker again before any load, and a table this server does not load sits above a
    // store it falls through to while the names differ (a table without one is always loaded).
    // A table without a marker records the layout of the first server to use it, with no load in
    // it: a cache never loaded (filled by promotions over a persistent_db) is then read under one
    // layout by every server, whatever their num_partitions (each used its own before, so an update
    // through one left another's copy stale).
    std::optional<std::string> stored;
    try {
      stored = fetch_marker();
      if (!stored) stored = record_layout(configured_layout());
    } catch (const IOError&) {
    }
    use_layout(stored ? parse_marker(*stored).first : configured_layout());
  }

  const char* backend_name() const override { return "redis_cluster"; }
  std::size_t dim() const override { return dim_; }
  const std::string& tag() const override { return tag_; }

  std::size_t find(const std::int64_t* keys, std::size_t n, float* rows, std::uint8_t* found) override {
    if (n == 0) return 0;
    std::memset(found, 0, n);
    thread_local Grouping g;
    g.build(keys, n, layout_.partitions);
    Batch batch;
    // One HMGET per partition and lookup_batch_ keys; its reply's rows are copied by the reader
    // straight to their places in `rows` (the sink), setting `found`.
    struct Span {
      std::size_t command, first, last;
    };
    std::vector<Span> spans;
    std::vector<redis::RowSink> sinks;
    sinks.reserve(layout_.partitions + n / lookup_batch_ + 1);  // Commands point into it: never reallocated
    const std::string now = touch_on_find_ ? now_ms() : std::string();
    const std::size_t row_bytes = dim_ * sizeof(float);
    for (std::size_t p = 0; p < layout_.partitions; ++p) {
      for (std::size_t first = g.begin[p]; first < g.begin[p + 1]; first += lookup_batch_) {
        const std::size_t last = std::min(first + lookup_batch_, g.begin[p + 1]);
        spans.push_back(Span{batch.size(), first, last});
        Command& c = batch.add(slots_[p]);
        c.argv.reserve(last - first + 2);
        c.argvlen.reserve(last - first + 2);
        c.arg("HMGET", 5);
        c.arg(value_keys_[p]);
        for (std::size_t j = first; j < last; ++j) c.arg(&keys[g.order[j]], 8);
        sinks.push_back(redis::RowSink{reinterpret_cast<char*>(rows), g.order.data() + first, last - first, row_bytes,
                                       found});
        c.sink = &sinks.back();
        if (touch_on_find_) add_touch(batch, p, keys, g.order.data() + first, last - first, now);
      }
    }
    client_->run(batch, RetryPolicy::kLookup);
    std::size_t fell_through = 0, bad = 0, absent = 0;
    for (std::size_t k = 0; k < spans.size(); ++k) {
      const Span& s = spans[k];
      const Command& c = batch[s.command];
      if (c.ok() && c.reply->type == REDIS_REPLY_ARRAY && c.reply->elements == s.last - s.first) {
        bad += sinks[k].bad;  // rows of another dim: never returned as if they were this table's
        for (std::size_t j = s.first; j < s.last; ++j) absent += found[g.order[j]] == 0;
        continue;
      }
      // This node failed: its keys go to the next tier (rows it sent before failing are whole
      // and stay found).
      for (std::size_t j = s.first; j < s.last; ++j) fell_through += found[g.order[j]] == 0;
    }
    std::size_t hits = 0;
    for (std::size_t i = 0; i < n; ++i) hits += found[i];
    if (fell_through) fallthrough_keys_.fetch_add(fell_through, std::memory_order_relaxed);
    if (bad) bad_rows_.fetch_add(bad, std::memory_order_relaxed);
    if (absent) absent_keys_.fetch_add(absent - bad, std::memory_order_relaxed);  // bad rows are counted apart
    return hits;
  }

  void insert(const std::int64_t* keys, const float* rows, std::size_t n) override { store_rows(keys, rows, n, false); }

  // A load's rows (begin_load .. end_load, this tier holding the load lock): the table was cleared,
  // and the server's check_table_fits found room in every partition for the files' distinct keys,
  // so a table that must not evict skips insert()'s room count (3x the load time); a partition
  // found past the margin after all stops the load with NoRoom (the table then counts as not loaded).
  void bulk_insert(const std::int64_t* keys, const float* rows, std::size_t n) override {
    store_rows(keys, rows, n, holds_load_lock());
  }

  // insert(), or a load's bulk_insert (`loading`).
  void store_rows(const std::int64_t* keys, const float* rows, std::size_t n, bool loading) {
    if (n == 0) return;
    thread_local Grouping g;
    g.build(keys, n, layout_.partitions);
    if (refuse_overflow_ && !loading) {
      insert_within_margin(keys, rows, n, g);
      return;
    }
    Batch batch;
    std::vector<std::pair<std::size_t, std::size_t>> lengths;  // (command, partition) of HLEN
    const std::string now = keep_metadata_ ? now_ms() : std::string();
    const std::size_t row_bytes = dim_ * sizeof(float);
    for (std::size_t p = 0; p < layout_.partitions; ++p) {
      if (g.begin[p] == g.begin[p + 1]) continue;
      for (std::size_t first = g.begin[p]; first < g.begin[p + 1]; first += max_batch_) {
        const std::size_t last = std::min(first + max_batch_, g.begin[p + 1]);
        Command& c = batch.add(slots_[p]);
        c.arg("HSET", 4);
        c.arg(value_keys_[p]);
        for (std::size_t j = first; j < last; ++j) {
          const std::size_t i = g.order[j];
          c.arg(&keys[i], 8);
          c.arg(rows + i * dim_, row_bytes);
        }
        if (keep_metadata_) add_insert_metadata(batch, p, keys, g.order.data() + first, last - first, now);
      }
      if (margin_ != kNoLimit) {
        lengths.emplace_back(batch.size(), p);
        Command& c = batch.add(slots_[p]);
        c.arg("HLEN", 4);
        c.arg(value_keys_[p]);
      }
    }
    extend_load_lock(batch);
    client_->run(batch, RetryPolicy::kWrite);
    throw_if_failed(batch, n, "store");
    std::vector<std::size_t> overflowing;
    for (auto [command, p] : lengths) {
      const auto held = static_cast<std::size_t>(batch[command].reply->integer);
      if (held <= margin_) continue;
      if (refuse_overflow_) {
        throw_no_room(p, held, "its rows were stored, but the load stops here: the table counts as not loaded");
      }
      overflowing.push_back(p);
    }
    if (!overflowing.empty()) resolve_overflow(overflowing);
  }

  std::size_t insert_if_absent(const std::int64_t* keys, const float* rows, std::size_t n,
                               const std::function<bool()>& still_valid) override {
    if (n == 0 || !still_valid()) return 0;
    thread_local Grouping g;
    g.build(keys, n, layout_.partitions);
    Batch batch;
    std::vector<std::pair<std::size_t, std::size_t>> commands;  // (command, partition)
    const std::string now = now_ms();
    const char* mode = !keep_metadata_ ? "0" : policy_ == OverflowPolicy::kEvictOldest ? "1" : "2";
    const std::size_t row_bytes = dim_ * sizeof(float);
    for (std::size_t p = 0; p < layout_.partitions; ++p) {
      for (std::size_t first = g.begin[p]; first < g.begin[p + 1]; first += max_batch_) {
        const std::size_t last = std::min(first + max_batch_, g.begin[p + 1]);
        commands.emplace_back(batch.size(), p);
        Command& c = add_eval(batch, slots_[p], kInsertIfAbsentScript, "2");
        c.arg(value_keys_[p]);
        c.arg(meta_keys_[p]);
        c.arg(mode, 1);
        c.arg(now);
        for (std::size_t j = first; j < last; ++j) {
          const std::size_t i = g.order[j];
          c.arg(&keys[i], 8);
          c.arg(rows + i * dim_, row_bytes);
        }
      }
    }
    // A promotion, not an update: when Redis cannot take it the rows just stay where they were.
    client_->run(batch, RetryPolicy::kLookup);
    std::size_t added = 0;
    std::vector<std::size_t> overflowing;
    for (auto [command, p] : commands) {
      const Command& c = batch[command];
      if (!c.ok() || c.reply->type != REDIS_REPLY_ARRAY || c.reply->elements != 2) continue;
      added += static_cast<std::size_t>(c.reply->element[0]->integer);
      if (margin_ != kNoLimit && static_cast<std::size_t>(c.reply->element[1]->integer) > margin_ &&
          std::find(overflowing.begin(), overflowing.end(), p) == overflowing.end()) {
        overflowing.push_back(p);
      }
    }
    if (!overflowing.empty()) resolve_overflow(overflowing);
    return added;
  }

  std::size_t erase(const std::int64_t* keys, std::size_t n) override {
    if (n == 0) return 0;
    thread_local Grouping g;
    g.build(keys, n, layout_.partitions);
    Batch batch;
    std::vector<std::size_t> deletes;
    for (std::size_t p = 0; p < layout_.partitions; ++p) {
      for (std::size_t first = g.begin[p]; first < g.begin[p + 1]; first += max_batch_) {
        const std::size_t last = std::min(first + max_batch_, g.begin[p + 1]);
        deletes.push_back(batch.size());
        Command& c = batch.add(slots_[p]);
        c.arg("HDEL", 4);
        c.arg(value_keys_[p]);
        for (std::size_t j = first; j < last; ++j) c.arg(&keys[g.order[j]], 8);
        if (keep_metadata_) {
          Command& z = batch.add(slots_[p]);
          z.arg("ZREM", 4);
          z.arg(meta_keys_[p]);
          for (std::size_t j = first; j < last; ++j) z.arg(&keys[g.order[j]], 8);
        }
      }
    }
    client_->run(batch, RetryPolicy::kWrite);
    throw_if_failed(batch, n, "erase");
    std::size_t removed = 0;
    for (std::size_t command : deletes) removed += static_cast<std::size_t>(batch[command].reply->integer);
    return removed;
  }

  std::size_t size() const override {
    Batch batch;
    for (std::size_t p = 0; p < layout_.partitions; ++p) {
      Command& c = batch.add(slots_[p]);
      c.arg("HLEN", 4);
      c.arg(value_keys_[p]);
    }
    client_->run(batch, RetryPolicy::kLookup);
    std::size_t rows = 0;  // partitions whose node is down count as empty: an estimate, never a throw
    for (auto& c : batch.commands()) {
      if (c.ok() && c.reply->type == REDIS_REPLY_INTEGER) rows += static_cast<std::size_t>(c.reply->integer);
    }
    return rows;
  }

  std::size_t capacity() const override {
    if (margin_ == kNoLimit) return kNoLimit;
    return margin_ > kNoLimit / layout_.partitions ? kNoLimit : margin_ * layout_.partitions;
  }

  std::size_t memory_bytes() const override { return 0; }  // held by the cluster, not this process

  void for_each(std::size_t chunk_rows,
                const std::function<void(const std::int64_t*, const float*, std::size_t)>& fn) override {
    chunk_rows = std::max<std::size_t>(1, chunk_rows);
    const std::size_t row_bytes = dim_ * sizeof(float);
    std::vector<std::int64_t> keys;
    std::vector<float> rows;
    auto flush = [&] {
      if (!keys.empty()) fn(keys.data(), rows.data(), keys.size());
      keys.clear();
      rows.clear();
    };
    const std::string count = std::to_string(chunk_rows);
    for (std::size_t p = 0; p < layout_.partitions; ++p) {
      // HSCAN may return a field twice (when the hash is resized mid-scan); each is visited once.
      std::unordered_set<std::int64_t> seen;
      std::string cursor = "0";
      do {
        Batch batch;
        Command& c = batch.add(slots_[p]);
        c.arg("HSCAN", 5);
        c.arg(value_keys_[p]);
        c.arg(cursor);
        c.arg("COUNT", 5);
        c.arg(count);
        client_->run(batch, RetryPolicy::kWrite);
        const Command& r = batch[0];
        HPS_EXPECTS(r.ok() && r.reply->type == REDIS_REPLY_ARRAY && r.reply->elements == 2, IOError,
                    "redis_cluster: cannot scan partition ", p, " of table '", tag_, "' (", value_keys_[p], " on ",
                    r.node, ", slot ", slots_[p], "): ", r.what());
        cursor.assign(r.reply->element[0]->str, r.reply->element[0]->len);
        const redisReply* items = r.reply->element[1];
        for (std::size_t j = 0; j + 1 < items->elements; j += 2) {
          const redisReply* k = items->element[j];
          const redisReply* v = items->element[j + 1];
          if (k->len != 8 || v->len != row_bytes) continue;  // not a row of this table
          std::int64_t key;
          std::memcpy(&key, k->str, 8);
          if (!seen.insert(key).second) continue;
          keys.push_back(key);
          const auto* values = reinterpret_cast<const float*>(v->str);
          rows.insert(rows.end(), values, values + dim_);
          if (keys.size() == chunk_rows) flush();
        }
      } while (cursor != "0");
    }
    flush();
  }

  std::optional<std::string> load_marker() const override {
    auto stored = read_marker();
    if (!stored || stored->second.empty()) return std::nullopt;  // empty: a layout, no load
    return std::move(stored->second);
  }

  void set_load_marker(const std::string& marker) override {
    const std::string stored = layout_.stored_marker(marker);
    Batch batch;
    Command& c = batch.add(marker_slot_);
    c.arg("SET", 3);
    c.arg(marker_key_);
    c.arg(stored);
    client_->run(batch, RetryPolicy::kWrite);
    HPS_EXPECTS(c.ok(), IOError, "redis_cluster: cannot write the load marker of table '", tag_, "' (", marker_key_,
                " on ", c.node, ", slot ", marker_slot_, "): ", c.what());
  }

  void clear() override {
    Batch batch;
    // The marker goes first: a failure half-way leaves a table without a marker, i.e. "not loaded".
    Command& m = batch.add(marker_slot_);
    m.arg("UNLINK", 6);
    m.arg(marker_key_);
    m.arg(offsets_key_);  // the update offsets applied into the rows about to go
    client_->run(batch, RetryPolicy::kWrite);
    throw_if_failed(batch, 0, "clear");
    Batch rows;
    for (std::size_t p = 0; p < layout_.partitions; ++p) {
      Command& c = rows.add(slots_[p]);
      c.arg("UNLINK", 6);  // freed in the background: a large table does not block its node
      c.arg(value_keys_[p]);
      c.arg(meta_keys_[p]);
    }
    client_->run(rows, RetryPolicy::kWrite);
    throw_if_failed(rows, 0, "clear");
  }

  bool begin_load(const std::string& marker) override {
    const std::string token = lock_token();
    for (;;) {
      if (holds(marker)) return false;
      if (set_if_absent(lock_key_, token, kLockMs, "take the load lock of")) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));  // another server is loading it
    }
    {
      std::lock_guard<std::mutex> lock(load_mu_);
      load_token_ = token;
    }
    // What is stored is read (or cleared) under the layout it was written with.
    const auto stored = read_marker();
    if (stored) use_layout(stored->first);
    if (stored && stored->second == marker) {  // finished by another server just before we took the lock
      release_load_lock();
      note_load(marker);
      return false;
    }
    // Written anew under this server's num_partitions and the newest layout.
    clear();
    use_layout(configured_layout());
    return true;
  }

  void end_load(const std::string& marker) override {
    set_load_marker(marker);
    release_load_lock();
    note_load(marker);
  }

  std::map<std::int32_t, std::int64_t> applied_offsets() const override {
    Batch batch;
    Command& c = batch.add(marker_slot_);
    c.arg("HGETALL", 7);
    c.arg(offsets_key_);
    client_->run(batch, RetryPolicy::kWrite);
    HPS_EXPECTS(c.ok() && c.reply->type == REDIS_REPLY_ARRAY, IOError, "redis_cluster: cannot read the update offsets "
                "applied into table '", tag_, "' (", offsets_key_, " on ", c.node, ", slot ", marker_slot_, "): ", c.what());
    return parse_offsets(c.reply);
  }

  std::map<std::int32_t, std::int64_t> record_applied_offsets(const std::map<std::int32_t, std::int64_t>& next) override {
    if (next.empty()) return applied_offsets();
    std::string marker;
    {
      std::lock_guard<std::mutex> lock(load_mu_);
      marker = progress_marker_;
    }
    if (marker.empty()) return {};  // no load of this server's to record against
    std::vector<std::string> text;  // the command borrows its arguments until run() returns
    text.reserve(2 * next.size());
    for (const auto& [partition, offset] : next) {
      text.push_back(std::to_string(partition));
      text.push_back(std::to_string(offset));
    }
    Batch batch;
    Command& c = add_eval(batch, marker_slot_, kRecordOffsetsScript, "2");
    c.arg(offsets_key_);
    c.arg(marker_key_);
    c.arg(marker);
    for (const std::string& t : text) c.arg(t);
    client_->run(batch, RetryPolicy::kWrite);
    HPS_EXPECTS(c.ok() && c.reply->type == REDIS_REPLY_ARRAY, IOError, "redis_cluster: cannot record the update "
                "offsets applied into table '", tag_, "' (", offsets_key_, " on ", c.node, ", slot ", marker_slot_, "): ",
                c.what());
    return parse_offsets(c.reply);
  }

  ~RedisClusterTierImpl() override {
    try {
      release_load_lock();  // a load that threw: let the next server start at once
    } catch (...) {  // the cluster is gone: the lock expires by itself
    }
  }

  RedisClusterCounters counters() const override {
    RedisClusterCounters out;
    out.fallthrough_keys = fallthrough_keys_.load(std::memory_order_relaxed);
    out.failed_writes = failed_writes_.load(std::memory_order_relaxed);
    out.evicted_rows = evicted_rows_.load(std::memory_order_relaxed);
    out.bad_rows = bad_rows_.load(std::memory_order_relaxed);
    out.absent_keys = absent_keys_.load(std::memory_order_relaxed);
    const auto& c = client_->counters();
    out.timeouts = c.timeouts.load(std::memory_order_relaxed);
    out.node_errors = c.node_errors.load(std::memory_order_relaxed);
    out.moved_redirects = c.moved.load(std::memory_order_relaxed);
    out.ask_redirects = c.ask.load(std::memory_order_relaxed);
    out.reconnects = c.reconnects.load(std::memory_order_relaxed);
    out.slot_map_refreshes = c.refreshes.load(std::memory_order_relaxed);
    return out;
  }

 private:
  // Access metadata for the keys a lookup asked for (only keys that have metadata change).
  void add_touch(Batch& batch, std::size_t p, const std::int64_t* keys, const std::size_t* order, std::size_t count,
                 const std::string& now) {
    if (policy_ == OverflowPolicy::kEvictOldest) {
      Command& c = batch.add(slots_[p]);
      c.arg("ZADD", 4);
      c.arg(meta_keys_[p]);
      c.arg("XX", 2);
      c.arg("GT", 2);
      for (std::size_t j = 0; j < count; ++j) {
        c.arg(now);
        c.arg(&keys[order[j]], 8);
      }
    } else {
      Command& c = add_eval(batch, slots_[p], kTouchCountScript, "1");
      c.arg(meta_keys_[p]);
      for (std::size_t j = 0; j < count; ++j) c.arg(&keys[order[j]], 8);
    }
  }

  // Metadata of written rows: the time now (evict_oldest) or a count that starts at 0 and survives
  // overwrites (evict_least_used).
  void add_insert_metadata(Batch& batch, std::size_t p, const std::int64_t* keys, const std::size_t* order,
                           std::size_t count, const std::string& now) {
    Command& c = batch.add(slots_[p]);
    c.arg("ZADD", 4);
    c.arg(meta_keys_[p]);
    const bool oldest = policy_ == OverflowPolicy::kEvictOldest;
    c.arg(oldest ? "GT" : "NX", 2);
    for (std::size_t j = 0; j < count; ++j) {
      if (oldest) {
        c.arg(now);
      } else {
        c.arg("0", 1);
      }
      c.arg(&keys[order[j]], 8);
    }
  }

  static std::string lock_token() {
    static std::atomic<std::uint64_t> counter{0};
    return std::to_string(::getpid()) + "/" + std::to_string(reinterpret_cast<std::uintptr_t>(&counter)) + "/" +
           std::to_string(counter.fetch_add(1)) + "/" + now_ms();
  }

  // The stored load marker as it is in the cluster (layout line included). Throws IOError when its
  // node cannot answer.
  std::optional<std::string> fetch_marker() const {
    Batch batch;
    Command& c = batch.add(marker_slot_);
    c.arg("GET", 3);
    c.arg(marker_key_);
    client_->run(batch, RetryPolicy::kWrite);
    HPS_EXPECTS(c.ok(), IOError, "redis_cluster: cannot read the load marker of table '", tag_, "' (", marker_key_,
                " on ", c.node, ", slot ", marker_slot_, "): ", c.what());
    if (c.reply->type == REDIS_REPLY_NIL) return std::nullopt;
    return std::string(c.reply->str, c.reply->len);
  }

  std::pair<redis::PartitionLayout, std::string> parse_marker(const std::string& stored) const {
    return redis::PartitionLayout::parse_stored(stored, configured_partitions_,
                                                "redis_cluster: table '" + tag_ + "' (load marker " + marker_key_ + ")");
  }

  // Records `layout` with an empty marker (no load) unless the table has a marker by now; returns
  // the marker stored then. Throws IOError when the marker's node cannot answer.
  std::optional<std::string> record_layout(const redis::PartitionLayout& layout) {
    const std::string stored = layout.stored_marker("");
    if (set_if_absent(marker_key_, stored, nullptr, "record the layout of")) return stored;
    return fetch_marker();  // another server's, set just before ours
  }

  // SET key value NX (PX expire_ms unless null) on the marker's slot, where the table's marker and
  // lock live: whether this call set it. Throws IOError, saying it could not `what` the table.
  bool set_if_absent(const std::string& key, const std::string& value, const char* expire_ms, const char* what) {
    Batch batch;
    Command& c = batch.add(marker_slot_);
    c.arg("SET", 3);
    c.arg(key);
    c.arg(value);
    c.arg("NX", 2);
    if (expire_ms != nullptr) {
      c.arg("PX", 2);
      c.arg(expire_ms, std::strlen(expire_ms));  // a literal that outlives the call (arg keeps a pointer)
    }
    client_->run(batch, RetryPolicy::kWrite);
    HPS_EXPECTS(c.ok(), IOError, "redis_cluster: cannot ", what, " table '", tag_, "' (", key, " on ", c.node,
                ", slot ", marker_slot_, "): ", c.what());
    return c.reply->type == REDIS_REPLY_STATUS;  // +OK: ours
  }

  // The stored load marker, split into the layout it records and the marker itself.
  std::optional<std::pair<redis::PartitionLayout, std::string>> read_marker() const {
    const std::optional<std::string> stored = fetch_marker();
    if (!stored) return std::nullopt;
    return parse_marker(*stored);
  }

  // Whether the table holds a load of `marker`; if so this tier reads it under its stored layout
  // (another server may have written it since this tier was made).
  bool holds(const std::string& marker) {
    auto stored = read_marker();
    if (!stored || stored->second != marker) return false;
    use_layout(stored->first);
    note_load(marker);
    return true;
  }

  // The load this server serves (found current, or its own): offsets are recorded against it.
  void note_load(const std::string& marker) {
    std::lock_guard<std::mutex> lock(load_mu_);
    progress_marker_ = layout_.stored_marker(marker);
  }

  redis::PartitionLayout configured_layout() const {
    return redis::PartitionLayout{redis::PartitionLayout::kNewest, configured_partitions_};
  }

  // Names every partition's keys under `layout`. Only from the constructor and begin_load, before
  // the table serves (see the header's threading note).
  void use_layout(const redis::PartitionLayout& layout) {
    layout_ = layout;
    value_keys_.clear();
    meta_keys_.clear();
    slots_.clear();
    for (std::size_t p = 0; p < layout_.partitions; ++p) {
      value_keys_.push_back(layout.value_key(tag_, p));
      meta_keys_.push_back(layout.meta_key(tag_, p));
      slots_.push_back(redis::key_slot(value_keys_.back()));
    }
  }

  // Releases the load lock if this tier holds it (only if the token is still ours).
  void release_load_lock() {
    std::string token;
    {
      std::lock_guard<std::mutex> lock(load_mu_);
      token.swap(load_token_);
    }
    if (token.empty()) return;
    Batch batch;
    Command& c = add_eval(batch, marker_slot_, kUnlockScript, "1");
    c.arg(lock_key_);
    c.arg(token);
    client_->run(batch, RetryPolicy::kWrite);
  }

  bool holds_load_lock() {
    std::lock_guard<std::mutex> lock(load_mu_);
    return !load_token_.empty();
  }

  // While this tier loads, each write extends the load lock.
  void extend_load_lock(Batch& batch) {
    std::lock_guard<std::mutex> lock(load_mu_);
    if (load_token_.empty()) return;
    Command& c = batch.add(marker_slot_);
    c.arg("PEXPIRE", 7);
    c.arg(lock_key_);
    c.arg(kLockMs, std::strlen(kLockMs));
  }

  // insert() of a tier that must not evict (the only copy of its rows): nothing is written when the
  // batch would take a partition past the margin. The room is counted first on every partition the
  // batch touches (distinct keys, one round trip), then each command writes only if its partition
  // still has room, so a concurrent writer can at worst make this write stop part-way, never make a
  // partition overflow; the error then says so.
  void insert_within_margin(const std::int64_t* keys, const float* rows, std::size_t n, const Grouping& g) {
    std::size_t commands = 0;
    for (std::size_t p = 0; p < layout_.partitions; ++p) {
      commands += (g.begin[p + 1] - g.begin[p] + max_batch_ - 1) / max_batch_;
    }
    // One command is checked and written atomically by its script: no count needed.
    if (commands > 1) expect_room(keys, n, g);
    Batch batch;
    std::vector<std::size_t> partition_of_command;
    const std::string margin = std::to_string(margin_);
    const std::size_t row_bytes = dim_ * sizeof(float);
    for (std::size_t p = 0; p < layout_.partitions; ++p) {
      for (std::size_t first = g.begin[p]; first < g.begin[p + 1]; first += max_batch_) {
        const std::size_t last = std::min(first + max_batch_, g.begin[p + 1]);
        partition_of_command.push_back(p);
        Command& c = add_room_script(batch, p, margin);
        for (std::size_t j = first; j < last; ++j) {
          const std::size_t i = g.order[j];
          c.arg(&keys[i], 8);
          c.arg(rows + i * dim_, row_bytes);
        }
      }
    }
    extend_load_lock(batch);
    client_->run(batch, RetryPolicy::kWrite);
    throw_if_failed(batch, n, "store");
    std::size_t refused = 0, first_refused = 0;
    for (std::size_t i = 0; i < partition_of_command.size(); ++i) {
      if (room_reply(batch[i], partition_of_command[i])->element[0]->integer == 1) continue;
      if (refused++ == 0) first_refused = i;
    }
    if (refused == 0) return;
    const std::size_t p = partition_of_command[first_refused];
    const redisReply* r = batch[first_refused].reply;
    throw_no_room(p, static_cast<std::size_t>(r->element[1]->integer + r->element[2]->integer),
                  commands == 1 ? std::string("nothing of this write was stored")
                                : std::to_string(refused) + " of its " + std::to_string(commands) +
                                      " commands were refused and stored nothing; the others were stored (another "
                                      "writer took the room between the count and the write)");
  }

  // The room count of insert_within_margin: throws NoRoom, before anything is written, when the
  // batch's distinct new keys would take a partition past the margin.
  void expect_room(const std::int64_t* keys, std::size_t n, const Grouping& g) {
    std::vector<std::vector<std::int64_t>> distinct(layout_.partitions);
    Batch count;
    std::vector<std::size_t> partition_of_command;
    for (std::size_t p = 0; p < layout_.partitions; ++p) {
      auto& d = distinct[p];
      for (std::size_t j = g.begin[p]; j < g.begin[p + 1]; ++j) d.push_back(keys[g.order[j]]);
      std::sort(d.begin(), d.end());
      d.erase(std::unique(d.begin(), d.end()), d.end());
      for (std::size_t first = 0; first < d.size(); first += max_batch_) {
        const std::size_t last = std::min(first + max_batch_, d.size());
        partition_of_command.push_back(p);
        Command& c = add_room_script(count, p, kCountOnly);
        for (std::size_t j = first; j < last; ++j) c.arg(&d[j], 8);
      }
    }
    client_->run(count, RetryPolicy::kWrite);
    throw_if_failed(count, n, "count the room for a write to");
    std::vector<std::size_t> held(layout_.partitions, 0), added(layout_.partitions, 0);
    for (std::size_t i = 0; i < count.size(); ++i) {
      const std::size_t p = partition_of_command[i];
      const redisReply* r = room_reply(count[i], p);
      held[p] = static_cast<std::size_t>(r->element[1]->integer);
      added[p] += static_cast<std::size_t>(r->element[2]->integer);
    }
    for (std::size_t p = 0; p < layout_.partitions; ++p) {
      if (held[p] + added[p] > margin_) throw_no_room(p, held[p] + added[p], "nothing of this write was stored");
    }
  }

  // A call of kWriteWithinMarginScript on partition p (`first` outlives the batch); the caller adds
  // the keys or key/row pairs.
  Command& add_room_script(Batch& batch, std::size_t p, const std::string& first) {
    Command& c = add_eval(batch, slots_[p], kWriteWithinMarginScript, "1");
    c.arg(value_keys_[p]);
    c.arg(first);
    return c;
  }

  const redisReply* room_reply(const Command& c, std::size_t p) const {
    HPS_EXPECTS(c.reply->type == REDIS_REPLY_ARRAY && c.reply->elements == 3, IOError, "redis_cluster: table '",
                tag_, "': unexpected reply from the room script on partition ", p, " (", c.node, ")");
    return c.reply;
  }

  [[noreturn]] void throw_no_room(std::size_t p, std::size_t would_hold, const std::string& outcome) const {
    HPS_FAIL(NoRoom, "redis_cluster: partition ", p, " of ", layout_.partitions, " of table '", tag_, "' (",
             value_keys_[p], ") would hold ", would_hold, " rows, more than overflow_margin ", margin_,
             "; the cluster holds the table's only copy (no persistent_db), so it cannot evict rows to make room: "
             "raise overflow_margin (",
             outcome, ")");
  }

  void resolve_overflow(const std::vector<std::size_t>& partitions) {
    const std::string target = std::to_string(target_);
    const std::string budget = std::to_string(kEvictPerCall);
    std::vector<std::size_t> todo = partitions;
    while (!todo.empty()) {
      Batch batch;
      for (std::size_t p : todo) {
        Command& c = add_eval(batch, slots_[p], kEvictScript, "2");
        c.arg(value_keys_[p]);
        c.arg(meta_keys_[p]);
        c.arg(target);
        c.arg(budget);
      }
      client_->run(batch, RetryPolicy::kWrite);
      throw_if_failed(batch, 0, "evict overflowing rows of");
      std::vector<std::size_t> again;
      for (std::size_t i = 0; i < todo.size(); ++i) {
        const redisReply* r = batch[i].reply;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) continue;
        evicted_rows_.fetch_add(static_cast<std::uint64_t>(r->element[0]->integer), std::memory_order_relaxed);
        if (r->element[1]->integer > 0 && r->element[0]->integer > 0) again.push_back(todo[i]);
      }
      todo = std::move(again);
    }
  }

  // Writes are never dropped silently: any command without a proper reply fails the whole call.
  void throw_if_failed(Batch& batch, std::size_t keys, const char* what) {
    std::size_t failed = 0;
    const Command* first = nullptr;
    for (const Command& c : batch.commands()) {
      if (c.ok()) continue;
      ++failed;
      if (!first) first = &c;
    }
    if (!first) return;
    failed_writes_.fetch_add(1, std::memory_order_relaxed);
    HPS_FAIL(IOError, "redis_cluster: could not ", what, " table '", tag_, "'",
             keys ? " (" + count_text(keys, "keys") + ")" : std::string(), ": ", failed, " of ", batch.size(),
             " commands failed; first: slot ", first->slot, " on ", first->node, ": ", first->what(),
             ". Rows of a failed write may or may not be stored; retry the call.");
  }

  std::size_t dim_;
  std::string tag_;
  std::size_t configured_partitions_;  // num_partitions: for tables this tier writes
  std::size_t max_batch_;
  std::size_t lookup_batch_;  // keys per lookup HMGET: max_batch_, or fewer so a reply stays under kLookupReplyBytes
  std::size_t margin_;
  bool refuse_overflow_;  // the only copy of its rows, with a finite margin: a write past it is refused
  OverflowPolicy policy_;
  std::size_t target_;
  bool keep_metadata_ = false;
  bool touch_on_find_ = false;
  std::shared_ptr<ClusterClient> client_;
  redis::PartitionLayout layout_;  // of the table as stored (or to be written): use_layout() sets it
  std::vector<std::string> value_keys_, meta_keys_;
  std::vector<std::uint16_t> slots_;
  std::string marker_key_;
  std::string lock_key_;  // on the marker's slot
  std::string offsets_key_;  // on the marker's slot: partition -> next offset applied (applied_offsets)
  std::string progress_marker_;  // the stored marker of the load this server serves; guarded by load_mu_
  std::uint16_t marker_slot_ = 0;
  std::mutex load_mu_;
  std::string load_token_;  // non-empty while this tier holds the load lock
  std::atomic<std::uint64_t> fallthrough_keys_{0}, failed_writes_{0}, evicted_rows_{0}, bad_rows_{0}, absent_keys_{0};
};

}  // namespace

bool redis_available() { return true; }

std::shared_ptr<RedisClusterTier> make_redis_cluster_tier(const VolatileDbConfig& config, const std::string& table_tag,
                                                          std::size_t dim, bool evict_on_overflow) {
  return std::make_shared<RedisClusterTierImpl>(config, table_tag, dim, evict_on_overflow);
}

}  // namespace hps
