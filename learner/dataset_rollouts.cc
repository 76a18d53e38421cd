#include "learner/dataset_rollouts.h"

#include <algorithm>
#include <random>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "actor/evaluate.h"

namespace meow {

absl::Status RolloutConfig::Validate() const {
  if (episodes < 1) return absl::InvalidArgumentError(absl::StrCat("episodes: expected >= 1, got ", episodes));
  if (!(action_noise >= 0 && action_noise <= 10)) {
    return absl::InvalidArgumentError(absl::StrCat("action_noise: expected 0 to 10, got ", action_noise));
  }
  if (!(random_action_prob >= 0 && random_action_prob <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("random_action_prob: expected 0 to 1, got ", random_action_prob));
  }
  return absl::OkStatus();
}

absl::StatusOr<Dataset> CollectRollouts(ActingPolicy* policy, Env& env, const RolloutConfig& config) {
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  const EnvSpec& spec = env.spec();
  const int s = spec.obs_dim;
  const int a = spec.action_dim;
  Dataset dataset;
  dataset.obs_dim = s;
  dataset.action_dim = a;
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(config.seed + 100);
  std::mt19937_64 rng(config.seed + 100);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  std::normal_distribution<float> noise(0.0f, static_cast<float>(config.action_noise));
  const int64_t max_steps = config.max_steps > 0 ? config.max_steps : spec.max_episode_steps;
  std::vector<float> obs(s), next(s), action(a);
  for (int64_t episode = 0; episode < config.episodes; ++episode) {
    if (absl::Status st = env.Reset(config.seed + static_cast<uint64_t>(episode)); !st.ok()) return st;
    for (int64_t t = 0; t < max_steps; ++t) {
      auto observation = env.Observation();
      std::copy(observation.begin(), observation.end(), obs.begin());
      if (policy == nullptr || (config.random_action_prob > 0 && coin(rng) < config.random_action_prob)) {
        for (float& x : action) x = uniform(rng);
      } else {
        const at::Tensor acted =
            policy->Act(ObservationTensor(observation, policy->device()), !config.stochastic, generator)
                .to(at::kCPU)
                .contiguous();
        std::copy(acted.data_ptr<float>(), acted.data_ptr<float>() + a, action.begin());
        if (config.action_noise > 0) {
          for (float& x : action) x = std::clamp(x + noise(rng), -1.0f, 1.0f);
        }
      }
      absl::StatusOr<StepResult> step = env.Step(action);
      if (!step.ok()) return step.status();
      auto after = env.Observation();
      std::copy(after.begin(), after.end(), next.begin());
      // The step limit here is the episode's time limit too (a shorter --max_steps included).
      const bool timeout = !step->terminated && (step->truncated || t + 1 == max_steps);
      dataset.Add(obs.data(), action.data(), static_cast<float>(step->reward), next.data(), step->terminated,
                  timeout);
      if (step->terminated || timeout) break;
    }
  }
  DatasetMetadata& m = dataset.metadata;
  m.task = spec.name;
  m.source = policy == nullptr ? "random" : "policy";
  m.episodes = config.episodes;
  m.extra["stochastic"] = policy == nullptr ? "uniform" : (config.stochastic ? "true" : "false");
  m.extra["action_noise"] = absl::StrCat(config.action_noise);
  m.extra["random_action_prob"] = absl::StrCat(policy == nullptr ? 1.0 : config.random_action_prob);
  m.extra["seed"] = absl::StrCat(config.seed);
  return dataset;
}

}  // namespace meow
