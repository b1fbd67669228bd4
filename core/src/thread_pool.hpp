// A fixed pool of worker threads for splitting one large call into chunks (internal).
//
// parallel_for(n, fn) runs fn(0) .. fn(n - 1) on the workers and the calling thread and returns
// when all are done, rethrowing the first exception. Many threads may call it at once; their
// chunks share the workers.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace hps {

class ThreadPool {
 public:
  explicit ThreadPool(std::size_t workers) {
    for (std::size_t i = 0; i < workers; ++i) threads_.emplace_back([this] { work(); });
  }

  ~ThreadPool() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
  }

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  /// Threads that can work on one call: the workers plus the caller.
  std::size_t concurrency() const { return threads_.size() + 1; }

  void parallel_for(std::size_t n, const std::function<void(std::size_t)>& fn) {
    if (n == 0) return;
    if (n == 1 || threads_.empty()) {
      for (std::size_t i = 0; i < n; ++i) fn(i);
      return;
    }
    auto job = std::make_shared<Job>(n, fn);
    {
      std::lock_guard lock(mutex_);
      jobs_.push_back(job);
    }
    wake_.notify_all();
    job->run_chunks();  // the caller works too, so a busy pool never stalls a call
    std::unique_lock lock(job->mutex);
    job->finished.wait(lock, [&] { return job->done == job->n; });
    if (job->error) std::rethrow_exception(job->error);
  }

 private:
  struct Job {
    Job(std::size_t count, const std::function<void(std::size_t)>& f) : n(count), fn(f) {}
    const std::size_t n;
    const std::function<void(std::size_t)>& fn;  // borrowed: the caller waits until done == n
    std::atomic<std::size_t> next{0};
    std::mutex mutex;
    std::condition_variable finished;
    std::size_t done = 0;
    std::exception_ptr error;

    bool exhausted() const { return next.load(std::memory_order_relaxed) >= n; }

    void run_chunks() {
      for (std::size_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) {
        std::exception_ptr failure;
        try {
          fn(i);
        } catch (...) {
          failure = std::current_exception();
        }
        std::lock_guard lock(mutex);
        if (failure && !error) error = failure;
        if (++done == n) finished.notify_all();
      }
    }
  };

  void work() {
    while (true) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
        if (stopping_) return;
        job = jobs_.front();
        if (job->exhausted()) {
          jobs_.pop_front();
          continue;
        }
      }
      job->run_chunks();
    }
  }

  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Job>> jobs_;
  bool stopping_ = false;
};

}  // namespace hps
