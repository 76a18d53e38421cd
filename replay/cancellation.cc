#include "replay/cancellation.h"

#include <utility>

namespace meow {

Cancellation::Registration::~Registration() { owner_->Unregister(id_); }

void Cancellation::Cancel() {
  absl::MutexLock lock(&mu_);
  if (cancelled_.exchange(true, std::memory_order_acq_rel)) return;
  // Callbacks run under mu_ so that Unregister (and so a registrant's teardown) waits for them.
  for (auto& [id, wake] : callbacks_) wake();
}

std::unique_ptr<Cancellation::Registration> Cancellation::Register(std::function<void()> wake) {
  absl::MutexLock lock(&mu_);
  const uint64_t id = next_id_++;
  if (cancelled()) {
    wake();
  } else {
    callbacks_.emplace(id, std::move(wake));
  }
  return std::unique_ptr<Registration>(new Registration(this, id));
}

void Cancellation::Unregister(uint64_t id) {
  absl::MutexLock lock(&mu_);
  callbacks_.erase(id);
}

std::unique_ptr<Cancellation::Registration> RegisterIfPresent(Cancellation* cancellation, std::function<void()> wake) {
  if (cancellation == nullptr) return nullptr;
  return cancellation->Register(std::move(wake));
}

}  // namespace meow
