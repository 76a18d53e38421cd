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

at::Tensor SacActingPolicy::Act(const at::Tensor& obs, bool deterministic, std::optional<at::Generator> generator) {
  torch::NoGradGuard no_grad;
  return actor_->Sample(obs, deterministic, std::move(generator)).action;
}

c10::Device SacActingPolicy::device() const { return actor_->parameters().front().device(); }

at::Tensor SqlActingPolicy::Act(const at::Tensor& obs, bool deterministic, std::optional<at::Generator> generator) {
  torch::NoGradGuard no_grad;
  return sampler_->Sample(obs, deterministic, std::move(generator));
}

c10::Device SqlActingPolicy::device() const { return sampler_->parameters().front().device(); }

absl::Status ValidateAlgorithm(const std::string& algo) {
  if (algo == "meow" || algo == "sac" || algo == "sql" || algo == "cnf" || algo == "bc") return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("--algo=", algo, ": expected meow, sac, sql, cnf or bc"));
}

absl::StatusOr<std::unique_ptr<ActingPolicy>> NewActingPolicy(const std::string& algo, const FlowPolicyConfig& flow) {
  if (absl::Status s = ValidateAlgorithm(algo); !s.ok()) return s;
  if (algo == "sac" || algo == "bc") {  // behaviour cloning trains SAC's actor network
    SacPolicyConfig config;
    config.obs_dim = flow.obs_dim;
    config.action_dim = flow.action_dim;
    if (absl::Status s = config.Validate(); !s.ok()) return s;
    return std::unique_ptr<ActingPolicy>(std::make_unique<SacActingPolicy>(config));
  }
  if (algo == "sql") {
    SqlPolicyConfig config;
    config.obs_dim = flow.obs_dim;
    config.action_dim = flow.action_dim;
    if (absl::Status s = config.Validate(); !s.ok()) return s;
    return std::unique_ptr<ActingPolicy>(std::make_unique<SqlActingPolicy>(config));
  }
  if (algo == "cnf") {
    CnfPolicyConfig config;
    config.flow.obs_dim = flow.obs_dim;
    config.flow.action_dim = flow.action_dim;
    if (absl::Status s = config.Validate(); !s.ok()) return s;
    return std::unique_ptr<ActingPolicy>(std::make_unique<CnfActingPolicy>(config));
  }
  if (absl::Status s = flow.Validate(); !s.ok()) return s;
  return std::unique_ptr<ActingPolicy>(std::make_unique<FlowActingPolicy>(flow));
}

absl::StatusOr<std::unique_ptr<ActingPolicy>> MakeActingPolicy(const SafetensorsFile& weights, const EnvSpec& spec,
                                                               const std::string& source) {
  auto sizes_fit = [&](int64_t obs_dim, int64_t action_dim) -> absl::Status {
    if (obs_dim == spec.obs_dim && action_dim == spec.action_dim) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(source, " holds a policy for ", obs_dim, " observations and ",
                                                   action_dim, " actions; ", spec.name, " has ", spec.obs_dim, " and ",
                                                   spec.action_dim));
  };
  std::unique_ptr<ActingPolicy> policy;
  const std::string algorithm = WeightsAlgorithm(weights);
  if (algorithm == "meow") {
    auto config = ConfigFromWeights(weights, FlowPolicyConfig());
    if (!config.ok()) return absl::InvalidArgumentError(absl::StrCat(source, ": ", config.status().message()));
    if (absl::Status s = sizes_fit(config->obs_dim, config->action_dim); !s.ok()) return s;
    policy = std::make_unique<FlowActingPolicy>(*config);
  } else if (algorithm == "sac") {
    auto config = SacConfigFromWeights(weights);
    if (!config.ok()) return absl::InvalidArgumentError(absl::StrCat(source, ": ", config.status().message()));
    if (absl::Status s = sizes_fit(config->obs_dim, config->action_dim); !s.ok()) return s;
    policy = std::make_unique<SacActingPolicy>(*config);
  } else if (algorithm == "sql") {
    auto config = SqlConfigFromWeights(weights);
    if (!config.ok()) return absl::InvalidArgumentError(absl::StrCat(source, ": ", config.status().message()));
    if (absl::Status s = sizes_fit(config->obs_dim, config->action_dim); !s.ok()) return s;
    policy = std::make_unique<SqlActingPolicy>(*config);
  } else if (algorithm == "cnf") {
    auto config = CnfConfigFromWeights(weights);
    if (!config.ok()) return absl::InvalidArgumentError(absl::StrCat(source, ": ", config.status().message()));
    if (absl::Status s = sizes_fit(config->flow.obs_dim, config->flow.action_dim); !s.ok()) return s;
    policy = std::make_unique<CnfActingPolicy>(*config);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": weights for the algorithm \"", algorithm, "\", which has no acting policy here (meow, sac, sql, cnf)"));
  }
  if (absl::Status s = policy->LoadWeights(weights); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat(source, ": ", s.message()));
  }
  return policy;
}

absl::StatusOr<std::unique_ptr<ActingPolicy>> LoadActingPolicy(const std::string& path, const EnvSpec& spec) {
  auto file = ReadSafetensors(path);
  if (!file.ok()) return file.status();
  return MakeActingPolicy(*file, spec, path);
}

}  // namespace meow
