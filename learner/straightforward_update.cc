#include "learner/straightforward_update.h"

#include <cmath>

#include <ATen/ATen.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/utils.h>

namespace meow {

std::pair<at::Tensor, at::Tensor> StackedQV(FlowPolicyImpl& policy, const at::Tensor& obs2, const at::Tensor& action2) {
  const FlowPolicyConfig& c = policy.config();
  const at::Tensor clipped = action2.clamp(-1.0 + 1e-5, 1.0 - 1e-5);
  at::Tensor z = at::atanh(clipped);
  const at::Tensor tanh_log_det = at::log(1 - clipped.square() + std::numeric_limits<float>::epsilon()).sum(1);
  for (int k = 3; k >= 0; --k) z = policy.couplings[k]->Inverse(z, obs2);
  const at::Tensor log_sigma = policy.prior->LogSigma(obs2);
  const double half_log_2pi = 0.5 * std::log(2 * M_PI);
  const at::Tensor log_q_unnormalised = -0.5 * (z * at::exp(-log_sigma)).square().sum(1);
  const at::Tensor v_base = log_sigma.sum(1) + c.action_dim * half_log_2pi;
  const int64_t half = obs2.size(0) / 2;
  const at::Tensor context = obs2.narrow(0, 0, half);
  const at::Tensor shift =
      at::cat({policy.shift->scale1->forward(context), policy.shift->scale2->forward(context)}, 0).squeeze(1);
  at::Tensor q = c.alpha * (shift - tanh_log_det + log_q_unnormalised);
  at::Tensor v = c.alpha * (shift + v_base);
  return {q, v};
}

StraightforwardUpdater::StraightforwardUpdater(FlowPolicyImpl& init, const MeowUpdateConfig& config)
    : config_(config), policy_(init.config()), target_(init.config()) {
  const auto device = init.parameters().front().device();
  policy_->to(device);
  target_->to(device);
  policy_->CopyWeightsFrom(init);
  target_->CopyWeightsFrom(init);
  target_->eval();
  adam_ = std::make_unique<torch::optim::Adam>(
      policy_->parameters(),
      torch::optim::AdamOptions(config.lr).betas({config.adam_beta1, config.adam_beta2}).eps(config.adam_eps));
}

double StraightforwardUpdater::Step(const Batch& batch) {
  at::Tensor y;
  {
    torch::NoGradGuard no_grad;
    const at::Tensor next2 = at::cat({batch.next_obs, batch.next_obs}, 0);
    auto [q_unused, v] =
        StackedQV(*target_, next2, at::zeros({next2.size(0), target_->config().action_dim}, next2.options()));
    const int64_t b = batch.next_obs.size(0);
    y = batch.reward + (1 - batch.terminated) * config_.gamma * at::minimum(v.narrow(0, 0, b), v.narrow(0, b, b));
  }
  policy_->train();
  auto [q, v] = StackedQV(*policy_, at::cat({batch.obs, batch.obs}, 0), at::cat({batch.action, batch.action}, 0));
  policy_->eval();
  const at::Tensor loss = (q - at::cat({y, y}, 0)).square().mean();
  adam_->zero_grad();
  loss.backward();
  if (config_.grad_clip > 0) torch::nn::utils::clip_grad_norm_(policy_->parameters(), config_.grad_clip);
  adam_->step();
  torch::NoGradGuard no_grad;
  auto online = policy_->parameters();
  auto target = target_->parameters();
  for (size_t i = 0; i < online.size(); ++i) {
    target[i].mul_(1 - config_.tau).add_(online[i], config_.tau);
  }
  return loss.item<double>();
}

}  // namespace meow
