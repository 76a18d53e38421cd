#include "learner/sac_update.h"

#include <cmath>
#include <limits>
#include <tuple>
#include <utility>

#include <ATen/ATen.h>
#include <torch/utils.h>

#include "absl/strings/str_cat.h"
#include "learner/meow_update.h"

namespace meow {
namespace {

constexpr double kJacobianEps = 1e-6;  // CleanRL's, as in TanhGaussianLogProb

// The actor's loss mean(alpha log pi(a|s) - min_k Q_k(s, a)) at a reparameterised sample, with its
// gradient written out by hand into the actor's .grad() (the critics' gradients are left alone:
// they only pass d/da through). The noise is drawn as SacActorImpl::Sample draws it. Returns the
// loss and log pi (B). Run under torch::NoGradGuard.
//   With u = mean + sigma eps, a = tanh(u), the loss per row i (over B):
//   dL/da = -dmin/da / B;  dL/dlog pi = alpha / B;
//   dlog pi/du_j = 2 a_j (1 - a_j^2) / (1 - a_j^2 + 1e-6) (the Jacobian term; the Gaussian term
//   -z^2/2 has z = eps whatever mean and sigma are, so no gradient);
//   dL/du = dL/da (1 - a^2) + dL/dlog pi dlog pi/du;  dL/dmean = dL/du;
//   dL/dlog sigma = dL/du sigma eps - dL/dlog pi;  log sigma = lo + (hi - lo) (tanh(r) + 1) / 2.
std::pair<at::Tensor, at::Tensor> ActorLossAndGrad(SacActorImpl& actor, QNetworkImpl& qf1, QNetworkImpl& qf2,
                                                   const at::Tensor& obs, const at::Tensor& alpha) {
  const SacPolicyConfig& c = actor.config();
  const at::Tensor h1 = at::relu(at::addmm(actor.fc1->bias, obs, actor.fc1->weight.t()));
  const at::Tensor h2 = at::relu(at::addmm(actor.fc2->bias, h1, actor.fc2->weight.t()));
  const at::Tensor mean = at::addmm(actor.fc_mean->bias, h2, actor.fc_mean->weight.t());
  const at::Tensor t = at::tanh(at::addmm(actor.fc_logstd->bias, h2, actor.fc_logstd->weight.t()));
  const double half_range = 0.5 * (c.log_std_max - c.log_std_min);
  const at::Tensor log_std = c.log_std_min + half_range * (t + 1);
  const at::Tensor sigma = at::exp(log_std);
  const at::Tensor eps = at::randn(mean.sizes(), mean.options());
  const at::Tensor u = mean + sigma * eps;
  const at::Tensor a = at::tanh(u);
  const at::Tensor log_prob = TanhGaussianLogProb(u, mean, log_std);
  QTape tape1, tape2;
  const at::Tensor q1 = QForward(qf1, obs, a, &tape1);
  const at::Tensor q2 = QForward(qf2, obs, a, &tape2);
  const at::Tensor loss = (alpha * log_prob - at::minimum(q1, q2)).mean();

  const double inv_b = 1.0 / static_cast<double>(obs.size(0));
  // at::minimum's gradient as autograd's: to the smaller, split in half on a tie.
  const at::Tensor share1 = at::where(q1 < q2, 1.0, at::where(q1 == q2, 0.5, 0.0)).to(q1.scalar_type());
  const at::Tensor dq1 = share1 * -inv_b, dq2 = (1 - share1) * -inv_b;
  const at::Tensor d_a = QBackward(qf1, tape1, dq1, /*param_grads=*/false, /*action_grad=*/true) +
                         QBackward(qf2, tape2, dq2, /*param_grads=*/false, /*action_grad=*/true);
  const at::Tensor d_logp = alpha * inv_b;  // (1)
  const at::Tensor one_minus_a2 = 1 - a * a;
  const at::Tensor d_u = d_a * one_minus_a2 + d_logp * (2 * a * one_minus_a2 / (one_minus_a2 + kJacobianEps));
  const at::Tensor d_log_std = d_u * sigma * eps - d_logp;
  const at::Tensor d_raw = d_log_std * (half_range * (1 - t * t));
  SetLinearGrads(*actor.fc_mean, h2, d_u);
  SetLinearGrads(*actor.fc_logstd, h2, d_raw);
  const at::Tensor d_h2 = at::threshold_backward(
      at::addmm(at::mm(d_u, actor.fc_mean->weight), d_raw, actor.fc_logstd->weight), h2, 0);
  SetLinearGrads(*actor.fc2, h1, d_h2);
  const at::Tensor d_h1 = at::threshold_backward(at::mm(d_h2, actor.fc2->weight), h1, 0);
  SetLinearGrads(*actor.fc1, obs, d_h1);
  return {loss, log_prob};
}

}  // namespace

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
  if (!TwinCriticStep(qf1_, qf2_, q_params_, *q_opt_, batch, y, &stats, config_.manual_backward)) {
    ++skipped_;
    return stats;
  }

  // Actor and temperature, delayed: policy_frequency steps every policy_frequency-th update.
  bool actor_skipped = false;
  if (updates_ % config_.policy_frequency == 0) {
    for (int k = 0; k < config_.policy_frequency; ++k) {
      at::Tensor actor_loss, pi_log_prob;
      if (config_.manual_backward) {
        torch::NoGradGuard no_grad;
        std::tie(actor_loss, pi_log_prob) = ActorLossAndGrad(*actor_, *qf1_, *qf2_, batch.obs, log_alpha_.detach().exp());
      } else {
        ClearGrads(actor_params_);
        SampleResult pi = actor_->Sample(batch.obs, /*deterministic=*/false);
        at::Tensor min_q = torch::min(qf1_(batch.obs, pi.action), qf2_(batch.obs, pi.action));
        actor_loss = (log_alpha_.detach().exp() * pi.log_prob - min_q).mean();
        actor_loss.backward();
        ClearGrads(q_params_);  // the actor's loss must not move the critics
        pi_log_prob = pi.log_prob.detach();
      }
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
        at::Tensor alpha_loss;
        if (config_.manual_backward) {
          // d/dlog_alpha of -mean(exp(log_alpha) (log pi + target)) is the loss itself.
          torch::NoGradGuard no_grad;
          alpha_loss = (-log_alpha_.exp() * (log_prob + target_entropy_)).mean();
          SetGrad(log_alpha_, alpha_loss.reshape({1}));
        } else {
          if (log_alpha_.grad().defined()) log_alpha_.mutable_grad().zero_();
          alpha_loss = (-log_alpha_.exp() * (log_prob + target_entropy_)).mean();
          alpha_loss.backward();
        }
        if (std::isfinite(alpha_loss.item<double>()) && std::isfinite(log_alpha_.grad().item<double>())) {
          alpha_opt_->Step();
        }
      } else {
        last_log_prob_ = pi_log_prob.mean().item<double>();
      }
    }
  }
  Polyak(*qf1_target_, *qf1_, config_.tau);
  Polyak(*qf2_target_, *qf2_, config_.tau);
  ++updates_;
  stats.alpha = SacUpdater::alpha();
  stats.entropy = -last_log_prob_;
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
