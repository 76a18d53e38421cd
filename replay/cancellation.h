// A one-shot cancellation signal shared by the party that gives up (an RPC that was cancelled, a
// client being closed) and the blocking calls that should then return early.
//
// Blocking code registers a callback that wakes its waiters (for an absl::Mutex condition wait,
// locking and unlocking that mutex is enough: conditions are re-evaluated on unlock). Callbacks run
// under this object's mutex, so a Registration's destructor waits for a running callback to end;
// lock order: Cancellation::mu_ before any mutex a callback takes. Destroy a Registration only
// while holding none of the mutexes its callback takes. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace meow {

class Cancellation {
 public:
  // Keeps a callback registered until destroyed. Not copyable or movable.
  class Registration {
   public:
    ~Registration();
    Registration(const Registration&) = delete;
    Registration& operator=(const Registration&) = delete;

   private:
    friend class Cancellation;
    Registration(Cancellation* owner, uint64_t id) : owner_(owner), id_(id) {}
    Cancellation* owner_;  // not owned; outlives the registration
    uint64_t id_;
  };

  Cancellation() = default;
  Cancellation(const Cancellation&) = delete;
  Cancellation& operator=(const Cancellation&) = delete;

  // Marks this cancelled and runs every registered callback once. Idempotent.
  void Cancel() ABSL_LOCKS_EXCLUDED(mu_);
  bool cancelled() const { return cancelled_.load(std::memory_order_acquire); }

  // Runs `wake` on Cancel(), or right away when already cancelled, until the returned
  // registration is destroyed. The Cancellation must outlive the registration.
  [[nodiscard]] std::unique_ptr<Registration> Register(std::function<void()> wake) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Unregister(uint64_t id) ABSL_LOCKS_EXCLUDED(mu_);

  std::atomic<bool> cancelled_{false};
  absl::Mutex mu_;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<uint64_t, std::function<void()>> callbacks_ ABSL_GUARDED_BY(mu_);
};

// Registers `wake` with `cancellation` when it is non-null; null otherwise.
[[nodiscard]] std::unique_ptr<Cancellation::Registration> RegisterIfPresent(Cancellation* cancellation,
                                                                            std::function<void()> wake);

}  // namespace meow
