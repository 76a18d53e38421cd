// Per-task hyperparameter presets from the MEow paper's configuration (reference/meow-and-envs.md
// §3): the values a run starts from before flags override them.
// Thread-safe: immutable data.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace meow {

struct TaskPreset {
  std::string env;
  double alpha = 0.2;
  double tau = 0.005;
  double sigma_max = -0.3;
  double sigma_min = -5.0;
  double gamma = 0.99;
  double lr = 1e-3;
  double grad_clip = 30.0;
  int64_t learning_starts = 5000;  // uniform random actions before this many env steps
  int64_t total_env_steps = 2'000'000;
  int64_t batch_size = 256;
  int64_t buffer_size = 1'000'000;
  int64_t eval_interval = 10'000;  // env steps between evaluations
  int64_t eval_episodes = 10;
  bool deterministic_eval = true;
  int64_t eval_max_steps = 0;  // steps per evaluation episode at most (0: the task's limit)
  // Actor threads of `meow train`'s local mode, measured per task (README, "Does local mode learn
  // like the reference loop?"): one on the MuJoCo tasks, where two stayed on Hopper-v4's plateau,
  // and two on MultiGoal-v0, where two reached all four goals in more seeds than one.
  int local_actors = 1;
  // Soft Q-learning's reward scale (1 / alpha) as the MEow authors' SQL baseline sets it per task
  // (reference/baselines-sql-sac-offline.md §1.3); 0 where none is published (`--reward_scale`).
  double sql_reward_scale = 0;
  // SQL's warm-up (uniform actions) and run length: the authors' 5000 and the task's own length,
  // except on MultiGoal-v0, where it reaches all four goals within 6000 steps (README).
  int64_t sql_learning_starts = 5000;
  int64_t sql_total_env_steps = 0;  // 0: total_env_steps
};

// NotFound listing the known names when `env` has no preset.
absl::StatusOr<TaskPreset> GetPreset(std::string_view env);
std::vector<std::string> PresetNames();

}  // namespace meow
