#include "actor/multi_goal.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"

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

double MultiGoalEnv::PositionReward(const std::array<double, 2>& position) {
  const double distance = NearestGoal(position).second;
  return -kDistanceCost * distance * distance + (distance < kGoalThreshold ? kGoalReward : 0.0);
}

int MultiGoalCounts::goals() const {
  int n = 0;
  for (int r : reached) n += r > 0;
  return n;
}

MultiGoalCounts MultiGoalRollouts::Count() const {
  MultiGoalCounts counts;
  for (const auto& path : paths) {
    const auto [goal, distance] =
        path.empty() ? std::pair<int, double>{0, 1e300} : MultiGoalEnv::NearestGoal(path.back());
    if (distance < MultiGoalEnv::kGoalThreshold) {
      ++counts.reached[goal];
    } else {
      ++counts.unfinished;
    }
  }
  return counts;
}

std::string DescribeGoals(const MultiGoalCounts& c) {
  const int total = c.reached[0] + c.reached[1] + c.reached[2] + c.reached[3] + c.unfinished;
  const std::string detail =
      absl::StrFormat("(%d/%d/%d/%d of %d at (+5,0)/(-5,0)/(0,+5)/(0,-5); %d unfinished)", c.reached[0], c.reached[1],
                      c.reached[2], c.reached[3], total, c.unfinished);
  if (c.goals() == 4) return "reached all 4 goals " + detail;
  return absl::StrCat("reached ", c.goals(), " of 4 goals ", detail);
}

absl::Status WriteMultiGoalRollouts(const std::string& path, const MultiGoalRollouts& rollouts) {
  std::string text = "rollout,step,x,y\n";
  for (size_t r = 0; r < rollouts.paths.size(); ++r) {
    for (size_t t = 0; t < rollouts.paths[r].size(); ++t) {
      absl::StrAppendFormat(&text, "%d,%d,%.6g,%.6g\n", r, t, rollouts.paths[r][t][0], rollouts.paths[r][t][1]);
    }
  }
  return WriteFileAtomically(path, text);
}

absl::StatusOr<MultiGoalRollouts> ReadMultiGoalRollouts(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  std::vector<absl::string_view> lines = absl::StrSplit(*text, '\n', absl::SkipWhitespace());
  if (lines.empty() || lines[0] != "rollout,step,x,y") {
    return absl::InvalidArgumentError(absl::StrCat(path, ": expected the header rollout,step,x,y"));
  }
  MultiGoalRollouts rollouts;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::vector<absl::string_view> cells = absl::StrSplit(lines[i], ',');
    int64_t rollout = -1, step = -1;
    double x = 0, y = 0;
    if (cells.size() != 4 || !absl::SimpleAtoi(cells[0], &rollout) || !absl::SimpleAtoi(cells[1], &step) ||
        !absl::SimpleAtod(cells[2], &x) || !absl::SimpleAtod(cells[3], &y) || !std::isfinite(x) || !std::isfinite(y) ||
        rollout < 0 || rollout > 100000 || step < 0) {
      return absl::InvalidArgumentError(absl::StrCat(path, " line ", i + 1, ": expected rollout,step,x,y numbers"));
    }
    if (rollout >= static_cast<int64_t>(rollouts.paths.size())) rollouts.paths.resize(rollout + 1);
    auto& points = rollouts.paths[rollout];
    if (step != static_cast<int64_t>(points.size())) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, " line ", i + 1, ": step ", step, " of rollout ", rollout, " out of order"));
    }
    points.push_back({x, y});
  }
  return rollouts;
}

}  // namespace meow
