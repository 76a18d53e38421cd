// Single-threaded MEow training, the reference loop (one env, one update per env step) but for one
// step: the first update comes at t = learning_starts, where the reference's
// `global_step > learning_starts` makes its first one a step later:
//   t < learning_starts: uniform random actions; otherwise stochastic policy actions (eval mode);
//   store (s, a, r, s', terminated) with s' the final observation on truncation;
//   t >= learning_starts: one MeowUpdater step on a uniform batch;
//   every eval_interval steps: eval_episodes deterministic episodes on resets seeded 0..N-1.
// It writes the run directory (config.txt, metrics.csv, policy_latest/best.safetensors) when
// `run_dir` is set and prints progress lines. The distributed system keeps the same semantics.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/flow_policy.h"
#include "common/presets.h"
#include "learner/meow_update.h"

namespace meow {

struct SyncTrainConfig {
  std::string env = "MultiGoal-v0";
  FlowPolicyConfig policy;  // obs/action sizes are filled from the environment
  MeowUpdateConfig update;
  int64_t total_env_steps = 4000;
  int64_t learning_starts = 1000;
  int64_t batch_size = 256;
  int64_t buffer_size = 1'000'000;
  int64_t eval_interval = 800;
  int64_t eval_episodes = 10;
  bool deterministic_eval = true;
  uint64_t seed = 1;
  std::string device = "cpu";   // "cpu", "cuda" or "auto"
  std::string run_dir;          // empty: write nothing
  int64_t log_interval = 1000;  // env steps between metrics rows / progress lines
  bool progress = true;         // print progress lines on stdout

  absl::Status Validate() const;
};

struct EvalPoint {
  int64_t env_steps = 0;
  double mean = 0;
  double std = 0;
};

struct SyncTrainResult {
  std::vector<EvalPoint> evals;
  int64_t updates = 0;
  int64_t skipped_updates = 0;
  double seconds = 0;
  std::unique_ptr<MeowUpdater> updater;  // the trained networks
};

// Resolves "auto" to CUDA when LibTorch has it and a device is present; a clear error for "cuda"
// without one.
absl::StatusOr<c10::Device> ResolveDevice(const std::string& device);

// A task's preset as a configuration: its hyperparameters, budget and evaluation schedule.
SyncTrainConfig ConfigFromPreset(const TaskPreset& preset);

// "1h02m", "3m05s", "42s"; "?" for a negative or non-finite value. For ETAs.
std::string FormatDuration(double seconds);

absl::StatusOr<SyncTrainResult> TrainSync(const SyncTrainConfig& config);

}  // namespace meow
