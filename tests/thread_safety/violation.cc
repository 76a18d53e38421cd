// Written to break the lock annotations: the thread_safety_violation_is_caught test expects clang's
// analysis to refuse it, which shows that thread_safety_analysis really checks something.
#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace {
struct Counter {
  absl::Mutex mu;
  int value ABSL_GUARDED_BY(mu) = 0;
  void IncrementWithoutTheLock() { ++value; }
};
}  // namespace

int main() {
  Counter counter;
  counter.IncrementWithoutTheLock();
}
