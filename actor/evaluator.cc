#include "actor/evaluator.h"

#include <cmath>
#include <filesystem>
#include <utility>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/utils.h>

#include "absl/strings/str_cat.h"
#include "actor/env_registry.h"
#include "actor/evaluate.h"
#include "actor/render/record_episode.h"
#include "actor/render/video_writer.h"
#include "common/address.h"
#include "common/status.h"
#include "common/tensor_codec.h"

namespace meow {

absl::Status EvaluatorConfig::Validate() const {
  if (learner_address.empty()) return absl::InvalidArgumentError("the evaluator needs a learner address");
  if (absl::Status s = ValidateAddress("learner address", learner_address); !s.ok()) return s;
  if (interval < 1) return absl::InvalidArgumentError(absl::StrCat("eval interval must be >= 1, got ", interval));
  if (episodes < 1) return absl::InvalidArgumentError(absl::StrCat("eval episodes must be >= 1, got ", episodes));
  if (max_steps < 0) return absl::InvalidArgumentError(absl::StrCat("eval max_steps must be >= 0, got ", max_steps));
  if (poll_interval <= absl::ZeroDuration()) return absl::InvalidArgumentError("poll_interval must be > 0");
  if (video_every < 0) return absl::InvalidArgumentError(absl::StrCat("video_every must be >= 0, got ", video_every));
  if (video_every > 0) {
    if (video_dir.empty()) return absl::InvalidArgumentError("videos (video_every > 0) need a video folder");
    MEOW_RETURN_IF_ERROR(video.Validate());
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Evaluator>> Evaluator::Create(const EvaluatorConfig& input) {
  if (absl::Status s = input.Validate(); !s.ok()) return s;
  auto env = MakeEnv(input.env);
  if (!env.ok()) return env.status();
  EvaluatorConfig config = input;
  config.policy.obs_dim = (*env)->spec().obs_dim;
  config.policy.action_dim = (*env)->spec().action_dim;
  if (absl::Status s = config.policy.Validate(); !s.ok()) return s;
  if (absl::Status s = ValidateAlgorithm(config.algo); !s.ok()) return s;
  if (config.video_every > 0) {
    // Refused up front rather than at the first video: a task without a renderer, no ffmpeg, a
    // folder that cannot be made.
    if (dynamic_cast<MujocoEnv*>(env->get()) == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("videos are drawn for the MuJoCo tasks, not ", config.env, " (leave video_every at 0)"));
    }
    MEOW_RETURN_IF_ERROR(CheckFfmpeg("ffmpeg"));
    std::error_code error;
    std::filesystem::create_directories(config.video_dir, error);
    if (error) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot make the video folder ", config.video_dir, ": ", error.message()));
    }
  }
  return std::unique_ptr<Evaluator>(new Evaluator(config, *std::move(env)));
}

Evaluator::Evaluator(const EvaluatorConfig& config, std::unique_ptr<Env> env)
    : config_(config),
      env_(std::move(env)),
      learner_(config.learner_address, config.security),
      policy_(*NewActingPolicy(config.algo, config.policy)) {
  stats_.last_mean = stats_.last_std = std::nan("");
}

EvaluatorStats Evaluator::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void Evaluator::RecordVideo(int64_t env_steps, bool final) {
  if (config_.video_every <= 0) return;
  if (!final && (stats().evaluations + 1) % config_.video_every != 0) return;
  EpisodeVideo video;
  video.path = absl::StrCat(config_.video_dir, "/step-", env_steps, ".mp4");
  video.render = config_.video;
  auto recorded = RecordEpisode(*policy_, *env_, config_.seed, config_.deterministic, video);
  absl::MutexLock lock(&mu_);
  if (recorded.ok()) {
    ++stats_.videos;
    stats_.last_video = video.path;
  } else {
    ++stats_.video_errors;
    stats_.last_video_error = std::string(recorded.status().message());
  }
}

absl::Status Evaluator::EvaluateOnce(int64_t env_steps, bool final) {
  auto got = learner_.Get(1, config_.rpc_timeout);
  if (!got.ok()) {
    if (absl::IsInvalidArgument(got.status())) return got.status();
    absl::MutexLock lock(&mu_);
    ++stats_.errors;
    return absl::OkStatus();
  }
  if (!got->has_value()) return absl::OkStatus();  // no weights yet: nothing to evaluate
  const PolicyWeights& weights = **got;
  if (absl::Status s = policy_->LoadWeights(weights.weights); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("weights version ", weights.version, " from ", config_.learner_address, ": ", s.message()));
  }
  // Sampled actions come from a stream of their own, the same for every evaluation, so that two
  // evaluations differ by their weights alone (and the actors' draws are not disturbed).
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(config_.seed + 100);
  auto summary = Evaluate(*policy_, *env_, config_.episodes, config_.deterministic, config_.seed, generator,
                          config_.max_steps);
  if (!summary.ok()) return summary.status();
  RecordVideo(env_steps, final);

  proto::ReportRequest request;
  request.set_source("evaluator");
  proto::Evaluation* eval = request.mutable_evaluation();
  eval->set_env_steps(env_steps);
  eval->set_policy_version(weights.version);
  eval->set_deterministic(config_.deterministic);
  for (const EpisodeResult& e : summary->episodes) {
    proto::Episode* episode = eval->add_episodes();
    episode->set_episode_return(e.episode_return);
    episode->set_length(e.length);
  }
  if (summary->goals.has_value()) {
    for (int reached : summary->goals->reached) eval->add_goal_counts(reached);
  }
  if (config_.send_weights) {
    for (const auto& [name, raw] : weights.weights.tensors) {
      proto::NamedTensor* named = eval->add_tensors();
      named->set_name(name);
      *named->mutable_tensor() = EncodeTensor(proto::DTYPE_FLOAT32, raw.shape, raw.data.data(), raw.data.size());
    }
  }
  // The result matters: retry a few times while the learner is away.
  absl::Status sent;
  for (int attempt = 0; attempt < 5; ++attempt) {
    auto response = learner_.Report(request, config_.rpc_timeout);
    sent = response.status();
    if (sent.ok()) break;
    if (absl::IsInvalidArgument(sent)) return sent;
    absl::SleepFor(config_.poll_interval);
  }
  absl::MutexLock lock(&mu_);
  if (!sent.ok()) ++stats_.errors;
  ++stats_.evaluations;
  stats_.last_env_steps = env_steps;
  stats_.last_version = weights.version;
  stats_.last_mean = summary->mean;
  stats_.last_std = summary->std;
  stats_.last_goals = summary->goals;
  return absl::OkStatus();
}

absl::Status Evaluator::Run(const std::atomic<bool>& stop) {
  torch::NoGradGuard no_grad;
  int64_t next_eval = config_.interval;
  while (!stop.load()) {
    auto progress = learner_.Report(proto::ReportRequest(), config_.rpc_timeout);
    if (!progress.ok()) {
      if (absl::IsInvalidArgument(progress.status())) return progress.status();
      {
        absl::MutexLock lock(&mu_);
        ++stats_.errors;
      }
      absl::SleepFor(config_.poll_interval);
      continue;
    }
    const int64_t steps = progress->env_steps();
    // At the end, the final weights are evaluated once more unless they were just evaluated.
    const bool final_eval = progress->done() && progress->version() > 0 && stats().last_env_steps < steps;
    if (steps >= next_eval || final_eval) {
      const int64_t before = stats().evaluations;
      if (absl::Status s = EvaluateOnce(steps, progress->done()); !s.ok()) return s;
      // Evaluated (or no weights yet): the next point is the next multiple past `steps`.
      if (stats().evaluations > before || progress->version() == 0) {
        next_eval = (steps / config_.interval + 1) * config_.interval;
      }
    }
    if (progress->done()) {
      absl::MutexLock lock(&mu_);
      stats_.learner_done = true;
      return absl::OkStatus();
    }
    absl::SleepFor(config_.poll_interval);
  }
  return absl::OkStatus();
}

}  // namespace meow
