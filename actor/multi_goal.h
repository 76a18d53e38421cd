// MultiGoal-v0, the 2-D toy of the soft Q-learning and MEow papers (reference/meow-and-envs.md §4):
// a point at s in [-7, 7]^2 moves by the clipped action; four goals at (+-5, 0), (0, +-5); the
// episode terminates within distance 1 of a goal and truncates after 1000 steps.
//   reward = -30 |a|^2 - min_g |s' - g|^2 + 10 * [min_g |s' - g| < 1]
// Not thread-safe.
#pragma once

#include <array>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

#include "actor/env.h"

namespace meow {

class MultiGoalEnv : public Env {
 public:
  static constexpr std::array<std::array<double, 2>, 4> kGoals = {{{5.0, 0.0}, {-5.0, 0.0}, {0.0, 5.0}, {0.0, -5.0}}};
  static constexpr double kGoalThreshold = 1.0;

  MultiGoalEnv();
  const EnvSpec& spec() const override { return spec_; }
  absl::Status Reset(std::optional<uint64_t> seed) override;
  absl::StatusOr<StepResult> Step(absl::Span<const float> action) override;
  absl::Span<const double> Observation() const override { return {state_.data(), 2}; }

  // Index of the goal nearest to `position` and its distance.
  static std::pair<int, double> NearestGoal(const std::array<double, 2>& position);
  // Puts the point at `position` (clipped to the box) mid-episode; for tests and plots.
  void SetState(const std::array<double, 2>& position);

  // The reward's position terms at `position`: -min_g |s - g|^2 + 10 within a goal (the figure's
  // contours; the action cost comes on top).
  static double PositionReward(const std::array<double, 2>& position);

 private:
  EnvSpec spec_;
  std::mt19937_64 rng_;
  std::array<double, 2> state_{};
  int steps_ = 0;
  bool running_ = false;
};

// Rollouts counted by the goal each ended at (a multi-modal policy reaches all four); those that
// ended elsewhere (the step limit) are unfinished.
struct MultiGoalCounts {
  std::array<int, 4> reached{};  // by goal: (+5,0), (-5,0), (0,+5), (0,-5)
  int unfinished = 0;
  int goals() const;  // goals reached at least once
};

// Stochastic rollouts from the origin, the papers' picture of what was learned: each one's
// positions from the reset on.
struct MultiGoalRollouts {
  std::vector<std::vector<std::array<double, 2>>> paths;
  MultiGoalCounts Count() const;  // by the goal within reach of each path's last point
};

// "reached all 4 goals (31/24/22/19 of 100; 4 unfinished)", "reached 2 of 4 goals (...)".
std::string DescribeGoals(const MultiGoalCounts& counts);

// RUN_DIR/multigoal_rollouts.csv: "rollout,step,x,y" rows. Read refuses a malformed file naming
// the line.
absl::Status WriteMultiGoalRollouts(const std::string& path, const MultiGoalRollouts& rollouts);
absl::StatusOr<MultiGoalRollouts> ReadMultiGoalRollouts(const std::string& path);

}  // namespace meow
