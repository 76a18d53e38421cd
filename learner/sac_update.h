// SAC's update as CleanRL's sac_continuous_action.py makes it (reference/baselines-sql-sac-offline.md
// §2.1), one call per sampled batch:
//   critic, every call:  a' ~ pi(.|s'),  y = r + gamma (1 - terminated) (min_k Qbar_k(s', a') - alpha log pi(a'|s'))
//                        loss = mse(Q_1(s, a), y) + mse(Q_2(s, a), y), one Adam (q_lr) over both Q networks
//   actor, on every policy_frequency-th call, policy_frequency times (CleanRL's delayed "TD3 style"):
//                        a ~ pi(.|s) reparameterised, loss = mean(alpha log pi(a|s) - min_k Q_k(s, a)), Adam (policy_lr)
//   temperature, with each actor step when autotuning: loss = -mean(exp(log_alpha) (log pi(a|s) + target_entropy))
//                        with a fresh sample and no gradient to the actor, Adam (alpha_lr), target -|A|, log_alpha from 0
//   targets, every call: polyak with tau.
// The gradients are written out by hand (manual_backward, the default) or come from autograd (the
// straightforward formulation); the two make the same updates up to float summation order. A non-finite
// loss or gradient never reaches the weights: the whole update is skipped and counted.
// Not thread-safe: one thread (the learner loop) drives an updater.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/sac_policy.h"
#include "learner/algorithm.h"
#include "learner/q_network.h"

namespace meow {

struct SacUpdateConfig {
  double gamma = 0.99;
  double tau = 0.005;
  double policy_lr = 3e-4;
  double q_lr = 1e-3;
  double alpha_lr = 1e-3;  // CleanRL uses q_lr for the temperature
  int policy_frequency = 2;
  bool autotune = true;
  double alpha = 0.2;  // the fixed temperature without autotune
  // The entropy target of autotuning; NaN: -action_dim.
  double target_entropy = std::numeric_limits<double>::quiet_NaN();
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_eps = 1e-8;
  // The gradients written out by hand (QForward/QBackward and the actor's in sac_update.cc) with no
  // autograd graph; false: autograd, the straightforward formulation the benchmark and tests hold
  // the hand-written one to.
  bool manual_backward = true;

  absl::Status Validate() const;
};

class SacUpdater : public Algorithm {
 public:
  // Fresh networks (LibTorch's current RNG state), target copies and optimiser states on `device`.
  static absl::StatusOr<std::unique_ptr<SacUpdater>> Create(const SacPolicyConfig& policy_config,
                                                            const SacUpdateConfig& config, const c10::Device& device);

  std::string name() const override { return "sac"; }
  const c10::Device& device() const override { return device_; }
  absl::StatusOr<UpdateStats> Update(const Batch& batch) override;
  int64_t updates() const override { return updates_; }
  int64_t skipped_updates() const override { return skipped_; }
  SafetensorsFile ActingWeights() override { return actor_->ExportWeights(); }
  // Every network ("actor.*", "qf1.*", "qf2.*", "qf1_target.*", "qf2_target.*"), "log_alpha", the
  // three optimisers' moments ("<optimiser>.m.<i>", ".v.<i>") and step counts ("<optimiser>.steps",
  // two float32 halves: checkpoints hold float32), all float32.
  std::map<std::string, at::Tensor> State() const override;
  std::map<std::string, std::string> StateMetadata() const override;
  absl::Status RestoreState(const std::map<std::string, at::Tensor>& state, int64_t updates,
                            int64_t skipped_updates) override;

  double alpha() const;
  double target_entropy() const { return target_entropy_; }
  SacActor& actor() { return actor_; }
  QNetwork& qf1() { return qf1_; }
  QNetwork& qf2() { return qf2_; }
  QNetwork& qf1_target() { return qf1_target_; }
  QNetwork& qf2_target() { return qf2_target_; }
  const at::Tensor& log_alpha() const { return log_alpha_; }
  const SacUpdateConfig& config() const { return config_; }
  // The mean log pi(a|s) of the newest actor step's samples (NaN before the first).
  double last_log_prob() const { return last_log_prob_; }

 private:
  SacUpdater(const SacPolicyConfig& policy_config, const SacUpdateConfig& config, const c10::Device& device);
  std::vector<std::pair<std::string, AdamState*>> Optimisers() const;
  std::vector<std::pair<std::string, at::Tensor>> NamedTensors() const;  // networks, moments and log_alpha

  SacPolicyConfig policy_config_;
  SacUpdateConfig config_;
  c10::Device device_;
  double target_entropy_;
  SacActor actor_{nullptr};
  QNetwork qf1_{nullptr}, qf2_{nullptr}, qf1_target_{nullptr}, qf2_target_{nullptr};
  at::Tensor log_alpha_;  // (1), requires grad
  std::unique_ptr<AdamState> q_opt_, actor_opt_, alpha_opt_;
  std::vector<at::Tensor> q_params_, actor_params_;
  int64_t updates_ = 0;
  int64_t skipped_ = 0;
  double last_log_prob_;
};

}  // namespace meow
