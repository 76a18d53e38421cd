// What actors and the evaluator act with: a policy that takes the weights the learner publishes
// and maps observations to actions in [-1, 1]. They know nothing else of the algorithm, so the
// next algorithms plug in here as they plug into the learner (learner/algorithm.h). MEow's flow
// policy (FlowActingPolicy) is the first.
// Not thread-safe: one thread acts with a policy.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "actor/env.h"
#include "common/cnf_policy.h"
#include "common/flow_policy.h"
#include "common/sac_policy.h"
#include "common/sql_policy.h"
#include "common/safetensors.h"

namespace meow {

class ActingPolicy {
 public:
  virtual ~ActingPolicy() = default;
  // Replaces the weights with published ones; an error naming the tensor when they do not fit.
  virtual absl::Status LoadWeights(const SafetensorsFile& weights) = 0;
  // Actions (N, A) for observations (N, S), float32 on device(): a sample drawn with `generator`
  // (CPU; the device's default generator when absent), or with `deterministic` the policy's
  // deterministic action. No gradient is recorded.
  virtual at::Tensor Act(const at::Tensor& obs, bool deterministic, std::optional<at::Generator> generator) = 0;
  virtual c10::Device device() const = 0;
  // The weights it acts with, as a file holds them (with its algorithm's metadata).
  virtual SafetensorsFile ExportWeights() = 0;
};

// MEow's flow policy acting in eval mode (no dropout); its sample is the flow's.
class FlowActingPolicy : public ActingPolicy {
 public:
  // A fresh network of `config`'s sizes (its weights come from LoadWeights).
  explicit FlowActingPolicy(const FlowPolicyConfig& config);
  // Acts with `policy` itself, not a copy (the single-threaded loop acts with the network it trains).
  explicit FlowActingPolicy(FlowPolicy policy);

  absl::Status LoadWeights(const SafetensorsFile& weights) override { return policy_->ImportWeights(weights); }
  at::Tensor Act(const at::Tensor& obs, bool deterministic, std::optional<at::Generator> generator) override;
  c10::Device device() const override;
  SafetensorsFile ExportWeights() override { return policy_->ExportWeights(); }

 private:
  FlowPolicy policy_;
};

// SAC's tanh-Gaussian policy (common/sac_policy.h): a sample tanh(mean + sigma * eps), or tanh(mean).
class SacActingPolicy : public ActingPolicy {
 public:
  explicit SacActingPolicy(const SacPolicyConfig& config) : actor_(config) {}
  absl::Status LoadWeights(const SafetensorsFile& weights) override { return actor_->ImportWeights(weights); }
  at::Tensor Act(const at::Tensor& obs, bool deterministic, std::optional<at::Generator> generator) override;
  c10::Device device() const override;
  SafetensorsFile ExportWeights() override { return actor_->ExportWeights(); }

 private:
  SacActor actor_;
};

// SQL's sampler (common/sql_policy.h): tanh(f(s, xi)) with fresh noise, or at xi = 0.
class SqlActingPolicy : public ActingPolicy {
 public:
  explicit SqlActingPolicy(const SqlPolicyConfig& config) : sampler_(config) {}
  absl::Status LoadWeights(const SafetensorsFile& weights) override { return sampler_->ImportWeights(weights); }
  at::Tensor Act(const at::Tensor& obs, bool deterministic, std::optional<at::Generator> generator) override;
  c10::Device device() const override;
  SafetensorsFile ExportWeights() override { return sampler_->ExportWeights(); }

 private:
  SqlSampler sampler_;
};

// CNF's policy (common/cnf_policy.h): the latent actor's tanh-Gaussian latent (its mean when
// deterministic) decoded by the frozen flow.
class CnfActingPolicy : public ActingPolicy {
 public:
  explicit CnfActingPolicy(const CnfPolicyConfig& config) : policy_(config) {}
  absl::Status LoadWeights(const SafetensorsFile& weights) override { return policy_->ImportWeights(weights); }
  at::Tensor Act(const at::Tensor& obs, bool deterministic, std::optional<at::Generator> generator) override {
    return policy_->Act(obs, deterministic, std::move(generator));
  }
  c10::Device device() const override { return policy_->parameters().front().device(); }
  SafetensorsFile ExportWeights() override { return policy_->ExportWeights(); }

 private:
  CnfPolicy policy_;
};

// The algorithms there are acting policies for: "meow" (the flow policy), "sac", "sql", and the
// offline-only "cnf" and "bc" (behaviour cloning, whose network and weights files are SAC's).
absl::Status ValidateAlgorithm(const std::string& algo);
// A fresh acting policy of `algo` for the sizes of `flow` (MEow takes the rest of `flow`; SAC its
// own defaults); its weights come from LoadWeights, which refuses another algorithm's by name.
absl::StatusOr<std::unique_ptr<ActingPolicy>> NewActingPolicy(const std::string& algo, const FlowPolicyConfig& flow);

// The acting policy `weights` are for (by their "meow.algorithm": MEow's flow, SAC's or SQL's), built to
// their sizes and loaded, for a task of `spec`'s sizes; errors name `source` and what does not fit.
absl::StatusOr<std::unique_ptr<ActingPolicy>> MakeActingPolicy(const SafetensorsFile& weights, const EnvSpec& spec,
                                                               const std::string& source);

// The policy in a weights file (policy_latest/best.safetensors, a checkpoint's export) for a task
// of `spec`'s sizes; errors name the file and what does not fit.
absl::StatusOr<std::unique_ptr<ActingPolicy>> LoadActingPolicy(const std::string& path, const EnvSpec& spec);

}  // namespace meow
