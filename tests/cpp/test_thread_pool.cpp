// The lookup thread pool: every chunk runs exactly once, errors reach the caller, idle workers that
// spin or were nudged still pick up work, and destruction never waits on a spinning worker.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "detail/thread_pool.hpp"

namespace {

using std::chrono::microseconds;

void expect_each_chunk_once(hps::ThreadPool& pool, std::size_t n) {
  std::vector<std::atomic<int>> runs(n);
  pool.parallel_for(n, [&](std::size_t i) { runs[i].fetch_add(1); });
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(runs[i].load(), 1) << "chunk " << i << " of " << n;
}

TEST(ThreadPool, EveryChunkRunsOnceWithAndWithoutSpinning) {
  for (const auto spin : {microseconds{0}, microseconds{200}, microseconds{100000}}) {
    hps::ThreadPool pool(3, spin);
    EXPECT_EQ(pool.concurrency(), 4u);
    for (const std::size_t n : {0u, 1u, 2u, 7u, 64u, 1000u}) expect_each_chunk_once(pool, n);
  }
}

// Two chunks that each wait for the other: both finish their wait only if they run on two
// threads at once, i.e. a worker took one while the caller held the other.
bool chunks_met_on_two_threads(hps::ThreadPool& pool) {
  std::atomic<int> arrived{0};
  std::atomic<int> met{0};
  pool.parallel_for(2, [&](std::size_t) {
    arrived.fetch_add(1);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (arrived.load() < 2 && std::chrono::steady_clock::now() < until) std::this_thread::yield();
    if (arrived.load() == 2) met.fetch_add(1);
  });
  return met.load() == 2;
}

TEST(ThreadPool, WorkersJoinInAfterSleepingOrBeingNudged) {
  hps::ThreadPool pool(3, microseconds{50});
  std::this_thread::sleep_for(std::chrono::milliseconds(5));  // every worker is asleep by now
  EXPECT_TRUE(chunks_met_on_two_threads(pool));
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  pool.nudge();
  EXPECT_TRUE(chunks_met_on_two_threads(pool));
  hps::ThreadPool lone(0, microseconds{50});
  EXPECT_EQ(lone.concurrency(), 1u);
  EXPECT_FALSE(chunks_met_on_two_threads(lone)) << "the check itself must fail without workers";
}

TEST(ThreadPool, FirstErrorReachesTheCallerAndThePoolKeepsWorking) {
  hps::ThreadPool pool(2, microseconds{100});
  EXPECT_THROW(pool.parallel_for(10, [](std::size_t i) {
    if (i == 3) throw std::runtime_error("chunk 3 failed");
  }),
               std::runtime_error);
  expect_each_chunk_once(pool, 100);
}

TEST(ThreadPool, ManyCallersShareTheWorkers) {
  hps::ThreadPool pool(3, microseconds{100});
  std::vector<std::thread> callers;
  std::atomic<int> failures{0};
  for (int c = 0; c < 4; ++c) {
    callers.emplace_back([&] {
      for (int round = 0; round < 50; ++round) {
        std::vector<std::atomic<int>> runs(37);
        pool.parallel_for(runs.size(), [&](std::size_t i) { runs[i].fetch_add(1); });
        for (auto& r : runs) failures += r.load() != 1;
      }
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(ThreadPool, DestructionDoesNotWaitForTheSpinToEnd) {
  const auto start = std::chrono::steady_clock::now();
  {
    hps::ThreadPool pool(4, std::chrono::seconds(30));
    expect_each_chunk_once(pool, 16);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

}  // namespace
