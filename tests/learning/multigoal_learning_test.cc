// Learning (label `learning`): MEow on MultiGoal-v0 with the paper's toy hyperparameters (4000
// steps, toy/conf/base.yaml) through `meow train --sync`, the single-threaded reference loop.
// After training, stochastic rollouts of the run directory's final policy from the origin must
// reach all four goals (the multi-modal policy of the paper's Fig. 1) in at least 2 of 3 seeds. A
// seed counts when every goal ends at least one of 100 rollouts and at least 75 rollouts end at a
// goal within 50 steps (multigoal_check.h; the distributed test measures the same). For
// comparison, uniformly random actions end at a goal within 50 steps in 51% of rollouts (2000
// simulated), so 75 of 100 is about 5 standard deviations above wandering.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <string>

#include "common/runtime.h"
#include "gtest/gtest.h"
#include "learner/sync_trainer.h"
#include "tests/learning/multigoal_check.h"

namespace meow {
namespace {

using multigoal::AllFourGoals;
using multigoal::CountGoalsOfRun;
using multigoal::Print;
using multigoal::ToyConfig;

TEST(MultiGoalLearningTest, StochasticRolloutsReachAllFourGoals) {
  TuneAllocator();
  SetComputeThreads(1);
  int seeds_with_all_goals = 0;
  for (uint64_t seed : {1, 2, 3}) {
    TrainSettings config = ToyConfig(seed);
    config.run_dir = absl::StrCat(::testing::TempDir(), "/multigoal_sync_", getpid(), "_", seed);
    std::filesystem::remove_all(config.run_dir);
    auto result = TrainSync(config);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->updates + result->skipped_updates, 3000);
    EXPECT_EQ(result->skipped_updates, 0);
    auto counts = CountGoalsOfRun(config.run_dir);
    ASSERT_TRUE(counts.ok()) << counts.status();
    seeds_with_all_goals += AllFourGoals(*counts);
    Print("sync", seed, *counts, result->evals.empty() ? NAN : result->evals.back().mean, result->seconds);
    RecordProperty("seed" + std::to_string(seed) + "_all_goals", AllFourGoals(*counts) ? "yes" : "no");
    std::filesystem::remove_all(config.run_dir);
  }
  EXPECT_GE(seeds_with_all_goals, 2);
}

}  // namespace
}  // namespace meow
