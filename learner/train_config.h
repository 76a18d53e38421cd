// The settings every way of training shares (`meow train`, `meow learner`, `meow train --sync`):
// the task, its hyperparameters, the budget, the evaluation schedule and the run directory, plus
// the helpers that turn them into a run (the device, a task's preset, config.txt's lines).
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/flow_policy.h"
#include "common/grpc_security.h"
#include "common/presets.h"
#include "learner/cnf_update.h"
#include "learner/meow_update.h"
#include "learner/sac_update.h"
#include "learner/sql_update.h"
#include "learner/run_metrics.h"

namespace meow {

struct TrainSettings {
  std::string env = "MultiGoal-v0";
  // The algorithm: "meow" (policy and update below), "sac" (sac) or "sql" (sql); the sizes are policy's.
  std::string algo = "meow";
  FlowPolicyConfig policy;  // obs/action sizes are filled from the environment
  MeowUpdateConfig update;
  SacUpdateConfig sac;
  SqlUpdateConfig sql;
  int64_t total_env_steps = 4000;
  int64_t learning_starts = 1000;
  int64_t batch_size = 256;
  int64_t buffer_size = 1'000'000;
  int64_t eval_interval = 800;
  int64_t eval_episodes = 10;
  bool deterministic_eval = true;
  int64_t eval_max_steps = 0;  // steps per evaluation episode at most (0: the task's limit)
  uint64_t seed = 1;
  std::string device = "cpu";   // "cpu", "cuda" or "auto"
  std::string run_dir;          // empty: write nothing (--sync only; the distributed modes need one)
  int64_t log_interval = 1000;  // env steps between metrics rows / progress lines
  bool progress = true;         // print progress lines on stdout

  absl::Status Validate() const;
};

// The shared settings plus the distributed layout (local mode and `meow learner`).
struct TrainConfig : TrainSettings {
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
  // Offline training (local mode): the embedded replay serves this dataset file (HDF5, D4RL
  // layout) as a read-only table, no actors run, and the run's clock is the learner's updates:
  // total_env_steps, eval_interval and log_interval count updates, and metrics.csv's env_steps
  // column holds them (config.txt says clock=updates). Empty: online.
  std::string offline_dataset;
  // --algo=cnf (offline only): the flow's pre-training stage (learner/cnf_training.h), then the
  // latent controller (learner/cnf_update.h).
  int64_t flow_epochs = 100;
  int64_t flow_batch_size = 1024;
  CnfUpdateConfig cnf;
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
  // Local mode: every video_every-th evaluation and the final one (0: none) also writes its first
  // episode to RUN_DIR/videos/step-<env steps>.mp4, video_width x video_height (MuJoCo tasks).
  int64_t video_every = 0;
  int video_width = 480;
  int video_height = 480;
  // TLS and token of the learner's server and of its replay clients (local mode: of the embedded
  // replay and the in-process actors and evaluator too). Default: plaintext, no token.
  GrpcSecurity security;

  bool local() const { return replay_addresses.empty(); }
  bool offline() const { return !offline_dataset.empty(); }
  // samples_per_insert, or batch_size when unset.
  double resolved_samples_per_insert() const { return samples_per_insert.value_or(static_cast<double>(batch_size)); }
  // rate_tolerance, or one inserted transition's worth (samples_per_insert, at least 1) when 0.
  double resolved_rate_tolerance() const {
    return rate_tolerance > 0 ? rate_tolerance : std::max(resolved_samples_per_insert(), 1.0);
  }
  absl::Status Validate() const;
};

// Resolves "auto" to CUDA when LibTorch has it and a device is present; a clear error for "cuda"
// without one.
absl::StatusOr<c10::Device> ResolveDevice(const std::string& device);

// A task's preset as settings: its hyperparameters, budget and evaluation schedule.
TrainSettings ConfigFromPreset(const TaskPreset& preset);
// SQL's settings on a task: the preset's budget and evaluation, then the MEow authors' SQL
// (warm-up, run length, stochastic evaluation, the task's reward scale; sql's defaults otherwise).
// A task without a published reward scale keeps reward_scale 1 and says so in `*no_scale`.
TrainSettings SqlConfigFromPreset(const TaskPreset& preset, bool* no_scale = nullptr);

// config.txt's lines for the shared settings, in the order every mode writes them ("mode" first;
// each mode appends its own).
std::vector<std::pair<std::string, std::string>> SettingsLines(const TrainSettings& settings, const std::string& mode,
                                                               const c10::Device& device);

}  // namespace meow
