// The environment interface every task implements (MultiGoal-v0 and the MuJoCo tasks), with
// Gymnasium semantics: Reset(seed) seeds the task's random stream (a reset without a seed goes on
// with the stream), Step takes an action in [-1, 1]^A (the policy's space; each task rescales to
// its control range), and an episode ends by termination (a true terminal state) or truncation
// (the step limit), never both conflated.
// Not thread-safe: one thread steps an environment.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace meow {

struct EnvSpec {
  std::string name;
  int obs_dim = 0;
  int action_dim = 0;
  int max_episode_steps = 1000;
};

struct StepResult {
  double reward = 0;
  bool terminated = false;  // a terminal state: no bootstrapping from the next observation
  bool truncated = false;   // the step limit: the next observation is still a valid state
  // Empty unless the simulator raised warnings during this step (e.g. MuJoCo's "simulation is
  // unstable"); then it names them and the episode step. The step itself still happened.
  std::string warning;
};

class Env {
 public:
  virtual ~Env() = default;
  virtual const EnvSpec& spec() const = 0;
  // Starts an episode. With a seed, re-seeds the task's random stream first.
  virtual absl::Status Reset(std::optional<uint64_t> seed) = 0;
  // Advances one step. InvalidArgument (and no step taken) for an action of the wrong size or with
  // NaN/inf entries; FailedPrecondition when called before Reset or after the episode ended.
  virtual absl::StatusOr<StepResult> Step(absl::Span<const float> action) = 0;
  // The current observation (after Reset or Step), obs_dim values, valid until the next call.
  virtual absl::Span<const double> Observation() const = 0;
};

// Checks an action against the spec: size and finiteness. The error names the offending entry.
absl::Status ValidateAction(const EnvSpec& spec, absl::Span<const float> action);

}  // namespace meow
