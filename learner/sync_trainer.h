// Single-threaded MEow training, the reference loop (one env, one update per env step) but for one
// step: the first update comes at t = learning_starts, where the reference's
// `global_step > learning_starts` makes its first one a step later:
//   t < learning_starts: uniform random actions; otherwise stochastic policy actions (eval mode);
//   store (s, a, r, s', terminated) with s' the final observation on truncation;
//   t >= learning_starts: one MeowUpdater step on a uniform batch;
//   every eval_interval steps: eval_episodes deterministic episodes on resets seeded 0..N-1.
// It writes the run directory when `run_dir` is set, with the parts and the schema local mode uses
// (RunDirectory: config.txt, metrics.csv, TensorBoard events, policy_latest/best.safetensors),
// and prints the same progress line (ProgressLine). The distributed system keeps the same
// semantics.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "learner/meow_update.h"
#include "learner/train_config.h"

namespace meow {

struct SyncTrainResult {
  std::vector<EvalPoint> evals;
  int64_t updates = 0;
  int64_t skipped_updates = 0;
  double seconds = 0;
  std::unique_ptr<MeowUpdater> updater;  // the trained networks
};

absl::StatusOr<SyncTrainResult> TrainSync(const TrainSettings& config);

}  // namespace meow
