// Soft Q-learning's update (Haarnoja et al. 2017) as the MEow authors ran it for their baseline
// ([SQP] agents/sql.py, modules/kernel.py; reference/baselines-sql-sac-offline.md §1.3), one call
// per sampled batch, with the temperature folded into the reward (reward_scale = 1/alpha):
//   critic:  a_k ~ U[-1, 1]^A, k < K_v,  V(s') = logsumexp_k min(Qbar_1, Qbar_2)(s', a_k) - log K_v + A log 2
//            (importance sampling from the uniform proposal, density 2^-A), y = reward_scale r +
//            gamma (1 - terminated) V(s'); loss = mse(Q_1(s, a), y) + mse(Q_2(s, a), y), Adam (q_lr)
//   sampler: amortised SVGD. K "updated" actions a_i = tanh(f(s, xi_i)) with gradient and K "fixed"
//            ones a_j (no gradient) per state; log p(a_j) = min(Q_1, Q_2)(s, a_j) + sum_d log(1 - a_jd^2 + eps)
//            (the tanh correction, eps = float32 epsilon); with the adaptive RBF kernel
//            k(a_j, a_i) = exp(-|a_j - a_i|^2 / h), the direction
//            D_i = mean_j [k(a_j, a_i) grad_{a_j} log p(a_j) + grad_{a_j} k(a_j, a_i)]   (SQL's Eq. 13)
//            and the sampler's parameters move along sum_i D_i . da_i/dtheta (Eq. 14), Adam (policy_lr)
//   targets: polyak with tau after both.
// Where the official TF code [SQ] differs, it is one setting away (SqlUpdateConfig):
//   kernel bandwidth  "log_batch" (default, [SQP]): h = median(d^2) / log(B + 1), B the batch size, the
//                     median interpolated; "log_particles" ([SQ]): h = max(median(d^2) / log(K_fixed), 1e-3),
//                     the median the (n/2 + 1)-th largest of the n distances
//   particle draws    "independent" (default, [SQP]): two independent draws of K; "split" ([SQ]): one draw
//                     of K, the first K - K/2 fixed and the rest updated
//   value draws       "per_row" (default, [SQP]): fresh uniform actions per state; "shared" ([SQ]): one
//                     set of K_v for the whole batch
// The random numbers are drawn from LibTorch's default generator in this order: the uniform value
// actions, then the updated particles' noise, then the fixed particles' (one draw when split).
// A non-finite critic loss or gradient skips the whole update; a non-finite sampler gradient skips
// the sampler's step (the update counts as skipped). Both are counted.
// Not thread-safe: one thread (the learner loop) drives an updater.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/sql_policy.h"
#include "learner/algorithm.h"
#include "learner/q_network.h"

namespace meow {

struct SqlUpdateConfig {
  double gamma = 0.99;
  double tau = 0.005;
  double policy_lr = 3e-4;
  double q_lr = 3e-4;
  double reward_scale = 1.0;     // 1 / alpha; the per-task value comes from the preset
  int64_t value_particles = 16;  // K_v
  int64_t svgd_particles = 16;   // K
  std::string kernel_bandwidth = "log_batch";  // or "log_particles"
  std::string particle_draws = "independent";  // or "split"
  std::string value_draws = "per_row";         // or "shared"
  // The particles' first layers with the state's part computed once per state (the default), or
  // the straightforward formulation of both codes: each state repeated K times through whole
  // networks (the same function; bench_baselines_update compares the two).
  bool per_state_first_layer = true;
  // The critics' gradients written out by hand (QForward/QBackward, as SAC's) instead of autograd
  // (the straightforward formulation, false). The sampler's SVGD step stays with autograd.
  bool manual_critic_backward = true;
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_eps = 1e-8;

  absl::Status Validate() const;
};

// V(s) = logsumexp_k q_k - log K + A log 2 per row of q (B, K): the soft value (alpha = 1) of Q
// values at K actions drawn uniformly from [-1, 1]^A.
at::Tensor UniformImportanceSoftValue(const at::Tensor& q, int64_t action_dim);

// The adaptive RBF kernel between particles x (B, Kx, A) and y (B, Ky, A) of each row:
// kappa (B, Kx, Ky) = exp(-|x_j - y_i|^2 / h) and its gradient with respect to x_j (B, Kx, Ky, A),
// h by `bandwidth` ("log_batch" with B = x.size(0), or "log_particles"), without gradient.
struct RbfKernel {
  at::Tensor kappa;
  at::Tensor grad_x;
  at::Tensor h;  // (B)
};
RbfKernel AdaptiveRbfKernel(const at::Tensor& x, const at::Tensor& y, const std::string& bandwidth);

// The Stein direction D_i (B, Ky, A) for updated particles y from fixed particles x and the score
// grad log p at x (B, Kx, A).
at::Tensor SvgdDirection(const at::Tensor& x, const at::Tensor& score_x, const at::Tensor& y, const std::string& bandwidth);

class SqlUpdater : public Algorithm {
 public:
  // Fresh networks (LibTorch's current RNG state), target copies and optimiser states on `device`.
  static absl::StatusOr<std::unique_ptr<SqlUpdater>> Create(const SqlPolicyConfig& policy_config,
                                                            const SqlUpdateConfig& config, const c10::Device& device);

  std::string name() const override { return "sql"; }
  const c10::Device& device() const override { return device_; }
  absl::StatusOr<UpdateStats> Update(const Batch& batch) override;
  int64_t updates() const override { return updates_; }
  int64_t skipped_updates() const override { return skipped_; }
  SafetensorsFile ActingWeights() override { return sampler_->ExportWeights(); }
  // Every network ("sampler.*", "qf1.*", "qf2.*", "qf1_target.*", "qf2_target.*"), both optimisers'
  // moments ("q_opt.m.<i>", ".v.<i>", "policy_opt...") and step counts ("<optimiser>.steps").
  std::map<std::string, at::Tensor> State() const override;
  std::map<std::string, std::string> StateMetadata() const override;
  absl::Status RestoreState(const std::map<std::string, at::Tensor>& state, int64_t updates,
                            int64_t skipped_updates) override;

  SqlSampler& sampler() { return sampler_; }
  QNetwork& qf1() { return qf1_; }
  QNetwork& qf2() { return qf2_; }
  QNetwork& qf1_target() { return qf1_target_; }
  QNetwork& qf2_target() { return qf2_target_; }
  const SqlUpdateConfig& config() const { return config_; }
  // The mean |D_i| of the newest sampler step (NaN before the first).
  double last_direction_norm() const { return last_direction_norm_; }

 private:
  SqlUpdater(const SqlPolicyConfig& policy_config, const SqlUpdateConfig& config, const c10::Device& device);
  std::vector<std::pair<std::string, AdamState*>> Optimisers() const;
  std::vector<std::pair<std::string, at::Tensor>> NamedTensors() const;
  // Q (B, K) and sampler actions (B, K, A) at K particles per state, by per_state_first_layer.
  at::Tensor QAtParticles(QNetwork& q, const at::Tensor& obs, const at::Tensor& actions);
  at::Tensor SamplerAtParticles(const at::Tensor& obs, const at::Tensor& noise);

  SqlPolicyConfig policy_config_;
  SqlUpdateConfig config_;
  c10::Device device_;
  SqlSampler sampler_{nullptr};
  QNetwork qf1_{nullptr}, qf2_{nullptr}, qf1_target_{nullptr}, qf2_target_{nullptr};
  std::unique_ptr<AdamState> q_opt_, policy_opt_;
  std::vector<at::Tensor> q_params_, policy_params_;
  int64_t updates_ = 0;
  int64_t skipped_ = 0;
  double last_direction_norm_;
};

}  // namespace meow
