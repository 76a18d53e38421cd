#include "learner/meow_update.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/utils.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "learner/meow_backward.h"

namespace meow {

absl::Status GraphUpdateConfig::Validate() const {
  if (updates_per_launch < 1 || updates_per_launch > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("updates per graph launch must be in [1, 64], got ", updates_per_launch));
  }
  if (stats_interval < 1) {
    return absl::InvalidArgumentError(absl::StrCat("the statistics interval must be >= 1, got ", stats_interval));
  }
  return absl::OkStatus();
}

absl::Status MeowUpdateConfig::Validate() const {
  auto in_range = [](double v, double lo, double hi) { return std::isfinite(v) && v >= lo && v <= hi; };
  if (!in_range(gamma, 0, 1)) return absl::InvalidArgumentError(absl::StrCat("gamma must be in [0, 1], got ", gamma));
  if (!in_range(tau, 0, 1)) return absl::InvalidArgumentError(absl::StrCat("tau must be in [0, 1], got ", tau));
  if (!(lr > 0) || !std::isfinite(lr)) return absl::InvalidArgumentError(absl::StrCat("lr must be > 0, got ", lr));
  if (!in_range(adam_beta1, 0, 0.999999) || !in_range(adam_beta2, 0, 0.999999999)) {
    return absl::InvalidArgumentError("Adam betas must be in [0, 1)");
  }
  if (!(adam_eps > 0)) return absl::InvalidArgumentError("adam_eps must be > 0");
  if (!std::isfinite(grad_clip)) return absl::InvalidArgumentError("grad_clip must be finite");
  if (threads < 1 || threads > 256) {
    return absl::InvalidArgumentError(absl::StrCat("learner threads must be in [1, 256], got ", threads));
  }
  if (threads > 1 && !manual_backward) {
    return absl::InvalidArgumentError("learner threads > 1 need the hand-written gradient (manual_backward)");
  }
  return graph.Validate();
}

absl::Status ValidateBatch(const Batch& batch, int64_t obs_dim, int64_t action_dim, const c10::Device& device) {
  struct Field {
    const char* name;
    const at::Tensor* tensor;
    int64_t cols;  // -1: a vector (B)
  };
  const Field fields[] = {{"obs", &batch.obs, obs_dim},
                          {"action", &batch.action, action_dim},
                          {"reward", &batch.reward, -1},
                          {"next_obs", &batch.next_obs, obs_dim},
                          {"terminated", &batch.terminated, -1}};
  if (!batch.obs.defined()) return absl::InvalidArgumentError("batch field obs is missing");
  const int64_t rows = batch.obs.dim() >= 1 ? batch.obs.size(0) : -1;
  if (rows <= 0) return absl::InvalidArgumentError("batch field obs has no rows");
  for (const Field& f : fields) {
    if (!f.tensor->defined()) return absl::InvalidArgumentError(absl::StrCat("batch field ", f.name, " is missing"));
    const at::Tensor& t = *f.tensor;
    if (t.scalar_type() != at::kFloat) {
      return absl::InvalidArgumentError(
          absl::StrCat("batch field ", f.name, " has dtype ", c10::toString(t.scalar_type()), ", expected float32"));
    }
    const bool shape_ok =
        f.cols < 0 ? (t.dim() == 1 && t.size(0) == rows) : (t.dim() == 2 && t.size(0) == rows && t.size(1) == f.cols);
    if (!shape_ok) {
      return absl::InvalidArgumentError(absl::StrCat("batch field ", f.name, " has shape [",
                                                     absl::StrJoin(t.sizes(), ","), "], expected [", rows,
                                                     f.cols < 0 ? "" : absl::StrCat(",", f.cols), "]"));
    }
    // "cuda" (no index) accepts any CUDA device; "cuda:1" only that one.
    if (t.device().type() != device.type() || (device.has_index() && t.device().index() != device.index())) {
      return absl::InvalidArgumentError(
          absl::StrCat("batch field ", f.name, " is on ", t.device().str(), ", expected ", device.str()));
    }
  }
  return absl::OkStatus();
}

MeowLossTerms MeowLoss(FlowPolicyImpl& policy, FlowPolicyImpl& target, const Batch& batch, double gamma,
                       bool stack_heads) {
  MeowLossTerms terms;
  {
    // Target: exact soft value of s' from the target net's sigma-net and shift heads.
    torch::NoGradGuard no_grad;
    auto [v1, v2] = target.Value(batch.next_obs);
    terms.y = batch.reward + gamma * (1 - batch.terminated) * at::minimum(v1, v2);
  }
  if (stack_heads) {
    const int64_t rows = batch.obs.size(0);
    const QVResult both = policy.QV(at::cat({batch.obs, batch.obs}, 0), at::cat({batch.action, batch.action}, 0));
    terms.qv = QVResult{both.q1.narrow(0, 0, rows), both.q2.narrow(0, rows, rows), both.v1.narrow(0, 0, rows),
                        both.v2.narrow(0, rows, rows)};
  } else {
    terms.qv = policy.QV(batch.obs, batch.action);
  }
  terms.loss = 0.5 * ((terms.qv.q1 - terms.y).square().mean() + (terms.qv.q2 - terms.y).square().mean());
  return terms;
}

at::Tensor UpdateSummary(const at::Tensor& loss, const QVResult& qv, const at::Tensor& y, const at::Tensor& grad_norm) {
  return at::stack({loss.detach(), 0.5 * (qv.q1.detach().mean() + qv.q2.detach().mean()),
                    0.5 * (qv.v1.detach().mean() + qv.v2.detach().mean()), y.detach().mean(), grad_norm.detach()})
      .to(at::kDouble);
}

UpdateStats UpdateStatsFromSummary(const double* summary, double alpha) {
  UpdateStats stats;
  stats.loss = summary[0];
  stats.q_mean = summary[1];
  stats.v_mean = summary[2];
  stats.target_mean = summary[3];
  stats.grad_norm = summary[4];
  stats.alpha = alpha;
  return stats;
}

MeowUpdater::MeowUpdater(const FlowPolicyConfig& policy_config, const MeowUpdateConfig& config,
                         const c10::Device& device)
    : policy_config_(policy_config), config_(config), device_(device), policy_(policy_config), target_(policy_config) {
  policy_->to(device_);
  target_->to(device_);
  target_->CopyWeightsFrom(*policy_);
  target_->eval();
  policy_->eval();  // acting mode; Step() switches to train mode for the update only
  for (auto& p : target_->parameters()) p.set_requires_grad(false);

  int64_t total = 0;
  for (const auto& p : policy_->parameters()) total += p.numel();
  auto options = at::TensorOptions().dtype(at::kFloat).device(device_);
  flat_grads_ = at::zeros({total}, options);
  flat_params_ = Flatten(*policy_, flat_grads_);
  flat_target_ = Flatten(*target_, at::Tensor());
  adam_m_ = at::zeros({total}, options);
  adam_v_ = at::zeros({total}, options);
  params_ = policy_->parameters();
  if (config_.threads > 1) {
    // One network per extra thread: the same modules, their parameters views of flat_params_
    // (so they always hold the current weights), their gradients views of a buffer of their own.
    pool_ = std::make_unique<ShardPool>(config_.threads);
    torch::NoGradGuard no_grad;
    for (int i = 1; i < config_.threads; ++i) {
      FlowPolicy replica(policy_config_);
      replica->to(device_);
      replica->CopyWeightsFrom(*policy_);  // the buffers (coupling masks)
      replica->eval();
      at::Tensor grads = at::zeros({total}, options);
      int64_t offset = 0;
      for (auto& p : replica->parameters()) {
        const int64_t n = p.numel();
        p.set_data(flat_params_.narrow(0, offset, n).view(p.sizes()));
        p.mutable_grad() = grads.narrow(0, offset, n).view(p.sizes());
        offset += n;
      }
      replicas_.push_back(replica);
      replica_grads_.push_back(grads);
    }
  }
}

std::pair<int64_t, int64_t> MeowUpdater::Range(int64_t n, int part, int parts) {
  return {n * part / parts, n * (part + 1) / parts};
}

ManualLoss MeowUpdater::ShardedLossAndGrad(const Batch& batch, const std::vector<at::Tensor>& masks) {
  const int64_t rows = batch.obs.size(0);
  const int shards = static_cast<int>(std::min<int64_t>(pool_->size(), rows));
  const bool stacked = !masks.empty() && masks[0].size(0) == 2 * rows;
  std::vector<ManualLoss> parts(shards);
  pool_->Run([&](int shard) {
    if (shard >= shards) return;
    const auto [begin, end] = Range(rows, shard, shards);
    const int64_t n = end - begin;
    const Batch part{batch.obs.narrow(0, begin, n), batch.action.narrow(0, begin, n), batch.reward.narrow(0, begin, n),
                     batch.next_obs.narrow(0, begin, n), batch.terminated.narrow(0, begin, n)};
    // The shard's rows of the whole batch's masks: with stacked heads, rows begin.. of Q_1's half
    // and of Q_2's half.
    std::vector<at::Tensor> part_masks;
    for (const at::Tensor& m : masks) {
      part_masks.push_back(stacked ? at::cat({m.narrow(0, begin, n), m.narrow(0, rows + begin, n)}, 0)
                                   : m.narrow(0, begin, n).contiguous());
    }
    FlowPolicyImpl& network = shard == 0 ? *policy_ : *replicas_[shard - 1];
    parts[shard] = MeowLossAndGrad(network, *target_, part, config_.gamma, part_masks, rows);
  });
  // The whole batch's gradient: the shards' added up, each thread a range of the flat buffer.
  const int64_t total = flat_grads_.numel();
  pool_->Run([&](int t) {
    const auto [begin, end] = Range(total, t, pool_->size());
    float* sum = flat_grads_.data_ptr<float>();
    for (int shard = 1; shard < shards; ++shard) {
      const float* g = replica_grads_[shard - 1].data_ptr<float>();
      for (int64_t i = begin; i < end; ++i) sum[i] += g[i];
    }
  });
  ManualLoss out;
  std::vector<at::Tensor> loss, q1, q2, v1, v2, y;
  for (const ManualLoss& p : parts) {
    loss.push_back(p.loss);
    q1.push_back(p.q1);
    q2.push_back(p.q2);
    v1.push_back(p.v1);
    v2.push_back(p.v2);
    y.push_back(p.y);
  }
  out.loss = at::stack(loss).sum();
  out.q1 = at::cat(q1);
  out.q2 = at::cat(q2);
  out.v1 = at::cat(v1);
  out.v2 = at::cat(v2);
  out.y = at::cat(y);
  return out;
}

at::Tensor MeowUpdater::Flatten(FlowPolicyImpl& policy, const at::Tensor& grads, const at::Tensor& into) {
  auto params = policy.parameters();
  int64_t total = 0;
  for (const auto& p : params) total += p.numel();
  at::Tensor flat = into.defined() ? into : at::empty({total}, params.front().options().requires_grad(false));
  TORCH_CHECK(flat.dim() == 1 && flat.numel() == total && flat.scalar_type() == at::kFloat,
              "Flatten: the buffer must be a float vector of ", total, " values");
  torch::NoGradGuard no_grad;
  int64_t offset = 0;
  for (auto& p : params) {
    const int64_t n = p.numel();
    at::Tensor view = flat.narrow(0, offset, n).view(p.sizes());
    view.copy_(p.detach());
    p.set_data(view);
    if (grads.defined()) p.mutable_grad() = grads.narrow(0, offset, n).view(p.sizes());
    offset += n;
  }
  return flat;
}

absl::StatusOr<std::unique_ptr<MeowUpdater>> MeowUpdater::Create(const FlowPolicyConfig& policy_config,
                                                                 const MeowUpdateConfig& config,
                                                                 const c10::Device& device) {
  absl::Status status = policy_config.Validate();
  if (!status.ok()) return status;
  status = config.Validate();
  if (!status.ok()) return status;
  if (config.threads > 1 && !device.is_cpu()) {
    return absl::InvalidArgumentError(absl::StrCat("learner threads > 1 split the batch across CPU threads; on ",
                                                   device.str(), " the update takes 1 (got ", config.threads, ")"));
  }
  return std::unique_ptr<MeowUpdater>(new MeowUpdater(policy_config, config, device));
}

absl::StatusOr<UpdateStats> MeowUpdater::Step(const Batch& batch) {
  absl::Status status = ValidateBatch(batch, policy_config_.obs_dim, policy_config_.action_dim, device_);
  if (!status.ok()) return status;

  at::Tensor loss, y;
  QVResult qv;
  if (config_.manual_backward) {
    // Dropout masks drawn here play the role of train mode; the gradient lands in flat_grads_.
    const int64_t mask_rows = (config_.independent_head_dropout ? 2 : 1) * batch.obs.size(0);
    const std::vector<at::Tensor> masks = DrawDropoutMasks(policy_config_, mask_rows, batch.obs.options());
    ManualLoss manual = pool_ != nullptr ? ShardedLossAndGrad(batch, masks)
                                         : MeowLossAndGrad(*policy_, *target_, batch, config_.gamma, masks);
    loss = manual.loss;
    y = manual.y;
    qv = QVResult{manual.q1, manual.q2, manual.v1, manual.v2};
  } else {
    policy_->train();
    MeowLossTerms terms = MeowLoss(*policy_, *target_, batch, config_.gamma, config_.independent_head_dropout);
    policy_->eval();
    loss = terms.loss;
    y = terms.y;
    qv = terms.qv;
    flat_grads_.zero_();
    loss.backward();
    if (!grads_checked_) {
      // Autograd accumulates in place into an existing .grad, which keeps the flat views. Should a
      // LibTorch version replace the tensors instead, fall back to gathering them each step.
      grads_checked_ = true;
      for (const auto& p : params_) {
        const auto* base = static_cast<const char*>(flat_grads_.data_ptr());
        const auto* g = static_cast<const char*>(p.grad().data_ptr());
        grads_aliased_ = grads_aliased_ && g >= base && g < base + flat_grads_.nbytes();
      }
    }
    if (!grads_aliased_) {
      torch::NoGradGuard no_grad;
      std::vector<at::Tensor> grads;
      for (auto& p : params_) grads.push_back(p.grad().reshape({-1}));
      flat_grads_.copy_(at::cat(grads));
      // Restore the flat views for the next step (and for the hand-written path).
      int64_t offset = 0;
      for (auto& p : params_) {
        p.mutable_grad() = flat_grads_.narrow(0, offset, p.numel()).view(p.sizes());
        offset += p.numel();
      }
    }
  }
  torch::NoGradGuard no_grad;

  const at::Tensor summary = UpdateSummary(loss, qv, y, flat_grads_.norm()).cpu();
  UpdateStats stats = UpdateStatsFromSummary(summary.data_ptr<double>(), policy_config_.alpha);
  if (!std::isfinite(stats.loss) || !std::isfinite(stats.grad_norm)) {
    stats.skipped = true;
    ++skipped_steps_;
    return stats;
  }

  // clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1.
  double clip = 1.0;
  if (config_.grad_clip > 0) clip = std::min(1.0, config_.grad_clip / (stats.grad_norm + 1e-6));

  // Adam, exactly PyTorch's single-tensor formulation, then polyak.
  ++steps_;
  const double b1 = config_.adam_beta1, b2 = config_.adam_beta2;
  const double bias1 = 1 - std::pow(b1, static_cast<double>(steps_));
  const double bias2 = 1 - std::pow(b2, static_cast<double>(steps_));
  if (flat_params_.device().is_cpu()) {
    const int64_t n = flat_params_.numel();
    if (pool_ != nullptr) {
      pool_->Run([&](int t) {
        const auto [begin, end] = Range(n, t, pool_->size());
        AdamPolyakFused(clip, b1, b2, config_.lr / bias1, std::sqrt(bias2), begin, end);
      });
    } else {
      AdamPolyakFused(clip, b1, b2, config_.lr / bias1, std::sqrt(bias2), 0, n);
    }
  } else {
    if (clip < 1.0) flat_grads_.mul_(clip);
    adam_m_.mul_(b1).add_(flat_grads_, 1 - b1);
    adam_v_.mul_(b2).addcmul_(flat_grads_, flat_grads_, 1 - b2);
    const at::Tensor denom = (adam_v_.sqrt() / std::sqrt(bias2)).add_(config_.adam_eps);
    flat_params_.addcdiv_(adam_m_, denom, -config_.lr / bias1);
    flat_target_.lerp_(flat_params_, config_.tau);
  }
  return stats;
}

void MeowUpdater::AdamPolyakFused(double clip, double beta1, double beta2, double step_size, double bias2_sqrt,
                                  int64_t begin, int64_t end) {
  // One pass over the flat buffers instead of about ten; the arithmetic is PyTorch's, in float:
  //   g *= clip; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
  //   p -= step_size * m / (sqrt(v) / sqrt(bias2) + eps); target += tau (p - target).
  float* g = flat_grads_.data_ptr<float>();
  float* m = adam_m_.data_ptr<float>();
  float* v = adam_v_.data_ptr<float>();
  float* p = flat_params_.data_ptr<float>();
  float* t = flat_target_.data_ptr<float>();
  // 1 - beta in double, then float, as PyTorch passes it (1.0f - 0.999f is 4.7e-5 off 0.001).
  const float c = static_cast<float>(clip), b1 = static_cast<float>(beta1), b2 = static_cast<float>(beta2),
              rate1 = static_cast<float>(1.0 - beta1), rate2 = static_cast<float>(1.0 - beta2),
              lr = static_cast<float>(step_size), inv_bias2_sqrt = static_cast<float>(1.0 / bias2_sqrt),
              eps = static_cast<float>(config_.adam_eps), tau = static_cast<float>(config_.tau);
  for (int64_t i = begin; i < end; ++i) {
    const float gi = g[i] * c;
    g[i] = gi;
    const float mi = b1 * m[i] + rate1 * gi;
    const float vi = b2 * v[i] + rate2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float pi = p[i] - lr * mi / (std::sqrt(vi) * inv_bias2_sqrt + eps);
    p[i] = pi;
    t[i] += tau * (pi - t[i]);
  }
}

absl::Status MeowUpdater::RestoreState(const at::Tensor& params, const at::Tensor& target, const at::Tensor& adam_m,
                                       const at::Tensor& adam_v, int64_t steps, int64_t skipped_steps) {
  const int64_t n = flat_params_.numel();
  const std::pair<const char*, const at::Tensor*> parts[] = {
      {"params", &params}, {"target", &target}, {"adam_m", &adam_m}, {"adam_v", &adam_v}};
  for (const auto& [name, t] : parts) {
    if (!t->defined() || t->dim() != 1 || t->numel() != n) {
      return absl::InvalidArgumentError(absl::StrCat("state ", name, " must be a vector of ", n, " values"));
    }
  }
  if (steps < 0 || skipped_steps < 0) return absl::InvalidArgumentError("negative step counters");
  torch::NoGradGuard no_grad;
  flat_params_.copy_(params);
  flat_target_.copy_(target);
  adam_m_.copy_(adam_m);
  adam_v_.copy_(adam_v);
  steps_ = steps;
  skipped_steps_ = skipped_steps;
  return absl::OkStatus();
}

std::map<std::string, at::Tensor> MeowUpdater::State() const {
  return {{"params", flat_params_}, {"target", flat_target_}, {"adam_m", adam_m_}, {"adam_v", adam_v_}};
}

std::map<std::string, std::string> MeowUpdater::StateMetadata() const {
  return {{"meow.obs_dim", absl::StrCat(policy_config_.obs_dim)},
          {"meow.action_dim", absl::StrCat(policy_config_.action_dim)}};
}

absl::Status MeowUpdater::RestoreState(const std::map<std::string, at::Tensor>& state, int64_t updates,
                                       int64_t skipped_updates) {
  at::Tensor parts[4];
  const char* names[4] = {"params", "target", "adam_m", "adam_v"};
  for (int i = 0; i < 4; ++i) {
    auto it = state.find(names[i]);
    if (it == state.end()) return absl::InvalidArgumentError(absl::StrCat("no state \"", names[i], "\""));
    if (it->second.scalar_type() != at::kFloat) {
      return absl::InvalidArgumentError(absl::StrCat("state ", names[i], " must be float32"));
    }
    parts[i] = it->second.to(device_);
  }
  return RestoreState(parts[0], parts[1], parts[2], parts[3], updates, skipped_updates);
}

}  // namespace meow
