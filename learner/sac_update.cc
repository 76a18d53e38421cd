#include "learner/sac_update.h"

#include <cmath>
#include <limits>
#include <utility>

#include <ATen/ATen.h>
#include <torch/utils.h>

#include "absl/strings/str_cat.h"
#include "learner/meow_update.h"

namespace meow {

absl::Status SacUpdateConfig::Validate() const {
  if (!(gamma >= 0 && gamma <= 1)) return absl::InvalidArgumentError(absl::StrCat("gamma must be in [0, 1], got ", gamma));
  if (!(tau > 0 && tau <= 1)) return absl::InvalidArgumentError(absl::StrCat("tau must be in (0, 1], got ", tau));
  for (auto [name, v] : {std::pair{"policy_lr", policy_lr}, std::pair{"q_lr", q_lr}, std::pair{"alpha_lr", alpha_lr}}) {
    if (!(v > 0 && std::isfinite(v))) return absl::InvalidArgumentError(absl::StrCat(name, " must be > 0, got ", v));
  }
  if (policy_frequency < 1) {
    return absl::InvalidArgumentError(absl::StrCat("policy_frequency must be >= 1, got ", policy_frequency));
  }
  if (!autotune && !(alpha > 0 && std::isfinite(alpha))) {
    return absl::InvalidArgumentError(absl::StrCat("alpha must be > 0 without autotune, got ", alpha));
  }
  if (std::isinf(target_entropy)) return absl::InvalidArgumentError("target_entropy must be finite (or NaN: -|A|)");
  return absl::OkStatus();
}

SacUpdater::SacUpdater(const SacPolicyConfig& policy_config, const SacUpdateConfig& config, const c10::Device& device)
    : policy_config_(policy_config),
      config_(config),
      device_(device),
      target_entropy_(std::isnan(config.target_entropy) ? -static_cast<double>(policy_config.action_dim)
                                                        : config.target_entropy),
      last_log_prob_(std::numeric_limits<double>::quiet_NaN()) {
  const int64_t s = policy_config.obs_dim, a = policy_config.action_dim, h = policy_config.hidden;
  actor_ = SacActor(policy_config);
  qf1_ = QNetwork(s, a, h);
  qf2_ = QNetwork(s, a, h);
  qf1_target_ = QNetwork(s, a, h);
  qf2_target_ = QNetwork(s, a, h);
  for (torch::nn::Module* m : std::initializer_list<torch::nn::Module*>{actor_.get(), qf1_.get(), qf2_.get(),
                                                                        qf1_target_.get(), qf2_target_.get()}) {
    m->to(device);
  }
  CopyParameters(*qf1_target_, *qf1_);
  CopyParameters(*qf2_target_, *qf2_);
  for (auto& p : qf1_target_->parameters()) p.set_requires_grad(false);
  for (auto& p : qf2_target_->parameters()) p.set_requires_grad(false);
  const double log_alpha0 = config.autotune ? 0.0 : std::log(config.alpha);
  log_alpha_ = torch::full({1}, log_alpha0, torch::TensorOptions().dtype(at::kFloat).device(device));
  log_alpha_.set_requires_grad(config.autotune);
  q_params_ = qf1_->parameters();
  for (const at::Tensor& p : qf2_->parameters()) q_params_.push_back(p);
  actor_params_ = actor_->parameters();
  q_opt_ = std::make_unique<AdamState>(q_params_, config.q_lr, config.adam_beta1, config.adam_beta2, config.adam_eps);
  actor_opt_ = std::make_unique<AdamState>(actor_params_, config.policy_lr, config.adam_beta1, config.adam_beta2,
                                           config.adam_eps);
  alpha_opt_ = std::make_unique<AdamState>(std::vector<at::Tensor>{log_alpha_}, config.alpha_lr, config.adam_beta1,
                                           config.adam_beta2, config.adam_eps);
}

absl::StatusOr<std::unique_ptr<SacUpdater>> SacUpdater::Create(const SacPolicyConfig& policy_config,
                                                               const SacUpdateConfig& config,
                                                               const c10::Device& device) {
  if (absl::Status s = policy_config.Validate(); !s.ok()) return s;
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  return std::unique_ptr<SacUpdater>(new SacUpdater(policy_config, config, device));
}

double SacUpdater::alpha() const { return std::exp(log_alpha_.item<double>()); }

absl::StatusOr<UpdateStats> SacUpdater::Update(const Batch& batch) {
  if (absl::Status s = ValidateBatch(batch, policy_config_.obs_dim, policy_config_.action_dim, device_); !s.ok()) {
    return s;
  }
  UpdateStats stats;
  const at::Tensor alpha = log_alpha_.detach().exp();

  // Critic.
  at::Tensor y, soft_next;
  {
    torch::NoGradGuard no_grad;
    SampleResult next = actor_->Sample(batch.next_obs, /*deterministic=*/false);
    soft_next = torch::min(qf1_target_(batch.next_obs, next.action), qf2_target_(batch.next_obs, next.action)) -
                alpha * next.log_prob;
    y = batch.reward + config_.gamma * (1 - batch.terminated) * soft_next;
  }
  stats.v_mean = soft_next.mean().item<double>();
  if (!TwinCriticStep(qf1_, qf2_, q_params_, *q_opt_, batch, y, &stats)) {
    ++skipped_;
    return stats;
  }

  // Actor and temperature, delayed: policy_frequency steps every policy_frequency-th update.
  bool actor_skipped = false;
  if (updates_ % config_.policy_frequency == 0) {
    for (int k = 0; k < config_.policy_frequency; ++k) {
      ClearGrads(actor_params_);
      SampleResult pi = actor_->Sample(batch.obs, /*deterministic=*/false);
      at::Tensor min_q = torch::min(qf1_(batch.obs, pi.action), qf2_(batch.obs, pi.action));
      at::Tensor actor_loss = (log_alpha_.detach().exp() * pi.log_prob - min_q).mean();
      actor_loss.backward();
      ClearGrads(q_params_);  // the actor's loss must not move the critics
      if (!std::isfinite(actor_loss.item<double>()) || !std::isfinite(GradNorm(actor_params_))) {
        ClearGrads(actor_params_);
        actor_skipped = true;
        break;
      }
      actor_opt_->Step();
      if (config_.autotune) {
        at::Tensor log_prob;
        {
          torch::NoGradGuard no_grad;
          log_prob = actor_->Sample(batch.obs, /*deterministic=*/false).log_prob;
        }
        last_log_prob_ = log_prob.mean().item<double>();
        if (log_alpha_.grad().defined()) log_alpha_.mutable_grad().zero_();
        at::Tensor alpha_loss = (-log_alpha_.exp() * (log_prob + target_entropy_)).mean();
        alpha_loss.backward();
        if (std::isfinite(alpha_loss.item<double>()) && std::isfinite(log_alpha_.grad().item<double>())) {
          alpha_opt_->Step();
        }
      } else {
        last_log_prob_ = pi.log_prob.mean().item<double>();
      }
    }
  }
  Polyak(*qf1_target_, *qf1_, config_.tau);
  Polyak(*qf2_target_, *qf2_, config_.tau);
  ++updates_;
  if (actor_skipped) {
    stats.skipped = true;
    ++skipped_;
  }
  return stats;
}

std::vector<std::pair<std::string, AdamState*>> SacUpdater::Optimisers() const {
  return {{"q_opt", q_opt_.get()}, {"actor_opt", actor_opt_.get()}, {"alpha_opt", alpha_opt_.get()}};
}

std::vector<std::pair<std::string, at::Tensor>> SacUpdater::NamedTensors() const {
  NamedTensorList out = NamedStateTensors({{"actor", actor_.get()},
                                           {"qf1", qf1_.get()},
                                           {"qf2", qf2_.get()},
                                           {"qf1_target", qf1_target_.get()},
                                           {"qf2_target", qf2_target_.get()}},
                                          Optimisers());
  out.emplace_back("log_alpha", log_alpha_);
  return out;
}

std::map<std::string, at::Tensor> SacUpdater::State() const { return StateOf(NamedTensors(), Optimisers()); }

std::map<std::string, std::string> SacUpdater::StateMetadata() const {
  return {{"sac.obs_dim", absl::StrCat(policy_config_.obs_dim)},
          {"sac.action_dim", absl::StrCat(policy_config_.action_dim)},
          {"sac.hidden", absl::StrCat(policy_config_.hidden)},
          {"sac.autotune", config_.autotune ? "1" : "0"}};
}

absl::Status SacUpdater::RestoreState(const std::map<std::string, at::Tensor>& state, int64_t updates,
                                      int64_t skipped_updates) {
  if (absl::Status s = CheckAndCopyState("SAC", NamedTensors(), {"q_opt.steps", "actor_opt.steps", "alpha_opt.steps"}, state);
      !s.ok()) {
    return s;
  }
  q_opt_->set_steps(StepCountFrom(state.at("q_opt.steps")));
  actor_opt_->set_steps(StepCountFrom(state.at("actor_opt.steps")));
  alpha_opt_->set_steps(StepCountFrom(state.at("alpha_opt.steps")));
  updates_ = updates;
  skipped_ = skipped_updates;
  return absl::OkStatus();
}

}  // namespace meow
