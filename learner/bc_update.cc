#include "learner/bc_update.h"

#include <cmath>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"

namespace meow {

absl::Status BcUpdateConfig::Validate() const {
  if (!(lr > 0) || !std::isfinite(lr)) return absl::InvalidArgumentError(absl::StrCat("bc.lr must be > 0, got ", lr));
  return absl::OkStatus();
}

BcUpdater::BcUpdater(const SacPolicyConfig& policy, const BcUpdateConfig& config, const c10::Device& device)
    : policy_config_(policy), config_(config), device_(device) {}

absl::StatusOr<std::unique_ptr<BcUpdater>> BcUpdater::Create(const SacPolicyConfig& policy,
                                                             const BcUpdateConfig& config, const c10::Device& device) {
  if (absl::Status s = policy.Validate(); !s.ok()) return s;
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  std::unique_ptr<BcUpdater> u(new BcUpdater(policy, config, device));
  u->actor_ = SacActor(policy);
  u->actor_->to(device);
  // Only the mean head is trained; the log-std head keeps its initial weights (unused by the
  // deterministic action the evaluation takes).
  for (const auto& item : u->actor_->named_parameters()) {
    if (item.key().rfind("fc_logstd", 0) != 0) u->params_.push_back(item.value());
  }
  u->opt_ = std::make_unique<AdamState>(u->params_, config.lr, 0.9, 0.999, 1e-8);
  return u;
}

absl::StatusOr<UpdateStats> BcUpdater::Update(const Batch& batch) {
  const int64_t s = policy_config_.obs_dim, a = policy_config_.action_dim;
  const int64_t rows = batch.obs.defined() ? batch.obs.size(0) : 0;
  if (rows < 1 || batch.obs.sizes() != at::IntArrayRef({rows, s}) || !batch.action.defined() ||
      batch.action.sizes() != at::IntArrayRef({rows, a})) {
    return absl::InvalidArgumentError(
        absl::StrCat("bc update: expected obs (B, ", s, ") and action (B, ", a, ") of one batch"));
  }
  UpdateStats stats;
  ClearGrads(params_);
  const at::Tensor predicted = at::tanh(actor_->MeanLogStd(batch.obs).first);
  const at::Tensor loss = at::mse_loss(predicted, batch.action);
  stats.loss = loss.item<double>();
  if (!std::isfinite(stats.loss)) {
    ++skipped_;
    stats.skipped = true;
    return stats;
  }
  loss.backward();
  stats.grad_norm = GradNorm(params_);
  if (!std::isfinite(stats.grad_norm)) {
    ClearGrads(params_);
    ++skipped_;
    stats.skipped = true;
    return stats;
  }
  opt_->Step();
  ClearGrads(params_);
  ++updates_;
  return stats;
}

SafetensorsFile BcUpdater::ActingWeights() {
  SafetensorsFile file = actor_->ExportWeights();
  file.metadata["meow.trained_by"] = "bc";
  return file;
}

NamedTensorList BcUpdater::NamedTensors() const {
  return NamedStateTensors({{"actor", actor_.get()}}, {{"actor_opt", opt_.get()}});
}

std::map<std::string, at::Tensor> BcUpdater::State() const { return StateOf(NamedTensors(), {{"actor_opt", opt_.get()}}); }

std::map<std::string, std::string> BcUpdater::StateMetadata() const {
  return {{"bc.obs_dim", absl::StrCat(policy_config_.obs_dim)}, {"bc.action_dim", absl::StrCat(policy_config_.action_dim)}};
}

absl::Status BcUpdater::RestoreState(const std::map<std::string, at::Tensor>& state, int64_t updates,
                                     int64_t skipped_updates) {
  if (absl::Status s = CheckAndCopyState("BC", NamedTensors(), {"actor_opt.steps"}, state); !s.ok()) return s;
  opt_->set_steps(StepCountFrom(state.at("actor_opt.steps")));
  updates_ = updates;
  skipped_ = skipped_updates;
  return absl::OkStatus();
}

}  // namespace meow
