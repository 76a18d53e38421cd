// V instances of one task stepped together, for batched policy sampling in the actor.
//
// Auto-reset as in Gymnasium's vector environments: when an instance's episode ends (terminated
// or truncated) during Step, its final observation is kept in final_observations() and the
// instance is reset at once (its random stream goes on), so observations() always holds what
// each instance acts on next. Reset(seed) seeds instance i with seed + i.
//
// Stepping runs on the calling thread by default. With num_threads > 0 a small pool of worker
// threads, started once and kept, shares the instances with the calling thread; every instance
// is stepped by exactly one thread per Step, and results are the same as without the pool.
//
// Owns its environments and its workers (joined on destruction). Not thread-safe: one thread
// calls Reset/Step and reads the results.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "actor/env.h"

namespace meow {

struct VectorEnvOptions {
  // Worker threads besides the calling one. 0 (the default): everything on the calling thread,
  // which suits a 2-core machine where the policy needs the other core.
  int num_threads = 0;
  // > 0: an episode is also truncated after this many steps (a time limit shorter than the
  // task's, as Gymnasium's TimeLimit wrapper sets one); 0: the task's own limit.
  int max_episode_steps = 0;

  absl::Status Validate() const;
};

class VectorEnv {
 public:
  // `num_envs` instances of `task`, made by MakeEnv (actor/env_registry.h): NotFound for an
  // unknown task, InvalidArgument for num_envs < 1 or bad options.
  static absl::StatusOr<std::unique_ptr<VectorEnv>> Create(std::string_view task, int num_envs,
                                                           const VectorEnvOptions& options = {});
  // Takes ownership of `envs`: at least one, all non-null and with the same spec.
  static absl::StatusOr<std::unique_ptr<VectorEnv>> Create(std::vector<std::unique_ptr<Env>> envs,
                                                           const VectorEnvOptions& options = {});

  VectorEnv(const VectorEnv&) = delete;
  VectorEnv& operator=(const VectorEnv&) = delete;
  ~VectorEnv();

  int num_envs() const { return static_cast<int>(envs_.size()); }
  const EnvSpec& spec() const { return envs_[0]->spec(); }
  // Instance i, for tests and tools; stepping it directly bypasses the bookkeeping here.
  Env& env(int i) { return *envs_[i]; }

  // Resets every instance (instance i with seed + i when a seed is given) and fills
  // observations(); rewards and flags are cleared.
  absl::Status Reset(std::optional<uint64_t> seed);

  // Steps instance i with row i of `actions` (num_envs x action_dim floats, row-major, in
  // [-1, 1]). All rows are checked first: a wrong total size, or a NaN/inf entry, is
  // InvalidArgument naming the instance and entry, and no instance is stepped.
  // FailedPrecondition before the first Reset.
  absl::Status Step(absl::Span<const float> actions);

  // Results of the last Step. [num_envs x obs_dim], row-major: the observation each instance acts
  // on next (for an instance whose episode just ended, the first one of its next episode).
  absl::Span<const double> observations() const { return observations_; }
  // [num_envs x obs_dim]: row i is the last observation of the episode instance i ended in the
  // last Step; meaningful only where terminated()[i] or truncated()[i] is set.
  absl::Span<const double> final_observations() const { return final_observations_; }
  absl::Span<const double> rewards() const { return rewards_; }
  // 1 where the episode ended in a terminal state (no bootstrapping), else 0.
  absl::Span<const uint8_t> terminated() const { return terminated_; }
  // 1 where the episode hit the step limit in a live state, else 0.
  absl::Span<const uint8_t> truncated() const { return truncated_; }
  // Each instance's simulator warnings from the last Step (see StepResult::warning).
  absl::Span<const std::string> warnings() const { return warnings_; }
  // Instance steps that raised a simulator warning, over this object's lifetime.
  int64_t warning_count() const { return warning_count_; }

 private:
  class WorkerPool;

  VectorEnv(std::vector<std::unique_ptr<Env>> envs, const VectorEnvOptions& options);
  // Steps instance i (resetting it if its episode ends) and records its results.
  absl::Status StepOne(int i, absl::Span<const float> action);

  std::vector<std::unique_ptr<Env>> envs_;
  std::unique_ptr<WorkerPool> pool_;  // null without worker threads
  std::vector<double> observations_, final_observations_, rewards_;
  std::vector<uint8_t> terminated_, truncated_;
  int max_episode_steps_ = 0;
  std::vector<int64_t> episode_steps_;  // steps of each instance's current episode
  std::vector<std::string> warnings_;
  std::vector<absl::Status> step_status_;  // per instance, written by whichever thread stepped it
  int64_t warning_count_ = 0;
  bool started_ = false;
};

}  // namespace meow
