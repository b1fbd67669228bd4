// How ClusterClient paces a node: a lookup's HMGETs are sent a few pieces at a time, not all at
// once (Redis would buffer every reply of what it has read). Checked against a fake cluster node
// written here (one master owning every slot, on 127.0.0.1, an ephemeral port), which answers only
// when the client has stopped sending and records how many commands were waiting then.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tiers/redis/cluster_client.hpp"
#include "tiers/redis/slot.hpp"

namespace {

using hps::redis::Batch;
using hps::redis::ClientOptions;
using hps::redis::ClusterClient;
using hps::redis::Command;
using hps::redis::RetryPolicy;
using hps::redis::RowSink;

constexpr std::size_t kRowBytes = 512;

// The row the fake node stores for a field: its 8 bytes, repeated.
std::string row_of(const std::string& field) {
  std::string row;
  while (row.size() < kRowBytes) row += field;
  row.resize(kRowBytes);
  return row;
}

// A fake cluster node: CLUSTER SLOTS (all slots to itself) and HMGET (every field present). It
// answers the commands it has read once no byte has come for 50 ms, so `most_waiting` is the most
// commands a client sent ahead of their replies.
class FakeNode {
 public:
  FakeNode() {
    listener_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(listener_, 16) != 0) {
      throw std::runtime_error("fake node: cannot listen on 127.0.0.1");
    }
    socklen_t len = sizeof addr;
    getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeNode() {
    stop_ = true;
    thread_.join();
    for (int fd : clients_) close(fd);
    close(listener_);
  }
  int port() const { return port_; }
  std::size_t most_waiting() const { return most_waiting_; }
  std::size_t hmgets() const { return hmgets_; }

 private:
  struct Client {
    int fd;
    std::string in;
    std::vector<std::vector<std::string>> waiting;  // parsed commands not yet answered
  };

  // Parses one "*N $len arg ..." command off the front of `in`; false when it is not complete.
  static bool parse(std::string& in, std::vector<std::string>& argv) {
    std::size_t at = 0;
    auto line = [&](std::size_t& value) {
      const std::size_t end = in.find("\r\n", at);
      if (end == std::string::npos) return false;
      value = std::stoul(in.substr(at + 1, end - at - 1));
      at = end + 2;
      return true;
    };
    std::size_t argc = 0;
    if (!line(argc)) return false;
    argv.clear();
    for (std::size_t i = 0; i < argc; ++i) {
      std::size_t n = 0;
      if (!line(n) || in.size() < at + n + 2) return false;
      argv.push_back(in.substr(at, n));
      at += n + 2;
    }
    in.erase(0, at);
    return true;
  }

  void reply(Client& c, const std::vector<std::string>& argv) {
    std::string out;
    if (argv.size() >= 2 && argv[0] == "CLUSTER" && argv[1] == "SLOTS") {
      out = "*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n:" + std::to_string(port_) + "\r\n";
    } else if (!argv.empty() && argv[0] == "HMGET") {
      ++hmgets_;
      out = "*" + std::to_string(argv.size() - 2) + "\r\n";
      for (std::size_t i = 2; i < argv.size(); ++i) out += "$" + std::to_string(kRowBytes) + "\r\n" + row_of(argv[i]) + "\r\n";
    } else {
      out = "-ERR the fake node knows only CLUSTER SLOTS and HMGET\r\n";
    }
    for (std::size_t sent = 0; sent < out.size();) {
      const ssize_t w = send(c.fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
      if (w <= 0) return;
      sent += static_cast<std::size_t>(w);
    }
  }

  void serve() {
    std::vector<Client> clients;
    while (!stop_) {
      std::vector<pollfd> fds{{listener_, POLLIN, 0}};
      for (const Client& c : clients) fds.push_back({c.fd, POLLIN, 0});
      if (poll(fds.data(), fds.size(), 50) == 0) {
        // Quiet for 50 ms: whatever a client sent so far is all it sends before reading replies.
        for (Client& c : clients) {
          most_waiting_ = std::max(most_waiting_.load(), c.waiting.size());
          for (const auto& argv : c.waiting) reply(c, argv);
          c.waiting.clear();
        }
        continue;
      }
      std::vector<Client> open;
      for (std::size_t i = 1; i < fds.size(); ++i) {
        Client& c = clients[i - 1];
        if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) {
          char buf[65536];
          const ssize_t r = recv(c.fd, buf, sizeof buf, 0);
          if (r <= 0) continue;  // closed by the client: dropped (its fd is closed at the end)
          c.in.append(buf, static_cast<std::size_t>(r));
          std::vector<std::string> argv;
          while (parse(c.in, argv)) c.waiting.push_back(argv);
        }
        open.push_back(std::move(c));
      }
      if (fds[0].revents & POLLIN) {
        const int fd = accept(listener_, nullptr, nullptr);
        if (fd >= 0) {
          open.push_back(Client{fd, {}, {}});
          clients_.push_back(fd);
        }
      }
      clients = std::move(open);
    }
  }

  int listener_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<std::size_t> most_waiting_{0};
  std::atomic<std::size_t> hmgets_{0};
  std::vector<int> clients_;  // every accepted fd, closed at the end
};

TEST(RedisPacing, ALookupSendsANodeAFewPiecesAtATime) {
  FakeNode node;
  ClientOptions options;
  options.seeds = {{"127.0.0.1", node.port()}};
  options.connections_per_node = 1;
  options.timeout = std::chrono::milliseconds(30000);
  ClusterClient client(options);

  // 12 HMGETs of 600 rows of 512 bytes: each reply (about 300 KiB) is a piece of its own, so a
  // client that paced nothing would have all 12 waiting at the node at once.
  constexpr std::size_t kCommands = 12, kKeys = 600;
  static_assert(kKeys * kRowBytes >= hps::redis::kPieceReplyBytes && hps::redis::kPiecesInFlight < kCommands);
  const std::string key = "hps{t/p0}v";
  std::vector<std::uint64_t> fields(kCommands * kKeys);
  for (std::size_t i = 0; i < fields.size(); ++i) fields[i] = 0x1000 + i * 7919;
  std::vector<char> rows(fields.size() * kRowBytes, 0);
  std::vector<std::uint8_t> found(fields.size(), 0);
  std::vector<std::size_t> index(fields.size());
  for (std::size_t i = 0; i < index.size(); ++i) index[i] = i;
  std::vector<RowSink> sinks(kCommands);
  Batch batch;
  for (std::size_t c = 0; c < kCommands; ++c) {
    Command& cmd = batch.add(hps::redis::key_slot(key));
    cmd.arg("HMGET", 5);
    cmd.arg(key);
    for (std::size_t j = 0; j < kKeys; ++j) cmd.arg(&fields[c * kKeys + j], 8);
    sinks[c] = RowSink{rows.data(), index.data() + c * kKeys, kKeys, kRowBytes, found.data()};
    cmd.sink = &sinks[c];
  }
  client.run(batch, RetryPolicy::kLookup);

  for (std::size_t c = 0; c < kCommands; ++c) ASSERT_TRUE(batch[c].ok()) << batch[c].what();
  EXPECT_EQ(node.hmgets(), kCommands);
  for (std::size_t i = 0; i < fields.size(); ++i) {
    ASSERT_EQ(found[i], 1) << "row " << i;
    const std::string field(reinterpret_cast<const char*>(&fields[i]), 8);
    ASSERT_EQ(std::string(rows.data() + i * kRowBytes, kRowBytes), row_of(field)) << "row " << i;
  }
  // The client never had more than kPiecesInFlight pieces (here: commands) unanswered at the node.
  EXPECT_GE(node.most_waiting(), 1u);
  EXPECT_LE(node.most_waiting(), hps::redis::kPiecesInFlight);
}

}  // namespace
