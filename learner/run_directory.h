// A training run's directory and the files every way of training writes there:
//   run_kind and a lock: one writer at a time, and a run of another kind is refused (run_dir.h);
//   config.txt: the resolved settings, one `key=value` line each;
//   metrics.csv and TensorBoard events: one schema (RunMetricsWriter);
//   policy_latest.safetensors and policy_best.safetensors (the best evaluated weights; a resumed
//   run reads the best evaluation so far back from metrics.csv).
// Local mode, `meow learner` and `meow train --sync` all write through it.
// Thread-compatible: one owner.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/file_util.h"
#include "learner/run_metrics.h"

namespace meow {

class ActingPolicy;

class RunDirectory {
 public:
  // Creates `dir` (PermissionDenied naming it when it cannot), takes its lock, and claims it for a
  // run of `kind` (ClaimRunDir: FailedPrecondition when it holds another kind, or when `resumable`
  // is false and it holds an earlier run); opens metrics.csv to append when it exists.
  static absl::StatusOr<std::unique_ptr<RunDirectory>> Open(const std::string& dir, const std::string& kind,
                                                            bool resumable);

  const std::string& path() const { return dir_; }

  // Writes config.txt atomically: one `key=value` line per entry, in order.
  absl::Status WriteConfig(const std::vector<std::pair<std::string, std::string>>& lines);

  RunMetricsWriter& metrics() { return *metrics_; }

  // policy_latest.safetensors.
  absl::Status SaveLatest(ActingPolicy& policy);
  // Whether an evaluation that scored `score` (EvalPoint::score) beats every evaluation of the run
  // so far.
  bool IsBest(double score) const { return score > metrics_->best_eval(); }
  // Saves policy_best.safetensors, the weights evaluated at `score`, and makes it the best.
  absl::Status SaveBest(double score, ActingPolicy& policy);

 private:
  RunDirectory(std::string dir, DirectoryLock lock, std::unique_ptr<RunMetricsWriter> metrics)
      : dir_(std::move(dir)), lock_(std::move(lock)), metrics_(std::move(metrics)) {}

  std::string dir_;
  DirectoryLock lock_;
  std::unique_ptr<RunMetricsWriter> metrics_;
};

}  // namespace meow
