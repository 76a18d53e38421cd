// Learning (label `learning-long`, on demand): MultiGoal-v0 through the full distributed path,
// `meow train`'s local mode with its defaults (embedded replay with the rate limiter, learner, two
// actor threads, evaluator, over gRPC) and the paper's toy hyperparameters. The bar and the
// measurement are the reference loop's (multigoal_learning_test.cc): the run directory's final
// policy, rolled out stochastically from the origin, reaches all four goals in at least 2 of 3
// seeds. Runs through threads are not repeatable, so the test is not in the default suite.
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/presets.h"
#include "common/runtime.h"
#include "gtest/gtest.h"
#include "learner/training.h"
#include "tests/learning/multigoal_check.h"

namespace meow {
namespace {

using multigoal::AllFourGoals;
using multigoal::CountGoalsOfRun;
using multigoal::Print;
using multigoal::ToyConfig;

TEST(MultiGoalLearningTest, TheDistributedPathReachesAllFourGoals) {
  TuneAllocator();
  SetComputeThreads(1);
  int seeds_with_all_goals = 0;
  for (uint64_t seed : {1, 2, 3}) {
    TrainConfig config;
    static_cast<TrainSettings&>(config) = ToyConfig(seed);
    config.run_dir = absl::StrCat(::testing::TempDir(), "/multigoal_distributed_", getpid(), "_", seed);
    std::filesystem::remove_all(config.run_dir);
    config.actors = GetPreset("MultiGoal-v0")->local_actors;  // as `meow train`
    std::atomic<bool> stop{false};
    auto result = RunTraining(config, stop);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->skipped_updates, 0);
    EXPECT_GT(result->updates, 2900);
    auto counts = CountGoalsOfRun(config.run_dir);
    ASSERT_TRUE(counts.ok()) << counts.status();
    seeds_with_all_goals += AllFourGoals(*counts);
    Print("distributed", seed, *counts, result->evals.empty() ? NAN : result->evals.back().mean, result->seconds);
    RecordProperty("distributed_seed" + std::to_string(seed) + "_all_goals", AllFourGoals(*counts) ? "yes" : "no");
    std::filesystem::remove_all(config.run_dir);
  }
  EXPECT_GE(seeds_with_all_goals, 2);
}

}  // namespace
}  // namespace meow
