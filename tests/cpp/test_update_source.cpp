// Update sources: a queue-fed test source feeds the server's update path; its messages reach
// lookups, drain() waits for them, bad messages are counted (never thrown at the source), and the
// server stops the source in its destructor before the tiers go away.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <mutex>
#include <random>
#include <thread>

#include "hps/error.hpp"
#include "hps/model_io.hpp"
#include "hps/parameter_server.hpp"
#include "hps/update_source.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
using hps::KeyDtype;

using hps_test::TempDir;

namespace {

struct Message {
  std::string model, table;
  std::vector<std::int64_t> keys;
  std::vector<float> rows;  // empty: erase
};

// What the test can still see after the server destroyed the source.
struct Probe {
  std::atomic<bool> started{false};
  std::atomic<bool> stopped{false};
  std::atomic<bool> destroyed{false};
  std::atomic<bool> called_after_stop{false};
};

// Applies queued messages on a thread of its own, one at a time.
class QueueSource final : public hps::UpdateSource {
 public:
  explicit QueueSource(std::shared_ptr<Probe> probe) : probe_(std::move(probe)) {}
  ~QueueSource() override {
    stop();
    probe_->destroyed = true;
  }

  std::string name() const override { return "queue"; }
  void start(hps::UpdateSink& sink) override {
    sink_ = &sink;
    probe_->started = true;
    thread_ = std::thread([this] { run(); });
  }
  void stop() override {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
    probe_->stopped = true;
  }
  void drain() override {
    std::unique_lock lock(mutex_);
    idle_.wait(lock, [this] { return queue_.empty() && !busy_; });
  }

  void push(Message message) {
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(std::move(message));
    }
    wake_.notify_all();
  }

 private:
  void run() {
    std::unique_lock lock(mutex_);
    for (;;) {
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      Message m = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
      lock.unlock();
      if (probe_->stopped) probe_->called_after_stop = true;
      sink_->received();
      if (m.rows.empty()) {
        sink_->erase(m.model, m.table, m.keys.data(), KeyDtype::kInt64, m.keys.size());
      } else {
        sink_->update(m.model, m.table, m.keys.data(), KeyDtype::kInt64, m.keys.size(), m.rows.data());
      }
      lock.lock();
      busy_ = false;
      if (queue_.empty()) idle_.notify_all();
    }
  }

  std::shared_ptr<Probe> probe_;
  hps::UpdateSink* sink_ = nullptr;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable wake_, idle_;
  std::deque<Message> queue_;
  bool busy_ = false;
  bool stopping_ = false;
};

constexpr std::size_t kDim = 4;

std::vector<float> row_of(std::int64_t key, float salt) {
  std::vector<float> row(kDim);
  for (std::size_t j = 0; j < kDim; ++j) row[j] = static_cast<float>(key) * 0.5f + static_cast<float>(j) + salt;
  return row;
}

// One table of 100 rows (keys 0..99, salt 0), default row -1.
hps::Config make_config(const TempDir& dir) {
  std::vector<std::int64_t> keys(100);
  std::vector<float> rows;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    keys[i] = static_cast<std::int64_t>(i);
    const auto row = row_of(keys[i], 0);
    rows.insert(rows.end(), row.begin(), row.end());
  }
  hps::write_sparse_model((dir / "t").string(), keys.data(), rows.data(), keys.size(), kDim);
  hps::Config c;
  hps::ModelConfig m;
  m.name = "m";
  hps::TableConfig t;
  t.name = "t";
  t.sparse_file = (dir / "t").string();
  t.dim = kDim;
  t.default_value = -1.0f;
  m.tables.push_back(t);
  c.models.push_back(m);
  return c;
}

std::vector<float> lookup(hps::ParameterServer& ps, const std::vector<std::int64_t>& keys) {
  std::vector<float> out(keys.size() * kDim);
  ps.lookup(ps.find_table("m", "t"), keys.data(), KeyDtype::kInt64, keys.size(), out.data());
  return out;
}

Message update_of(std::vector<std::int64_t> keys, float salt, std::string table = "t") {
  Message m{"m", std::move(table), std::move(keys), {}};
  for (auto k : m.keys) {
    const auto row = row_of(k, salt);
    m.rows.insert(m.rows.end(), row.begin(), row.end());
  }
  return m;
}

}  // namespace

TEST(UpdateSource, UpdatesReachLookupsAfterDrain) {
  TempDir dir;
  auto probe = std::make_shared<Probe>();
  hps::ParameterServer ps(make_config(dir));
  auto owned = std::make_unique<QueueSource>(probe);
  QueueSource* source = owned.get();
  ps.add_update_source(std::move(owned));
  EXPECT_TRUE(probe->started);

  // Many messages, later ones overwriting earlier ones: after drain() the last one wins everywhere.
  for (int round = 1; round <= 50; ++round) source->push(update_of({1, 2, 3, 500}, static_cast<float>(round)));
  source->push(Message{"m", "t", {2, 77}, {}});  // an erase
  ps.drain_update_sources();

  const auto out = lookup(ps, {1, 2, 3, 500, 77, 4});
  const std::vector<std::vector<float>> want = {row_of(1, 50), std::vector<float>(kDim, -1.0f), row_of(3, 50),
                                                row_of(500, 50), std::vector<float>(kDim, -1.0f), row_of(4, 0)};
  for (std::size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(std::vector<float>(out.begin() + i * kDim, out.begin() + (i + 1) * kDim), want[i]) << "position " << i;
  }
  const auto stats = ps.update_source_stats();
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_EQ(stats[0].name, "queue");
  EXPECT_EQ(stats[0].received, 51u);
  EXPECT_EQ(stats[0].applied, 51u);
  EXPECT_EQ(stats[0].errors, 0u);
  EXPECT_EQ(ps.stats()[0].updated_keys, 50u * 4u);
  EXPECT_EQ(ps.stats()[0].erased_keys, 2u);  // 2 and 77, both stored
}

TEST(UpdateSource, BadMessagesAreCountedNotThrown) {
  TempDir dir;
  auto probe = std::make_shared<Probe>();
  hps::ParameterServer ps(make_config(dir));
  auto owned = std::make_unique<QueueSource>(probe);
  QueueSource* source = owned.get();
  ps.add_update_source(std::move(owned));

  source->push(update_of({5}, 1.0f, "no_such_table"));
  source->push(Message{"no_such_model", "t", {5}, {}});
  source->push(update_of({6}, 2.0f));  // still applied after the bad ones
  ps.drain_update_sources();
  const auto stats = ps.update_source_stats();
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_EQ(stats[0].received, 3u);
  EXPECT_EQ(stats[0].applied, 1u);
  EXPECT_EQ(stats[0].errors, 2u);
  EXPECT_NE(stats[0].last_error.find("no_such_model"), std::string::npos) << stats[0].last_error;
  EXPECT_EQ(lookup(ps, {6, 5}), [] {
    auto r = row_of(6, 2.0f);
    const auto five = row_of(5, 0);
    r.insert(r.end(), five.begin(), five.end());
    return r;
  }());
  const std::string json = hps::to_json(stats);
  EXPECT_NE(json.find("\"name\":\"queue\",\"received\":3,\"applied\":1,\"rows\":1,\"errors\":2,\"lag\":-1"), std::string::npos) << json;
}

TEST(UpdateSource, ServerStopsSourcesInItsDestructor) {
  TempDir dir;
  auto probe = std::make_shared<Probe>();
  {
    hps::ParameterServer ps(make_config(dir));
    auto owned = std::make_unique<QueueSource>(probe);
    QueueSource* source = owned.get();
    ps.add_update_source(std::move(owned));
    // Messages still queued when the server goes: stop() ends the source before the tiers go.
    for (int i = 0; i < 200; ++i) source->push(update_of({static_cast<std::int64_t>(i % 100)}, 3.0f));
    EXPECT_FALSE(probe->stopped);
  }
  EXPECT_TRUE(probe->stopped);
  EXPECT_TRUE(probe->destroyed);
  EXPECT_FALSE(probe->called_after_stop);
}

TEST(UpdateSource, AStartThatThrowsAddsNothing) {
  struct Failing final : hps::UpdateSource {
    std::string name() const override { return "failing"; }
    void start(hps::UpdateSink&) override { throw hps::IOError("cannot reach the broker"); }
    void stop() override {}
    void drain() override {}
  };
  TempDir dir;
  hps::ParameterServer ps(make_config(dir));
  EXPECT_THROW(ps.add_update_source(std::make_unique<Failing>()), hps::IOError);
  EXPECT_THROW(ps.add_update_source(nullptr), hps::InvalidArgument);
  EXPECT_TRUE(ps.update_source_stats().empty());
  ps.drain_update_sources();  // nothing to wait for
}
