// Learning (label `learning`): MEow on MultiGoal-v0 with the paper's toy hyperparameters (4000
// steps, toy/conf/base.yaml). After training, stochastic rollouts from the origin must reach all
// four goals (the multi-modal policy of the paper's Fig. 1) in at least 2 of 3 seeds. A seed counts
// when every goal ends at least one of 100 rollouts and at least 75 rollouts end at a goal within
// 50 steps. For comparison, uniformly random actions end at a goal within 50 steps in 51% of
// rollouts (2000 simulated), so 75 of 100 is about 5 standard deviations above wandering.
#include <array>
#include <cstdio>

#include <ATen/CPUGeneratorImpl.h>

#include "actor/evaluate.h"
#include "actor/multi_goal.h"
#include "common/presets.h"
#include "common/runtime.h"
#include "gtest/gtest.h"
#include "learner/sync_trainer.h"

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

TEST(MultiGoalLearningTest, StochasticRolloutsReachAllFourGoals) {
  TuneAllocator();
  SetComputeThreads(1);
  int seeds_with_all_goals = 0;
  for (uint64_t seed : {1, 2, 3}) {
    auto result = TrainSync(ToyConfig(seed));
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->updates + result->skipped_updates, 3000);
    EXPECT_EQ(result->skipped_updates, 0);

    FlowPolicyImpl& policy = *result->updater->policy();
    MultiGoalEnv env;
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(100 + seed);
    std::array<int, 4> reached{};
    int unfinished = 0;
    for (int i = 0; i < kRollouts; ++i) {
      auto episode = RunEpisode(policy, env, /*seed=*/1000 + i, /*deterministic=*/false,
                                /*max_steps=*/kMaxSteps, gen);
      ASSERT_TRUE(episode.ok()) << episode.status();
      if (!episode->terminated) {
        ++unfinished;
        continue;
      }
      const auto [goal, distance] = MultiGoalEnv::NearestGoal(
          {episode->final_observation[0], episode->final_observation[1]});
      ASSERT_LT(distance, MultiGoalEnv::kGoalThreshold);
      ++reached[goal];
    }
    const bool all = reached[0] > 0 && reached[1] > 0 && reached[2] > 0 && reached[3] > 0 &&
                     kRollouts - unfinished >= kMinFinished;
    seeds_with_all_goals += all;
    std::printf("seed %d: goals (+5,0) %d, (-5,0) %d, (0,+5) %d, (0,-5) %d, unfinished %d of %d; "
                "last eval return %.1f; %.1f s\n",
                static_cast<int>(seed), reached[0], reached[1], reached[2], reached[3], unfinished,
                kRollouts, result->evals.empty() ? NAN : result->evals.back().mean, result->seconds);
    RecordProperty("seed" + std::to_string(seed) + "_all_goals", all ? "yes" : "no");
  }
  EXPECT_GE(seeds_with_all_goals, 2);
}

}  // namespace
}  // namespace meow
