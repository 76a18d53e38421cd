// Distributed MEow training as users run it: `meow train` (local mode) and `meow learner`.
//
// RunTraining always hosts the learner: its gRPC server (ParameterService + LearnerService on
// `address`), the learner loop on its own thread, and a metrics loop on the calling thread that
// follows replay (Info on every shard), writes the run directory and prints progress.
//   local mode (replay_addresses empty): it also starts an embedded replay server on 127.0.0.1
//     (persisted in RUN_DIR/replay), `actors` actor threads with `envs_per_actor` environments
//     each and an evaluator thread, all talking to each other over real gRPC on 127.0.0.1.
//   learner mode (replay_addresses set): replay, actors and the evaluator are other processes.
//
// The update-to-data ratio is replay's rate limiter: samples_per_insert = batch_size gives the
// paper's one update per environment step; <= 0 lets sampling run free. Replay's minimum size is
// learning_starts, so the first update (and the first weights: actors act at random until then)
// comes after learning_starts environment steps, as in the reference. The limiter's slack
// (rate_tolerance) and each actor's window of unacknowledged batches are small by default, so
// the actors wait for the learner instead of running ahead: data made with weights hundreds of
// updates old learned markedly worse than the reference loop (acting_lag in metrics.csv shows
// how far behind the learner the newest data was made).
//
// Training stops when replay holds total_env_steps inserted transitions (or an evaluation reaches
// stop_at_eval_return, or `stop` is set): the learner publishes and checkpoints its final weights,
// the board says "done" (actors and evaluators stop), the evaluator's final evaluation is waited
// for, and the run directory gets its last rows. Running again with the same run_dir resumes:
// newest checkpoint, replay's snapshot and log (local mode), metrics appended.
//
// Built from parts (README, "Layout and architecture"): RunDirectory, TrainingComponents,
// TrainingMonitor and ProgressLine.
//
// Run directory: config.txt, metrics.csv (one row per log_interval env steps and one per
// evaluation), TensorBoard events, policy_latest.safetensors, policy_best.safetensors (the best
// evaluated weights), checkpoints/, replay/ (local mode).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "learner/train_config.h"

namespace meow {

struct TrainResult {
  int64_t env_steps = 0;
  int64_t updates = 0;
  int64_t skipped_updates = 0;
  int64_t version = 0;  // last published weight version
  double seconds = 0;
  std::vector<EvalPoint> evals;         // evaluations received in this run, in order
  std::vector<int64_t> actor_versions;  // local mode: each actor's policy version at the end
  std::string restored_from;            // the checkpoint resumed from, if any
  bool interrupted = false;             // `stop` was set before the end
  std::string learner_address;          // where the learner served
};

// Resolved `--run_dir` default: runs/<env>-seed<seed>.
std::string DefaultRunDir(const std::string& env, uint64_t seed);

absl::StatusOr<TrainResult> RunTraining(const TrainConfig& config, const std::atomic<bool>& stop);

}  // namespace meow
