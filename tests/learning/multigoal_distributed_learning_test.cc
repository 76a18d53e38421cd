// Learning (label `learning-long`, on demand): MultiGoal-v0 through the full distributed path,
// `meow train`'s local mode (embedded replay with the rate limiter, learner, two actor threads,
// evaluator, over gRPC), with the paper's toy hyperparameters; the final policy is read back from
// the run directory. Stochastic rollouts from the origin must reach all four goals (every goal
// ends a rollout and at least 75 of 100 end at a goal) in at least one of three seeds.
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/runtime.h"
#include "common/safetensors.h"
#include "learner/training.h"
#include "tests/learning/multigoal_check.h"

namespace meow {
namespace {

using multigoal::CountGoals;
using multigoal::GoalCounts;
using multigoal::Print;
using multigoal::ToyConfig;

TEST(MultiGoalLearningTest, TheDistributedPathReachesAllFourGoals) {
  TuneAllocator();
  SetComputeThreads(1);
  int seeds_with_all_goals = 0;
  for (uint64_t seed : {1, 2, 3}) {
    TrainConfig config;
    static_cast<SyncTrainConfig&>(config) = ToyConfig(seed);
    config.run_dir = absl::StrCat(::testing::TempDir(), "/multigoal_distributed_", getpid(), "_", seed);
    std::filesystem::remove_all(config.run_dir);
    config.actors = 2;
    std::atomic<bool> stop{false};
    auto result = RunTraining(config, stop);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->skipped_updates, 0);
    EXPECT_GT(result->updates, 2800);
    auto file = ReadSafetensors(config.run_dir + "/policy_latest.safetensors");
    ASSERT_TRUE(file.ok()) << file.status();
    auto policy_config = ConfigFromWeights(*file, config.policy);
    ASSERT_TRUE(policy_config.ok()) << policy_config.status();
    FlowPolicy policy(*policy_config);
    ASSERT_TRUE(policy->ImportWeights(*file).ok());
    policy->eval();
    const GoalCounts counts = CountGoals(*policy, seed);
    seeds_with_all_goals += counts.all();
    Print("distributed", seed, counts, result->evals.empty() ? NAN : result->evals.back().mean, result->seconds);
    RecordProperty("distributed_seed" + std::to_string(seed) + "_all_goals", counts.all() ? "yes" : "no");
    std::filesystem::remove_all(config.run_dir);
  }
  // Runs through threads and the rate limiter are not repeatable; about half the seeds reach all
  // four goals (the reference loop's criterion of 2 of 3 is met in about half the runs).
  EXPECT_GE(seeds_with_all_goals, 1);
}

}  // namespace
}  // namespace meow
