#include "actor/multi_goal.h"

#include <algorithm>
#include <cmath>

namespace meow {
namespace {
constexpr double kBound = 7.0;
constexpr double kActionCost = 30.0;
constexpr double kDistanceCost = 1.0;
constexpr double kGoalReward = 10.0;
constexpr double kInitNoise = 0.1;
}  // namespace

MultiGoalEnv::MultiGoalEnv() : rng_(0) {
  spec_.name = "MultiGoal-v0";
  spec_.obs_dim = 2;
  spec_.action_dim = 2;
  spec_.max_episode_steps = 1000;
}

absl::Status MultiGoalEnv::Reset(std::optional<uint64_t> seed) {
  if (seed.has_value()) rng_.seed(*seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (double& x : state_) x = std::clamp(kInitNoise * normal(rng_), -kBound, kBound);
  steps_ = 0;
  running_ = true;
  return absl::OkStatus();
}

std::pair<int, double> MultiGoalEnv::NearestGoal(const std::array<double, 2>& position) {
  int best = 0;
  double best_sq = 1e300;
  for (int g = 0; g < 4; ++g) {
    const double dx = position[0] - kGoals[g][0], dy = position[1] - kGoals[g][1];
    if (dx * dx + dy * dy < best_sq) {
      best_sq = dx * dx + dy * dy;
      best = g;
    }
  }
  return {best, std::sqrt(best_sq)};
}

void MultiGoalEnv::SetState(const std::array<double, 2>& position) {
  for (int i = 0; i < 2; ++i) state_[i] = std::clamp(position[i], -kBound, kBound);
  running_ = true;
}

absl::StatusOr<StepResult> MultiGoalEnv::Step(absl::Span<const float> action) {
  if (absl::Status s = ValidateAction(spec_, action); !s.ok()) return s;
  if (!running_) {
    return absl::FailedPreconditionError("MultiGoal-v0: Step called before Reset or after the episode ended");
  }
  double action_sq = 0;
  for (int i = 0; i < 2; ++i) {
    const double a = std::clamp(static_cast<double>(action[i]), -1.0, 1.0);
    action_sq += a * a;
    state_[i] = std::clamp(state_[i] + a, -kBound, kBound);
  }
  const auto [goal, distance] = NearestGoal(state_);
  StepResult result;
  result.terminated = distance < kGoalThreshold;
  result.reward =
      -kActionCost * action_sq - kDistanceCost * distance * distance + (result.terminated ? kGoalReward : 0.0);
  ++steps_;
  result.truncated = !result.terminated && steps_ >= spec_.max_episode_steps;
  running_ = !(result.terminated || result.truncated);
  return result;
}

}  // namespace meow
