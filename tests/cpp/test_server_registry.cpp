// The process-wide server registry: sharing, lifetime, options, concurrency, failed builds.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>
#include <vector>

#include "hps/error.hpp"
#include "hps/model_io.hpp"
#include "hps/server_registry.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;

using hps_test::TempDir;

namespace {

/// Counts load steps, to tell a build from a share.
class CountingObserver final : public hps::LoadObserver {
 public:
  void begin(const std::string&, std::size_t) override { ++begins; }
  void advance(std::size_t) override {}
  void end() override {}
  std::atomic<int> begins{0};
};

/// Config JSON of one model `model` with one 4-wide table of 50 rows in `dir`/table.
std::string make_json(const TempDir& dir, const std::string& model = "m") {
  const fs::path folder = dir / "table";
  if (!fs::exists(folder / "key")) {
    std::vector<std::int64_t> keys(50);
    std::vector<float> rows(50 * 4);
    for (std::size_t i = 0; i < keys.size(); ++i) {
      keys[i] = static_cast<std::int64_t>(i) * 7;
      for (std::size_t j = 0; j < 4; ++j) rows[i * 4 + j] = static_cast<float>(keys[i]) + 0.5f * j;
    }
    hps::write_sparse_model(folder.string(), keys.data(), rows.data(), keys.size(), 4);
  }
  return R"({"volatile_db": {"type": "hash_map", "num_partitions": 2}, "models": [{"model": ")" + model +
         R"(", "sparse_files": [")" + folder.string() +
         R"("], "embedding_vecsize_per_table": [4], "default_value_for_each_table": [-1.0]}]})";
}

std::string write_config_file(const TempDir& dir, const std::string& name, const std::string& json) {
  const fs::path path = dir / name;
  std::ofstream(path) << json;
  return path.string();
}

float first_of(hps::ParameterServer& ps, std::int64_t key) {
  float row[4];
  ps.lookup(ps.find_table("m", 0), &key, hps::KeyDtype::kInt64, 1, row);
  return row[0];
}

}  // namespace

TEST(ServerRegistry, SameJsonSharesOneServer) {
  TempDir dir;
  const std::string json = make_json(dir);
  CountingObserver first, second;
  auto a = hps::acquire_server_json(json, "", {}, &first);
  auto b = hps::acquire_server_json(json, "", {}, &second);
  EXPECT_EQ(a.get(), b.get());
  EXPECT_GT(first.begins.load(), 0);
  EXPECT_EQ(second.begins.load(), 0);  // shared, not built again
  EXPECT_EQ(hps::server_id(*a).rfind("hps-json:", 0), 0u);
  EXPECT_EQ(hps::server_id(*a).size(), std::string("hps-json:").size() + 32);
  EXPECT_EQ(hps::find_server(hps::server_id(*a)).get(), a.get());
  EXPECT_EQ(hps::server_id_for_config(a->config()), hps::server_id(*a));

  // Whitespace and key order do not matter: the id is of the normalized config.
  auto c = hps::acquire_server_config(hps::parse_config(json));
  EXPECT_EQ(c.get(), a.get());

  // An update through one reference is seen through the other.
  const std::int64_t key = 7;
  const float row[4] = {9, 9, 9, 9};
  a->update(a->find_table("m", 0), &key, hps::KeyDtype::kInt64, 1, row);
  EXPECT_EQ(first_of(*b, 7), 9.0f);
}

TEST(ServerRegistry, FilesAreNamedByAbsoluteNormalizedPath) {
  TempDir dir;
  const std::string path = write_config_file(dir, "ps.json", make_json(dir));
  auto a = hps::acquire_server_file(path);
  // The same file through a path with a "." and a ".." in it.
  const fs::path odd = fs::path(path).parent_path() / "." / ".." / fs::path(path).parent_path().filename() / "ps.json";
  auto b = hps::acquire_server_file(odd.string());
  EXPECT_EQ(a.get(), b.get());
  EXPECT_EQ(hps::server_id(*a), fs::path(path).lexically_normal().string());
  EXPECT_EQ(hps::acquire_server_id(hps::server_id(*a)).get(), a.get());
  // The same config given as JSON text is another server (named differently).
  auto c = hps::acquire_server_json(make_json(dir));
  EXPECT_NE(c.get(), a.get());
}

TEST(ServerRegistry, DifferentConfigsGetDifferentServers) {
  TempDir dir;
  auto a = hps::acquire_server_json(make_json(dir, "m"));
  auto b = hps::acquire_server_json(make_json(dir, "other"));
  EXPECT_NE(a.get(), b.get());
  EXPECT_NE(hps::server_id(*a), hps::server_id(*b));
  const std::int64_t key = 7;
  const float row[4] = {9, 9, 9, 9};
  a->update(a->find_table("m", 0), &key, hps::KeyDtype::kInt64, 1, row);
  float out[4];
  b->lookup(b->find_table("other", 0), &key, hps::KeyDtype::kInt64, 1, out);
  EXPECT_EQ(out[0], 7.0f);
}

TEST(ServerRegistry, LastReferenceFreesAndALaterAcquireRebuilds) {
  TempDir dir;
  const std::string json = make_json(dir);
  const std::size_t before = hps::live_server_count();
  auto a = hps::acquire_server_json(json);
  const std::string id = hps::server_id(*a);
  EXPECT_EQ(hps::live_server_count(), before + 1);
  const std::int64_t key = 7;
  const float row[4] = {9, 9, 9, 9};
  a->update(a->find_table("m", 0), &key, hps::KeyDtype::kInt64, 1, row);
  std::weak_ptr<hps::ParameterServer> watch = a;
  a.reset();
  EXPECT_TRUE(watch.expired());
  EXPECT_EQ(hps::live_server_count(), before);
  EXPECT_EQ(hps::find_server(id), nullptr);

  CountingObserver observer;
  auto b = hps::acquire_server_json(json, "", {}, &observer);
  EXPECT_GT(observer.begins.load(), 0);  // built again
  EXPECT_EQ(first_of(*b, 7), 7.0f);      // from the files: the update lived in the freed server
  EXPECT_EQ(hps::server_id(*b), id);
}

TEST(ServerRegistry, ConflictingOptionsAreRefusedNamingBoth) {
  TempDir dir;
  const std::string json = make_json(dir);
  hps::ServerOptions two;
  two.lookup_threads = 2;
  auto a = hps::acquire_server_json(json, "", two);
  hps::ServerOptions three;
  three.lookup_threads = 3;
  try {
    hps::acquire_server_json(json, "", three);
    FAIL() << "expected InvalidArgument";
  } catch (const hps::InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("lookup_threads 2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("lookup_threads 3"), std::string::npos) << e.what();
  }
  hps::ServerOptions spin;
  spin.lookup_spin_us = 5;
  try {
    hps::acquire_server_json(json, "", spin);
    FAIL() << "expected InvalidArgument";
  } catch (const hps::InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("lookup_spin_us 5"), std::string::npos) << e.what();
  }
  // The same explicit options, or none, share.
  EXPECT_EQ(hps::acquire_server_json(json, "", two).get(), a.get());
  EXPECT_EQ(hps::acquire_server_json(json).get(), a.get());
}

TEST(ServerRegistry, ConcurrentFirstAcquiresBuildOnce) {
  TempDir dir;
  const std::string json = make_json(dir);
  constexpr int kThreads = 8;
  std::vector<CountingObserver> observers(kThreads);
  std::vector<std::shared_ptr<hps::ParameterServer>> got(kThreads);
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      ++ready;
      while (ready.load() < kThreads) std::this_thread::yield();
      got[i] = hps::acquire_server_json(json, "", {}, &observers[i]);
    });
  }
  for (auto& t : threads) t.join();
  int builders = 0;
  for (int i = 0; i < kThreads; ++i) {
    EXPECT_EQ(got[i].get(), got[0].get());
    builders += observers[i].begins.load() > 0 ? 1 : 0;
  }
  EXPECT_EQ(builders, 1);
}

TEST(ServerRegistry, FailedBuildRegistersNothing) {
  TempDir dir;
  const std::string missing = (dir / "missing").string();
  const std::string json = R"({"models": [{"model": "m", "sparse_files": [")" + missing +
                           R"("], "embedding_vecsize_per_table": [4]}]})";
  const std::size_t before = hps::live_server_count();
  const hps::Config config = hps::parse_config(json);
  EXPECT_THROW(hps::acquire_server_config(config), hps::IOError);
  EXPECT_EQ(hps::live_server_count(), before);
  EXPECT_EQ(hps::find_server(hps::server_id_for_config(config)), nullptr);

  // The files appear: the next acquire builds (nothing stale was left behind).
  std::vector<std::int64_t> keys = {1, 2};
  std::vector<float> rows(8, 1.0f);
  hps::write_sparse_model(missing, keys.data(), rows.data(), 2, 4);
  auto ps = hps::acquire_server_config(config);
  ASSERT_NE(ps, nullptr);
  EXPECT_EQ(first_of(*ps, 2), 1.0f);
}

TEST(ServerRegistry, UnknownIdsAreNotFound) {
  EXPECT_EQ(hps::find_server("hps-json:00000000000000000000000000000000"), nullptr);
  EXPECT_THROW(hps::acquire_server_id("hps-json:00000000000000000000000000000000"), hps::NotFound);
  EXPECT_THROW(hps::acquire_server_id("relative/ps.json"), hps::NotFound);
  EXPECT_THROW(hps::acquire_server_id("/nonexistent/hps/ps.json"), hps::IOError);
  EXPECT_THROW(hps::acquire_server_json("{bad json"), hps::ConfigError);
}
