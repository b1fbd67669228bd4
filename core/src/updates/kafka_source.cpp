#include "updates/kafka_source.hpp"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "hps/error.hpp"
#include "hps/updates/kafka_wire.hpp"
#include "updates/librdkafka.hpp"

namespace hps::kafka {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Longest single wait inside the consumer loop: bounds how long stop() and drain() wait.
constexpr milliseconds kSlice{20};
// How often the record shared with other servers (KafkaSourceOptions::record_applied, shared_frontier)
// is written and read at most: each is a round trip to the shared tier, which per apply cost 1.6x
// the apply time of small batches (benchmarks/kafka_redis_apply.py). A drain writes and reads at once.
constexpr milliseconds kSharedRecordInterval{50};
// Longest wait for cluster metadata, and the period of looking for followed topics not created yet.
constexpr int kMetadataTimeoutMs = 1000;
constexpr milliseconds kMissingTopicPeriod{1000};
// How long stop() waits for its last commit to be acknowledged.
constexpr milliseconds kFinalCommitWait{2000};
// Least wait before a failed commit is tried again.
constexpr milliseconds kCommitRetry{500};

std::string hostname() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

std::string hex64(std::uint64_t v) {
  char out[17];
  std::snprintf(out, sizeof(out), "%016llx", static_cast<unsigned long long>(v));
  return out;
}

std::uint64_t fnv1a(const std::string& s) {
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

// stderr lines with a prefix, at most one a second; the rest are counted and summarised.
// librdkafka logs from its own threads, so this locks.
class RateLimitedLog {
 public:
  void write(const std::string& line) {
    std::lock_guard lock(mutex_);
    const auto now = Clock::now();
    if (now - last_ < std::chrono::seconds(1)) {
      ++suppressed_;
      return;
    }
    if (suppressed_) {
      std::fprintf(stderr, "hps kafka: %s (and %zu more errors in the last second(s); see update_source_stats)\n",
                   line.c_str(), suppressed_);
    } else {
      std::fprintf(stderr, "hps kafka: %s\n", line.c_str());
    }
    suppressed_ = 0;
    last_ = now;
  }

 private:
  std::mutex mutex_;
  Clock::time_point last_{};
  std::size_t suppressed_ = 0;
};

// One table's rows received and not applied yet, in arrival order.
struct Batch {
  const TopicTarget* target = nullptr;
  std::vector<std::int64_t> keys;
  std::vector<float> rows;
  std::vector<std::int32_t> partitions;  // of each row's message
  std::vector<std::int64_t> offsets;     // of each row's message
};

using PartitionKey = std::pair<std::string, std::int32_t>;

/// How far the servers sharing a topic's tier had applied it (partition -> next offset), when read.
struct Frontier {
  std::map<std::int32_t, std::int64_t> next;
  Clock::time_point read_at{};
};

class KafkaUpdateSource final : public UpdateSource {
 public:
  explicit KafkaUpdateSource(KafkaSourceOptions options) : options_(std::move(options)), rk_api_(&librdkafka()) {}
  ~KafkaUpdateSource() override { stop(); }

  std::string name() const override { return "kafka:" + options_.config.brokers; }

  std::int64_t lag() const override { return lag_.load(std::memory_order_relaxed); }

  void start(UpdateSink& sink) override {
    HPS_EXPECTS(!thread_.joinable(), InvalidArgument, "the Kafka source ", name(), " is already started");
    sink_ = &sink;
    create_handle();
    stopping_ = false;
    thread_ = std::thread([this] { run(); });
  }

  void stop() override {
    if (!thread_.joinable()) return;
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    thread_.join();
    drained_cv_.notify_all();
  }

  void drain() override {
    std::unique_lock lock(mutex_);
    if (!thread_.joinable() || stopping_) return;
    const std::uint64_t ticket = ++drain_requested_;
    drained_cv_.wait(lock, [&] { return drain_done_ >= ticket || stopping_ || finished_; });
  }

 private:
  // ---- librdkafka handle ---------------------------------------------------------------------------

  void set(rd_kafka_conf_t* conf, const char* key, const std::string& value) {
    char err[512];
    if (rk_api_->rd_kafka_conf_set(conf, key, value.c_str(), err, sizeof(err)) != RD_KAFKA_CONF_OK) {
      rk_api_->rd_kafka_conf_destroy(conf);
      HPS_FAIL(ConfigError, "update_source: librdkafka refused ", key, "=", value, ": ", err);
    }
  }

  void create_handle() {
    const RdKafka& k = *rk_api_;
    const UpdateSourceConfig& c = options_.config;
    rd_kafka_conf_t* conf = k.rd_kafka_conf_new();
    const std::size_t message_max = c.receive_buffer_size + 1024;  // room for the record overhead
    const std::size_t fetch_max = std::max<std::size_t>(52428800, message_max);
    set(conf, "bootstrap.servers", c.brokers);
    set(conf, "group.id", options_.group_id);
    set(conf, "client.id", "hps-" + hostname());
    set(conf, "enable.auto.commit", "false");
    set(conf, "enable.auto.offset.store", "false");
    set(conf, "auto.offset.reset", "earliest");
    set(conf, "enable.partition.eof", "false");
    set(conf, "allow.auto.create.topics", "false");
    set(conf, "topic.metadata.refresh.interval.ms", std::to_string(c.metadata_refresh_interval_ms));
    set(conf, "message.max.bytes", std::to_string(message_max));
    set(conf, "fetch.max.bytes", std::to_string(fetch_max));
    set(conf, "receive.message.max.bytes", std::to_string(fetch_max + 512));
    set(conf, "fetch.wait.max.ms", "100");  // the broker answers at once when data lands; this bounds idle polling
    set(conf, "reconnect.backoff.ms", std::to_string(std::max<std::size_t>(1, c.failure_backoff_ms)));
    set(conf, "reconnect.backoff.max.ms", std::to_string(std::max<std::size_t>(1000, c.failure_backoff_ms)));
    k.rd_kafka_conf_set_opaque(conf, this);
    k.rd_kafka_conf_set_error_cb(conf, &KafkaUpdateSource::on_error);
    k.rd_kafka_conf_set_log_cb(conf, &KafkaUpdateSource::on_log);
    k.rd_kafka_conf_set_offset_commit_cb(conf, &KafkaUpdateSource::on_commit);
    char err[512];
    rk_ = k.rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));  // takes `conf` on success
    if (rk_ == nullptr) {
      k.rd_kafka_conf_destroy(conf);
      HPS_FAIL(BackendUnavailable, "update_source kafka: cannot create a consumer for ", c.brokers, ": ", err);
    }
    k.rd_kafka_poll_set_consumer(rk_);
  }

  void destroy_handle() {
    if (rk_ == nullptr) return;
    rk_api_->rd_kafka_consumer_close(rk_);
    rk_api_->rd_kafka_destroy(rk_);
    rk_ = nullptr;
  }

  // Callbacks run on the consumer thread, inside rd_kafka_consumer_poll().
  static void on_error(rd_kafka_t*, int err, const char* reason, void* opaque) {
    auto* self = static_cast<KafkaUpdateSource*>(opaque);
    self->broker_trouble_ = true;
    self->report(std::string("broker: ") + reason + " (" + self->rk_api_->rd_kafka_err2str(
                                                                static_cast<rd_kafka_resp_err_t>(err)) + ")");
  }
  static void on_log(const rd_kafka_t* rk, int level, const char* facility, const char* message) {
    // librdkafka's own log: critical lines only (errors arrive, counted, through on_error).
    if (level > 2) return;
    // Runs on librdkafka's threads: touches only the (locked) log.
    auto* self = static_cast<KafkaUpdateSource*>(librdkafka().rd_kafka_opaque(rk));
    if (self) self->log_.write(std::string("librdkafka ") + facility + ": " + message);
  }
  static void on_commit(rd_kafka_t*, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* offsets,
                        void* opaque) {
    auto* self = static_cast<KafkaUpdateSource*>(opaque);
    --self->commits_in_flight_;
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR__NO_OFFSET) {
      // A partition may still have failed on its own.
      for (int i = 0; offsets && i < offsets->cnt; ++i) {
        if (offsets->elems[i].err) {
          err = offsets->elems[i].err;
          break;
        }
      }
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR__NO_OFFSET) return;
    }
    self->commit_dirty_ = true;  // commit again, after a pause (the broker may be away)
    self->commit_retry_at_ = Clock::now() + std::max(milliseconds(self->options_.config.failure_backoff_ms), kCommitRetry);
    self->report(std::string("commit of offsets failed: ") + self->rk_api_->rd_kafka_err2str(err));
  }

  // Counts an error of the source and logs it (rate-limited).
  void report(const std::string& message) {
    sink_->error(message);
    log_.write(message);
  }

  // ---- the consumer loop ---------------------------------------------------------------------------

  void run() {
    // Named, so profilers and benchmarks/update_freshness.py can tell its CPU time apart.
    pthread_setname_np(pthread_self(), "hps-kafka");
    auto next_metadata = Clock::now();
    auto oldest_pending = Clock::time_point::max();
    for (;;) {
      std::uint64_t drain_ticket = 0;
      {
        std::lock_guard lock(mutex_);
        if (stopping_) break;
        drain_ticket = drain_requested_;
      }
      const auto now = Clock::now();
      if (now >= next_metadata) {
        const bool all_found = refresh_assignment();
        const milliseconds period{options_.config.metadata_refresh_interval_ms};
        next_metadata = now + (all_found ? period : std::min(period, kMissingTopicPeriod));
      }
      // With rows pending, only take what librdkafka already fetched: once its queue is empty,
      // apply (fresh rows under light load, large batches when messages arrive faster).
      const bool pending = pending_messages_ > 0;
      const milliseconds wait =
          pending ? milliseconds(0) : std::clamp(milliseconds(options_.config.poll_timeout_ms), milliseconds(1), kSlice);
      rd_kafka_message_t* m = rk_api_->rd_kafka_consumer_poll(rk_, static_cast<int>(wait.count()));
      if (m != nullptr) {
        if (take(*m) && oldest_pending == Clock::time_point::max()) oldest_pending = Clock::now();
        rk_api_->rd_kafka_message_destroy(m);
      }
      // Apply when nothing more is at hand, when a batch is full, after max_commit_interval
      // messages, or when the oldest received message has waited poll_timeout_ms; always before
      // answering a drain.
      const bool due = m == nullptr || pending_pairs_ >= options_.config.max_batch_size ||
                       pending_messages_ >= options_.config.max_commit_interval ||
                       Clock::now() - oldest_pending >= milliseconds(options_.config.poll_timeout_ms) ||
                       drain_ticket > drained_;
      if (due) {
        flush();
        oldest_pending = Clock::time_point::max();
        update_lag();
      }
      record_applied(/*now=*/drain_ticket > drained_);
      if (drain_ticket > drained_) {
        refresh_frontiers();  // what the next apply leaves out is as of the drain
        drained_ = drain_ticket;
        std::lock_guard lock(mutex_);
        drain_done_ = drain_ticket;
        drained_cv_.notify_all();
      }
      if (broker_trouble_) {
        broker_trouble_ = false;
        std::this_thread::sleep_for(milliseconds(options_.config.failure_backoff_ms));
      }
    }
    flush();
    final_commit();
    destroy_handle();
    std::lock_guard lock(mutex_);
    finished_ = true;
    drained_cv_.notify_all();
  }

  // Assigns the partitions of followed topics not assigned yet. Returns whether every followed
  // topic exists.
  bool refresh_assignment() {
    const RdKafka& k = *rk_api_;
    const rd_kafka_metadata_t* md = nullptr;
    const rd_kafka_resp_err_t err = k.rd_kafka_metadata(rk_, 1, nullptr, &md, kMetadataTimeoutMs);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      broker_trouble_ = true;
      report(std::string("cannot read cluster metadata from ") + options_.config.brokers + ": " + k.rd_kafka_err2str(err));
      return false;
    }
    std::size_t found = 0;
    rd_kafka_topic_partition_list_t* add = k.rd_kafka_topic_partition_list_new(8);
    for (int t = 0; t < md->topic_cnt; ++t) {
      const rd_kafka_metadata_topic_t& topic = md->topics[t];
      if (topic.err != RD_KAFKA_RESP_ERR_NO_ERROR || topic.topic == nullptr) continue;
      const std::string name = topic.topic;
      if (options_.topics.count(name) == 0) {
        note_unknown_topic(name);
        continue;
      }
      ++found;
      for (int p = 0; p < topic.partition_cnt; ++p) {
        PartitionKey key{name, topic.partitions[p].id};
        if (assigned_.count(key)) continue;
        assigned_.insert(key);
        rd_kafka_topic_partition_t* tp = k.rd_kafka_topic_partition_list_add(add, name.c_str(), key.second);
        tp->offset = options_.resume_from_committed ? RD_KAFKA_OFFSET_STORED : start_offset(key);
      }
    }
    k.rd_kafka_metadata_destroy(md);
    if (add->cnt > 0) {
      if (rd_kafka_error_t* e = k.rd_kafka_incremental_assign(rk_, add)) {
        report(std::string("cannot assign partitions: ") + k.rd_kafka_error_string(e));
        k.rd_kafka_error_destroy(e);
        for (int i = 0; i < add->cnt; ++i) assigned_.erase({add->elems[i].topic, add->elems[i].partition});
      }
    }
    k.rd_kafka_topic_partition_list_destroy(add);
    return found == options_.topics.size();
  }

  // Where a partition starts when the server keeps no durable tier: where the servers sharing its
  // table's tier got to, when this server found that tier current; else its beginning.
  std::int64_t start_offset(const PartitionKey& key) const {
    const auto topic = options_.shared_start.find(key.first);
    if (topic == options_.shared_start.end()) return RD_KAFKA_OFFSET_BEGINNING;
    const auto partition = topic->second.find(key.second);
    return partition == topic->second.end() ? RD_KAFKA_OFFSET_BEGINNING : partition->second;
  }

  // Rows of messages that a server sharing the topic's tier has applied already (below the offsets
  // it recorded there) are not written again: a consumer behind another would write them over the
  // newer rows the other wrote since. This server drops them from its own GPU caches instead, so
  // its lookups read the shared tier. The record is read at most every kSharedRecordInterval, and
  // another server may move on while this batch applies: that much is left to the old behaviour.
  void skip_rows_applied_elsewhere(const std::string& topic, Batch& batch) {
    if (!options_.shared_frontier || batch.keys.empty() || batch.target == nullptr) return;
    Frontier& shared = frontiers_[topic];
    if (Clock::now() - shared.read_at >= kSharedRecordInterval) read_frontier(topic, shared);
    const std::map<std::int32_t, std::int64_t>& frontier = shared.next;
    if (frontier.empty()) return;
    const std::size_t dim = batch.target->dim;
    std::vector<std::int64_t> skipped;
    std::size_t kept = 0;
    for (std::size_t i = 0; i < batch.keys.size(); ++i) {
      const auto at = frontier.find(batch.partitions[i]);
      if (at != frontier.end() && batch.offsets[i] < at->second) {
        skipped.push_back(batch.keys[i]);
        continue;
      }
      if (kept != i) {
        batch.keys[kept] = batch.keys[i];
        std::copy_n(batch.rows.begin() + static_cast<std::ptrdiff_t>(i * dim), dim,
                    batch.rows.begin() + static_cast<std::ptrdiff_t>(kept * dim));
        batch.partitions[kept] = batch.partitions[i];
        batch.offsets[kept] = batch.offsets[i];
      }
      ++kept;
    }
    if (skipped.empty()) return;
    batch.keys.resize(kept);
    batch.rows.resize(kept * dim);
    batch.partitions.resize(kept);
    batch.offsets.resize(kept);
    // A failure is counted by the sink; the rows are in the shared tier either way.
    sink_->drop_cached(batch.target->model, batch.target->table, skipped.data(), KeyDtype::kInt64, skipped.size());
  }

  // Tells the sharing tiers how far this server applied each topic (after the rows are in them): at
  // most every kSharedRecordInterval, or `now` (a drain). A server joining meanwhile applies the
  // messages since the last record again (the same rows, in order).
  void record_applied(bool now) {
    if (!options_.record_applied || unrecorded_.empty()) return;
    if (!now && Clock::now() < record_at_) return;
    record_at_ = Clock::now() + kSharedRecordInterval;
    for (const auto& [topic, next] : unrecorded_) {
      try {
        std::map<std::int32_t, std::int64_t> record = options_.record_applied(topic, next);
        if (options_.shared_frontier) frontiers_[topic] = Frontier{std::move(record), Clock::now()};  // a fresh read
      } catch (const std::exception& e) {
        report("cannot record the offsets applied from " + topic + " in its shared tier: " + e.what());
      }
    }
    unrecorded_.clear();
  }

  // Reads again how far the servers sharing each topic's tier got (for skip_rows_applied_elsewhere).
  void refresh_frontiers() {
    for (auto& [topic, frontier] : frontiers_) read_frontier(topic, frontier);
  }

  void read_frontier(const std::string& topic, Frontier& frontier) {
    frontier.read_at = Clock::now();
    try {
      frontier.next = options_.shared_frontier(topic);
    } catch (const std::exception& e) {
      report("cannot read the offsets applied from " + topic + " in its shared tier (applying every row): " + e.what());
      frontier.next.clear();
    }
  }

  // A topic `hps_et.<followed model>.<x>` where the model has no table x: reported once.
  void note_unknown_topic(const std::string& name) {
    const auto parsed = parse_topic(name);
    if (!parsed || reported_topics_.count(name)) return;
    if (std::find(options_.models.begin(), options_.models.end(), parsed->model) == options_.models.end()) return;
    reported_topics_.insert(name);
    report("unknown topic " + name + ": model " + parsed->model + " has no table " + parsed->table + "; not consumed");
  }

  // Handles one message or consumer event; returns whether rows were queued.
  bool take(const rd_kafka_message_t& m) {
    const RdKafka& k = *rk_api_;
    if (m.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (m.err == RD_KAFKA_RESP_ERR__PARTITION_EOF) return false;
      broker_trouble_ = true;
      std::string where = m.rkt ? std::string(" (topic ") + k.rd_kafka_topic_name(m.rkt) + ", partition " +
                                      std::to_string(m.partition) + ")"
                                : std::string();
      report("consumer: " + std::string(k.rd_kafka_err2str(m.err)) + where);
      return false;
    }
    sink_->received(1);
    const std::string topic = k.rd_kafka_topic_name(m.rkt);
    const PartitionKey key{topic, m.partition};
    next_offset_[key] = m.offset + 1;  // a skipped message is done with as well
    ++pending_messages_;
    const auto where = [&] {
      return "topic " + topic + ", partition " + std::to_string(m.partition) + ", offset " + std::to_string(m.offset);
    };
    const auto found = options_.topics.find(topic);
    if (found == options_.topics.end()) {
      report("skipped message (" + where() + "): unknown topic");
      return false;
    }
    const TopicTarget& target = found->second;
    if (m.len > options_.config.receive_buffer_size) {
      report("skipped message (" + where() + "): " + std::to_string(m.len) + " bytes exceed receive_buffer_size " +
             std::to_string(options_.config.receive_buffer_size));
      return false;
    }
    MessageView view;
    try {
      view = parse_message(m.payload, m.len, options_.key_size);
    } catch (const std::exception& e) {
      report("skipped message (" + where() + "): " + e.what());
      return false;
    }
    if (view.beacon()) return false;
    if (view.value_size != target.dim * sizeof(float)) {
      report("skipped message (" + where() + "): value size " + std::to_string(view.value_size) +
             " bytes, but table " + target.model + "/" + target.table + " has dimension " +
             std::to_string(target.dim) + " (" + std::to_string(target.dim * sizeof(float)) + " bytes)");
      return false;
    }
    Batch& batch = batches_[topic];
    batch.target = &target;
    const std::size_t first = batch.keys.size();
    batch.keys.resize(first + view.pairs);
    batch.rows.resize((first + view.pairs) * target.dim);
    batch.partitions.resize(first + view.pairs, m.partition);
    batch.offsets.resize(first + view.pairs, m.offset);
    for (std::size_t i = 0; i < view.pairs; ++i) {
      batch.keys[first + i] = view.key(i);
      view.copy_value(i, batch.rows.data() + (first + i) * target.dim);
    }
    pending_pairs_ += view.pairs;
    return true;
  }

  // Applies every queued batch (in chunks of max_batch_size), then commits the offsets consumed.
  // A chunk the sink refuses is retried after failure_backoff_ms until it applies (the sink itself
  // applies what it can of a chunk that could never apply whole, and counts the rest as dropped);
  // when the source stops meanwhile, nothing more is applied or committed (the messages come again).
  void flush() {
    const std::size_t chunk = options_.config.max_batch_size;
    for (auto& [topic, batch] : batches_) {
      skip_rows_applied_elsewhere(topic, batch);
      const std::size_t n = batch.keys.size();
      const std::size_t dim = batch.target ? batch.target->dim : 0;
      for (std::size_t first = 0; first < n; first += chunk) {
        const std::size_t count = std::min(chunk, n - first);
        while (!sink_->update(batch.target->model, batch.target->table, batch.keys.data() + first, KeyDtype::kInt64,
                              count, batch.rows.data() + first * dim)) {
          log_.write("applying " + std::to_string(count) + " rows of " + topic + " failed (see update_source_stats); "
                     "retrying");
          std::this_thread::sleep_for(milliseconds(std::max<std::size_t>(1, options_.config.failure_backoff_ms)));
          std::lock_guard lock(mutex_);
          if (stopping_) {
            batches_.clear();
            next_offset_.clear();  // not applied: not committed
            return;
          }
        }
      }
      batch.keys.clear();
      batch.rows.clear();
      batch.partitions.clear();
      batch.offsets.clear();
    }
    pending_pairs_ = 0;
    pending_messages_ = 0;
    if (options_.record_applied) {
      for (const auto& [key, offset] : next_offset_) unrecorded_[key.first][key.second] = offset;
      record_applied(/*now=*/false);
    }
    for (auto& [key, offset] : next_offset_) applied_offset_[key] = offset;
    next_offset_.clear();
    commit();
  }

  // Commits the applied offsets that moved since the last commit (asynchronously: the result
  // comes to on_commit during a later poll).
  void commit() {
    const RdKafka& k = *rk_api_;
    if (commit_dirty_ && Clock::now() < commit_retry_at_) return;  // a failed commit waits its pause
    rd_kafka_topic_partition_list_t* list = k.rd_kafka_topic_partition_list_new(8);
    for (const auto& [key, offset] : applied_offset_) {
      auto& done = committed_offset_[key];
      if (done == offset && !commit_dirty_) continue;
      k.rd_kafka_topic_partition_list_add(list, key.first.c_str(), key.second)->offset = offset;
      done = offset;
    }
    commit_dirty_ = false;
    if (list->cnt > 0) {
      ++commits_in_flight_;
      const rd_kafka_resp_err_t err = k.rd_kafka_commit(rk_, list, 1);
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        --commits_in_flight_;
        commit_dirty_ = true;
        commit_retry_at_ = Clock::now() + kCommitRetry;
        report(std::string("commit of offsets failed: ") + k.rd_kafka_err2str(err));
      }
    }
    k.rd_kafka_topic_partition_list_destroy(list);
  }

  // On stop: the last commit, waited for (bounded, so a missing broker cannot hold stop()).
  void final_commit() {
    commit_retry_at_ = {};  // no pause for the last one
    commit();
    const auto deadline = Clock::now() + kFinalCommitWait;
    while (commits_in_flight_ > 0 && Clock::now() < deadline) {
      rd_kafka_message_t* m = rk_api_->rd_kafka_consumer_poll(rk_, static_cast<int>(kSlice.count()));
      if (m) rk_api_->rd_kafka_message_destroy(m);  // not applied, not committed: read again later
      if (commit_dirty_ && commits_in_flight_ == 0) break;  // failed: the broker has the older offsets
    }
  }

  // Messages in the broker not applied yet, over the assigned partitions whose end and start are
  // known: a partition this process applied nothing from counts from where it resumed (the
  // group's committed offset, or where the servers sharing its table's tier got to), or from its
  // first message when it reads from the beginning.
  void update_lag() {
    learn_resume_offsets();
    std::int64_t total = 0;
    bool known = false;
    for (const PartitionKey& key : assigned_) {
      int64_t low = 0, high = 0;
      if (rk_api_->rd_kafka_get_watermark_offsets(rk_, key.first.c_str(), key.second, &low, &high) !=
              RD_KAFKA_RESP_ERR_NO_ERROR ||
          high < 0)
        continue;
      std::int64_t from = std::max<int64_t>(low, 0);
      if (const auto applied = applied_offset_.find(key); applied != applied_offset_.end()) {
        from = applied->second;
      } else if (const std::int64_t start = start_offset(key); !options_.resume_from_committed && start >= 0) {
        from = std::max(from, start);
      } else if (options_.resume_from_committed) {
        const auto resumed = resumed_from_.find(key);
        if (resumed == resumed_from_.end()) continue;  // not known yet
        if (resumed->second >= 0) from = std::max(from, resumed->second);  // < 0: nothing committed
      }
      total += std::max<std::int64_t>(0, high - from);
      known = true;
    }
    lag_.store(known ? total : -1, std::memory_order_relaxed);
  }

  // Asks the group's committed offsets of the partitions whose resume point is not known yet: a
  // broker round trip on the consumer thread, so short, and again only 5 s after one that failed
  // or left a partition unknown.
  void learn_resume_offsets() {
    if (!options_.resume_from_committed || Clock::now() < resume_query_at_) return;
    const RdKafka& k = *rk_api_;
    rd_kafka_topic_partition_list_t* list = k.rd_kafka_topic_partition_list_new(8);
    for (const PartitionKey& key : assigned_) {
      if (!applied_offset_.count(key) && !resumed_from_.count(key)) {
        k.rd_kafka_topic_partition_list_add(list, key.first.c_str(), key.second);
      }
    }
    if (list->cnt > 0) {
      constexpr int kCommittedTimeoutMs = 200;
      bool all_known = k.rd_kafka_committed(rk_, list, kCommittedTimeoutMs) == RD_KAFKA_RESP_ERR_NO_ERROR;
      for (int i = 0; all_known && i < list->cnt; ++i) {
        const rd_kafka_topic_partition_t& e = list->elems[i];
        if (e.err == RD_KAFKA_RESP_ERR_NO_ERROR) {
          resumed_from_[{e.topic, e.partition}] = e.offset;
        } else {
          all_known = false;
        }
      }
      if (!all_known) resume_query_at_ = Clock::now() + std::chrono::seconds(5);
    }
    k.rd_kafka_topic_partition_list_destroy(list);
  }

  const KafkaSourceOptions options_;
  const RdKafka* rk_api_;
  UpdateSink* sink_ = nullptr;
  rd_kafka_t* rk_ = nullptr;
  std::thread thread_;
  RateLimitedLog log_;

  // Between the server's threads and the consumer thread.
  std::mutex mutex_;
  std::condition_variable drained_cv_;
  bool stopping_ = false;
  bool finished_ = false;
  std::uint64_t drain_requested_ = 0, drain_done_ = 0;
  std::atomic<std::int64_t> lag_{-1};

  // The consumer thread's own.
  std::uint64_t drained_ = 0;
  bool broker_trouble_ = false;
  bool commit_dirty_ = false;
  Clock::time_point commit_retry_at_{};
  int commits_in_flight_ = 0;
  std::set<PartitionKey> assigned_;
  std::set<std::string> reported_topics_;
  std::map<std::string, Batch> batches_;
  std::size_t pending_pairs_ = 0, pending_messages_ = 0;
  std::map<PartitionKey, std::int64_t> next_offset_;       // consumed, not applied yet
  // The record shared with the servers sharing a topic's tier: offsets applied and not recorded
  // yet, the next time to record, and the record as last read (by topic).
  std::map<std::string, std::map<std::int32_t, std::int64_t>> unrecorded_;
  Clock::time_point record_at_{};
  std::map<std::string, Frontier> frontiers_;
  std::map<PartitionKey, std::int64_t> applied_offset_;    // applied: next offset to read
  std::map<PartitionKey, std::int64_t> committed_offset_;  // last commit issued
  std::map<PartitionKey, std::int64_t> resumed_from_;      // the group's offset at start (< 0: none)
  Clock::time_point resume_query_at_{};                     // learn_resume_offsets no sooner after a failure
};

}  // namespace

KafkaSourceOptions kafka_source_options(const Config& config, bool durable) {
  KafkaSourceOptions out;
  out.config = config.update_source;
  out.key_size = config.supportlonglong ? 8 : 4;
  out.resume_from_committed = durable;
  // A model is followed when a filter of any tier in use matches its whole name: every tier and
  // GPU cache then takes its updates (the copies must agree, so tiers cannot differ here).
  for (const ModelConfig& model : config.models) {
    if (!model_takes_updates(config, model.name)) continue;
    out.models.push_back(model.name);
    for (const TableConfig& table : model.tables) {
      out.topics[topic_name(model.name, table.name)] = TopicTarget{model.name, table.name, table.dim};
    }
  }
  out.group_id = config.update_source.group_id;
  if (out.group_id.empty()) {
    // Stable across restarts of the same store, distinct for servers keeping different stores.
    std::string store = "memory";
    if (durable) {
      std::error_code ec;
      const auto path = std::filesystem::weakly_canonical(config.persistent_db.path, ec);
      store = ec ? config.persistent_db.path : path.string();
    }
    out.group_id = "hps." + hostname() + "." + hex64(fnv1a(store)).substr(0, 12);
  }
  return out;
}

std::unique_ptr<UpdateSource> make_kafka_source(KafkaSourceOptions options) {
  return std::make_unique<KafkaUpdateSource>(std::move(options));
}

}  // namespace hps::kafka
