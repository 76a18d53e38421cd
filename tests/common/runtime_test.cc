// TuneAllocator keeps freed memory mapped: a thread (with an arena of its own, as the learner,
// actor and gRPC threads have) that allocates and frees ~50 MB of temporaries per round, as an
// update does, faults its pages in once, not in every round. Without the settings the same
// pattern faults ~3,500 pages a round (heaps unmapped when emptied, mapped again at the next).
#include "common/runtime.h"

#include <sys/resource.h>

#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace meow {
namespace {

long MinorFaultsOfThisThread() {
  rusage usage{};
  getrusage(RUSAGE_THREAD, &usage);
  return usage.ru_minflt;
}

TEST(RuntimeTest, AThreadsFreedTemporariesStayMappedBetweenRounds) {
  TuneAllocator();
  double faults_per_round = -1;
  std::thread worker([&] {
    constexpr int kRounds = 60, kWarmUp = 10;
    long before = 0;
    for (int round = 0; round < kRounds; ++round) {
      if (round == kWarmUp) before = MinorFaultsOfThisThread();
      std::vector<void*> blocks;
      for (int i = 0; i < 400; ++i) {
        const size_t n = i % 10 == 0 ? (size_t{1} << 20) + i * 4096 : 8192 + i * 64;  // 40 of 1 MB, 360 small
        void* p = std::malloc(n);
        ASSERT_NE(p, nullptr);
        std::memset(p, 1, n);
        blocks.push_back(p);
      }
      for (void* p : blocks) std::free(p);
    }
    faults_per_round = static_cast<double>(MinorFaultsOfThisThread() - before) / (kRounds - kWarmUp);
  });
  worker.join();
  EXPECT_GE(faults_per_round, 0);
  EXPECT_LT(faults_per_round, 50) << "pages faulted in again per round";
}

}  // namespace
}  // namespace meow
