// Shared by the MultiGoal-v0 learning tests: the paper's toy configuration, and what both the
// reference loop's test and the distributed test measure on a finished run: the policy a run
// directory holds (policy_latest.safetensors), rolled out stochastically from the origin, counted
// at the goal each rollout ends at. The measurement is exactly (one command line)
//   meow eval --policy=RUN_DIR/policy_latest.safetensors --env=MultiGoal-v0 --stochastic
//             --episodes=100 --max_steps=50 --seed=1000
#pragma once

#include <cstdio>
#include <string>

#include <ATen/CPUGeneratorImpl.h>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "actor/evaluate.h"
#include "actor/multi_goal.h"
#include "common/presets.h"
#include "common/safetensors.h"
#include "learner/sync_trainer.h"

namespace meow {
namespace multigoal {

inline constexpr int kRollouts = 100;
inline constexpr int kMaxSteps = 50;
inline constexpr int kMinFinished = 75;
inline constexpr uint64_t kEvalSeed = 1000;  // resets kEvalSeed + i; actions from kEvalSeed + 100

inline TrainSettings ToyConfig(uint64_t seed) {
  TrainSettings c = ConfigFromPreset(*GetPreset("MultiGoal-v0"));
  c.seed = seed;
  c.device = "cpu";
  c.progress = false;
  return c;
}

// A seed counts when every goal ends at least one rollout and at least kMinFinished of kRollouts
// end at a goal within kMaxSteps steps.
inline bool AllFourGoals(const MultiGoalCounts& c) {
  return c.goals() == 4 && kRollouts - c.unfinished >= kMinFinished;
}

// The rollouts of the policy in RUN_DIR/policy_latest.safetensors.
inline absl::StatusOr<MultiGoalCounts> CountGoalsOfRun(const std::string& run_dir) {
  const std::string path = run_dir + "/policy_latest.safetensors";
  MultiGoalEnv env;
  auto policy = LoadActingPolicy(path, env.spec());
  if (!policy.ok()) return policy.status();
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(kEvalSeed + 100);
  auto summary = Evaluate(**policy, env, kRollouts, /*deterministic=*/false, kEvalSeed, gen, kMaxSteps);
  if (!summary.ok()) return summary.status();
  return CountMultiGoalEnds(*summary);
}

inline void Print(const char* path, uint64_t seed, const MultiGoalCounts& c, double last_eval, double seconds) {
  std::printf(
      "%s seed %d: goals (+5,0) %d, (-5,0) %d, (0,+5) %d, (0,-5) %d, unfinished %d of %d; "
      "last eval return %.1f; %.1f s\n",
      path, static_cast<int>(seed), c.reached[0], c.reached[1], c.reached[2], c.reached[3], c.unfinished, kRollouts,
      last_eval, seconds);
}

}  // namespace multigoal
}  // namespace meow
