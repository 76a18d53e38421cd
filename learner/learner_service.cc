#include "learner/learner_service.h"

#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/grpc_security.h"
#include "common/grpc_status.h"
#include "common/weights_codec.h"

namespace meow {

void TrainingBoard::SetProgress(const TrainingProgress& progress) {
  absl::MutexLock lock(&mu_);
  progress_ = progress;
}

void TrainingBoard::SetDone() {
  absl::MutexLock lock(&mu_);
  done_ = true;
}

proto::ReportResponse TrainingBoard::Response() const {
  absl::MutexLock lock(&mu_);
  proto::ReportResponse response;
  response.set_env_steps(progress_.env_steps);
  response.set_updates(progress_.updates);
  response.set_version(progress_.version);
  response.set_total_env_steps(progress_.total_env_steps);
  response.set_done(done_);
  return response;
}

void TrainingBoard::AddEpisodes(const std::vector<proto::Episode>& episodes) {
  absl::MutexLock lock(&mu_);
  for (const proto::Episode& e : episodes) {
    if (episodes_.size() >= kMaxPendingEpisodes) {
      episodes_.pop_front();
    }
    episodes_.push_back(e);
  }
}

std::vector<proto::Episode> TrainingBoard::TakeEpisodes() {
  absl::MutexLock lock(&mu_);
  std::vector<proto::Episode> out(episodes_.begin(), episodes_.end());
  episodes_.clear();
  return out;
}

void TrainingBoard::AddEvaluation(EvaluationRecord record) {
  absl::MutexLock lock(&mu_);
  if (evaluations_.size() >= kMaxPendingEvaluations) {
    evaluations_.pop_front();
  }
  evaluations_.push_back(std::move(record));
  ++evaluations_received_;
}

std::vector<EvaluationRecord> TrainingBoard::TakeEvaluations() {
  absl::MutexLock lock(&mu_);
  std::vector<EvaluationRecord> out(std::make_move_iterator(evaluations_.begin()),
                                    std::make_move_iterator(evaluations_.end()));
  evaluations_.clear();
  return out;
}

bool TrainingBoard::WaitForEvaluation(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto pending = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !evaluations_.empty(); };
  return mu_.AwaitWithDeadline(absl::Condition(&pending), deadline);
}

int64_t TrainingBoard::evaluations_received() const {
  absl::MutexLock lock(&mu_);
  return evaluations_received_;
}

namespace {

absl::Status CheckEpisode(const proto::Episode& e, const std::string& field) {
  if (!std::isfinite(e.episode_return())) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".episode_return is not finite"));
  }
  if (std::abs(e.episode_return()) > LearnerServiceImpl::kMaxAbsReturn) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".episode_return ", e.episode_return(), " is beyond +-",
                                                   LearnerServiceImpl::kMaxAbsReturn));
  }
  if (e.length() < 1 || e.length() > LearnerServiceImpl::kMaxEpisodeLength) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".length must be in [1, ", LearnerServiceImpl::kMaxEpisodeLength, "], got ", e.length()));
  }
  return absl::OkStatus();
}

// Exactly the expected names and shapes, finite values; errors name the tensor.
absl::Status CheckWeights(const SafetensorsFile& weights, const WeightShapes& expected, const std::string& field) {
  if (expected.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": this learner takes no evaluated weights"));
  }
  for (const auto& [name, shape] : expected) {
    auto it = weights.tensors.find(name);
    if (it == weights.tensors.end()) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": missing tensor \"", name, "\""));
    }
    if (it->second.shape != shape) {
      return absl::InvalidArgumentError(absl::StrCat(field, "[\"", name, "\"] has shape [",
                                                     absl::StrJoin(it->second.shape, ","), "], expected [",
                                                     absl::StrJoin(shape, ","), "]"));
    }
    const auto* values = reinterpret_cast<const float*>(it->second.data.data());
    const size_t n = it->second.data.size() / sizeof(float);
    for (size_t i = 0; i < n; ++i) {
      float v;
      std::memcpy(&v, values + i, sizeof(v));
      if (!std::isfinite(v)) {
        return absl::InvalidArgumentError(absl::StrCat(field, "[\"", name, "\"][", i, "] is not finite"));
      }
    }
  }
  for (const auto& [name, raw] : weights.tensors) {
    if (!expected.count(name)) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": unexpected tensor \"", name, "\""));
    }
  }
  return absl::OkStatus();
}

}  // namespace

WeightShapes ShapesOf(const SafetensorsFile& weights) {
  WeightShapes shapes;
  for (const auto& [name, raw] : weights.tensors) shapes[name] = raw.shape;
  return shapes;
}

absl::StatusOr<EvaluationRecord> LearnerServiceImpl::ToRecord(const proto::ReportRequest& request) const {
  const proto::Evaluation& eval = request.evaluation();
  EvaluationRecord record;
  record.source = request.source();
  if (eval.env_steps() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("ReportRequest.evaluation.env_steps must be >= 0, got ", eval.env_steps()));
  }
  const int64_t newest = newest_version_ ? newest_version_() : 0;
  if (eval.policy_version() < 1 || eval.policy_version() > newest) {
    return absl::InvalidArgumentError(absl::StrCat("ReportRequest.evaluation.policy_version must be in [1, ", newest,
                                                   "] (the versions published so far), got ", eval.policy_version()));
  }
  if (eval.episodes().empty()) {
    return absl::InvalidArgumentError("ReportRequest.evaluation.episodes is empty");
  }
  record.env_steps = eval.env_steps();
  record.policy_version = eval.policy_version();
  record.deterministic = eval.deterministic();
  double sum = 0;
  for (int i = 0; i < eval.episodes_size(); ++i) {
    const proto::Episode& e = eval.episodes(i);
    if (absl::Status s = CheckEpisode(e, absl::StrCat("ReportRequest.evaluation.episodes[", i, "]")); !s.ok()) return s;
    record.returns.push_back(e.episode_return());
    record.lengths.push_back(e.length());
    sum += e.episode_return();
  }
  record.mean = sum / record.returns.size();
  double var = 0;
  for (double r : record.returns) var += (r - record.mean) * (r - record.mean);
  record.std = std::sqrt(var / record.returns.size());  // population std, as numpy's default
  if (!eval.goal_counts().empty()) {
    if (eval.goal_counts_size() != 4) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ReportRequest.evaluation.goal_counts must have 4 entries (one per goal), got ", eval.goal_counts_size()));
    }
    MultiGoalCounts goals;
    int64_t at_goal = 0;
    for (int g = 0; g < 4; ++g) {
      const int64_t n = eval.goal_counts(g);
      if (n < 0 || n > eval.episodes_size()) {
        return absl::InvalidArgumentError(absl::StrCat("ReportRequest.evaluation.goal_counts[", g, "] must be in [0, ",
                                                       eval.episodes_size(), "] (the episodes), got ", n));
      }
      goals.reached[g] = static_cast<int>(n);
      at_goal += n;
    }
    if (at_goal > eval.episodes_size()) {
      return absl::InvalidArgumentError(absl::StrCat("ReportRequest.evaluation.goal_counts add up to ", at_goal,
                                                     ", more than its ", eval.episodes_size(), " episodes"));
    }
    goals.unfinished = static_cast<int>(eval.episodes_size() - at_goal);
    record.goals = goals;
  }
  if (!eval.tensors().empty()) {
    auto weights = DecodeNamedTensors(eval.tensors(), "ReportRequest.evaluation.tensors");
    if (!weights.ok()) return weights.status();
    if (absl::Status s = CheckWeights(*weights, weight_shapes_, "ReportRequest.evaluation.tensors"); !s.ok()) return s;
    record.weights = *std::move(weights);
  }
  return record;
}

grpc::Status LearnerServiceImpl::Report(grpc::ServerContext* context, const proto::ReportRequest* request,
                                        proto::ReportResponse* response) {
  if (grpc::Status s = CheckToken(*context, token_); !s.ok()) return s;
  std::vector<proto::Episode> episodes(request->episodes().begin(), request->episodes().end());
  for (size_t i = 0; i < episodes.size(); ++i) {
    if (absl::Status s = CheckEpisode(episodes[i], absl::StrCat("ReportRequest.episodes[", i, "]")); !s.ok()) {
      return ToGrpcStatus(s);
    }
  }
  if (request->has_evaluation()) {
    auto record = ToRecord(*request);
    if (!record.ok()) return ToGrpcStatus(record.status());
    board_->AddEvaluation(*std::move(record));
  }
  board_->AddEpisodes(episodes);
  *response = board_->Response();
  return grpc::Status::OK;
}

}  // namespace meow
