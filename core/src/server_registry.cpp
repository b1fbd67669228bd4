// The process-wide server registry (see hps/server_registry.hpp).
//
// An entry is created when a build starts (state kBuilding), so concurrent acquires of the same id
// wait for that build instead of starting their own. The shared_ptr handed out has a deleter that
// marks the entry kDying, frees the server outside the lock and only then erases the entry: an
// acquire that arrives meanwhile waits, and so never opens a RocksDB the old server still holds.
#include "hps/server_registry.hpp"

#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <unordered_map>

#include "hps/error.hpp"

namespace hps {
namespace {

struct Entry {
  enum class State { kBuilding, kLive, kDying };
  std::string id;
  std::string key_text;  // the normalized JSON a digest id stands for ("" for files); catches collisions
  ServerOptions options;  // as asked for by the build
  State state = State::kBuilding;
  std::weak_ptr<ParameterServer> server;
};

std::string describe_threads(std::size_t v) {
  return v == 0 ? std::string("0 (the default)") : std::to_string(v);
}
std::string describe_spin(long v) {
  return v < 0 ? std::to_string(v) + " (the default)" : std::to_string(v);
}

/// Throws InvalidArgument when `asked` sets an option explicitly to something the live server
/// was not built with.
void check_options(const Entry& e, const ServerOptions& asked) {
  if (asked.lookup_threads != 0 && asked.lookup_threads != e.options.lookup_threads) {
    HPS_FAIL(InvalidArgument, "server '", e.id, "' is already running with lookup_threads ",
             describe_threads(e.options.lookup_threads), "; this acquire asks for lookup_threads ",
             asked.lookup_threads, " (one server per config per process: ask for the same, or leave it at 0)");
  }
  if (asked.lookup_spin_us >= 0 && asked.lookup_spin_us != e.options.lookup_spin_us) {
    HPS_FAIL(InvalidArgument, "server '", e.id, "' is already running with lookup_spin_us ",
             describe_spin(e.options.lookup_spin_us), "; this acquire asks for lookup_spin_us ", asked.lookup_spin_us,
             " (one server per config per process: ask for the same, or leave it negative)");
  }
}

/// 128 bits of two independent FNV-1a-style passes, finalised with a splitmix64 step each. Not
/// cryptographic; a collision would be detected (key_text) and reported, never served silently.
std::string digest_hex(const std::string& text) {
  std::uint64_t a = 0xcbf29ce484222325ULL, b = 0x84222325cbf29ce4ULL;
  for (unsigned char c : text) {
    a = (a ^ c) * 0x100000001b3ULL;
    b = (b ^ c) * 0x00000100000001b3ULL ^ (b >> 29);
  }
  auto mix = [](std::uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
  };
  a = mix(a ^ text.size());
  b = mix(b + 0x9e3779b97f4a7c15ULL);
  static const char* hex = "0123456789abcdef";
  std::string out(32, '0');
  for (int i = 0; i < 16; ++i) {
    out[15 - i] = hex[(a >> (4 * i)) & 0xF];
    out[31 - i] = hex[(b >> (4 * i)) & 0xF];
  }
  return out;
}

class Registry {
 public:
  template <typename MakeConfig>
  std::shared_ptr<ParameterServer> acquire(const std::string& id, const std::string& key_text,
                                           MakeConfig&& make_config, const ServerOptions& options,
                                           LoadObserver* observer) {
    std::unique_lock lock(mutex_);
    for (;;) {
      auto it = by_id_.find(id);
      if (it == by_id_.end()) break;
      const std::shared_ptr<Entry> entry = it->second;
      if (entry->key_text != key_text) {
        lock.unlock();
        HPS_FAIL(Error, "server id '", id, "' names two different configurations (digest collision)");
      }
      if (entry->state == Entry::State::kLive) {
        std::shared_ptr<ParameterServer> live = entry->server.lock();
        if (live) {
          // Unlock before `live` can go out of scope: dropping what may be the last reference runs
          // the deleter, which takes the lock.
          lock.unlock();
          check_options(*entry, options);
          return live;
        }
      }
      // Being built, or its last reference is being dropped: wait for the outcome.
      changed_.wait(lock);
    }

    auto entry = std::make_shared<Entry>();
    entry->id = id;
    entry->key_text = key_text;
    entry->options = options;
    by_id_.emplace(id, entry);
    lock.unlock();

    std::unique_ptr<ParameterServer> built;
    try {
      built = std::make_unique<ParameterServer>(make_config(), observer, options);
    } catch (...) {
      forget(entry);
      throw;
    }
    ParameterServer* raw = built.release();
    // If this throws (no memory for the control block), the constructor calls the deleter, which
    // frees the server and forgets the entry.
    std::shared_ptr<ParameterServer> server(raw, [entry](ParameterServer* p) { instance().retire(entry, p); });
    lock.lock();
    entry->server = server;
    entry->state = Entry::State::kLive;
    by_server_[raw] = entry;
    lock.unlock();
    changed_.notify_all();
    return server;
  }

  /// The live server named `id` or nullptr; with `asked`, also checks the options as acquire does.
  std::shared_ptr<ParameterServer> find(const std::string& id, const ServerOptions* asked = nullptr) {
    std::shared_ptr<ParameterServer> live;  // declared before the lock: released after it
    std::shared_ptr<Entry> entry;
    {
      std::lock_guard lock(mutex_);
      auto it = by_id_.find(id);
      if (it == by_id_.end() || it->second->state != Entry::State::kLive) return nullptr;
      entry = it->second;
      live = entry->server.lock();
    }
    if (live && asked) check_options(*entry, *asked);
    return live;
  }

  const std::string& id_of(const ParameterServer& server) {
    std::lock_guard lock(mutex_);
    auto it = by_server_.find(&server);
    HPS_EXPECTS(it != by_server_.end(), NotFound, "this parameter server was not built by the server registry");
    return it->second->id;  // the entry lives as long as the server (its deleter holds it)
  }

  std::size_t live_count() {
    std::lock_guard lock(mutex_);
    return by_server_.size();
  }

  static Registry& instance() {
    // Never destroyed: servers still referenced at exit may be freed after static destructors ran.
    static Registry* registry = new Registry;
    return *registry;
  }

 private:
  void retire(const std::shared_ptr<Entry>& entry, ParameterServer* server) {
    {
      std::lock_guard lock(mutex_);
      entry->state = Entry::State::kDying;
      // The control block's deleter holds `entry` and entry->server holds the control block (weakly):
      // without this reset neither is ever freed (LeakSanitizer, one Entry per server).
      entry->server.reset();
      by_server_.erase(server);
    }
    delete server;  // outside the lock: closing tiers may take long
    forget(entry);
  }

  void forget(const std::shared_ptr<Entry>& entry) {
    {
      std::lock_guard lock(mutex_);
      auto it = by_id_.find(entry->id);
      if (it != by_id_.end() && it->second == entry) by_id_.erase(it);
    }
    changed_.notify_all();
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  std::unordered_map<std::string, std::shared_ptr<Entry>> by_id_;
  std::unordered_map<const ParameterServer*, std::shared_ptr<Entry>> by_server_;
};

}  // namespace

std::string server_id_for_file(const std::string& path) {
  HPS_EXPECTS(!path.empty(), InvalidArgument, "config file path is empty");
  std::error_code ec;
  std::filesystem::path abs = std::filesystem::absolute(path, ec);
  HPS_EXPECTS(!ec, IOError, "cannot make config path '", path, "' absolute: ", ec.message());
  return abs.lexically_normal().string();
}

std::string server_id_for_config(const Config& config) {
  return std::string(kJsonServerIdPrefix) + digest_hex(config_to_json(config));
}

std::shared_ptr<ParameterServer> acquire_server_file(const std::string& path, const ServerOptions& options,
                                                     LoadObserver* observer) {
  const std::string id = server_id_for_file(path);
  return Registry::instance().acquire(id, "", [&] { return load_config_file(id); }, options, observer);
}

std::shared_ptr<ParameterServer> acquire_server_config(const Config& config, const ServerOptions& options,
                                                       LoadObserver* observer) {
  std::string text = config_to_json(config);
  const std::string id = std::string(kJsonServerIdPrefix) + digest_hex(text);
  return Registry::instance().acquire(id, text, [&] { return config; }, options, observer);
}

std::shared_ptr<ParameterServer> acquire_server_json(const std::string& json_text, const std::string& base_dir,
                                                     const ServerOptions& options, LoadObserver* observer) {
  Config config = parse_config(json_text, "<json>", base_dir);
  return acquire_server_config(config, options, observer);
}

std::shared_ptr<ParameterServer> acquire_server_id(const std::string& id, const ServerOptions& options,
                                                   LoadObserver* observer) {
  if (auto live = Registry::instance().find(id, &options)) return live;
  HPS_EXPECTS(id.rfind(kJsonServerIdPrefix, 0) != 0 && std::filesystem::path(id).is_absolute(), NotFound,
              "no parameter server '", id, "' in this process (servers built from JSON text are known only to the "
              "process that built them; an absolute config file path builds its server)");
  return acquire_server_file(id, options, observer);
}

std::shared_ptr<ParameterServer> find_server(const std::string& id) { return Registry::instance().find(id); }

const std::string& server_id(const ParameterServer& server) { return Registry::instance().id_of(server); }

std::size_t live_server_count() { return Registry::instance().live_count(); }

}  // namespace hps
