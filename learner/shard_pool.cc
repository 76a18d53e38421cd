#include "learner/shard_pool.h"

#include <atomic>

namespace meow {
namespace {

// How long a thread polls before it blocks: a few tens of microseconds, about what the next phase
// of an update is away. Blocking and being woken costs far more than that on a virtual machine,
// where a sleeping vCPU is woken by the hypervisor.
constexpr int kSpins = 4000;

inline void Relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

}  // namespace

ShardPool::ShardPool(int threads) {
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ShardPool::~ShardPool() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    stopping_.store(true, std::memory_order_release);
  }
  for (std::thread& t : workers_) t.join();
}

void ShardPool::Run(const std::function<void(int)>& fn) {
  if (workers_.empty()) {
    fn(0);
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    job_ = &fn;
    pending_ = static_cast<int>(workers_.size());
    pending_count_.store(pending_, std::memory_order_release);
    ++generation_;
    generation_seen_.store(generation_, std::memory_order_release);
  }
  fn(0);
  for (int i = 0; i < kSpins && pending_count_.load(std::memory_order_acquire) > 0; ++i) Relax();
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](int* pending) { return *pending == 0; }, &pending_));
  job_ = nullptr;
}

void ShardPool::WorkerLoop(int index) {
  int64_t seen = 0;
  while (true) {
    for (int i = 0; i < kSpins && generation_seen_.load(std::memory_order_acquire) == seen &&
                    !stopping_.load(std::memory_order_acquire);
         ++i) {
      Relax();
    }
    const std::function<void(int)>* job;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || generation_ != seen; };
      mu_.Await(absl::Condition(&ready));
      if (stop_) return;
      seen = generation_;
      job = job_;
    }
    (*job)(index);
    absl::MutexLock lock(&mu_);
    --pending_;
    pending_count_.store(pending_, std::memory_order_release);
  }
}

}  // namespace meow
