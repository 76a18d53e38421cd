// Runs whole episodes of a flow policy in an environment: the evaluator's inner loop and the
// tool tests use to look at a trained policy.
// Not thread-safe: uses the given policy and environment exclusively while it runs.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Generator.h>

#include "absl/status/statusor.h"
#include "actor/acting_policy.h"
#include "actor/env.h"
#include "actor/multi_goal.h"
#include "common/flow_policy.h"

namespace meow {

struct EpisodeResult {
  double episode_return = 0;
  int64_t length = 0;
  bool terminated = false;
  std::vector<double> final_observation;
};

struct EvalSummary {
  double mean = 0;
  double std = 0;
  std::vector<EpisodeResult> episodes;
  // MultiGoal-v0: where the episodes ended (CountMultiGoalEnds); unset for the other tasks.
  std::optional<MultiGoalCounts> goals;
};

// Copies an observation into a float32 (1, S) tensor on the policy's device.
at::Tensor ObservationTensor(absl::Span<const double> observation, const c10::Device& device);

// Called with the environment after the reset and after every step of an episode (e.g. to draw
// a video frame); an error ends the episode with that error.
using StepObserver = std::function<absl::Status(const Env& env)>;

// Runs one episode from Reset(seed) (nullopt: continue the env's stream), with at most
// `max_steps` steps (<= 0: the task's limit), showing each state to `observe` when given.
absl::StatusOr<EpisodeResult> RunEpisode(ActingPolicy& policy, Env& env, std::optional<uint64_t> seed,
                                         bool deterministic, int64_t max_steps,
                                         std::optional<at::Generator> generator = std::nullopt,
                                         const StepObserver& observe = nullptr);

// `episodes` episodes on fresh resets seeded seed_base + i, as the reference evaluation does,
// each of at most `max_steps` steps (<= 0: the task's limit). On MultiGoal-v0 (whose resets put
// the point at the origin) the summary also counts the goals the episodes ended at: with the
// task's preset (100 stochastic episodes of at most 50 steps) that is the papers' measure.
absl::StatusOr<EvalSummary> Evaluate(ActingPolicy& policy, Env& env, int64_t episodes, bool deterministic,
                                     uint64_t seed_base, std::optional<at::Generator> generator = std::nullopt,
                                     int64_t max_steps = 0);

// MultiGoal-v0: the goal each episode ended at (a multi-modal policy reaches all four), counted
// over the episodes that terminated at a goal; the others are unfinished.
MultiGoalCounts CountMultiGoalEnds(const EvalSummary& summary);

// MultiGoal-v0 as the papers picture it: `rollouts` stochastic episodes of at most `max_steps`
// from the origin (resets seeded seed + i, actions from a stream seeded seed + 100), with every
// position. The learning tests' measure is RollOutMultiGoal(policy, 100, 50, 1000).
absl::StatusOr<MultiGoalRollouts> RollOutMultiGoal(ActingPolicy& policy, int rollouts, int max_steps, uint64_t seed);

}  // namespace meow
