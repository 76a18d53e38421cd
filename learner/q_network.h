// Pieces the actor-critic baselines (SAC, SQL) share: the Q network, PyTorch's Adam over a fixed
// list of parameters, target-network updates, gradient checks and the float32 encoding of
// optimiser step counts in checkpoints.
// Not thread-safe: one thread (the learner loop) drives them.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "absl/status/status.h"
#include "learner/algorithm.h"

namespace meow {

// Q(s, a): cat(s, a) -> hidden -> ReLU -> hidden -> ReLU -> 1 ("fc1", "fc2", "fc3"), PyTorch's
// default initialisation (CleanRL's SAC critic at 256, the authors' SQL critic at 128).
class QNetworkImpl : public torch::nn::Module {
 public:
  QNetworkImpl(int64_t obs_dim, int64_t action_dim, int64_t hidden);
  torch::Tensor forward(const torch::Tensor& obs, const torch::Tensor& action);  // (B)
  // Q at K actions per state, (B, K) for obs (B, S) and actions (B, K, A): the same function with
  // the state's part of the first layer computed once per state instead of once per action.
  torch::Tensor ForwardParticles(const torch::Tensor& obs, const torch::Tensor& actions);

  torch::nn::Linear fc1{nullptr}, fc2{nullptr}, fc3{nullptr};
};
TORCH_MODULE(QNetwork);

// The hand-written forward and backward of a QNetwork, for the baselines' hot paths: plain ATen
// calls with no autograd graph (run them under torch::NoGradGuard), the same arithmetic as
// forward() and autograd's backward up to float summation order.
struct QTape {
  at::Tensor x, h1, h2;  // cat(s, a) and the two ReLU outputs
  int64_t action_dim = 0;
};
// Q(s, a) (B), recording in `tape` what QBackward needs.
at::Tensor QForward(QNetworkImpl& q, const at::Tensor& obs, const at::Tensor& action, QTape* tape);
// The backward of sum_i dq_i Q(s_i, a_i) for dq (B): with `param_grads`, sets each parameter's
// .grad() to its gradient (the parameters' own gradients are not needed when a Q network only
// passes a gradient through to the action); with `action_grad`, returns d/da (B, A), else an
// undefined tensor.
at::Tensor QBackward(QNetworkImpl& q, const QTape& tape, const at::Tensor& dq, bool param_grads, bool action_grad);
// param.grad() = grad (allocated the first time, written in place after).
void SetGrad(const at::Tensor& param, const at::Tensor& grad);
// Linear's weight and bias gradients for input x and output gradient g: g^T x and sum_rows g.
void SetLinearGrads(torch::nn::LinearImpl& linear, const at::Tensor& x, const at::Tensor& g);

// Adam with PyTorch's defaults and semantics over a fixed list of parameters (their .grad()).
class AdamState {
 public:
  AdamState(std::vector<at::Tensor> params, double lr, double beta1, double beta2, double eps);
  void Step();
  int64_t steps() const { return steps_; }
  std::vector<at::Tensor>& m() { return m_; }
  std::vector<at::Tensor>& v() { return v_; }
  void set_steps(int64_t steps) { steps_ = steps; }

 private:
  std::vector<at::Tensor> params_, m_, v_;
  double lr_, beta1_, beta2_, eps_;
  int64_t steps_ = 0;
};

void ClearGrads(const std::vector<at::Tensor>& params);

// One step of two critics toward the target y (B): loss = mse(Q_1(s, a), y) + mse(Q_2(s, a), y),
// gradients into `params` (both critics' parameters, in `opt`'s order), then `opt` steps. Fills
// `stats`' loss, grad_norm, q_mean and target_mean. A non-finite loss or gradient clears the
// gradients, leaves the critics as they were, sets stats->skipped and returns false.
// With `manual_backward`, the gradients come from QForward/QBackward instead of autograd.
bool TwinCriticStep(QNetwork& qf1, QNetwork& qf2, const std::vector<at::Tensor>& params, AdamState& opt,
                    const Batch& batch, const at::Tensor& y, UpdateStats* stats, bool manual_backward = false);
// The global L2 norm of the gradients, NaN/inf when any is not finite.
double GradNorm(const std::vector<at::Tensor>& params);
// target <- (1 - tau) target + tau online, parameter by parameter (the same network).
void Polyak(torch::nn::Module& target, torch::nn::Module& online, double tau);
void CopyParameters(torch::nn::Module& to, torch::nn::Module& from);

// Checkpoints hold float32 tensors: a step count as two exact float32 halves (high, low 2^20).
at::Tensor StepCountTensor(int64_t n);
int64_t StepCountFrom(const at::Tensor& t);

// A checkpoint's named tensors: every parameter of each module as "<prefix>.<name>", then each
// optimiser's moments as "<prefix>.m.<i>" and "<prefix>.v.<i>".
using NamedTensorList = std::vector<std::pair<std::string, at::Tensor>>;
NamedTensorList NamedStateTensors(const std::vector<std::pair<std::string, const torch::nn::Module*>>& modules,
                                  const std::vector<std::pair<std::string, AdamState*>>& optimisers);
// The state a checkpoint keeps: the named tensors, detached, and each optimiser's step count as
// "<prefix>.steps" (StepCountTensor).
std::map<std::string, at::Tensor> StateOf(const NamedTensorList& named,
                                          const std::vector<std::pair<std::string, AdamState*>>& optimisers);

// Checks `state` against every tensor of `named` (present, same shape, finite) and every count of
// `counts` (a StepCountTensor), then copies the tensors in; InvalidArgument naming the first that
// does not fit (`algorithm` starts the message), and nothing is changed then.
absl::Status CheckAndCopyState(const std::string& algorithm, const std::vector<std::pair<std::string, at::Tensor>>& named,
                               const std::vector<std::string>& counts, const std::map<std::string, at::Tensor>& state);

}  // namespace meow
