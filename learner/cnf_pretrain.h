// The first stage of CNF (reference/baselines-sql-sac-offline.md §3; tinkoff-ai/cnf
// cnf/train_flow.py): maximum-likelihood pre-training of the conditional flow on a dataset's
// (state, action) rows, one call per batch the caller draws:
//   the first batch of a flow whose ActNorms are not yet initialised initialises them
//   (init_flow_act_norm; a flow loaded with initialised ActNorms is not re-initialised),
//   loss = -mean log p(a|s) with dataset actions clamped to +-(1 - 2e-5) (cnf/offline_dataset.py),
//   gradients clipped to a global L2 norm of grad_clip (torch.nn.utils.clip_grad_norm_),
//   one AdamW step (PyTorch's: decoupled decay p <- p (1 - lr wd), then Adam) over every parameter.
// The caller owns the data: batch size, shuffling, the 90/10 validation split and picking the best
// checkpoint (the reference picks it by hand from the validation NLL).
// Not thread-safe: one thread drives a pre-trainer, and nothing else uses its flow meanwhile.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/cnf_policy.h"
#include "learner/q_network.h"

namespace meow {

struct CnfPretrainConfig {
  double lr = 5e-4;
  double weight_decay = 1e-4;
  // Rows per chunk in ValidationNll and ValidationMetrics; the reference trains on batches of 1024
  // (the caller draws Step's batches).
  int64_t batch = 1024;
  double grad_clip = 0.1;
  uint64_t seed = 0;  // seeds the latent draws of ValidationMetrics
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_eps = 1e-8;
  // Samples per state in ValidationMetrics (the reference's N_SAMPLES_FOR_VALID).
  int64_t validation_samples = 100;

  absl::Status Validate() const;
};

// Checks one batch against a flow's sizes: obs (B, S) and action (B, A) floating-point tensors with
// B >= 1 rows each, all finite, actions within [-1, 1]. InvalidArgument naming the tensor, the
// expected shape or the first bad row otherwise.
absl::Status CheckCnfBatch(const CnfFlowConfig& config, const at::Tensor& obs, const at::Tensor& action);

// The reference's dataset clamp: actions to +-kCnfDatasetActionBound.
at::Tensor ClampDatasetActions(const at::Tensor& action);

// The reference's validation metrics (cnf/train_flow.py valid_batch) over a set of rows.
struct CnfValidationMetrics {
  double nll = 0;         // mean -log p(a|s)
  double mean_mae = 0;    // mean over rows and samples of the per-row mean |a - a_sampled|
  double min_mae = 0;     // mean over rows of the smallest of the samples' MAEs
  double sample_std = 0;  // std over a state's samples, averaged over rows and action dims
  int64_t rows = 0;
};

class CnfFlowPretrainer {
 public:
  // Trains `flow` (shared: the caller keeps its handle) on the flow's device. `config` must be valid
  // (TORCH_CHECK; Create answers with a Status instead).
  CnfFlowPretrainer(CnfFlow flow, const CnfPretrainConfig& config);
  static absl::StatusOr<std::unique_ptr<CnfFlowPretrainer>> Create(CnfFlow flow, const CnfPretrainConfig& config);

  // One optimiser step on the batch (moved to the flow's device and dtype); returns the loss
  // -mean log p(a|s) before the step. InvalidArgument for a batch CheckCnfBatch refuses, and for a
  // one-row first batch while the ActNorms still need their init. A non-finite loss or gradient norm
  // changes neither the flow's weights (beyond a first batch's ActNorm init) nor the optimiser: the
  // step is skipped, counted in skipped_steps(), and the non-finite loss is returned (OK status) so
  // that the caller can log it and go on, as the other updaters skip and count. The clipped
  // gradients stay in the parameters' .grad() until the next Step.
  absl::StatusOr<double> Step(const at::Tensor& obs, const at::Tensor& action);

  // Mean -log p(a|s) over all the given rows, in chunks of config.batch, without gradients and
  // without touching the ActNorm init. The rows must pass CheckCnfBatch (TORCH_CHECK otherwise).
  double ValidationNll(const at::Tensor& obs, const at::Tensor& action);
  // The NLL and, from config.validation_samples decoded uniform latents per row (drawn from this
  // pre-trainer's own generator, seeded with config.seed), the sample MAE and spread, in the task's A
  // dimensions (the reference measures the padded D). InvalidArgument for rows CheckCnfBatch refuses.
  absl::StatusOr<CnfValidationMetrics> ValidationMetrics(const at::Tensor& obs, const at::Tensor& action);

  // The optimiser's state: "flow_opt.m.<i>", "flow_opt.v.<i>" (one per parameter, in
  // flow->parameters() order) and "flow_opt.steps" (StepCountTensor), float32. A checkpoint pairs it
  // with ExportFlowWeights of the flow.
  std::map<std::string, at::Tensor> State() const;
  // Restores State()'s tensors (present, same shapes, finite; InvalidArgument naming the first that
  // is not, and nothing changes then). Other keys in `state` are ignored.
  absl::Status RestoreState(const std::map<std::string, at::Tensor>& state);

  int64_t steps() const { return opt_->steps(); }
  int64_t skipped_steps() const { return skipped_; }
  // The global gradient norm of the newest Step before clipping (NaN before the first).
  double last_grad_norm() const { return last_grad_norm_; }
  CnfFlow& flow() { return flow_; }
  const CnfPretrainConfig& config() const { return config_; }

 private:
  // obs and clamped actions on the flow's device and dtype.
  std::pair<at::Tensor, at::Tensor> Prepare(const at::Tensor& obs, const at::Tensor& action) const;

  CnfFlow flow_;
  CnfPretrainConfig config_;
  std::vector<at::Tensor> params_;
  std::unique_ptr<AdamState> opt_;
  at::Generator generator_;
  int64_t skipped_ = 0;
  double last_grad_norm_;
};

}  // namespace meow
