// One MEow gradient step (reference/meow-and-envs.md §2), on CPU or CUDA:
//   y    = r + gamma * (1 - terminated) * min_k Vbar_k(s')   (target net, eval mode, no grad)
//   loss = mean_k mean_batch (Q_k(s,a) - y)^2                 (online net, train mode: dropout on)
//   one Adam over all parameters, global grad-norm clip, polyak target update with tau.
//
// Speed: the batch goes once through the couplings (both heads share them), the target is
// Value() alone (no coupling pass), the gradient is written out by hand (meow_backward.h) rather
// than recorded by autograd, and all parameters, gradients and Adam moments live in single flat
// buffers, so clipping, the finite check, Adam and polyak are a handful of whole-buffer ops.
//
// Data parallel on the CPU (`threads` > 1): the batch is split by rows into one shard per thread,
// each thread runs the hand-written forward/backward of its shard into a gradient buffer of its
// own (replicas of the network whose parameters are views of the one flat buffer), the buffers
// are added up, and one clip/Adam/polyak step follows, split across the threads by parameter
// range. The dropout masks are drawn once for the whole batch, so the update is the one-thread
// update up to float summation order.
//
// A non-finite loss or gradient never reaches the weights: the step is skipped and counted.
// Not thread-safe: one thread drives an updater (the learner loop).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/flow_policy.h"
#include "learner/algorithm.h"
#include "learner/shard_pool.h"

namespace meow {

// How the device-resident update of a GPU learner runs (MeowGraphUpdater, meow_graph_update.h).
struct GraphUpdateConfig {
  // On a CUDA device: record the update as a CUDA graph and replay it (false: issue the same ops
  // one by one, still without host synchronisation). Ignored on the CPU.
  bool capture = true;
  int updates_per_launch = 1;  // K: batches staged at once and updates per graph launch
  int stats_interval = 100;    // updates between the asynchronous readbacks of the statistics

  absl::Status Validate() const;
};

struct MeowUpdateConfig {
  double gamma = 0.99;
  double tau = 0.005;  // polyak rate: target <- tau * online + (1 - tau) * target
  double lr = 1e-3;    // Adam, PyTorch defaults otherwise
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_eps = 1e-8;
  double grad_clip = 30.0;  // global L2 norm; <= 0 disables clipping
  // true: the hand-written gradient of meow_backward.h; false: autograd through MeowLoss().
  bool manual_backward = true;
  // true: Q_1 and Q_2 see independent coupling dropout masks, as in the reference (its get_qv
  // runs the batch twice, [s; s]); false: one mask shared by both heads (half the coupling work).
  bool independent_head_dropout = true;
  // CPU threads the update's batch is split across (data parallel; 1: the calling thread alone).
  // Needs the hand-written gradient; the CUDA learner takes 1.
  int threads = 1;
  // A CUDA learner's update (MeowGraphUpdater); MeowUpdater itself ignores it.
  GraphUpdateConfig graph;

  absl::Status Validate() const;
};

// Checks every field's dtype, shape and device; the error names the field.
absl::Status ValidateBatch(const Batch& batch, int64_t obs_dim, int64_t action_dim, const c10::Device& device);

// The MEow loss on a batch, as the update computes it (any floating dtype, so that tests can check
// its gradient in double precision): y from target.Value(s') without gradient, then
// 0.5 * (mean (Q_1 - y)^2 + mean (Q_2 - y)^2). `policy` is used in whatever mode it is in. With
// `stack_heads` the batch goes through the policy twice ([s; s], as the reference's get_qv), Q_1
// from the first half and Q_2 from the second, so in train mode each head has its own dropout.
struct MeowLossTerms {
  at::Tensor loss;
  at::Tensor y;
  QVResult qv;
};
MeowLossTerms MeowLoss(FlowPolicyImpl& policy, FlowPolicyImpl& target, const Batch& batch, double gamma,
                       bool stack_heads = false);

// What an update reports, as one float64 vector on the loss's device: [loss, q_mean, v_mean,
// target_mean, grad_norm] (q and v the two heads' mean), and back from its values on the host.
// MeowUpdater reads it at once; the GPU learner copies it back later.
constexpr int64_t kUpdateSummarySize = 5;
at::Tensor UpdateSummary(const at::Tensor& loss, const QVResult& qv, const at::Tensor& y, const at::Tensor& grad_norm);
UpdateStats UpdateStatsFromSummary(const double* summary, double alpha);

struct ManualLoss;

class MeowUpdater : public Algorithm {
 public:
  // Builds the online network (fresh initialisation from the current LibTorch RNG state), its
  // target copy and the optimiser state on `device`.
  static absl::StatusOr<std::unique_ptr<MeowUpdater>> Create(const FlowPolicyConfig& policy_config,
                                                             const MeowUpdateConfig& config, const c10::Device& device);

  // One update. InvalidArgument for a malformed batch (nothing changes).
  absl::StatusOr<UpdateStats> Step(const Batch& batch);

  FlowPolicy& policy() { return policy_; }
  FlowPolicy& target() { return target_; }
  const MeowUpdateConfig& config() const { return config_; }
  const FlowPolicyConfig& policy_config() const { return policy_config_; }
  const c10::Device& device() const override { return device_; }
  int64_t steps() const { return steps_; }                  // applied updates
  int64_t skipped_steps() const { return skipped_steps_; }  // non-finite, skipped

  // Algorithm: "meow"; Update is Step; the acting weights are the online policy's (ExportWeights);
  // the state is the four flat buffers below.
  std::string name() const override { return "meow"; }
  absl::StatusOr<UpdateStats> Update(const Batch& batch) override { return Step(batch); }
  int64_t updates() const override { return steps_; }
  int64_t skipped_updates() const override { return skipped_steps_; }
  SafetensorsFile ActingWeights() override { return policy_->ExportWeights(); }
  std::map<std::string, at::Tensor> State() const override;
  std::map<std::string, std::string> StateMetadata() const override;
  absl::Status RestoreState(const std::map<std::string, at::Tensor>& state, int64_t updates,
                            int64_t skipped_updates) override;

  // Flat state, for checkpoints: parameters, target parameters, Adam moments, in the order of
  // policy()->parameters(). The setters validate sizes and copy.
  const at::Tensor& flat_params() const { return flat_params_; }
  const at::Tensor& flat_target() const { return flat_target_; }
  const at::Tensor& adam_m() const { return adam_m_; }
  const at::Tensor& adam_v() const { return adam_v_; }
  // The gradient buffer the hand-written backward writes (every parameter's .grad() is a view).
  const at::Tensor& flat_grads() const { return flat_grads_; }
  absl::Status RestoreState(const at::Tensor& params, const at::Tensor& target, const at::Tensor& adam_m,
                            const at::Tensor& adam_v, int64_t steps, int64_t skipped_steps);

  // Makes every parameter of `policy` a view into one flat buffer (returned), holding the current
  // values: `into` when it is defined (a float vector of the parameters' total size, on any
  // device, e.g. pinned host memory), else a new one on the parameters' device. When `grads` is
  // defined, every gradient becomes a view into it as well.
  static at::Tensor Flatten(FlowPolicyImpl& policy, const at::Tensor& grads, const at::Tensor& into = at::Tensor());

 private:
  MeowUpdater(const FlowPolicyConfig& policy_config, const MeowUpdateConfig& config, const c10::Device& device);
  // Clip, Adam and polyak over the CPU float buffers in one pass, over elements [begin, end).
  void AdamPolyakFused(double clip, double beta1, double beta2, double step_size, double bias2_sqrt, int64_t begin,
                       int64_t end);
  // The data-parallel loss and gradient (threads > 1): each shard on its thread, the gradients
  // summed into flat_grads_; the result is the whole batch's, as MeowLossAndGrad gives it.
  ManualLoss ShardedLossAndGrad(const Batch& batch, const std::vector<at::Tensor>& masks);
  // Elements [begin, end) of a flat buffer of `n` for part `part` of `parts`.
  static std::pair<int64_t, int64_t> Range(int64_t n, int part, int parts);

  FlowPolicyConfig policy_config_;
  MeowUpdateConfig config_;
  c10::Device device_;
  FlowPolicy policy_;
  FlowPolicy target_;
  at::Tensor flat_params_, flat_target_, flat_grads_, adam_m_, adam_v_;
  std::vector<at::Tensor> params_;
  // threads > 1: the pool, and per extra thread a network sharing flat_params_ with a gradient
  // buffer of its own.
  std::unique_ptr<ShardPool> pool_;
  std::vector<FlowPolicy> replicas_;
  std::vector<at::Tensor> replica_grads_;
  bool grads_checked_ = false;  // whether autograd was seen to accumulate into flat_grads_
  bool grads_aliased_ = true;
  int64_t steps_ = 0;
  int64_t skipped_steps_ = 0;
};

}  // namespace meow
