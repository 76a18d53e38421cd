#include "actor/acting_policy.h"

#include <utility>

#include <torch/utils.h>

#include "absl/strings/str_cat.h"

namespace meow {

FlowActingPolicy::FlowActingPolicy(const FlowPolicyConfig& config) : policy_(config) { policy_->eval(); }

FlowActingPolicy::FlowActingPolicy(FlowPolicy policy) : policy_(std::move(policy)) {}

at::Tensor FlowActingPolicy::Act(const at::Tensor& obs, bool deterministic, std::optional<at::Generator> generator) {
  torch::NoGradGuard no_grad;
  // A shared network may be between updates in train mode: act in eval mode, then put it back.
  const bool was_training = policy_->is_training();
  if (was_training) policy_->eval();
  at::Tensor action = policy_->Sample(obs, deterministic, std::move(generator)).action;
  if (was_training) policy_->train();
  return action;
}

c10::Device FlowActingPolicy::device() const { return policy_->parameters().front().device(); }

absl::StatusOr<std::unique_ptr<ActingPolicy>> LoadActingPolicy(const std::string& path, const EnvSpec& spec) {
  auto file = ReadSafetensors(path);
  if (!file.ok()) return file.status();
  auto config = ConfigFromWeights(*file, FlowPolicyConfig());
  if (!config.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", config.status().message()));
  if (config->obs_dim != spec.obs_dim || config->action_dim != spec.action_dim) {
    return absl::InvalidArgumentError(absl::StrCat(path, " holds a policy for ", config->obs_dim, " observations and ",
                                                   config->action_dim, " actions; ", spec.name, " has ", spec.obs_dim,
                                                   " and ", spec.action_dim));
  }
  auto policy = std::make_unique<FlowActingPolicy>(*config);
  if (absl::Status s = policy->LoadWeights(*file); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat(path, ": ", s.message()));
  }
  return policy;
}

}  // namespace meow
