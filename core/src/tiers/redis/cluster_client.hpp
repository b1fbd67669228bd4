// A Redis Cluster client on hiredis: slot map, per-node connection pools, pipelined batches that
// run on every node at once, MOVED/ASK redirects and failover retries.
//
// hiredis connects and authenticates; this layer does the cluster part, and writes commands and
// reads replies itself (ReplyReader: rows of HMGET replies are copied straight to the caller).
// A batch of commands is grouped by the node that owns each command's slot; each node's group is
// written down one connection as one pipeline, and all nodes' pipelines are driven together by one
// poll() loop, so the nodes work in parallel without a thread per node. Every call has a deadline: a node that does
// not answer in time has its connection dropped (a late reply can never be matched to a later
// command) and its commands reported failed.
//
// Ownership: a ClusterClient owns its connections and its node table. get() shares one client per
// (seeds, credentials, pool size, timeout) among the tiers of a process.
// Threads: run() may be called from many threads at once; each call takes its own connections
// from the pools (at most `connections_per_node` per node, later calls wait for one).
#pragma once

#include <hiredis/hiredis.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "tiers/redis/reply_reader.hpp"
#include "tiers/redis/slot.hpp"

namespace hps::redis {

/// How run() paces a node (see exchange() in cluster_client.cpp): commands go in pieces of at most
/// about kPieceBytes, or about kPieceReplyBytes of expected reply rows, and a node has at most
/// kPiecesInFlight pieces sent and not yet answered.
constexpr std::size_t kPieceBytes = std::size_t{1} << 20;
constexpr std::size_t kPieceReplyBytes = std::size_t{256} << 10;
constexpr std::size_t kPiecesInFlight = 4;

struct ClientOptions {
  std::vector<std::pair<std::string, int>> seeds;  ///< host, port
  std::string user;
  std::string password;  ///< empty: no AUTH
  std::size_t connections_per_node = 5;
  std::chrono::milliseconds timeout{1000};  ///< per run() call, and per connect

  /// Parses "host:port,host:port" (spaces allowed around commas). Throws ConfigError.
  static std::vector<std::pair<std::string, int>> parse_seeds(const std::string& address);
  std::string key() const;  ///< identity for sharing a client
};

/// One command and, after run(), its outcome: `reply` (any Redis reply, error replies included)
/// or `failure` (why no reply came: node down, timeout, retries exhausted).
struct Command {
  std::uint16_t slot = 0;
  std::vector<const char*> argv;  ///< borrowed: the caller keeps the bytes alive through run()
  std::vector<std::size_t> argvlen;

  /// Optional: where the rows of this command's array reply go (HMGET), instead of reply objects;
  /// borrowed like argv. `reply` is then an array reply without elements (see RowSink).
  RowSink* sink = nullptr;

  redisReply* reply = nullptr;  ///< owned by the Batch
  std::string failure;
  std::string node;  ///< address of the node that answered or failed, for messages

  void arg(const void* data, std::size_t n) {
    argv.push_back(static_cast<const char*>(data));
    argvlen.push_back(n);
  }
  void arg(const std::string& s) { arg(s.data(), s.size()); }  // s must outlive run()
  bool ok() const { return reply != nullptr && reply->type != REDIS_REPLY_ERROR; }
  std::string what() const;  ///< the failure or error reply text

  // Routing state of run(): a node named by a redirect for the next round.
  void* redirect = nullptr;
  bool asking = false;
};

class Batch {
 public:
  Batch() = default;
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;
  ~Batch();
  Command& add(std::uint16_t slot);
  std::vector<Command>& commands() { return commands_; }
  std::size_t size() const { return commands_.size(); }
  Command& operator[](std::size_t i) { return commands_[i]; }

 private:
  std::vector<Command> commands_;
};

/// How hard run() tries. Lookups follow redirects but never wait for a failover: a node that
/// cannot be reached fails its commands at once. Writes retry everything until the deadline.
enum class RetryPolicy { kLookup, kWrite };

struct ClientCounters {
  std::atomic<std::uint64_t> timeouts{0};
  std::atomic<std::uint64_t> node_errors{0};
  std::atomic<std::uint64_t> moved{0};
  std::atomic<std::uint64_t> ask{0};
  std::atomic<std::uint64_t> reconnects{0};
  std::atomic<std::uint64_t> refreshes{0};
};

class ClusterClient {
 public:
  /// A client for these options, shared with other tiers of this process that pass equal ones.
  static std::shared_ptr<ClusterClient> get(const ClientOptions& options);

  /// Reads the slot map from the first seed that answers. Throws BackendUnavailable naming every
  /// seed's failure (unreachable, AUTH refused, not a cluster).
  explicit ClusterClient(ClientOptions options);
  ~ClusterClient();
  ClusterClient(const ClusterClient&) = delete;
  ClusterClient& operator=(const ClusterClient&) = delete;

  /// Runs every command of the batch (pipelined per node, all nodes at once) within the timeout.
  void run(Batch& batch, RetryPolicy policy);

  const ClientCounters& counters() const { return counters_; }
  const ClientOptions& options() const { return options_; }

  struct Node;
  struct SlotMap;

 private:
  struct Flight;
  using Clock = std::chrono::steady_clock;

  Node& node(const std::string& host, int port);
  std::shared_ptr<const SlotMap> slot_map() const;
  /// Re-reads CLUSTER SLOTS (at most once per few ms across threads). Returns "" on success, the
  /// failures otherwise (the old map stays).
  std::string refresh(bool force);
  struct Connection;
  std::unique_ptr<Connection> connect(Node& node, Clock::time_point deadline, std::string& error);
  std::unique_ptr<Connection> acquire(Node& node, Clock::time_point deadline, std::string& error);
  void release(Node& node, std::unique_ptr<Connection> conn, bool healthy);
  void exchange(std::vector<Flight>& flights, Batch& batch, Clock::time_point deadline);

  ClientOptions options_;
  ClientCounters counters_;
  mutable std::mutex nodes_mu_;
  std::unordered_map<std::string, std::unique_ptr<Node>> nodes_;  // never shrinks: Node* stay valid
  mutable std::mutex map_mu_;
  std::shared_ptr<const SlotMap> map_;
  std::mutex refresh_mu_;
  Clock::time_point last_refresh_{};
};

}  // namespace hps::redis
