// CNF's first stage as a run does it: maximum-likelihood pre-training of the conditional flow on a
// dataset, with its own files in RUN_DIR/flow/:
//   metrics.csv             one row per epoch: epoch, steps, train_nll (mean over the epoch's
//                           batches), valid_nll, valid_mean_mae, valid_sample_std, seconds
//   flow_best.safetensors   the flow of the lowest validation NLL so far (what the second stage
//                           decodes with; the reference picks it by hand from the same curve)
//   flow_latest.safetensors and pretrain_state.safetensors (the optimiser and the epoch): where an
//                           interrupted pre-training resumes
//   complete                written once every epoch is done; a run that finds it skips the stage
// Rows are split once, by a permutation seeded with `seed`, into 90% training and 10% validation
// rows (the reference's split); the state normaliser holds the whole dataset's mean and std.
// Not thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "common/cnf_policy.h"
#include "common/safetensors.h"
#include "learner/cnf_pretrain.h"
#include "replay/dataset.h"

namespace meow {

struct CnfFlowStageConfig {
  std::string run_dir;
  CnfFlowConfig flow;          // sizes (obs_dim, action_dim) must be the dataset's
  CnfPretrainConfig optimiser;  // AdamW 5e-4, weight decay 1e-4, clip 0.1
  int64_t epochs = 100;         // the reference: expert 50, medium 100, replay 350
  int64_t batch_size = 1024;
  double valid_fraction = 0.1;
  int64_t metrics_rows = 1000;  // validation rows for the sampled MAE and spread (100 samples each)
  uint64_t seed = 1;
  bool progress = true;         // a line per epoch on stdout

  absl::Status Validate() const;
};

// Runs the stage (resuming or skipping it as the files say) and returns the path of the flow the
// second stage uses (RUN_DIR/flow/flow_best.safetensors). `stop` ends it after the current epoch
// (CANCELLED; the files then let the same call resume).
absl::StatusOr<std::string> RunFlowPretraining(const Dataset& dataset, const CnfFlowStageConfig& config,
                                               const std::atomic<bool>& stop);

}  // namespace meow
