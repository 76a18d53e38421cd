// The learner's LearnerService (proto/learner.proto) and the board it writes to: actors report
// finished training episodes, the evaluator reports evaluations (with the weights it evaluated),
// and each answer carries the learner's progress and whether training is over.
//
// TrainingBoard is the meeting point between the gRPC handlers and the learner's metrics loop:
// handlers add reports, the loop takes them and sets the progress. Bounded: at most
// kMaxPendingEpisodes episodes and kMaxPendingEvaluations evaluations wait; older ones are dropped.
// Thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "actor/multi_goal.h"
#include "common/safetensors.h"
#include "grpcpp/grpcpp.h"
#include "proto/learner.grpc.pb.h"

namespace meow {

struct EvaluationRecord {
  std::string source;
  int64_t env_steps = 0;
  int64_t policy_version = 0;
  bool deterministic = true;
  std::vector<double> returns;
  std::vector<int64_t> lengths;
  SafetensorsFile weights;  // empty when the evaluator sent none
  double mean = 0;
  double std = 0;
  std::optional<MultiGoalCounts> goals;  // MultiGoal-v0: where the episodes ended
};

struct TrainingProgress {
  int64_t env_steps = 0;
  int64_t updates = 0;
  int64_t version = 0;
  int64_t total_env_steps = 0;
};

class TrainingBoard {
 public:
  static constexpr size_t kMaxPendingEpisodes = 100000;
  static constexpr size_t kMaxPendingEvaluations = 64;

  void SetProgress(const TrainingProgress& progress) ABSL_LOCKS_EXCLUDED(mu_);
  void SetDone() ABSL_LOCKS_EXCLUDED(mu_);
  proto::ReportResponse Response() const ABSL_LOCKS_EXCLUDED(mu_);

  void AddEpisodes(const std::vector<proto::Episode>& episodes) ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<proto::Episode> TakeEpisodes() ABSL_LOCKS_EXCLUDED(mu_);
  void AddEvaluation(EvaluationRecord record) ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<EvaluationRecord> TakeEvaluations() ABSL_LOCKS_EXCLUDED(mu_);
  // Blocks until an evaluation is pending or `deadline` passes; true when one is.
  bool WaitForEvaluation(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);

  int64_t evaluations_received() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  TrainingProgress progress_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<proto::Episode> episodes_ ABSL_GUARDED_BY(mu_);
  std::deque<EvaluationRecord> evaluations_ ABSL_GUARDED_BY(mu_);
  int64_t evaluations_received_ ABSL_GUARDED_BY(mu_) = 0;
};

// What the learner accepts as an evaluation's weights: exactly these tensor names with these
// shapes (the policy's own). Empty: no weights are expected, and any sent are refused.
using WeightShapes = std::map<std::string, std::vector<int64_t>>;

// The tensor names and shapes of `weights`.
WeightShapes ShapesOf(const SafetensorsFile& weights);

// Validates each report and refuses a bad one whole with INVALID_ARGUMENT naming the field, so
// nothing a client sends can reach the board that the learner could not use: episode returns
// finite and within +-kMaxAbsReturn, lengths in [1, kMaxEpisodeLength]; an evaluation's policy
// version published already (not above `newest_version()`), its weights float32 with exactly the
// policy's names and shapes and finite values, its goal counts (MultiGoal-v0) four, none negative,
// adding up to at most its episodes.
class LearnerServiceImpl final : public proto::LearnerService::Service {
 public:
  static constexpr double kMaxAbsReturn = 1e9;
  static constexpr int64_t kMaxEpisodeLength = int64_t{1} << 32;

  // `newest_version` answers the newest published weight version (thread-safe).
  LearnerServiceImpl(TrainingBoard* board, std::string token, WeightShapes weight_shapes,
                     std::function<int64_t()> newest_version)
      : board_(board),
        token_(std::move(token)),
        weight_shapes_(std::move(weight_shapes)),
        newest_version_(std::move(newest_version)) {}
  grpc::Status Report(grpc::ServerContext* context, const proto::ReportRequest* request,
                      proto::ReportResponse* response) override;

 private:
  absl::StatusOr<EvaluationRecord> ToRecord(const proto::ReportRequest& request) const;

  TrainingBoard* board_;  // not owned
  const std::string token_;
  const WeightShapes weight_shapes_;
  const std::function<int64_t()> newest_version_;
};

}  // namespace meow
