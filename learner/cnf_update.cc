#include "learner/cnf_update.h"

#include <cmath>
#include <utility>

#include <ATen/ATen.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/linear.h>
#include <torch/utils.h>

#include "absl/strings/str_cat.h"

namespace meow {

absl::Status CnfUpdateConfig::Validate() const {
  for (auto [name, v] : {std::pair<const char*, double>{"lr", lr}, {"awac_lambda", awac_lambda},
                         {"max_weight", max_weight}}) {
    if (!(v > 0) || !std::isfinite(v)) {
      return absl::InvalidArgumentError(absl::StrCat("cnf.", name, " must be a finite value > 0, got ", v));
    }
  }
  if (!(gamma >= 0 && gamma <= 1)) return absl::InvalidArgumentError(absl::StrCat("cnf.gamma must be in [0, 1], got ", gamma));
  if (!(tau > 0 && tau <= 1)) return absl::InvalidArgumentError(absl::StrCat("cnf.tau must be in (0, 1], got ", tau));
  if (critic_layers < 2 || critic_hidden < 1) {
    return absl::InvalidArgumentError(absl::StrCat("cnf critics need >= 2 layers and >= 1 unit, got ", critic_layers,
                                                   " x ", critic_hidden));
  }
  return absl::OkStatus();
}

CnfCriticImpl::CnfCriticImpl(int64_t obs_dim, int64_t action_dim, int64_t hidden, int64_t layers) {
  torch::nn::Sequential seq;
  int64_t in = obs_dim + action_dim;
  for (int64_t i = 0; i + 1 < layers; ++i) {
    seq->push_back(torch::nn::Linear(in, hidden));
    seq->push_back(torch::nn::ReLU());
    in = hidden;
  }
  seq->push_back(torch::nn::Linear(in, 1));
  net = register_module("net", seq);
}

at::Tensor CnfCriticImpl::forward(const at::Tensor& normalized_obs, const at::Tensor& action) {
  return net->forward(at::cat({normalized_obs, action}, 1)).squeeze(1);
}

CnfUpdater::CnfUpdater(const CnfPolicyConfig& policy, const CnfUpdateConfig& config, const c10::Device& device)
    : policy_config_(policy), config_(config), device_(device) {}

absl::StatusOr<std::unique_ptr<CnfUpdater>> CnfUpdater::Create(const CnfPolicyConfig& policy,
                                                               const CnfUpdateConfig& config,
                                                               const SafetensorsFile& flow_weights,
                                                               const c10::Device& device) {
  if (absl::Status s = policy.Validate(); !s.ok()) return s;
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  std::unique_ptr<CnfUpdater> u(new CnfUpdater(policy, config, device));
  u->policy_ = CnfPolicy(policy);
  if (absl::Status s = ImportFlowWeights(*u->policy_->flow, flow_weights); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("the pre-trained flow: ", s.message()));
  }
  if (!u->policy_->flow->actnorm_initialized()) {
    return absl::InvalidArgumentError("the pre-trained flow's ActNorms were never initialised (was it trained?)");
  }
  // The actor normalises states as the flow does (the reference gives both the dataset's statistics).
  if (absl::Status s = u->policy_->actor->SetStateNormalizer(u->policy_->flow->state_norm->mean.clone(),
                                                             u->policy_->flow->state_norm->std.clone());
      !s.ok()) {
    return s;
  }
  u->policy_->to(device);
  for (at::Tensor& p : u->policy_->flow->parameters()) p.requires_grad_(false);  // frozen
  const int64_t s = policy.flow.obs_dim, d = policy.flow.latent_dim();
  u->qf1_ = CnfCritic(s, d, config.critic_hidden, config.critic_layers);
  u->qf2_ = CnfCritic(s, d, config.critic_hidden, config.critic_layers);
  u->qf1_target_ = CnfCritic(s, d, config.critic_hidden, config.critic_layers);
  u->qf2_target_ = CnfCritic(s, d, config.critic_hidden, config.critic_layers);
  for (CnfCritic* q : {&u->qf1_, &u->qf2_, &u->qf1_target_, &u->qf2_target_}) (*q)->to(device);
  CopyParameters(*u->qf1_target_, *u->qf1_);
  CopyParameters(*u->qf2_target_, *u->qf2_);
  for (const CnfCritic* q : {&u->qf1_target_, &u->qf2_target_}) {
    for (at::Tensor p : (*q)->parameters()) p.requires_grad_(false);
  }
  for (const CnfCritic* q : {&u->qf1_, &u->qf2_}) {
    for (const at::Tensor& p : (*q)->parameters()) u->critic_params_.push_back(p);
  }
  u->actor_params_ = u->policy_->actor->parameters();
  u->critic_opt_ = std::make_unique<AdamState>(u->critic_params_, config.lr, config.adam_beta1, config.adam_beta2,
                                               config.adam_eps);
  u->actor_opt_ = std::make_unique<AdamState>(u->actor_params_, config.lr, config.adam_beta1, config.adam_beta2,
                                              config.adam_eps);
  return u;
}

at::Tensor CnfUpdater::PadAction(const at::Tensor& action) const {
  const at::Tensor clamped = at::clamp(action, -kCnfDatasetActionBound, kCnfDatasetActionBound);
  const int64_t pad = policy_config_.flow.latent_dim() - policy_config_.flow.action_dim;
  if (pad == 0) return clamped;
  return at::cat({clamped, at::zeros({clamped.size(0), pad}, clamped.options())}, 1);
}

absl::StatusOr<UpdateStats> CnfUpdater::Update(const Batch& batch) {
  const int64_t s = policy_config_.flow.obs_dim, a = policy_config_.flow.action_dim;
  const int64_t rows = batch.obs.defined() ? batch.obs.size(0) : 0;
  auto shaped = [&](const at::Tensor& t, std::vector<int64_t> shape) {
    return t.defined() && t.sizes() == at::IntArrayRef(shape);
  };
  if (rows < 1 || !shaped(batch.obs, {rows, s}) || !shaped(batch.action, {rows, a}) || !shaped(batch.reward, {rows}) ||
      !shaped(batch.next_obs, {rows, s}) || !shaped(batch.terminated, {rows})) {
    return absl::InvalidArgumentError(absl::StrCat("cnf update: expected a batch of obs (B, ", s, "), action (B, ", a,
                                                   "), reward, terminated (B) and next_obs (B, ", s, ")"));
  }
  CnfFlowImpl& flow = *policy_->flow;
  CnfActorImpl& actor = *policy_->actor;
  const at::Tensor obs = batch.obs, next_obs = batch.next_obs;
  const at::Tensor action = PadAction(batch.action);
  const at::Tensor obs_n = flow.state_norm->forward(obs);
  const at::Tensor next_obs_n = flow.state_norm->forward(next_obs);
  UpdateStats stats;

  // Critics toward the target made with the targets and a fresh latent draw at s'. The advantage's
  // draw at s is decoded here too where the two decodes are batched (the actor does not change in
  // between; the critics that weigh it do, and are applied after their step).
  at::Tensor y, pi_action;
  {
    torch::NoGradGuard no_grad;
    at::Tensor next_action;
    if (config_.batch_no_grad_decodes) {
      const at::Tensor both_obs = at::cat({next_obs, obs}, 0);
      std::vector<at::Tensor> both =
          flow.DecodePadded(actor.Latent(both_obs, /*deterministic=*/false), both_obs).split(rows, 0);
      next_action = both[0];
      pi_action = both[1];
    } else {
      next_action = flow.DecodePadded(actor.Latent(next_obs, /*deterministic=*/false), next_obs);
    }
    const at::Tensor q_next = at::min(qf1_target_->forward(next_obs_n, next_action),
                                      qf2_target_->forward(next_obs_n, next_action));
    y = batch.reward + config_.gamma * (1.0 - batch.terminated) * q_next;
  }
  ClearGrads(critic_params_);
  const at::Tensor q1 = qf1_->forward(obs_n, action);
  const at::Tensor q2 = qf2_->forward(obs_n, action);
  const at::Tensor critic_loss = at::mse_loss(q1, y) + at::mse_loss(q2, y);
  const double critic_loss_value = critic_loss.item<double>();
  if (!std::isfinite(critic_loss_value)) {
    ++skipped_;
    stats.skipped = true;
    stats.loss = critic_loss_value;
    return stats;
  }
  critic_loss.backward();
  const double grad_norm = GradNorm(critic_params_);
  if (!std::isfinite(grad_norm)) {
    ClearGrads(critic_params_);
    ++skipped_;
    stats.skipped = true;
    stats.loss = critic_loss_value;
    return stats;
  }

  // The critics step first; the actor's advantage weights then use the stepped critics, as the
  // reference's update (critic, then actor) does.
  critic_opt_->Step();
  at::Tensor weights, v;
  {
    torch::NoGradGuard no_grad;
    if (!pi_action.defined()) pi_action = flow.DecodePadded(actor.Latent(obs, /*deterministic=*/false), obs);
    v = at::min(qf1_->forward(obs_n, pi_action), qf2_->forward(obs_n, pi_action));
    const at::Tensor q = at::min(qf1_->forward(obs_n, action), qf2_->forward(obs_n, action));
    weights = at::clamp_max(at::exp((q - v) / config_.awac_lambda), config_.max_weight);
  }
  ClearGrads(actor_params_);
  const at::Tensor policy_action = flow.DecodePadded(actor.Latent(obs, /*deterministic=*/false), obs);
  const at::Tensor actor_loss = at::mean(weights.unsqueeze(1) * at::abs(policy_action - action));
  const double actor_loss_value = actor_loss.item<double>();
  bool actor_stepped = false;
  if (std::isfinite(actor_loss_value)) {
    actor_loss.backward();
    if (std::isfinite(GradNorm(actor_params_))) {
      actor_opt_->Step();
      actor_stepped = true;
    }
  }
  ClearGrads(actor_params_);
  ClearGrads(critic_params_);
  {
    torch::NoGradGuard no_grad;
    Polyak(*qf1_target_, *qf1_, config_.tau);
    Polyak(*qf2_target_, *qf2_, config_.tau);
  }
  ++updates_;
  if (!actor_stepped) ++skipped_;  // the critics learned; the actor's step was not finite
  stats.loss = critic_loss_value + (std::isfinite(actor_loss_value) ? actor_loss_value : 0.0);
  stats.q_mean = 0.5 * (q1.mean().item<double>() + q2.mean().item<double>());
  stats.v_mean = v.mean().item<double>();
  stats.target_mean = y.mean().item<double>();
  stats.grad_norm = grad_norm;
  return stats;
}

std::vector<std::pair<std::string, AdamState*>> CnfUpdater::Optimisers() const {
  return {{"critic_opt", critic_opt_.get()}, {"actor_opt", actor_opt_.get()}};
}

NamedTensorList CnfUpdater::NamedTensors() const {
  NamedTensorList out = NamedStateTensors({{"actor", policy_->actor.get()},
                                           {"qf1", qf1_.get()},
                                           {"qf2", qf2_.get()},
                                           {"qf1_target", qf1_target_.get()},
                                           {"qf2_target", qf2_target_.get()}},
                                          Optimisers());
  // The frozen flow travels with the checkpoint too, so a run resumes without its pre-training.
  for (const auto& item : policy_->flow->named_parameters()) out.emplace_back("flow." + item.key(), item.value());
  for (const auto& item : policy_->flow->named_buffers()) out.emplace_back("flow." + item.key(), item.value());
  for (const auto& item : policy_->actor->named_buffers()) out.emplace_back("actor." + item.key(), item.value());
  return out;
}

std::map<std::string, at::Tensor> CnfUpdater::State() const { return StateOf(NamedTensors(), Optimisers()); }

std::map<std::string, std::string> CnfUpdater::StateMetadata() const {
  return {{"cnf.obs_dim", absl::StrCat(policy_config_.flow.obs_dim)},
          {"cnf.action_dim", absl::StrCat(policy_config_.flow.action_dim)},
          {"cnf.flow_layers", absl::StrCat(policy_config_.flow.layers)},
          {"cnf.flow_hidden", absl::StrCat(policy_config_.flow.hidden)},
          {"cnf.actor_layers", absl::StrCat(policy_config_.actor_layers)},
          {"cnf.critic_layers", absl::StrCat(config_.critic_layers)}};
}

absl::Status CnfUpdater::RestoreState(const std::map<std::string, at::Tensor>& state, int64_t updates,
                                      int64_t skipped_updates) {
  if (absl::Status s = CheckAndCopyState("CNF", NamedTensors(), {"critic_opt.steps", "actor_opt.steps"}, state);
      !s.ok()) {
    return s;
  }
  critic_opt_->set_steps(StepCountFrom(state.at("critic_opt.steps")));
  actor_opt_->set_steps(StepCountFrom(state.at("actor_opt.steps")));
  updates_ = updates;
  skipped_ = skipped_updates;
  return absl::OkStatus();
}

}  // namespace meow
