// Datasets made by acting: episodes of a saved policy (or of uniformly random actions) in a task,
// recorded row by row in episode order as `meow dataset export --policy` writes them. The usual
// offline-RL datasets come out of it: "random" (no policy), "medium" (a partly trained policy,
// stochastic), "expert" (a trained one); --action_noise and --random_action_prob mix in noise.
// Not thread-safe: uses the policy and environment exclusively.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "actor/acting_policy.h"
#include "actor/env.h"
#include "replay/dataset.h"

namespace meow {

struct RolloutConfig {
  int64_t episodes = 10;
  bool stochastic = true;         // sample the policy's actions; false: its deterministic rule
  double action_noise = 0;        // std of Gaussian noise added to each action (then clipped to [-1, 1])
  double random_action_prob = 0;  // chance that a step's action is uniform in [-1, 1]^A instead
  uint64_t seed = 1;              // episode i resets with seed + i; actions and noise from seed + 100
  int64_t max_steps = 0;          // per episode; <= 0: the task's limit

  absl::Status Validate() const;  // InvalidArgument naming the field
};

// Runs `config.episodes` episodes with `policy` (null: uniform random actions) and records every
// step: terminals where the task terminated, timeouts where the episode hit its step limit.
// Metadata: the task, source "policy" or "random", episodes and the settings (extra).
absl::StatusOr<Dataset> CollectRollouts(ActingPolicy* policy, Env& env, const RolloutConfig& config);

}  // namespace meow
