// A fixed pool of worker threads for splitting one large call into chunks (internal).
//
// parallel_for(n, fn) runs fn(0) .. fn(n - 1) on the workers and the calling thread and returns
// when all are done, rethrowing the first exception. Many threads may call it at once; their
// chunks share the workers.
//
// Idle workers spin for `spin` before they sleep, yielding their core to any other runnable
// thread, and nudge() wakes sleeping ones to spin ahead of expected work. Waking a sleeping thread
// costs tens of microseconds on a virtual machine (an interrupt to an idle vCPU), as long as a whole
// chunk of a small lookup; a worker still spinning from the previous job starts within a microsecond.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace hps {

class ThreadPool {
 public:
  explicit ThreadPool(std::size_t workers, std::chrono::microseconds spin = std::chrono::microseconds{0})
      : spin_(spin) {
    for (std::size_t i = 0; i < workers; ++i) threads_.emplace_back([this] { work(); });
  }

  ~ThreadPool() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      posted_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
  }

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  /// Threads that can work on one call: the workers plus the caller.
  std::size_t concurrency() const { return threads_.size() + 1; }

  /// Wakes sleeping workers to spin, ahead of a parallel_for the caller expects soon (e.g. while
  /// the GPU looks keys up, before their misses reach the host), so that call finds them awake.
  void nudge() {
    if (spin_.count() <= 0) return;
    {
      std::lock_guard lock(mutex_);
      if (sleeping_ == 0) return;
      ++nudges_;
    }
    wake_.notify_all();
  }

  void parallel_for(std::size_t n, const std::function<void(std::size_t)>& fn) {
    if (n == 0) return;
    if (n == 1 || threads_.empty()) {
      for (std::size_t i = 0; i < n; ++i) fn(i);
      return;
    }
    auto job = std::make_shared<Job>(n, fn);
    bool sleepers = false;
    {
      std::lock_guard lock(mutex_);
      jobs_.push_back(job);
      posted_.fetch_add(1, std::memory_order_release);
      sleepers = sleeping_ > 0;
    }
    if (sleepers) wake_.notify_all();  // spinning workers see posted_ change without a system call
    job->run_chunks();                 // the caller works too, so a busy pool never stalls a call
    // The last chunks are running on workers: poll before sleeping, as a sleeping caller would
    // wait to be woken after they finish.
    const auto until = std::chrono::steady_clock::now() + spin_;
    while (!job->finished_all() && std::chrono::steady_clock::now() < until) {
      for (int i = 0; i < 16; ++i) pause();
      std::this_thread::yield();
    }
    std::unique_lock lock(job->mutex);
    job->finished.wait(lock, [&] { return job->finished_all(); });
    if (job->error) std::rethrow_exception(job->error);
  }

 private:
  struct Job {
    Job(std::size_t count, const std::function<void(std::size_t)>& f) : n(count), fn(f) {}
    const std::size_t n;
    const std::function<void(std::size_t)>& fn;  // borrowed: the caller waits until done == n
    std::atomic<std::size_t> next{0};
    std::atomic<std::size_t> done{0};
    std::mutex mutex;  // guards error, and orders the last chunk's notify with the caller's wait
    std::condition_variable finished;
    std::exception_ptr error;

    bool exhausted() const { return next.load(std::memory_order_relaxed) >= n; }
    bool finished_all() const { return done.load(std::memory_order_acquire) == n; }

    void run_chunks() {
      for (std::size_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) {
        try {
          fn(i);
        } catch (...) {
          std::lock_guard lock(mutex);
          if (!error) error = std::current_exception();
        }
        if (done.fetch_add(1, std::memory_order_acq_rel) + 1 == n) {
          std::lock_guard lock(mutex);
          finished.notify_all();
        }
      }
    }
  };

  static void pause() {
#if defined(__x86_64__) || defined(_M_X64)
    _mm_pause();
#else
    std::this_thread::yield();
#endif
  }

  /// Spins until a job may have been posted after `seen` or the spin time is up.
  void spin_for_work(std::uint64_t seen) const {
    if (spin_.count() <= 0) return;
    const auto until = std::chrono::steady_clock::now() + spin_;
    while (posted_.load(std::memory_order_acquire) == seen) {
      for (int i = 0; i < 64; ++i) pause();
      if (std::chrono::steady_clock::now() >= until) return;
      // A polling worker must not hold a core that another thread wants (the caller, the CUDA
      // driver's threads, torch's): give it up whenever someone else is runnable.
      std::this_thread::yield();
    }
  }

  /// Under mutex_: the oldest job with chunks left, dropping finished ones; null when none.
  std::shared_ptr<Job> front_job() {
    while (!jobs_.empty() && jobs_.front()->exhausted()) jobs_.pop_front();
    return jobs_.empty() ? nullptr : jobs_.front();
  }

  void work() {
    while (true) {
      std::shared_ptr<Job> job;
      std::uint64_t seen = 0;
      {
        std::lock_guard lock(mutex_);
        if (stopping_) return;
        job = front_job();
        seen = posted_.load(std::memory_order_relaxed);
      }
      if (job) {
        job->run_chunks();
        continue;
      }
      spin_for_work(seen);
      std::unique_lock lock(mutex_);
      if (!stopping_ && !front_job()) {
        ++sleeping_;
        const std::uint64_t nudged = nudges_;
        wake_.wait(lock, [&] { return stopping_ || !jobs_.empty() || nudges_ != nudged; });
        --sleeping_;
      }
    }
  }

  const std::chrono::microseconds spin_;
  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Job>> jobs_;
  std::atomic<std::uint64_t> posted_{0};  // bumped with every job, read by spinning workers
  std::size_t sleeping_ = 0;
  std::uint64_t nudges_ = 0;
  bool stopping_ = false;
};

}  // namespace hps
