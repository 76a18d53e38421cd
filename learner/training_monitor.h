// The metrics collector of a distributed run: it follows replay (Info on every shard), tells the
// learner's board and the learner where training stands, takes the actors' episode reports and
// the evaluators' reports, and writes the run directory: a metrics row every log_interval
// environment steps, one per evaluation, policy_latest after each evaluation and policy_best for
// the best. It also builds the Prometheus page (the live learner figures, the newest row, the
// embedded replay's table and rate limiter, RPC metrics).
// Thread-compatible, but for MetricsPage, which any thread may call.
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "actor/acting_policy.h"
#include "learner/progress.h"
#include "learner/run_directory.h"
#include "learner/train_config.h"
#include "learner/training_components.h"
#include "proto/replay.grpc.pb.h"

namespace meow {

class TrainingMonitor {
 public:
  // `export_policy` (the policy's shape) holds the weights written to policy_latest/best.
  TrainingMonitor(const TrainConfig& config, TrainingComponents& components, RunDirectory& run_dir,
                  ActingPolicy& export_policy);

  // One turn of the metrics loop: follows replay (at most every 250 ms), takes the reports, and
  // writes a periodic row once replay passed the next log_interval. True when it wrote one.
  absl::StatusOr<bool> Step();
  // Follows replay now (after the learner stopped: the final figures on the board).
  void FollowNow();
  // The last reports, the final periodic row and policy_latest.
  absl::Status Finish();

  int64_t env_steps() const { return view_.inserted; }
  bool target_reached() const { return target_reached_; }
  // Environment step of the newest evaluation received (-1: none).
  int64_t last_eval_steps() const { return last_eval_steps_; }
  const std::vector<EvalPoint>& evals() const { return evals_; }
  double elapsed() const;
  ProgressFigures Figures() const;
  // The Prometheus text page. Thread-safe.
  std::string MetricsPage() const ABSL_LOCKS_EXCLUDED(latest_mu_);

 private:
  // What replay's shards report, summed (the newest policy version: the highest).
  struct ReplayView {
    int64_t inserted = 0;
    int64_t size = 0;
    int64_t insert_waits = 0;
    int64_t sample_waits = 0;
    double insert_wait_s = 0;
    double sample_wait_s = 0;
    int64_t newest_policy_version = 0;
  };

  void Follow();
  void PollReplay();
  absl::Status TakeReports();
  // A periodic row (eval columns empty), or an evaluation's row (only the eval columns and the
  // counters), so every series stays in order of environment steps.
  absl::Status WriteRow(int64_t env_steps, const EvalPoint* eval) ABSL_LOCKS_EXCLUDED(latest_mu_);
  absl::Status SaveLatest();
  void CloseEpisodeWindow();

  const TrainConfig& config_;
  TrainingComponents& components_;
  RunDirectory& run_dir_;
  ActingPolicy& export_policy_;
  const std::chrono::steady_clock::time_point start_;
  // One channel per shard for the whole run (a new one per poll would reconnect, and handshake
  // TLS, four times a second); gRPC reconnects it when a shard comes back.
  std::vector<std::unique_ptr<proto::ReplayService::Stub>> info_stubs_;
  ReplayView view_;
  absl::Time next_poll_ = absl::InfinitePast();
  bool first_ = true;
  int64_t next_row_ = 0;
  RateMeter rates_;
  // Where the time went over the last window (NaN before the first): the share of wall time the
  // learner spent in updates, and the share of the actors' time blocked by the rate limiter.
  struct BusyMark {
    double time = 0, update_seconds = 0, insert_wait_s = 0;
  };
  BusyMark busy_mark_;
  double learner_busy_ = std::numeric_limits<double>::quiet_NaN();
  double actors_waiting_ = std::numeric_limits<double>::quiet_NaN();
  void MarkBusy();
  int64_t episodes_ = 0, window_episodes_ = 0;
  double window_return_ = 0;
  double last_episode_mean_;
  double last_eval_mean_;
  std::optional<MultiGoalCounts> last_eval_goals_;
  int64_t last_eval_steps_ = -1;
  bool target_reached_ = false;
  std::vector<EvalPoint> evals_;

  mutable absl::Mutex latest_mu_;
  std::map<std::string, double> latest_row_ ABSL_GUARDED_BY(latest_mu_);
};

}  // namespace meow
