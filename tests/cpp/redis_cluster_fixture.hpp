// Test helper: a real Redis Cluster (or a single plain server) of Debian's redis-server, started on
// 127.0.0.1 on free ports above 30000, each node in its own temporary folder, no persistence, and
// stopped by process id (SIGKILL, then waitpid) when the object goes away. It never touches a
// server it did not start.
//
// Ownership: the object owns its processes and folders. Threads: use from one thread.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace hps_test {

inline bool redis_server_installed() {
  return std::system("command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1") == 0;
}

inline bool port_free(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

/// `count` consecutive free ports above 30000 whose cluster bus ports (+10000) are free too.
inline std::vector<int> free_ports(int count) {
  std::mt19937 rng(static_cast<unsigned>(::getpid()) ^ static_cast<unsigned>(std::random_device{}()));
  for (int attempt = 0; attempt < 200; ++attempt) {
    const int base = 30000 + static_cast<int>(rng() % 20000);
    std::vector<int> ports;
    for (int p = base; p < base + count && port_free(p) && port_free(p + 10000); ++p) ports.push_back(p);
    if (static_cast<int>(ports.size()) == count) return ports;
  }
  throw std::runtime_error("no free ports above 30000");
}

inline std::string capture(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return out;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  ::pclose(pipe);
  return out;
}

class LocalRedis {
 public:
  /// masters > 0: a cluster of `masters` masters with `replicas` replicas each.
  /// masters == 0: one plain (non-cluster) server, with `password` if given.
  LocalRedis(int masters, int replicas, int node_timeout_ms = 1000, const std::string& password = "") {
    const int nodes = masters > 0 ? masters * (1 + replicas) : 1;
    dir_ = std::filesystem::temp_directory_path() /
           ("hps_redis_" + std::to_string(::getpid()) + "_" + std::to_string(std::random_device{}()));
    std::filesystem::create_directories(dir_);
    ports_ = free_ports(nodes);
    for (int port : ports_) {
      const auto node_dir = dir_ / std::to_string(port);
      std::filesystem::create_directories(node_dir);
      std::vector<std::string> args = {"redis-server", "--port", std::to_string(port), "--bind", "127.0.0.1",
                                       "--dir", node_dir.string(), "--save", "", "--appendonly", "no",
                                       "--logfile", (node_dir / "log").string(), "--daemonize", "no"};
      if (masters > 0) {
        for (std::string a : {"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                              "--cluster-node-timeout"}) {
          args.push_back(a);
        }
        args.push_back(std::to_string(node_timeout_ms));
        // Replicas sync at once (the default waits 5 s for more replicas) and may always take over:
        // a test kills a master seconds after the cluster was created.
        for (std::string a : {"--repl-diskless-sync-delay", "0", "--cluster-replica-validity-factor", "0"}) {
          args.push_back(a);
        }
      }
      if (!password.empty()) {
        args.push_back("--requirepass");
        args.push_back(password);
      }
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      // The server gets /dev/null for its standard streams: it must not hold the test's pipes open.
      posix_spawn_file_actions_t files;
      posix_spawn_file_actions_init(&files);
      posix_spawn_file_actions_addopen(&files, 0, "/dev/null", O_RDONLY, 0);
      posix_spawn_file_actions_addopen(&files, 1, "/dev/null", O_WRONLY, 0);
      posix_spawn_file_actions_addopen(&files, 2, "/dev/null", O_WRONLY, 0);
      pid_t pid = 0;
      const int rc = ::posix_spawnp(&pid, "redis-server", &files, nullptr, argv.data(), environ);
      posix_spawn_file_actions_destroy(&files);
      if (rc != 0) throw std::runtime_error("cannot start redis-server");
      pids_.push_back(pid);
    }
    for (int port : ports_) wait_for(port, "PING", "PONG", password);
    if (masters > 0) {
      std::string create = "redis-cli --cluster create";
      for (int port : ports_) create += " 127.0.0.1:" + std::to_string(port);
      create += " --cluster-replicas " + std::to_string(replicas) + " --cluster-yes >" + (dir_ / "create.log").string() +
                " 2>&1";
      if (std::system(create.c_str()) != 0) throw std::runtime_error("redis-cli --cluster create failed");
      for (int port : ports_) wait_for(port, "CLUSTER INFO", "cluster_state:ok", "");
      // Every node knows its role once the replicas' links are up (or it is a master).
      for (int port : ports_) wait_for(port, "INFO replication", replicas > 0 ? "_link_status:up" : "role:", "", true);
    }
  }

  ~LocalRedis() {
    for (pid_t pid : pids_) {
      if (pid > 0) ::kill(pid, SIGKILL);
    }
    for (pid_t pid : pids_) {
      if (pid > 0) ::waitpid(pid, nullptr, 0);
    }
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  LocalRedis(const LocalRedis&) = delete;
  LocalRedis& operator=(const LocalRedis&) = delete;

  std::string address() const {
    std::string a;
    for (int port : ports_) a += (a.empty() ? "" : ",") + std::string("127.0.0.1:") + std::to_string(port);
    return a;
  }
  const std::vector<int>& ports() const { return ports_; }

  std::string cli(int port, const std::string& command) const {
    return capture("redis-cli -p " + std::to_string(port) + " " + command + " 2>&1");
  }

  /// Ports of the current masters that serve slots, as a live node sees them (a node just started
  /// as a replica is listed as a master without slots until its link to its master is up).
  std::vector<int> master_ports() const {
    std::vector<int> out;
    for (std::size_t i = 0; i < ports_.size(); ++i) {
      if (pids_[i] <= 0) continue;
      const std::string nodes = cli(ports_[i], "CLUSTER NODES");
      std::size_t pos = 0;
      while ((pos = nodes.find("127.0.0.1:", pos)) != std::string::npos) {
        const int port = std::atoi(nodes.c_str() + pos + 10);
        const std::size_t eol = nodes.find('\n', pos);
        const std::string line = nodes.substr(pos, eol - pos);
        const bool has_slots = line.find_last_of("0123456789") > line.find(" connected");  // "... connected 0-5460"
        if (line.find("master") != std::string::npos && line.find("fail") == std::string::npos && has_slots) {
          out.push_back(port);
        }
        pos = eol;
      }
      break;
    }
    return out;
  }

  /// The port of the master serving `slot` (0 when none does), as a live node sees it.
  int master_of_slot(int slot) const {
    for (std::size_t i = 0; i < ports_.size(); ++i) {
      if (pids_[i] <= 0) continue;
      std::istringstream nodes(cli(ports_[i], "CLUSTER NODES"));
      for (std::string line; std::getline(nodes, line);) {
        const std::size_t address = line.find("127.0.0.1:"), connected = line.find(" connected");
        if (address == std::string::npos || connected == std::string::npos) continue;
        std::istringstream ranges(line.substr(connected + 10));  // "0-5460 10923-16383", or none
        for (std::string range; ranges >> range;) {
          const int first = std::atoi(range.c_str());
          const std::size_t dash = range.find('-');
          const int last = dash == std::string::npos ? first : std::atoi(range.c_str() + dash + 1);
          if (range[0] != '[' && first <= slot && slot <= last) return std::atoi(line.c_str() + address + 10);
        }
      }
      break;
    }
    return 0;
  }

  /// Kills the node on `port` by its process id (SIGKILL: no goodbye to the cluster).
  void kill_port(int port) {
    for (std::size_t i = 0; i < ports_.size(); ++i) {
      if (ports_[i] == port && pids_[i] > 0) {
        ::kill(pids_[i], SIGKILL);
        ::waitpid(pids_[i], nullptr, 0);
        pids_[i] = -1;
      }
    }
  }

  /// Stops (SIGSTOP) or resumes (SIGCONT) the node on `port` by its process id: a node that is up
  /// but answers nothing, for as long as it stays stopped.
  void pause_port(int port, bool paused) {
    for (std::size_t i = 0; i < ports_.size(); ++i) {
      if (ports_[i] == port && pids_[i] > 0) ::kill(pids_[i], paused ? SIGSTOP : SIGCONT);
    }
  }

  /// Waits until the cluster no longer routes any slot to `port` (a replica took over), as every
  /// live node sees it, and every live node reports cluster_state:ok; false after `seconds`.
  bool wait_failover(int port, double seconds) const {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    const std::string dead = "\n" + std::to_string(port) + "\n";  // ports > 30000 never look like slots
    while (std::chrono::steady_clock::now() < deadline) {
      bool moved = true;
      for (std::size_t i = 0; i < ports_.size() && moved; ++i) {
        if (pids_[i] > 0) moved = ("\n" + cli(ports_[i], "CLUSTER SLOTS")).find(dead) == std::string::npos;
      }
      if (moved) return wait_cluster_ok(std::chrono::duration<double>(deadline - std::chrono::steady_clock::now()).count());
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  /// Waits until every live node reports cluster_state:ok; false after `seconds`.
  bool wait_cluster_ok(double seconds) const {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < deadline) {
      bool ok = true;
      for (std::size_t i = 0; i < ports_.size() && ok; ++i) {
        if (pids_[i] > 0) ok = cli(ports_[i], "CLUSTER INFO").find("cluster_state:ok") != std::string::npos;
      }
      if (ok) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

 private:
  // Polls until the reply holds `expect` (or, with masters_pass, the node is a master).
  void wait_for(int port, const std::string& command, const std::string& expect, const std::string& password,
                bool masters_pass = false) const {
    const std::string auth = password.empty() ? "" : " --no-auth-warning -a " + password;
    // Up to about 30 s: on a loaded 2-core machine a server's start has taken over 10 s.
    for (int i = 0; i < 600; ++i) {
      const std::string reply = capture("redis-cli -p " + std::to_string(port) + auth + " " + command + " 2>&1");
      if (reply.find(expect) != std::string::npos) return;
      if (masters_pass && reply.find("role:master") != std::string::npos &&
          reply.find("connected_slaves:0") == std::string::npos) {
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    throw std::runtime_error("redis on port " + std::to_string(port) + " did not answer " + command + " with " + expect);
  }

  std::filesystem::path dir_;
  std::vector<int> ports_;
  std::vector<pid_t> pids_;
};

/// Keeps the node on `port` stopped (pause_port) for this object's lifetime, so a test that fails
/// half-way still resumes it (the suites share one cluster); resume() ends it early.
class PausedNode {
 public:
  PausedNode(LocalRedis& cluster, int port) : cluster_(cluster), port_(port) { cluster_.pause_port(port_, true); }
  ~PausedNode() { resume(); }
  PausedNode(const PausedNode&) = delete;
  PausedNode& operator=(const PausedNode&) = delete;
  void resume() { cluster_.pause_port(port_, false); }

 private:
  LocalRedis& cluster_;
  int port_;
};

}  // namespace hps_test
