// Learning (label `learning`): MEow on MultiGoal-v0 with the paper's toy hyperparameters (4000
// steps, toy/conf/base.yaml). After training, stochastic rollouts from the origin must reach all
// four goals (the multi-modal policy of the paper's Fig. 1) in at least 2 of 3 seeds. A seed counts
// when every goal ends at least one of 100 rollouts and at least 75 rollouts end at a goal within
// 50 steps. For comparison, uniformly random actions end at a goal within 50 steps in 51% of
// rollouts (2000 simulated), so 75 of 100 is about 5 standard deviations above wandering.
#include <unistd.h>

#include <array>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include <ATen/CPUGeneratorImpl.h>

#include "absl/strings/str_cat.h"
#include "actor/evaluate.h"
#include "actor/multi_goal.h"
#include "common/presets.h"
#include "common/safetensors.h"
#include "common/runtime.h"
#include "gtest/gtest.h"
#include "learner/sync_trainer.h"
#include "learner/training.h"

namespace meow {
namespace {

constexpr int kRollouts = 100;
constexpr int kMaxSteps = 50;
constexpr int kMinFinished = 75;

SyncTrainConfig ToyConfig(uint64_t seed) {
  const TaskPreset preset = *GetPreset("MultiGoal-v0");
  SyncTrainConfig c;
  c.env = preset.env;
  c.policy.alpha = preset.alpha;
  c.policy.sigma_max = preset.sigma_max;
  c.policy.sigma_min = preset.sigma_min;
  c.update.gamma = preset.gamma;
  c.update.tau = preset.tau;
  c.total_env_steps = preset.total_env_steps;
  c.learning_starts = preset.learning_starts;
  c.eval_interval = preset.eval_interval;
  c.eval_episodes = preset.eval_episodes;
  c.seed = seed;
  c.device = "cpu";
  c.progress = false;
  return c;
}

struct GoalCounts {
  std::array<int, 4> reached{};
  int unfinished = 0;
  bool all() const {
    return reached[0] > 0 && reached[1] > 0 && reached[2] > 0 && reached[3] > 0 &&
           kRollouts - unfinished >= kMinFinished;
  }
};

// kRollouts stochastic rollouts from the origin, each counted at the goal it ends in.
GoalCounts CountGoals(FlowPolicyImpl& policy, uint64_t seed) {
  GoalCounts counts;
  MultiGoalEnv env;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(100 + seed);
  for (int i = 0; i < kRollouts; ++i) {
    auto episode = RunEpisode(policy, env, /*seed=*/1000 + i, /*deterministic=*/false,
                              /*max_steps=*/kMaxSteps, gen);
    EXPECT_TRUE(episode.ok()) << episode.status();
    if (!episode.ok() || !episode->terminated) {
      ++counts.unfinished;
      continue;
    }
    const auto [goal, distance] = MultiGoalEnv::NearestGoal(
        {episode->final_observation[0], episode->final_observation[1]});
    EXPECT_LT(distance, MultiGoalEnv::kGoalThreshold);
    ++counts.reached[goal];
  }
  return counts;
}

void Print(const char* path, uint64_t seed, const GoalCounts& c, double last_eval, double seconds) {
  std::printf("%s seed %d: goals (+5,0) %d, (-5,0) %d, (0,+5) %d, (0,-5) %d, unfinished %d of %d; "
              "last eval return %.1f; %.1f s\n",
              path, static_cast<int>(seed), c.reached[0], c.reached[1], c.reached[2], c.reached[3],
              c.unfinished, kRollouts, last_eval, seconds);
}

TEST(MultiGoalLearningTest, StochasticRolloutsReachAllFourGoals) {
  TuneAllocator();
  SetComputeThreads(1);
  int seeds_with_all_goals = 0;
  for (uint64_t seed : {1, 2, 3}) {
    auto result = TrainSync(ToyConfig(seed));
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->updates + result->skipped_updates, 3000);
    EXPECT_EQ(result->skipped_updates, 0);
    const GoalCounts counts = CountGoals(*result->updater->policy(), seed);
    seeds_with_all_goals += counts.all();
    Print("sync", seed, counts, result->evals.empty() ? NAN : result->evals.back().mean, result->seconds);
    RecordProperty("seed" + std::to_string(seed) + "_all_goals", counts.all() ? "yes" : "no");
  }
  EXPECT_GE(seeds_with_all_goals, 2);
}

// The same through the full distributed path: embedded replay with the rate limiter, learner,
// two actor threads and the evaluator over gRPC; the policy is read back from the run directory.
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
  EXPECT_GE(seeds_with_all_goals, 2);
}

}  // namespace
}  // namespace meow
