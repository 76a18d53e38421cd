// A fork-join pool for the learner's data-parallel update: Run(fn) calls fn(0), ..., fn(n-1),
// fn(0) on the calling thread and the others on n-1 worker threads that live as long as the pool,
// and returns once every call has returned. Threads poll for a few tens of microseconds before
// they block, so that the phases of one update follow each other without a wake-up between them.
// Thread-compatible: one thread calls Run at a time; fn must be safe to call concurrently for
// different indices.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace meow {

class ShardPool {
 public:
  explicit ShardPool(int threads);  // threads >= 1 (1: Run calls fn(0) inline)
  ~ShardPool();
  ShardPool(const ShardPool&) = delete;
  ShardPool& operator=(const ShardPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }
  void Run(const std::function<void(int)>& fn) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void WorkerLoop(int index) ABSL_LOCKS_EXCLUDED(mu_);

  absl::Mutex mu_;
  const std::function<void(int)>* job_ ABSL_GUARDED_BY(mu_) = nullptr;
  int64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  int pending_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  // Copies of generation_, pending_ and stop_ for polling without the lock (written under it).
  std::atomic<int64_t> generation_seen_{0};
  std::atomic<int> pending_count_{0};
  std::atomic<bool> stopping_{false};
  std::vector<std::thread> workers_;
};

}  // namespace meow
