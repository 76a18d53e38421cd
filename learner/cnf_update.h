// CNF's second stage, the latent controller (reference/baselines-sql-sac-offline.md §3;
// tinkoff-ai/cnf cnf/awac.py, cnf/train_rl.py): advantage-weighted actor-critic in the bounded latent
// space of a pre-trained, frozen conditional flow g (common/cnf_policy.h). Per update, on a batch
// of dataset rows (a padded to the flow's even D with a zero column for odd A, as the reference
// pads its data):
//   critic: y = r + gamma (1 - d) min_k Qbar_k(s', g(z', s')),  z' ~ pi(s') (reparameterised draw)
//           loss = mse(Q_1(s, a), y) + mse(Q_2(s, a), y), one Adam step each
//   actor:  adv = min_k Q_k(s, a) - min_k Q_k(s, g(z, s)), z ~ pi(s) (no gradient),
//           w = min(exp(adv / lambda), 100),
//           loss = mean(w * |g(z, s) - a|) over rows and action dims, z ~ pi(s) with the gradient
//           through the frozen flow into the actor, one Adam step
//   then polyak: Qbar <- (1 - tau) Qbar + tau Q.
// The critics Q_k(s~, a) see the state normalised with the flow's dataset statistics; 4 Linear
// layers of 256 with ReLU, as the actor. Adam lr 3e-4 for all, gamma 0.99, tau 2e-3, lambda 1/3,
// batch 512 (the reference's run_rl.py).
// Not thread-safe: the learner loop drives it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/pimpl.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/cnf_policy.h"
#include "learner/algorithm.h"
#include "learner/q_network.h"

namespace meow {

struct CnfUpdateConfig {
  double lr = 3e-4;
  double gamma = 0.99;
  double tau = 2e-3;
  double awac_lambda = 1.0 / 3.0;  // the IQL paper's value for locomotion, as the reference
  double max_weight = 100.0;
  int64_t critic_layers = 4;
  int64_t critic_hidden = 256;
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_eps = 1e-8;
  // The two decodes without gradient (the target's at s', the advantage's at s) as one of 2B rows
  // (the same draws in the same order where B x D is a multiple of 16, the CPU normal's block);
  // false: three decodes as the reference writes them (which the benchmark measures beside).
  bool batch_no_grad_decodes = true;

  absl::Status Validate() const;
};

// Q(s~, a): the state normalised by `norm` (the flow's dataset statistics, shared), concatenated
// with a padded action (D), through `layers` Linear layers (hidden wide, ReLU between) to one value.
class CnfCriticImpl : public torch::nn::Module {
 public:
  CnfCriticImpl(int64_t obs_dim, int64_t action_dim, int64_t hidden, int64_t layers);
  at::Tensor forward(const at::Tensor& normalized_obs, const at::Tensor& action);  // (B)
  torch::nn::Sequential net{nullptr};
};
TORCH_MODULE(CnfCritic);

class CnfUpdater : public Algorithm {
 public:
  // `flow_weights`: the pre-trained flow (ExportFlowWeights; its sizes must be `policy`'s flow).
  // The actor starts from PyTorch's default init (seeded by the caller), the critics' targets as
  // copies of the critics.
  static absl::StatusOr<std::unique_ptr<CnfUpdater>> Create(const CnfPolicyConfig& policy, const CnfUpdateConfig& config,
                                                            const SafetensorsFile& flow_weights,
                                                            const c10::Device& device);

  std::string name() const override { return "cnf"; }
  const c10::Device& device() const override { return device_; }
  absl::StatusOr<UpdateStats> Update(const Batch& batch) override;
  int64_t updates() const override { return updates_; }
  int64_t skipped_updates() const override { return skipped_; }
  SafetensorsFile ActingWeights() override { return policy_->ExportWeights(); }
  std::map<std::string, at::Tensor> State() const override;
  std::map<std::string, std::string> StateMetadata() const override;
  absl::Status RestoreState(const std::map<std::string, at::Tensor>& state, int64_t updates,
                            int64_t skipped_updates) override;

  CnfPolicy& policy() { return policy_; }

 private:
  CnfUpdater(const CnfPolicyConfig& policy, const CnfUpdateConfig& config, const c10::Device& device);
  NamedTensorList NamedTensors() const;
  std::vector<std::pair<std::string, AdamState*>> Optimisers() const;
  // (B, D): the dataset action clamped as the reference clamps it and padded to the flow's D.
  at::Tensor PadAction(const at::Tensor& action) const;

  CnfPolicyConfig policy_config_;
  CnfUpdateConfig config_;
  c10::Device device_;
  CnfPolicy policy_{nullptr};
  CnfCritic qf1_{nullptr}, qf2_{nullptr}, qf1_target_{nullptr}, qf2_target_{nullptr};
  std::vector<at::Tensor> critic_params_, actor_params_;
  std::unique_ptr<AdamState> critic_opt_, actor_opt_;
  int64_t updates_ = 0;
  int64_t skipped_ = 0;
};

}  // namespace meow
