#include "learner/sql_update.h"

#include <cmath>
#include <limits>

#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/utils.h>

#include "absl/strings/str_cat.h"
#include "learner/meow_update.h"

namespace meow {
namespace {

// [SQP]'s squash correction: log(1 - a^2 + eps) with eps = np.finfo(np.float32).eps.
constexpr double kSquashEps = 1.1920928955078125e-07;

}  // namespace

absl::Status SqlUpdateConfig::Validate() const {
  if (!(gamma >= 0 && gamma <= 1)) return absl::InvalidArgumentError(absl::StrCat("gamma must be in [0, 1], got ", gamma));
  if (!(tau > 0 && tau <= 1)) return absl::InvalidArgumentError(absl::StrCat("tau must be in (0, 1], got ", tau));
  for (auto [name, v] : {std::pair{"policy_lr", policy_lr}, std::pair{"q_lr", q_lr}, std::pair{"reward_scale", reward_scale}}) {
    if (!(v > 0 && std::isfinite(v))) return absl::InvalidArgumentError(absl::StrCat(name, " must be > 0, got ", v));
  }
  if (value_particles < 1 || value_particles > 4096) {
    return absl::InvalidArgumentError(absl::StrCat("value_particles must be in [1, 4096], got ", value_particles));
  }
  if (svgd_particles < 2 || svgd_particles > 4096) {
    return absl::InvalidArgumentError(absl::StrCat("svgd_particles must be in [2, 4096], got ", svgd_particles));
  }
  if (kernel_bandwidth != "log_batch" && kernel_bandwidth != "log_particles") {
    return absl::InvalidArgumentError(
        absl::StrCat("kernel_bandwidth \"", kernel_bandwidth, "\": expected log_batch or log_particles"));
  }
  if (particle_draws != "independent" && particle_draws != "split") {
    return absl::InvalidArgumentError(absl::StrCat("particle_draws \"", particle_draws, "\": expected independent or split"));
  }
  if (value_draws != "per_row" && value_draws != "shared") {
    return absl::InvalidArgumentError(absl::StrCat("value_draws \"", value_draws, "\": expected per_row or shared"));
  }
  return absl::OkStatus();
}

at::Tensor UniformImportanceSoftValue(const at::Tensor& q, int64_t action_dim) {
  const double k = static_cast<double>(q.size(1));
  return at::logsumexp(q, {1}) - std::log(k) + static_cast<double>(action_dim) * std::log(2.0);
}

RbfKernel AdaptiveRbfKernel(const at::Tensor& x, const at::Tensor& y, const std::string& bandwidth) {
  torch::NoGradGuard no_grad;
  const int64_t b = x.size(0), kx = x.size(1), ky = y.size(1);
  at::Tensor diff = x.unsqueeze(2) - y.unsqueeze(1);  // (B, Kx, Ky, A)
  at::Tensor d2 = diff.pow(2).sum(-1);                // (B, Kx, Ky)
  at::Tensor flat = d2.reshape({b, kx * ky});
  at::Tensor h;
  if (bandwidth == "log_particles") {
    // [SQ]: the (n/2 + 1)-th largest distance, over log K_x, at least 1e-3.
    const int64_t k = kx * ky / 2 + 1;
    at::Tensor median = std::get<0>(at::topk(flat, k, 1)).select(1, k - 1);
    h = (median / std::log(static_cast<double>(kx))).clamp_min(1e-3);
  } else {
    // [SQP]: sigma^2 = median / (2 log(B + 1)) and kappa = exp(-d^2 / (1e-8 + 2 sigma^2)).
    at::Tensor median = at::quantile(flat, 0.5, 1);
    h = median / std::log(static_cast<double>(b) + 1) + 1e-8;
  }
  at::Tensor hb = h.view({b, 1, 1});
  at::Tensor kappa = at::exp(-d2 / hb);
  at::Tensor grad_x = -2.0 * diff / hb.unsqueeze(-1) * kappa.unsqueeze(-1);
  return {kappa, grad_x, h};
}

at::Tensor SvgdDirection(const at::Tensor& x, const at::Tensor& score_x, const at::Tensor& y, const std::string& bandwidth) {
  torch::NoGradGuard no_grad;
  RbfKernel k = AdaptiveRbfKernel(x, y, bandwidth);
  // mean over j of kappa_ji score_j + grad_{x_j} kappa_ji: (B, Ky, A).
  at::Tensor drive = at::einsum("bji,bja->bia", {k.kappa, score_x});
  at::Tensor repulse = k.grad_x.sum(1);
  return (drive + repulse) / static_cast<double>(x.size(1));
}

SqlUpdater::SqlUpdater(const SqlPolicyConfig& policy_config, const SqlUpdateConfig& config, const c10::Device& device)
    : policy_config_(policy_config),
      config_(config),
      device_(device),
      last_direction_norm_(std::numeric_limits<double>::quiet_NaN()) {
  const int64_t s = policy_config.obs_dim, a = policy_config.action_dim, h = policy_config.hidden;
  sampler_ = SqlSampler(policy_config);
  qf1_ = QNetwork(s, a, h);
  qf2_ = QNetwork(s, a, h);
  qf1_target_ = QNetwork(s, a, h);
  qf2_target_ = QNetwork(s, a, h);
  for (torch::nn::Module* m : std::initializer_list<torch::nn::Module*>{sampler_.get(), qf1_.get(), qf2_.get(),
                                                                        qf1_target_.get(), qf2_target_.get()}) {
    m->to(device);
  }
  CopyParameters(*qf1_target_, *qf1_);
  CopyParameters(*qf2_target_, *qf2_);
  for (auto& p : qf1_target_->parameters()) p.set_requires_grad(false);
  for (auto& p : qf2_target_->parameters()) p.set_requires_grad(false);
  // [SQP] gives each critic its own Adam; Adam is elementwise, so one over both is the same.
  q_params_ = qf1_->parameters();
  for (const at::Tensor& p : qf2_->parameters()) q_params_.push_back(p);
  policy_params_ = sampler_->parameters();
  q_opt_ = std::make_unique<AdamState>(q_params_, config.q_lr, config.adam_beta1, config.adam_beta2, config.adam_eps);
  policy_opt_ = std::make_unique<AdamState>(policy_params_, config.policy_lr, config.adam_beta1, config.adam_beta2,
                                            config.adam_eps);
}

absl::StatusOr<std::unique_ptr<SqlUpdater>> SqlUpdater::Create(const SqlPolicyConfig& policy_config,
                                                               const SqlUpdateConfig& config,
                                                               const c10::Device& device) {
  if (absl::Status s = policy_config.Validate(); !s.ok()) return s;
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  return std::unique_ptr<SqlUpdater>(new SqlUpdater(policy_config, config, device));
}

at::Tensor SqlUpdater::QAtParticles(QNetwork& q, const at::Tensor& obs, const at::Tensor& actions) {
  if (config_.per_state_first_layer) return q->ForwardParticles(obs, actions);
  const int64_t b = actions.size(0), k = actions.size(1);
  at::Tensor repeated = obs.unsqueeze(1).expand({b, k, obs.size(1)}).reshape({b * k, obs.size(1)});
  return q(repeated, actions.reshape({b * k, actions.size(2)})).view({b, k});
}

at::Tensor SqlUpdater::SamplerAtParticles(const at::Tensor& obs, const at::Tensor& noise) {
  if (config_.per_state_first_layer) return sampler_->ForwardParticles(obs, noise);
  const int64_t b = noise.size(0), k = noise.size(1);
  at::Tensor repeated = obs.unsqueeze(1).expand({b, k, obs.size(1)}).reshape({b * k, obs.size(1)});
  return sampler_(repeated, noise.reshape({b * k, noise.size(2)})).view({b, k, noise.size(2)});
}

absl::StatusOr<UpdateStats> SqlUpdater::Update(const Batch& batch) {
  const int64_t S = policy_config_.obs_dim, A = policy_config_.action_dim;
  if (absl::Status s = ValidateBatch(batch, S, A, device_); !s.ok()) return s;
  const int64_t B = batch.obs.size(0);
  const at::TensorOptions options = batch.obs.options();
  UpdateStats stats;

  // Critic.
  at::Tensor y, next_value;
  {
    torch::NoGradGuard no_grad;
    const int64_t kv = config_.value_particles;
    at::Tensor actions = config_.value_draws == "shared" ? (at::rand({1, kv, A}, options) * 2 - 1).expand({B, kv, A})
                                                         : at::rand({B, kv, A}, options) * 2 - 1;
    at::Tensor q = at::min(QAtParticles(qf1_target_, batch.next_obs, actions),
                           QAtParticles(qf2_target_, batch.next_obs, actions));
    next_value = UniformImportanceSoftValue(q, A);
    y = config_.reward_scale * batch.reward + config_.gamma * (1 - batch.terminated) * next_value;
  }
  stats.v_mean = next_value.mean().item<double>();
  stats.alpha = 1.0 / config_.reward_scale;
  if (!TwinCriticStep(qf1_, qf2_, q_params_, *q_opt_, batch, y, &stats, config_.manual_critic_backward)) {
    ++skipped_;
    return stats;
  }

  // Sampler: amortised SVGD against the critics after their step.
  const int64_t k = config_.svgd_particles;
  at::Tensor updated, fixed;
  if (config_.particle_draws == "split") {
    const int64_t k_fixed = k - k / 2;
    at::Tensor all = SamplerAtParticles(batch.obs, at::randn({B * k, A}, options).view({B, k, A}));
    fixed = all.narrow(1, 0, k_fixed).detach();
    updated = all.narrow(1, k_fixed, k - k_fixed);
  } else {
    updated = SamplerAtParticles(batch.obs, at::randn({B * k, A}, options).view({B, k, A}));
    torch::NoGradGuard no_grad;
    fixed = SamplerAtParticles(batch.obs, at::randn({B * k, A}, options).view({B, k, A}));
  }
  fixed = fixed.detach().requires_grad_(true);
  at::Tensor log_p = at::min(QAtParticles(qf1_, batch.obs, fixed), QAtParticles(qf2_, batch.obs, fixed)) +
                     at::log(1 - fixed.pow(2) + kSquashEps).sum(-1);
  at::Tensor score = torch::autograd::grad({log_p.sum()}, {fixed})[0].detach();
  at::Tensor direction = SvgdDirection(fixed.detach(), score, updated.detach(), config_.kernel_bandwidth);
  ClearGrads(policy_params_);
  updated.backward(-direction);
  const double policy_grad_norm = GradNorm(policy_params_);
  bool policy_skipped = false;
  if (std::isfinite(policy_grad_norm)) {
    policy_opt_->Step();
    last_direction_norm_ = direction.norm(2, -1).mean().item<double>();
  } else {
    ClearGrads(policy_params_);
    policy_skipped = true;
  }
  Polyak(*qf1_target_, *qf1_, config_.tau);
  Polyak(*qf2_target_, *qf2_, config_.tau);
  ++updates_;
  if (policy_skipped) {
    stats.skipped = true;
    ++skipped_;
  }
  return stats;
}

std::vector<std::pair<std::string, AdamState*>> SqlUpdater::Optimisers() const {
  return {{"q_opt", q_opt_.get()}, {"policy_opt", policy_opt_.get()}};
}

std::vector<std::pair<std::string, at::Tensor>> SqlUpdater::NamedTensors() const {
  return NamedStateTensors({{"sampler", sampler_.get()},
                            {"qf1", qf1_.get()},
                            {"qf2", qf2_.get()},
                            {"qf1_target", qf1_target_.get()},
                            {"qf2_target", qf2_target_.get()}},
                           Optimisers());
}

std::map<std::string, at::Tensor> SqlUpdater::State() const { return StateOf(NamedTensors(), Optimisers()); }

std::map<std::string, std::string> SqlUpdater::StateMetadata() const {
  return {{"sql.obs_dim", absl::StrCat(policy_config_.obs_dim)},
          {"sql.action_dim", absl::StrCat(policy_config_.action_dim)},
          {"sql.hidden", absl::StrCat(policy_config_.hidden)},
          {"sql.reward_scale", absl::StrCat(config_.reward_scale)}};
}

absl::Status SqlUpdater::RestoreState(const std::map<std::string, at::Tensor>& state, int64_t updates,
                                      int64_t skipped_updates) {
  if (absl::Status s = CheckAndCopyState("SQL", NamedTensors(), {"q_opt.steps", "policy_opt.steps"}, state); !s.ok()) {
    return s;
  }
  q_opt_->set_steps(StepCountFrom(state.at("q_opt.steps")));
  policy_opt_->set_steps(StepCountFrom(state.at("policy_opt.steps")));
  updates_ = updates;
  skipped_ = skipped_updates;
  return absl::OkStatus();
}

}  // namespace meow
