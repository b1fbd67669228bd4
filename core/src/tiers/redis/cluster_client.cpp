#include "tiers/redis/cluster_client.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <map>
#include <thread>

#include "hps/error.hpp"

namespace hps::redis {

namespace {

using Clock = std::chrono::steady_clock;

// After a failed connect a node is not tried again for this long: lookups fail fast instead of
// paying a connect attempt each while a node is down.
constexpr auto kDownBackoff = std::chrono::milliseconds(100);
/// A node that let a command time out is asked for the slot map after the others for this long:
/// a stalled node would cost the refresh that follows a timeout a second timeout.
constexpr auto kSlowNodeLast = std::chrono::seconds(10);
// Slot map refreshes are rate-limited: many threads seeing the same MOVED need one CLUSTER SLOTS.
constexpr auto kRefreshInterval = std::chrono::milliseconds(50);
// Redirect rounds one lookup follows before it gives up (a slot migrating while the map moves).
constexpr int kLookupRounds = 4;

timeval to_timeval(std::chrono::milliseconds ms) {
  ms = std::max(ms, std::chrono::milliseconds(1));
  timeval tv{};
  tv.tv_sec = static_cast<long>(ms.count() / 1000);
  tv.tv_usec = static_cast<long>((ms.count() % 1000) * 1000);
  return tv;
}

std::chrono::milliseconds remaining(Clock::time_point deadline) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
}

bool starts_with(const redisReply* r, const char* prefix) {
  return r && r->type == REDIS_REPLY_ERROR && std::strncmp(r->str, prefix, std::strlen(prefix)) == 0;
}

std::string reply_text(const redisReply* r) {
  if (!r) return "no reply";
  if (r->type == REDIS_REPLY_ERROR || r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_STRING) {
    return std::string(r->str, r->len);
  }
  return "reply of type " + std::to_string(r->type);
}

// "MOVED 3999 127.0.0.1:6381" / "ASK 3999 127.0.0.1:6381" -> host, port.
bool parse_redirect(const redisReply* r, std::string& host, int& port) {
  const std::string text(r->str, r->len);
  const std::size_t space = text.rfind(' ');
  const std::size_t colon = text.rfind(':');
  if (space == std::string::npos || colon == std::string::npos || colon < space) return false;
  host = text.substr(space + 1, colon - space - 1);
  port = std::atoi(text.c_str() + colon + 1);
  return port > 0;
}

// Bytes a command's reply is expected to take: its rows for an HMGET read into a sink (each row
// with its "$<n>\r\n...\r\n" frame), a few bytes otherwise (writes answer with integers).
std::size_t expected_reply_bytes(const Command& c) {
  return c.sink ? c.sink->count * (c.sink->row_bytes + 16) + 16 : 16;
}

// RESP encoding of one command, appended to `out` (the protocol is simple enough that a
// tight loop beats hiredis's sprintf per argument on batches of many keys).
void append_command(std::string& out, std::size_t argc, const char* const* argv, const std::size_t* argvlen) {
  std::size_t bytes = 16;
  for (std::size_t i = 0; i < argc; ++i) bytes += argvlen[i] + 24;
  out.reserve(out.size() + bytes);
  char number[24];
  auto put_header = [&](char kind, std::size_t value) {
    out.push_back(kind);
    const auto end = std::to_chars(number, number + sizeof number, value).ptr;
    out.append(number, end);
    out.append("\r\n", 2);
  };
  put_header('*', argc);
  for (std::size_t i = 0; i < argc; ++i) {
    put_header('$', argvlen[i]);
    out.append(argv[i], argvlen[i]);
    out.append("\r\n", 2);
  }
}

}  // namespace

// ---- options -------------------------------------------------------------------------------------

std::vector<std::pair<std::string, int>> ClientOptions::parse_seeds(const std::string& address) {
  std::vector<std::pair<std::string, int>> seeds;
  std::size_t start = 0;
  while (start <= address.size()) {
    std::size_t comma = address.find(',', start);
    if (comma == std::string::npos) comma = address.size();
    std::string item = address.substr(start, comma - start);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) {
      const std::size_t colon = item.rfind(':');
      HPS_EXPECTS(colon != std::string::npos && colon > 0 && colon + 1 < item.size(), ConfigError,
                  "volatile_db.address: expected host:port, found '", item, "'");
      char* end = nullptr;
      const long port = std::strtol(item.c_str() + colon + 1, &end, 10);
      HPS_EXPECTS(*end == '\0' && port > 0 && port < 65536, ConfigError, "volatile_db.address: bad port in '", item,
                  "'");
      seeds.emplace_back(item.substr(0, colon), static_cast<int>(port));
    }
    start = comma + 1;
  }
  HPS_EXPECTS(!seeds.empty(), ConfigError, "volatile_db.address: no host:port seed given (found '", address, "')");
  return seeds;
}

std::string ClientOptions::key() const {
  std::string k;
  for (const auto& [host, port] : seeds) k += host + ":" + std::to_string(port) + ",";
  return k + "|" + user + "|" + password + "|" + std::to_string(connections_per_node) + "|" +
         std::to_string(timeout.count());
}

// ---- commands ------------------------------------------------------------------------------------

std::string Command::what() const {
  if (!failure.empty()) return failure;
  return reply_text(reply);
}

Batch::~Batch() {
  for (auto& c : commands_) {
    if (c.reply) freeReplyObject(c.reply);
  }
}

Command& Batch::add(std::uint16_t slot) {
  commands_.emplace_back();
  commands_.back().slot = slot;
  return commands_.back();
}

// ---- nodes, connections, slot map -----------------------------------------------------------------

struct ClusterClient::Connection {
  redisContext* ctx = nullptr;  // connected and authenticated by hiredis; read by `reader` after that
  ReplyReader reader;
  ~Connection() {
    if (ctx) redisFree(ctx);
  }
};

struct ClusterClient::Node {
  std::string host;
  int port = 0;
  std::string name;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::unique_ptr<Connection>> idle;
  std::size_t open = 0;
  std::size_t dropped = 0;  // connections lost so far: the next connect is a reconnect
  Clock::time_point down_until{};
  Clock::time_point slow_until{};  // a command to it timed out lately: asked last for the slot map
  std::string last_error;
};

struct ClusterClient::SlotMap {
  std::array<Node*, kSlotCount> owner{};
};

ClusterClient::ClusterClient(ClientOptions options) : options_(std::move(options)) {
  for (const auto& [host, port] : options_.seeds) node(host, port);
  const std::string failures = refresh(true);
  HPS_EXPECTS(failures.empty(), BackendUnavailable, "volatile_db (redis_cluster): cannot read the slot map from any seed: ",
              failures);
}

ClusterClient::~ClusterClient() = default;

std::shared_ptr<ClusterClient> ClusterClient::get(const ClientOptions& options) {
  static std::mutex mu;
  static std::map<std::string, std::weak_ptr<ClusterClient>> clients;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = clients[options.key()];
  if (auto existing = slot.lock()) return existing;
  auto client = std::make_shared<ClusterClient>(options);
  slot = client;
  return client;
}

ClusterClient::Node& ClusterClient::node(const std::string& host, int port) {
  const std::string name = host + ":" + std::to_string(port);
  std::lock_guard<std::mutex> lock(nodes_mu_);
  auto& entry = nodes_[name];
  if (!entry) {
    entry = std::make_unique<Node>();
    entry->host = host;
    entry->port = port;
    entry->name = name;
  }
  return *entry;
}

std::shared_ptr<const ClusterClient::SlotMap> ClusterClient::slot_map() const {
  std::lock_guard<std::mutex> lock(map_mu_);
  return map_;
}

std::unique_ptr<ClusterClient::Connection> ClusterClient::connect(Node& n, Clock::time_point deadline,
                                                                  std::string& error) {
  const auto budget = std::min(options_.timeout, std::max(remaining(deadline), std::chrono::milliseconds(1)));
  auto conn = std::make_unique<Connection>();
  conn->ctx = redisConnectWithTimeout(n.host.c_str(), n.port, to_timeval(budget));
  if (!conn->ctx || conn->ctx->err) {
    error = "cannot connect to " + n.name + ": " + (conn->ctx ? conn->ctx->errstr : "out of memory");
    return nullptr;
  }
  redisSetTimeout(conn->ctx, to_timeval(budget));
  redisEnableKeepAlive(conn->ctx);
  if (!options_.password.empty()) {
    auto* r = static_cast<redisReply*>(redisCommand(conn->ctx, "AUTH %s %s", options_.user.c_str(),
                                                    options_.password.c_str()));
    if (!r || r->type == REDIS_REPLY_ERROR) {
      error = "AUTH as user '" + options_.user + "' refused by " + n.name + ": " +
              (r ? reply_text(r) : std::string(conn->ctx->errstr));
      if (r) freeReplyObject(r);
      return nullptr;
    }
    freeReplyObject(r);
  }
  return conn;
}

std::string ClusterClient::refresh(bool force) {
  // A thread that finds another one refreshing does not wait for it: the map it gets next is
  // the other's result, and a call never stalls behind someone else's connect timeouts.
  std::unique_lock<std::mutex> lock(refresh_mu_, std::defer_lock);
  if (force) {
    lock.lock();
  } else if (!lock.try_lock()) {
    return "";
  }
  if (!force && Clock::now() - last_refresh_ < kRefreshInterval) return "";
  last_refresh_ = Clock::now();
  // Ask the nodes of the current map first (the seeds may be gone), then the seeds; nodes that
  // just refused a connection or let a command time out go last.
  std::vector<Node*> candidates;
  if (auto map = slot_map()) {
    for (Node* n : map->owner) {
      if (n && std::find(candidates.begin(), candidates.end(), n) == candidates.end()) candidates.push_back(n);
    }
  }
  for (const auto& [host, port] : options_.seeds) {
    Node* n = &node(host, port);
    if (std::find(candidates.begin(), candidates.end(), n) == candidates.end()) candidates.push_back(n);
  }
  const auto now = Clock::now();
  std::stable_partition(candidates.begin(), candidates.end(), [now](Node* n) {
    std::lock_guard<std::mutex> node_lock(n->mu);
    return n->down_until <= now && n->slow_until <= now;
  });
  std::string failures;
  for (Node* n : candidates) {
    std::string error;
    auto conn = connect(*n, Clock::now() + options_.timeout, error);
    redisReply* r = conn ? static_cast<redisReply*>(redisCommand(conn->ctx, "CLUSTER SLOTS")) : nullptr;
    if (conn && !r) error = n->name + ": " + conn->ctx->errstr;
    if (r && r->type == REDIS_REPLY_ERROR) {
      error = n->name + " answered CLUSTER SLOTS with '" + reply_text(r) + "'";
      if (std::strstr(r->str, "cluster support disabled")) {
        error = n->name + " is a Redis server without cluster mode (cluster-enabled no); redis_cluster needs a "
                          "Redis Cluster";
      }
    }
    if (r && r->type == REDIS_REPLY_ARRAY) {
      auto map = std::make_shared<SlotMap>();
      std::size_t covered = 0;
      for (std::size_t i = 0; i < r->elements; ++i) {
        const redisReply* range = r->element[i];
        if (range->type != REDIS_REPLY_ARRAY || range->elements < 3) continue;
        const redisReply* master = range->element[2];
        if (master->type != REDIS_REPLY_ARRAY || master->elements < 2) continue;
        std::string host(master->element[0]->str ? master->element[0]->str : "", master->element[0]->len);
        if (host.empty() || host == "?") host = n->host;  // "this node"
        Node* owner = &node(host, static_cast<int>(master->element[1]->integer));
        const auto first = static_cast<std::size_t>(range->element[0]->integer);
        const auto last = std::min<std::size_t>(static_cast<std::size_t>(range->element[1]->integer), kSlotCount - 1);
        for (std::size_t s = first; s <= last; ++s) map->owner[s] = owner;
        covered += last - first + 1;
      }
      freeReplyObject(r);
      if (covered == 0) {
        failures += (failures.empty() ? "" : "; ") + n->name + ": the cluster has no slots assigned";
        continue;
      }
      {
        std::lock_guard<std::mutex> map_lock(map_mu_);
        map_ = std::move(map);
      }
      counters_.refreshes.fetch_add(1, std::memory_order_relaxed);
      return "";
    }
    if (r) freeReplyObject(r);
    failures += (failures.empty() ? "" : "; ") + error;
  }
  return failures;
}

std::unique_ptr<ClusterClient::Connection> ClusterClient::acquire(Node& n, Clock::time_point deadline,
                                                                  std::string& error) {
  std::unique_lock<std::mutex> lock(n.mu);
  for (;;) {
    if (!n.idle.empty()) {
      auto conn = std::move(n.idle.back());
      n.idle.pop_back();
      return conn;
    }
    if (n.open < options_.connections_per_node) {
      if (Clock::now() < n.down_until) {
        error = n.name + " is unreachable (" + n.last_error + ")";
        return nullptr;
      }
      ++n.open;
      const bool reconnect = n.dropped > 0;
      lock.unlock();
      auto conn = connect(n, deadline, error);
      lock.lock();
      if (!conn) {
        --n.open;
        n.down_until = Clock::now() + kDownBackoff;
        n.last_error = error;
        n.cv.notify_one();
        counters_.node_errors.fetch_add(1, std::memory_order_relaxed);
        return nullptr;
      }
      if (reconnect) counters_.reconnects.fetch_add(1, std::memory_order_relaxed);
      // Non-blocking from here on: exchange() drives the socket with poll().
      const int flags = fcntl(conn->ctx->fd, F_GETFL, 0);
      fcntl(conn->ctx->fd, F_SETFL, flags | O_NONBLOCK);
      conn->ctx->flags &= ~REDIS_BLOCK;
      return conn;
    }
    if (n.cv.wait_until(lock, deadline) == std::cv_status::timeout && n.idle.empty()) {
      error = "no free connection to " + n.name + " within the timeout (num_node_connections = " +
              std::to_string(options_.connections_per_node) + ")";
      counters_.timeouts.fetch_add(1, std::memory_order_relaxed);
      return nullptr;
    }
  }
}

void ClusterClient::release(Node& n, std::unique_ptr<Connection> conn, bool healthy) {
  std::lock_guard<std::mutex> lock(n.mu);
  if (healthy) {
    n.idle.push_back(std::move(conn));
  } else {
    conn.reset();
    --n.open;
    ++n.dropped;
  }
  n.cv.notify_one();
}

// ---- one pipelined round on many nodes --------------------------------------------------------------

struct ClusterClient::Flight {
  Node* node = nullptr;
  std::unique_ptr<Connection> conn;
  std::vector<std::size_t> commands;  // batch indices, in send order
  std::vector<long> expect;           // per reply: batch index, or -1 for the reply to ASKING
  std::size_t next_reply = 0;
  std::vector<std::string> out;  // formatted commands, in pieces (see exchange())
  std::vector<std::size_t> piece_end;  // per piece: expect.size() once it is sent (replies it completes)
  std::size_t out_piece = 0, out_offset = 0;
  std::string failure;  // set when the connection failed; the rest of its replies never come
  bool done() const { return !failure.empty() || next_reply == expect.size(); }
};

void ClusterClient::exchange(std::vector<Flight>& flights, Batch& batch, Clock::time_point deadline) {
  static const char* kAsking = "ASKING";
  static const std::size_t kAskingLen = 6;
  // Commands are packed into pieces of about kPieceBytes, or of about kPieceReplyBytes of expected
  // reply (rows of HMGETs), and a node is sent a piece only while fewer than kPiecesInFlight of its
  // earlier pieces wait for replies. Why: Redis builds the whole reply of every command it has
  // read before writing any of it, so a lookup sent in one go makes each node buffer all its rows
  // (megabytes: fresh pages, page faults, copies from memory that is no longer in cache). Sent
  // this way a node's reply buffer stays under about a piece, and it still always has the next
  // piece to work on while the client reads the last.
  for (Flight& f : flights) {
    std::size_t reply_bytes = 0;
    for (std::size_t index : f.commands) {
      Command& c = batch[index];
      if (f.out.empty() || f.out.back().size() >= kPieceBytes || reply_bytes >= kPieceReplyBytes) {
        if (!f.out.empty()) f.piece_end.push_back(f.expect.size());
        f.out.emplace_back();
        reply_bytes = 0;
      }
      if (c.asking) {
        append_command(f.out.back(), 1, &kAsking, &kAskingLen);
        f.expect.push_back(-1);
      }
      append_command(f.out.back(), c.argv.size(), c.argv.data(), c.argvlen.data());
      f.expect.push_back(static_cast<long>(index));
      reply_bytes += expected_reply_bytes(c);
    }
    if (!f.out.empty()) f.piece_end.push_back(f.expect.size());
  }
  // Whether flight f may send (more of) its next piece: the replies of the piece kPiecesInFlight
  // before it have all arrived.
  auto may_send = [](const Flight& f) {
    return f.out_piece < f.out.size() &&
           (f.out_piece < kPiecesInFlight || f.next_reply >= f.piece_end[f.out_piece - kPiecesInFlight]);
  };
  auto fail = [&](Flight& f, std::string why) {
    f.failure = std::move(why);
    counters_.node_errors.fetch_add(1, std::memory_order_relaxed);
  };
  std::vector<pollfd> fds;
  std::vector<Flight*> polled;
  for (;;) {
    fds.clear();
    polled.clear();
    for (Flight& f : flights) {
      if (f.done()) continue;
      const bool writing = may_send(f);
      fds.push_back(pollfd{f.conn->ctx->fd, static_cast<short>(POLLIN | (writing ? POLLOUT : 0)), 0});
      polled.push_back(&f);
    }
    if (fds.empty()) break;
    const auto left = remaining(deadline);
    if (left.count() <= 0) {
      for (Flight* f : polled) {
        f->failure = "timed out after " + std::to_string(options_.timeout.count()) + " ms waiting for " + f->node->name;
        counters_.timeouts.fetch_add(1, std::memory_order_relaxed);
        std::lock_guard<std::mutex> node_lock(f->node->mu);
        f->node->slow_until = Clock::now() + kSlowNodeLast;
      }
      break;
    }
    const int ready = poll(fds.data(), fds.size(), static_cast<int>(std::min<long long>(left.count(), 1000)) + 1);
    if (ready < 0 && errno != EINTR) {
      for (Flight* f : polled) fail(*f, std::string("poll failed: ") + std::strerror(errno));
      break;
    }
    for (std::size_t i = 0; i < fds.size(); ++i) {
      Flight& f = *polled[i];
      const short ev = fds[i].revents;
      if (ev & POLLOUT) {
        while (may_send(f)) {
          const std::string& piece = f.out[f.out_piece];
          const std::size_t len = piece.size();
          // send(MSG_NOSIGNAL): a node that died must fail this flight, not raise SIGPIPE in the process.
          const ssize_t w = ::send(f.conn->ctx->fd, piece.data() + f.out_offset, len - f.out_offset, MSG_NOSIGNAL);
          if (w < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
              fail(f, f.node->name + ": write failed: " + std::strerror(errno));
            }
            break;
          }
          f.out_offset += static_cast<std::size_t>(w);
          if (f.out_offset == len) {
            ++f.out_piece;
            f.out_offset = 0;
          }
        }
      }
      if (!f.failure.empty()) continue;
      if (ev & (POLLIN | POLLHUP | POLLERR)) {
        ReplyReader& reader = f.conn->reader;
        for (;;) {
          const auto [room, size] = reader.space();
          const ssize_t r = ::read(f.conn->ctx->fd, room, size);
          if (r == 0) {
            fail(f, f.node->name + " closed the connection");
            break;
          }
          if (r < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
              fail(f, f.node->name + ": read failed: " + std::strerror(errno));
            }
            break;
          }
          reader.commit(static_cast<std::size_t>(r));
          while (!f.done()) {
            const long index = f.expect[f.next_reply];
            RowSink* sink = index < 0 ? nullptr : batch[static_cast<std::size_t>(index)].sink;
            redisReply* reply = nullptr;
            const int status = reader.next(sink, &reply);
            if (status < 0) {
              fail(f, f.node->name + ": " + reader.error());
              break;
            }
            if (status == 0) break;
            ++f.next_reply;
            if (index < 0) {
              freeReplyObject(reply);  // ASKING's +OK
            } else {
              batch[static_cast<std::size_t>(index)].reply = reply;
            }
          }
          if (f.failure.empty() && f.done() && reader.pending() > 0) {
            fail(f, f.node->name + ": more replies than commands");
          }
          if (!f.failure.empty() || f.done()) break;
          if (static_cast<std::size_t>(r) < size) break;  // drained for now
        }
      }
    }
  }
  for (Flight& f : flights) {
    f.out.clear();
    f.piece_end.clear();
  }
}

// ---- run: route, exchange, follow redirects, retry -------------------------------------------------

void ClusterClient::run(Batch& batch, RetryPolicy policy) {
  if (batch.size() == 0) return;
  const Clock::time_point deadline = Clock::now() + options_.timeout;
  std::vector<std::size_t> pending(batch.size());
  for (std::size_t i = 0; i < pending.size(); ++i) pending[i] = i;
  std::string last_failure;
  for (int round = 0; !pending.empty(); ++round) {
    auto map = slot_map();
    // Route: a redirect names the node for this round; the slot map otherwise.
    std::vector<Flight> flights;
    std::unordered_map<Node*, std::size_t> flight_of;
    std::vector<std::size_t> retry;
    bool need_refresh = false;
    for (std::size_t index : pending) {
      Command& c = batch[index];
      if (c.reply) {
        freeReplyObject(c.reply);
        c.reply = nullptr;
      }
      c.failure.clear();
      Node* target = c.redirect ? static_cast<Node*>(c.redirect) : map->owner[c.slot];
      if (!target) {
        c.failure = "slot " + std::to_string(c.slot) + " has no master in the cluster's slot map";
        c.node = "?";
        need_refresh = true;
        retry.push_back(index);
        continue;
      }
      auto [it, added] = flight_of.emplace(target, flights.size());
      if (added) {
        flights.emplace_back();
        flights.back().node = target;
      }
      flights[it->second].commands.push_back(index);
      c.node = target->name;
    }
    // A connection per node, taken in one global order (by address) so that calls waiting for
    // connections can never wait on each other in a cycle; a node that cannot be reached fails
    // its commands.
    std::sort(flights.begin(), flights.end(), [](const Flight& a, const Flight& b) { return a.node->name < b.node->name; });
    for (Flight& f : flights) {
      std::string error;
      f.conn = acquire(*f.node, deadline, error);
      if (!f.conn) f.failure = error;
    }
    std::vector<Flight> live;
    for (Flight& f : flights) {
      if (f.conn) {
        live.push_back(std::move(f));
      } else {
        for (std::size_t index : f.commands) {
          batch[index].failure = f.failure;
          retry.push_back(index);
        }
        need_refresh = true;
      }
    }
    exchange(live, batch, deadline);
    for (Flight& f : live) {
      release(*f.node, std::move(f.conn), f.failure.empty());
      if (!f.failure.empty()) need_refresh = true;
      for (std::size_t index : f.commands) {
        Command& c = batch[index];
        c.redirect = nullptr;
        c.asking = false;
        if (!c.reply) {
          c.failure = f.failure.empty() ? "no reply from " + f.node->name : f.failure;
          retry.push_back(index);
          continue;
        }
        std::string host;
        int port = 0;
        if (starts_with(c.reply, "MOVED ") && parse_redirect(c.reply, host, port)) {
          counters_.moved.fetch_add(1, std::memory_order_relaxed);
          c.redirect = &node(host, port);
          need_refresh = true;
          retry.push_back(index);
        } else if (starts_with(c.reply, "ASK ") && parse_redirect(c.reply, host, port)) {
          counters_.ask.fetch_add(1, std::memory_order_relaxed);
          c.redirect = &node(host, port);
          c.asking = true;
          retry.push_back(index);
        } else if (starts_with(c.reply, "TRYAGAIN") || starts_with(c.reply, "CLUSTERDOWN") ||
                   starts_with(c.reply, "LOADING") || starts_with(c.reply, "READONLY") ||
                   starts_with(c.reply, "MASTERDOWN")) {
          counters_.node_errors.fetch_add(1, std::memory_order_relaxed);
          need_refresh = true;
          retry.push_back(index);
        }
      }
    }
    if (retry.empty()) return;
    std::sort(retry.begin(), retry.end());  // keep the caller's order (later writes win)
    if (need_refresh) refresh(false);
    // Decide which commands get another round.
    std::vector<std::size_t> next;
    const bool time_left = Clock::now() < deadline;
    for (std::size_t index : retry) {
      Command& c = batch[index];
      const bool redirected = c.redirect != nullptr;
      bool again = false;
      if (time_left) {
        if (policy == RetryPolicy::kWrite) {
          again = true;
        } else if (round + 1 < kLookupRounds) {
          // A lookup follows redirects, and retries a failed node only when the new map sends the
          // slot elsewhere (a failover already happened); it never waits for one.
          auto fresh = slot_map();
          again = redirected || (fresh && fresh->owner[c.slot] && fresh->owner[c.slot]->name != c.node);
        }
      }
      if (again) {
        next.push_back(index);
      } else {
        if (c.reply && c.failure.empty()) c.failure = reply_text(c.reply);
        if (c.failure.empty()) c.failure = "gave up after " + std::to_string(round + 1) + " rounds";
        if (c.reply) {
          freeReplyObject(c.reply);
          c.reply = nullptr;
        }
      }
    }
    if (next.empty()) return;
    // Writes wait a little before retrying a node that failed (a failover takes seconds).
    if (policy == RetryPolicy::kWrite) {
      bool any_plain_retry = false;
      for (std::size_t index : next) any_plain_retry |= batch[index].redirect == nullptr;
      if (any_plain_retry) {
        const auto pause = std::min<std::chrono::milliseconds>(std::chrono::milliseconds(10 << std::min(round, 4)),
                                                               std::max(remaining(deadline), std::chrono::milliseconds(0)));
        std::this_thread::sleep_for(pause);
      }
    }
    pending = std::move(next);
  }
}

}  // namespace hps::redis
