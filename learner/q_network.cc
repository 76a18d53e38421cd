#include "learner/q_network.h"

#include <cmath>

#include <ATen/ATen.h>
#include <torch/nn/functional/loss.h>
#include <torch/utils.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace meow {

QNetworkImpl::QNetworkImpl(int64_t obs_dim, int64_t action_dim, int64_t hidden) {
  fc1 = register_module("fc1", torch::nn::Linear(obs_dim + action_dim, hidden));
  fc2 = register_module("fc2", torch::nn::Linear(hidden, hidden));
  fc3 = register_module("fc3", torch::nn::Linear(hidden, 1));
}

torch::Tensor QNetworkImpl::forward(const torch::Tensor& obs, const torch::Tensor& action) {
  torch::Tensor x = torch::cat({obs, action}, 1);
  return fc3(torch::relu(fc2(torch::relu(fc1(x))))).squeeze(1);
}

torch::Tensor QNetworkImpl::ForwardParticles(const torch::Tensor& obs, const torch::Tensor& actions) {
  const int64_t s = obs.size(1), a = actions.size(2);
  const torch::Tensor& w = fc1->weight;  // (H, S + A)
  torch::Tensor h = at::linear(obs, w.narrow(1, 0, s), fc1->bias).unsqueeze(1) + at::matmul(actions, w.narrow(1, s, a).t());
  return fc3(torch::relu(fc2(torch::relu(h)))).squeeze(-1);
}

at::Tensor QForward(QNetworkImpl& q, const at::Tensor& obs, const at::Tensor& action, QTape* tape) {
  tape->x = at::cat({obs, action}, 1);
  tape->action_dim = action.size(1);
  tape->h1 = at::relu(at::addmm(q.fc1->bias, tape->x, q.fc1->weight.t()));
  tape->h2 = at::relu(at::addmm(q.fc2->bias, tape->h1, q.fc2->weight.t()));
  return at::addmm(q.fc3->bias, tape->h2, q.fc3->weight.t()).squeeze(1);
}

at::Tensor QBackward(QNetworkImpl& q, const QTape& tape, const at::Tensor& dq, bool param_grads, bool action_grad) {
  const at::Tensor g3 = dq.unsqueeze(1);  // (B, 1)
  // ReLU's backward as autograd's: the gradient where the output is positive.
  const at::Tensor g2 = at::threshold_backward(at::mm(g3, q.fc3->weight), tape.h2, 0);
  const at::Tensor g1 = at::threshold_backward(at::mm(g2, q.fc2->weight), tape.h1, 0);
  if (param_grads) {
    SetLinearGrads(*q.fc3, tape.h2, g3);
    SetLinearGrads(*q.fc2, tape.h1, g2);
    SetLinearGrads(*q.fc1, tape.x, g1);
  }
  if (!action_grad) return at::Tensor();
  const int64_t obs_dim = tape.x.size(1) - tape.action_dim;
  return at::mm(g1, q.fc1->weight.narrow(1, obs_dim, tape.action_dim));
}

void SetGrad(const at::Tensor& param, const at::Tensor& grad) {
  if (param.grad().defined()) {
    param.mutable_grad().copy_(grad);
  } else {
    param.mutable_grad() = grad.contiguous();
  }
}

void SetLinearGrads(torch::nn::LinearImpl& linear, const at::Tensor& x, const at::Tensor& g) {
  SetGrad(linear.weight, at::mm(g.t(), x));
  SetGrad(linear.bias, g.sum(0));
}

AdamState::AdamState(std::vector<at::Tensor> params, double lr, double beta1, double beta2, double eps)
    : params_(std::move(params)), lr_(lr), beta1_(beta1), beta2_(beta2), eps_(eps) {
  for (const at::Tensor& p : params_) {
    m_.push_back(torch::zeros_like(p).detach());
    v_.push_back(torch::zeros_like(p).detach());
  }
}

void AdamState::Step() {
  torch::NoGradGuard no_grad;
  ++steps_;
  const double bias1 = 1 - std::pow(beta1_, static_cast<double>(steps_));
  const double bias2_sqrt = std::sqrt(1 - std::pow(beta2_, static_cast<double>(steps_)));
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!params_[i].grad().defined()) continue;
    const at::Tensor& g = params_[i].grad();
    m_[i].mul_(beta1_).add_(g, 1 - beta1_);
    v_[i].mul_(beta2_).addcmul_(g, g, 1 - beta2_);
    at::Tensor denom = (v_[i].sqrt() / bias2_sqrt).add_(eps_);
    params_[i].addcdiv_(m_[i], denom, -lr_ / bias1);
  }
}

void ClearGrads(const std::vector<at::Tensor>& params) {
  for (const at::Tensor& p : params) {
    if (p.grad().defined()) p.mutable_grad().zero_();
  }
}

bool TwinCriticStep(QNetwork& qf1, QNetwork& qf2, const std::vector<at::Tensor>& params, AdamState& opt,
                    const Batch& batch, const at::Tensor& y, UpdateStats* stats, bool manual_backward) {
  at::Tensor q1, q2, loss;
  if (manual_backward) {
    // d/dQ_k of mean((Q_k - y)^2) is 2 (Q_k - y) / B.
    torch::NoGradGuard no_grad;
    QTape tape1, tape2;
    q1 = QForward(*qf1, batch.obs, batch.action, &tape1);
    q2 = QForward(*qf2, batch.obs, batch.action, &tape2);
    const at::Tensor e1 = q1 - y, e2 = q2 - y;
    loss = e1.square().mean() + e2.square().mean();
    const double scale = 2.0 / static_cast<double>(y.size(0));
    QBackward(*qf1, tape1, e1 * scale, /*param_grads=*/true, /*action_grad=*/false);
    QBackward(*qf2, tape2, e2 * scale, /*param_grads=*/true, /*action_grad=*/false);
  } else {
    ClearGrads(params);
    q1 = qf1(batch.obs, batch.action);
    q2 = qf2(batch.obs, batch.action);
    loss = torch::mse_loss(q1, y) + torch::mse_loss(q2, y);
    loss.backward();
  }
  stats->loss = loss.item<double>();
  stats->grad_norm = GradNorm(params);
  stats->q_mean = 0.5 * (q1.mean().item<double>() + q2.mean().item<double>());
  stats->target_mean = y.mean().item<double>();
  if (!std::isfinite(stats->loss) || !std::isfinite(stats->grad_norm)) {
    ClearGrads(params);
    stats->skipped = true;
    return false;
  }
  opt.Step();
  return true;
}

double GradNorm(const std::vector<at::Tensor>& params) {
  double sum = 0;
  for (const at::Tensor& p : params) {
    if (p.grad().defined()) sum += p.grad().to(at::kDouble).pow(2).sum().item<double>();
  }
  return std::sqrt(sum);
}

void Polyak(torch::nn::Module& target, torch::nn::Module& online, double tau) {
  torch::NoGradGuard no_grad;
  auto t = target.parameters();
  auto o = online.parameters();
  for (size_t i = 0; i < t.size(); ++i) t[i].mul_(1 - tau).add_(o[i], tau);
}

void CopyParameters(torch::nn::Module& to, torch::nn::Module& from) {
  torch::NoGradGuard no_grad;
  auto t = to.parameters();
  auto f = from.parameters();
  for (size_t i = 0; i < t.size(); ++i) t[i].copy_(f[i]);
}

at::Tensor StepCountTensor(int64_t n) {
  return torch::tensor({static_cast<float>(n >> 20), static_cast<float>(n & ((1 << 20) - 1))}, at::kFloat);
}

int64_t StepCountFrom(const at::Tensor& t) {
  return (static_cast<int64_t>(t[0].item<double>()) << 20) + static_cast<int64_t>(t[1].item<double>());
}

NamedTensorList NamedStateTensors(const std::vector<std::pair<std::string, const torch::nn::Module*>>& modules,
                                  const std::vector<std::pair<std::string, AdamState*>>& optimisers) {
  NamedTensorList out;
  for (const auto& [prefix, module] : modules) {
    for (const auto& item : module->named_parameters()) out.emplace_back(absl::StrCat(prefix, ".", item.key()), item.value());
  }
  for (const auto& [prefix, opt] : optimisers) {
    for (size_t i = 0; i < opt->m().size(); ++i) {
      out.emplace_back(absl::StrCat(prefix, ".m.", i), opt->m()[i]);
      out.emplace_back(absl::StrCat(prefix, ".v.", i), opt->v()[i]);
    }
  }
  return out;
}

std::map<std::string, at::Tensor> StateOf(const NamedTensorList& named,
                                          const std::vector<std::pair<std::string, AdamState*>>& optimisers) {
  std::map<std::string, at::Tensor> state;
  for (const auto& [name, t] : named) state.emplace(name, t.detach());
  for (const auto& [prefix, opt] : optimisers) state.emplace(absl::StrCat(prefix, ".steps"), StepCountTensor(opt->steps()));
  return state;
}

absl::Status CheckAndCopyState(const std::string& algorithm, const std::vector<std::pair<std::string, at::Tensor>>& named,
                               const std::vector<std::string>& counts, const std::map<std::string, at::Tensor>& state) {
  auto shape = [](const at::Tensor& t) { return absl::StrCat("[", absl::StrJoin(t.sizes(), ","), "]"); };
  for (const auto& [name, target] : named) {
    auto it = state.find(name);
    if (it == state.end()) return absl::InvalidArgumentError(absl::StrCat(algorithm, " state: missing tensor \"", name, "\""));
    if (!it->second.sizes().equals(target.sizes())) {
      return absl::InvalidArgumentError(absl::StrCat(algorithm, " state: tensor \"", name, "\" has shape ",
                                                     shape(it->second), ", expected ", shape(target)));
    }
    if (!torch::isfinite(it->second).all().item<bool>()) {
      return absl::InvalidArgumentError(absl::StrCat(algorithm, " state: tensor \"", name, "\" holds NaN or inf"));
    }
  }
  for (const std::string& name : counts) {
    auto it = state.find(name);
    if (it == state.end() || it->second.numel() != 2 || !torch::isfinite(it->second).all().item<bool>() ||
        (it->second < 0).any().item<bool>()) {
      return absl::InvalidArgumentError(absl::StrCat(algorithm, " state: missing or malformed \"", name, "\""));
    }
  }
  torch::NoGradGuard no_grad;
  for (const auto& [name, target] : named) target.copy_(state.at(name));
  return absl::OkStatus();
}

}  // namespace meow
