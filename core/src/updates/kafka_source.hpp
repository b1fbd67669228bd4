// KafkaUpdateSource: the server's Kafka consumer, an UpdateSource over librdkafka's C API (internal).
//
// It follows `hps_et.<model>.<table>` for every table of every model whose name matches one of
// the tiers' `update_filters`, takes all partitions of those topics itself (assign, no consumer
// group rebalancing, so it starts consuming at once), parses HugeCTR's message layout and applies
// batches through the UpdateSink: every tier, then every GPU cache. Only after the sink returned
// are the offsets committed (group `update_source.group_id`): at-least-once. A server with a
// durable tier resumes from the committed offsets; one without replays the topics from the
// beginning, since its tiers restart from the table files.
//
// Bad input never stops it: a malformed message (wrong magic, a value size that is not the
// table's, a truncated pair, larger than receive_buffer_size), a topic of a followed model that
// names no table, a lost broker or a failed commit is counted as an error of the source (its
// topic, partition and offset in the message), logged to stderr at most once a second with the
// prefix "hps kafka:", and skipped or retried after failure_backoff_ms. A batch the sink fails to
// apply is retried until it applies or the source stops; its offsets are not committed before.
//
// Ownership: the server owns the source; the source owns its librdkafka handle and one thread
// (named "hps-kafka"; librdkafka's own threads are "rdk:*").
// Threads: the consumer thread alone touches librdkafka and the sink; start/stop/drain come from
// the server (never concurrently with each other); lag() from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>

#include "hps/config.hpp"
#include "hps/update_source.hpp"

namespace hps::kafka {

/// Where one topic's rows go.
struct TopicTarget {
  std::string model;
  std::string table;
  std::size_t dim = 0;
};

struct KafkaSourceOptions {
  UpdateSourceConfig config;
  std::string group_id;                                  ///< consumer group whose offsets are committed
  std::size_t key_size = 8;                              ///< 8: int64 keys; 4: uint32 ("supportlonglong": false)
  bool resume_from_committed = true;                     ///< false: start every partition at its beginning
  std::unordered_map<std::string, TopicTarget> topics;  ///< by topic name
  std::vector<std::string> models;                       ///< the followed models (for unknown-table reports)
  /// Topic -> partition -> the offset to start at instead of the beginning (resume_from_committed
  /// false): how far the servers sharing the topic's table in a shared tier had applied it when this
  /// server found that tier current (BulkLoadable::applied_offsets). Partitions not named start at
  /// their beginning.
  std::unordered_map<std::string, std::map<std::int32_t, std::int64_t>> shared_start;
  /// Called on the consumer thread with the offsets applied to a topic (partition -> next offset),
  /// after applies, at most every 50 ms and when a drain is answered, so servers sharing a tier can
  /// start where this one got to. Returns the record as it then stands (as shared_frontier would:
  /// it serves as a fresh read of it). What it throws is reported as an error of the source, never
  /// fatal. Null: nothing is recorded.
  std::function<std::map<std::int32_t, std::int64_t>(const std::string& topic,
                                                     const std::map<std::int32_t, std::int64_t>& next)>
      record_applied;
  /// Called on the consumer thread before an apply, at most every 50 ms, and when a drain is
  /// answered: how far the servers sharing the topic's tier have applied it (partition -> next
  /// offset; empty: nothing known). Rows of messages below are not written again
  /// (UpdateSink::drop_cached instead). Null: every row is applied, as a server with a durable tier
  /// of its own needs.
  std::function<std::map<std::int32_t, std::int64_t>(const std::string& topic)> shared_frontier;
};

/// The options a server with `config` runs its consumer with: the followed topics, key width,
/// group and resume policy. `durable`: the server has a durable tier (it keeps applied updates).
KafkaSourceOptions kafka_source_options(const Config& config, bool durable);

/// A consumer (not yet started). Throws BackendUnavailable when librdkafka cannot be loaded.
std::unique_ptr<UpdateSource> make_kafka_source(KafkaSourceOptions options);

}  // namespace hps::kafka
