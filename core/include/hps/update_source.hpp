// UpdateSource: something that feeds updates into a running server (a Kafka consumer, a file or
// array delta), and UpdateSink, the server's update path it feeds them into.
//
// The path of one message, from a source to every copy of the rows:
//   source ──► UpdateSink::update(model, table, keys, rows)        (erase: the same path)
//                │ resolves the table by name; unknown model/table, bad keys, a failing tier:
//                │ counted as an error of the source (never thrown at it, never a crash)
//                ▼
//              ParameterServer::update(table, ...)  — the table's mutation epoch goes odd, then:
//                1. the durable tier (persistent_db, RocksDB through its write-ahead log),
//                2. each tier above it, bottom up (volatile_db, the hash map),
//                3. the GPU cache of every device in deployed_device_list (rows they hold are
//                   overwritten; a static cache also adds new keys), synchronously,
//              then the epoch goes even. A promotion that read an older row meanwhile sees the
//              epoch move and stands back, so no old row lands above the new one. If step 2 or 3
//              fails, the copies above the durable tier are dropped (none serves a stale row) and
//              the message counts as an error.
//   When the sink returns, every lookup that starts afterwards sees the new rows: a source may
//   acknowledge (commit its offset) then.
//
// The Kafka consumer (update_source.type kafka_message_queue) is one such source, which the
// server adds itself (docs/kafka.md).
//
// Lifetime: ParameterServer::add_update_source() takes ownership and calls start(); the server
// calls stop() in its destructor before any tier or cache goes away, so the sink is valid from
// start() until stop() returns. drain() applies everything the source received so far.
//
// Threads: a source may call the sink from any number of its own threads. start(), stop() and
// drain() are called by the server, never concurrently with each other for one source;
// drain() may run while lookups and other updates go on.
#pragma once

#include "hps/export.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "hps/keys.hpp"

namespace hps HPS_EXPORT {

/// The server's update path, as a source sees it. Never throws: a message that cannot be applied
/// is counted as an error of the source (with the last error's message kept for stats).
class UpdateSink {
 public:
  virtual ~UpdateSink() = default;
  /// The source received `messages` messages (counted whether or not they apply).
  virtual void received(std::size_t messages = 1) noexcept = 0;
  /// Stores rows[n][dim] under keys[0..n) of `dtype` in every tier and GPU cache of the table.
  /// Returns false (and counts an error) when it could not.
  virtual bool update(const std::string& model, const std::string& table, const void* keys, KeyDtype dtype,
                      std::size_t n, const float* rows) noexcept = 0;
  /// Removes keys from every tier and GPU cache of the table. Returns false (counting an error)
  /// when it could not.
  virtual bool erase(const std::string& model, const std::string& table, const void* keys, KeyDtype dtype,
                     std::size_t n) noexcept = 0;
  /// Counts an error the source met on its own (a malformed message, a lost connection).
  virtual void error(const std::string& message) noexcept = 0;
  /// Rows the source skips because a tier other servers share already took them (and maybe newer
  /// ones since): drops the keys from this server's GPU caches only, so its lookups read the
  /// shared tier's rows. Returns false (counting an error) when it could not. The default does
  /// nothing (a sink without caches).
  virtual bool drop_cached(const std::string& /*model*/, const std::string& /*table*/, const void* /*keys*/,
                           KeyDtype /*dtype*/, std::size_t /*n*/) noexcept {
    return true;
  }
};

class UpdateSource {
 public:
  virtual ~UpdateSource() = default;
  /// Names the source in stats ("kafka:<brokers>", "queue", ...).
  virtual std::string name() const = 0;
  /// Begins feeding `sink` (typically from a thread of the source's own). Throws on failure to start.
  virtual void start(UpdateSink& sink) = 0;
  /// Stops feeding; once it returns the source never calls the sink again. Must be idempotent.
  virtual void stop() = 0;
  /// Returns once every message received before the call has been passed to the sink.
  virtual void drain() = 0;
  /// Messages waiting at the source not applied yet (a Kafka consumer's lag), or -1 when unknown.
  /// Called from any thread.
  virtual std::int64_t lag() const { return -1; }
};

/// Counters of one source, as ParameterServer::update_source_stats() reports them.
struct UpdateSourceStats {
  std::string name;
  std::uint64_t received = 0;  ///< messages the source received
  std::uint64_t applied = 0;   ///< update or erase calls that reached every tier
  std::uint64_t rows = 0;      ///< rows (keys) those calls carried
  std::int64_t lag = -1;       ///< UpdateSource::lag(): messages not applied yet, -1 when unknown
  std::uint64_t errors = 0;    ///< calls that failed, and errors the source reported
  std::string last_error;      ///< the latest error's message ("" when none)
};

/// The sources as a JSON array of {name, received, applied, rows, errors, lag, last_error}.
std::string to_json(const std::vector<UpdateSourceStats>& sources);
/// The sources in Prometheus text format (hps_update_source_*{source="..."}); "" without sources.
std::string to_prometheus(const std::vector<UpdateSourceStats>& sources);

}  // namespace hps
