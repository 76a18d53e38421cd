#include "learner/cnf_pretrain.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/utils.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"

namespace meow {
namespace {

// torch.nn.utils.clip_grad_norm_'s guard against a zero norm.
constexpr double kClipEps = 1e-6;
// ValidationMetrics decodes at most this many latents per config.batch rows at a time.
constexpr int64_t kSamplesPerBatchRow = 16;

std::string Shape(const at::Tensor& t) { return absl::StrCat("[", absl::StrJoin(t.sizes(), ","), "]"); }

// The index of the first row of `bad` (B, ...) that holds a true value, or -1.
int64_t FirstBadRow(const at::Tensor& bad) {
  at::Tensor rows = bad.reshape({bad.size(0), -1}).any(1).nonzero();
  return rows.numel() == 0 ? -1 : rows[0][0].item<int64_t>();
}

absl::Status CheckMatrix(const std::string& name, const at::Tensor& t, int64_t columns) {
  if (!t.defined() || t.dim() != 2 || t.size(1) != columns || t.size(0) < 1) {
    return absl::InvalidArgumentError(absl::StrCat(name, " has shape ", t.defined() ? Shape(t) : "(none)",
                                                   ", expected [B,", columns, "] with B >= 1"));
  }
  if (!at::isFloatingType(t.scalar_type())) {
    return absl::InvalidArgumentError(absl::StrCat(name, " has dtype ", t.scalar_type(), ", expected floating point"));
  }
  if (int64_t row = FirstBadRow(at::isfinite(t).logical_not()); row >= 0) {
    return absl::InvalidArgumentError(absl::StrCat(name, " row ", row, " holds NaN or inf"));
  }
  return absl::OkStatus();
}

// The global L2 norm of the parameters' gradients (NaN or inf when any is not finite).
double GlobalGradNorm(const std::vector<at::Tensor>& params) {
  std::vector<at::Tensor> norms;
  for (const at::Tensor& p : params) {
    if (p.grad().defined()) norms.push_back(p.grad().norm().to(at::kDouble));
  }
  if (norms.empty()) return 0;
  return at::stack(norms).norm().item<double>();
}

}  // namespace

absl::Status CnfPretrainConfig::Validate() const {
  if (!(lr > 0)) return absl::InvalidArgumentError(absl::StrCat("CNF pre-training lr must be > 0, got ", lr));
  if (!(weight_decay >= 0)) {
    return absl::InvalidArgumentError(absl::StrCat("CNF pre-training weight_decay must be >= 0, got ", weight_decay));
  }
  if (batch < 1) return absl::InvalidArgumentError(absl::StrCat("CNF pre-training batch must be >= 1, got ", batch));
  if (!(grad_clip > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("CNF pre-training grad_clip must be > 0, got ", grad_clip));
  }
  if (!(adam_beta1 >= 0 && adam_beta1 < 1) || !(adam_beta2 >= 0 && adam_beta2 < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("CNF pre-training Adam betas must lie in [0, 1), got ", adam_beta1, " and ", adam_beta2));
  }
  if (!(adam_eps > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("CNF pre-training adam_eps must be > 0, got ", adam_eps));
  }
  if (validation_samples < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CNF pre-training validation_samples must be >= 2 (a spread needs two), got ", validation_samples));
  }
  return absl::OkStatus();
}

absl::Status CheckCnfBatch(const CnfFlowConfig& config, const at::Tensor& obs, const at::Tensor& action) {
  MEOW_RETURN_IF_ERROR(CheckMatrix("obs", obs, config.obs_dim));
  MEOW_RETURN_IF_ERROR(CheckMatrix("action", action, config.action_dim));
  if (obs.size(0) != action.size(0)) {
    return absl::InvalidArgumentError(absl::StrCat("obs has ", obs.size(0), " rows but action has ", action.size(0)));
  }
  if (int64_t row = FirstBadRow(action.abs() > 1); row >= 0) {
    return absl::InvalidArgumentError(absl::StrCat("action row ", row, " lies outside [-1, 1]"));
  }
  return absl::OkStatus();
}

at::Tensor ClampDatasetActions(const at::Tensor& action) {
  return action.clamp(-kCnfDatasetActionBound, kCnfDatasetActionBound);
}

CnfFlowPretrainer::CnfFlowPretrainer(CnfFlow flow, const CnfPretrainConfig& config)
    : flow_(std::move(flow)),
      config_(config),
      generator_(at::make_generator<at::CPUGeneratorImpl>(config.seed)),
      last_grad_norm_(std::numeric_limits<double>::quiet_NaN()) {
  TORCH_CHECK(config.Validate().ok(), config.Validate().ToString());
  params_ = flow_->parameters();
  opt_ = std::make_unique<AdamState>(params_, config.lr, config.adam_beta1, config.adam_beta2, config.adam_eps);
}

absl::StatusOr<std::unique_ptr<CnfFlowPretrainer>> CnfFlowPretrainer::Create(CnfFlow flow,
                                                                             const CnfPretrainConfig& config) {
  MEOW_RETURN_IF_ERROR(config.Validate());
  return std::make_unique<CnfFlowPretrainer>(std::move(flow), config);
}

std::pair<at::Tensor, at::Tensor> CnfFlowPretrainer::Prepare(const at::Tensor& obs, const at::Tensor& action) const {
  const at::TensorOptions options = params_.front().options();
  return {obs.to(options), ClampDatasetActions(action.to(options))};
}

absl::StatusOr<double> CnfFlowPretrainer::Step(const at::Tensor& raw_obs, const at::Tensor& raw_action) {
  MEOW_RETURN_IF_ERROR(CheckCnfBatch(flow_->config(), raw_obs, raw_action));
  auto [obs, action] = Prepare(raw_obs, raw_action);
  if (!flow_->actnorm_initialized()) {
    if (obs.size(0) < 2) {
      return absl::InvalidArgumentError("the first batch initialises the flow's ActNorms and needs at least 2 rows");
    }
    flow_->InitializeActNorm(action, obs);
  }
  ClearGrads(params_);
  at::Tensor loss = -flow_->LogProb(action, obs).mean();
  const double loss_value = loss.item<double>();
  if (!std::isfinite(loss_value)) {
    ++skipped_;
    last_grad_norm_ = std::numeric_limits<double>::quiet_NaN();
    return loss_value;
  }
  loss.backward();
  last_grad_norm_ = GlobalGradNorm(params_);
  if (!std::isfinite(last_grad_norm_)) {
    ClearGrads(params_);
    ++skipped_;
    return loss_value;
  }
  torch::NoGradGuard no_grad;
  // clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1.
  if (const double coef = config_.grad_clip / (last_grad_norm_ + kClipEps); coef < 1) {
    for (const at::Tensor& p : params_) {
      if (p.grad().defined()) p.mutable_grad().mul_(coef);
    }
  }
  // AdamW: the decoupled decay first, then Adam's step (torch.optim.AdamW's order).
  for (const at::Tensor& p : params_) {
    if (p.grad().defined()) p.mul_(1 - config_.lr * config_.weight_decay);
  }
  opt_->Step();
  return loss_value;
}

double CnfFlowPretrainer::ValidationNll(const at::Tensor& raw_obs, const at::Tensor& raw_action) {
  absl::Status valid = CheckCnfBatch(flow_->config(), raw_obs, raw_action);
  TORCH_CHECK(valid.ok(), "ValidationNll: ", valid.ToString());
  torch::NoGradGuard no_grad;
  auto [obs, action] = Prepare(raw_obs, raw_action);
  const int64_t rows = obs.size(0);
  double sum = 0;
  for (int64_t begin = 0; begin < rows; begin += config_.batch) {
    const int64_t n = std::min(config_.batch, rows - begin);
    sum -= flow_->LogProb(action.narrow(0, begin, n), obs.narrow(0, begin, n)).to(at::kDouble).sum().item<double>();
  }
  return sum / static_cast<double>(rows);
}

absl::StatusOr<CnfValidationMetrics> CnfFlowPretrainer::ValidationMetrics(const at::Tensor& raw_obs,
                                                                          const at::Tensor& raw_action) {
  MEOW_RETURN_IF_ERROR(CheckCnfBatch(flow_->config(), raw_obs, raw_action));
  CnfValidationMetrics metrics;
  metrics.nll = ValidationNll(raw_obs, raw_action);
  torch::NoGradGuard no_grad;
  auto [obs, action] = Prepare(raw_obs, raw_action);
  const int64_t rows = obs.size(0);
  const int64_t k = config_.validation_samples;
  const int64_t chunk = std::max<int64_t>(1, config_.batch * kSamplesPerBatchRow / k);
  double mean_mae = 0, min_mae = 0, sample_std = 0;
  for (int64_t begin = 0; begin < rows; begin += chunk) {
    const int64_t n = std::min(chunk, rows - begin);
    // As the reference: K copies of the chunk stacked, sample k of row i at k * n + i.
    at::Tensor samples = flow_->Sample(obs.narrow(0, begin, n).repeat({k, 1}), generator_).view({k, n, -1});
    at::Tensor mae = (samples - action.narrow(0, begin, n).unsqueeze(0)).abs().mean(-1).to(at::kDouble);  // (K, n)
    mean_mae += mae.mean(0).sum().item<double>();
    min_mae += std::get<0>(mae.min(0)).sum().item<double>();
    sample_std += samples.std(/*dim=*/{0}, /*unbiased=*/true).mean(-1).to(at::kDouble).sum().item<double>();
  }
  metrics.mean_mae = mean_mae / static_cast<double>(rows);
  metrics.min_mae = min_mae / static_cast<double>(rows);
  metrics.sample_std = sample_std / static_cast<double>(rows);
  metrics.rows = rows;
  return metrics;
}

std::map<std::string, at::Tensor> CnfFlowPretrainer::State() const {
  const std::vector<std::pair<std::string, AdamState*>> opts = {{"flow_opt", opt_.get()}};
  return StateOf(NamedStateTensors({}, opts), opts);
}

absl::Status CnfFlowPretrainer::RestoreState(const std::map<std::string, at::Tensor>& state) {
  const std::vector<std::pair<std::string, AdamState*>> opts = {{"flow_opt", opt_.get()}};
  MEOW_RETURN_IF_ERROR(CheckAndCopyState("CNF pre-training", NamedStateTensors({}, opts), {"flow_opt.steps"}, state));
  opt_->set_steps(StepCountFrom(state.at("flow_opt.steps")));
  return absl::OkStatus();
}

}  // namespace meow
