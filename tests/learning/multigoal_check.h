// Shared by the MultiGoal-v0 learning tests: the paper's toy configuration and the count of
// stochastic rollouts from the origin that end at each goal.
#pragma once

#include <array>
#include <cmath>
#include <cstdio>

#include <ATen/CPUGeneratorImpl.h>

#include "actor/evaluate.h"
#include "actor/multi_goal.h"
#include "common/presets.h"
#include "gtest/gtest.h"
#include "learner/sync_trainer.h"

namespace meow {
namespace multigoal {

inline constexpr int kRollouts = 100;
inline constexpr int kMaxSteps = 50;
inline constexpr int kMinFinished = 75;

inline SyncTrainConfig ToyConfig(uint64_t seed) {
  SyncTrainConfig c = ConfigFromPreset(*GetPreset("MultiGoal-v0"));
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
inline GoalCounts CountGoals(FlowPolicyImpl& policy, uint64_t seed) {
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

inline void Print(const char* path, uint64_t seed, const GoalCounts& c, double last_eval, double seconds) {
  std::printf("%s seed %d: goals (+5,0) %d, (-5,0) %d, (0,+5) %d, (0,-5) %d, unfinished %d of %d; "
              "last eval return %.1f; %.1f s\n",
              path, static_cast<int>(seed), c.reached[0], c.reached[1], c.reached[2], c.reached[3],
              c.unfinished, kRollouts, last_eval, seconds);
}

}  // namespace multigoal
}  // namespace meow
