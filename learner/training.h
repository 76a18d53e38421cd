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
// Run directory: config.txt, metrics.csv (one row per log_interval env steps and one per
// evaluation), TensorBoard events, policy_latest.safetensors, policy_best.safetensors (the best
// evaluated weights), checkpoints/, replay/ (local mode).
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/flow_policy.h"
#include "learner/meow_update.h"
#include "learner/sync_trainer.h"

namespace meow {

// The reference loop's settings (task, hyperparameters, budget, evaluation, run directory) plus
// the distributed layout.
struct TrainConfig : SyncTrainConfig {
  // Sampled transitions per inserted transition; the default (batch_size) is one update per env
  // step. <= 0: sampling runs free.
  std::optional<double> samples_per_insert;
  // Slack of that ratio in sampled transitions (0: one inserted transition's worth,
  // samples_per_insert). The learner may run this far ahead of the data and the actors this far
  // ahead of the learner; every transition of slack is data made with weights one update older
  // (MultiGoal-v0 learned markedly worse with 100 batches of slack: see README, "Does local mode
  // learn like the reference loop?").
  double rate_tolerance = 0;

  std::vector<std::string> replay_addresses;  // empty: local mode with an embedded replay
  std::string address = "127.0.0.1:0";        // the learner's server; port 0 picks one
  int actors = 1;                             // local mode: actor threads
  int envs_per_actor = 1;                     // local mode: environments per actor
  bool evaluator = true;                      // local mode: an evaluator thread
  int64_t actor_refresh_interval = 10;        // vector steps between the actors' weight fetches
  int64_t actor_steps_per_batch = 8;          // vector steps per inserted batch
  // Batches an actor may have sent to replay unacknowledged; past that it waits, so replay's rate
  // limiter holds the actors back instead of a queue of stale transitions (ActorConfig).
  int actor_max_unacked_batches = 1;
  int64_t publish_interval = 10;              // updates between published weight versions
  int64_t checkpoint_interval = 5000;         // updates between checkpoints
  std::optional<double> stop_at_eval_return;  // stop early once an evaluation reaches this
  // Learner mode: how long to wait for replay at start, for the evaluator's final evaluation, and
  // to keep answering "done" to actors after training ends.
  absl::Duration connect_timeout = absl::Seconds(60);
  absl::Duration final_eval_wait = absl::Minutes(5);
  absl::Duration linger = absl::Seconds(3);
  // host:port of the Prometheus metrics page (/metrics, /healthz); empty: none.
  std::string metrics_address;

  bool local() const { return replay_addresses.empty(); }
  absl::Status Validate() const;
};

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
