#include "actor/evaluate.h"

#include <cmath>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/utils.h>

#include "actor/multi_goal.h"
#include "common/status.h"

namespace meow {

at::Tensor ObservationTensor(absl::Span<const double> observation, const c10::Device& device) {
  at::Tensor t = at::empty({1, static_cast<int64_t>(observation.size())}, at::kFloat);
  float* p = t.data_ptr<float>();
  for (size_t i = 0; i < observation.size(); ++i) p[i] = static_cast<float>(observation[i]);
  return device.is_cpu() ? t : t.to(device);
}

absl::StatusOr<EpisodeResult> RunEpisode(ActingPolicy& policy, Env& env, std::optional<uint64_t> seed,
                                         bool deterministic, int64_t max_steps, std::optional<at::Generator> generator,
                                         const StepObserver& observe) {
  const c10::Device device = policy.device();
  if (absl::Status s = env.Reset(seed); !s.ok()) return s;
  if (observe) MEOW_RETURN_IF_ERROR(observe(env));
  if (max_steps <= 0) max_steps = env.spec().max_episode_steps;
  EpisodeResult result;
  for (int64_t t = 0; t < max_steps; ++t) {
    const at::Tensor action =
        policy.Act(ObservationTensor(env.Observation(), device), deterministic, generator).to(at::kCPU).contiguous();
    auto step = env.Step({action.data_ptr<float>(), static_cast<size_t>(action.numel())});
    if (!step.ok()) return step.status();
    result.episode_return += step->reward;
    ++result.length;
    if (observe) MEOW_RETURN_IF_ERROR(observe(env));
    if (step->terminated || step->truncated) {
      result.terminated = step->terminated;
      break;
    }
  }
  result.final_observation.assign(env.Observation().begin(), env.Observation().end());
  return result;
}

absl::StatusOr<EvalSummary> Evaluate(ActingPolicy& policy, Env& env, int64_t episodes, bool deterministic,
                                     uint64_t seed_base, std::optional<at::Generator> generator, int64_t max_steps) {
  EvalSummary summary;
  for (int64_t i = 0; i < episodes; ++i) {
    auto episode = RunEpisode(policy, env, seed_base + i, deterministic, max_steps, generator);
    if (!episode.ok()) return episode.status();
    summary.episodes.push_back(*episode);
  }
  double sum = 0, sq = 0;
  for (const auto& e : summary.episodes) sum += e.episode_return;
  summary.mean = episodes > 0 ? sum / episodes : 0;
  for (const auto& e : summary.episodes) sq += (e.episode_return - summary.mean) * (e.episode_return - summary.mean);
  summary.std = episodes > 0 ? std::sqrt(sq / episodes) : 0;
  if (dynamic_cast<const MultiGoalEnv*>(&env) != nullptr) summary.goals = CountMultiGoalEnds(summary);
  return summary;
}

MultiGoalCounts CountMultiGoalEnds(const EvalSummary& summary) {
  MultiGoalCounts counts;
  for (const EpisodeResult& e : summary.episodes) {
    if (!e.terminated || e.final_observation.size() != 2) {
      ++counts.unfinished;
      continue;
    }
    ++counts.reached[MultiGoalEnv::NearestGoal({e.final_observation[0], e.final_observation[1]}).first];
  }
  return counts;
}

absl::StatusOr<MultiGoalRollouts> RollOutMultiGoal(ActingPolicy& policy, int rollouts, int max_steps, uint64_t seed) {
  MultiGoalEnv env;
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(seed + 100);
  MultiGoalRollouts out;
  for (int i = 0; i < rollouts; ++i) {
    std::vector<std::array<double, 2>> path;
    auto episode = RunEpisode(policy, env, seed + static_cast<uint64_t>(i), /*deterministic=*/false, max_steps,
                              generator, [&](const Env& e) {
                                path.push_back({e.Observation()[0], e.Observation()[1]});
                                return absl::OkStatus();
                              });
    if (!episode.ok()) return episode.status();
    out.paths.push_back(std::move(path));
  }
  return out;
}

}  // namespace meow
