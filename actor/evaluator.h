// The evaluator: an actor in eval mode. It follows the learner's progress (LearnerService.Report)
// and every `interval` environment steps fetches the newest weights, runs `episodes` episodes
// (deterministic actions by default, resets seeded seed, seed+1, ... as the reference does) and
// reports the returns (on MultiGoal-v0 also the goals the episodes ended at), with the weights it
// evaluated, to the learner, which keeps the best policy.
// Nothing is evaluated before the learner has published weights. When the learner says training
// is over, it evaluates the final weights (unless it just did) and stops.
// A learner that cannot be reached is retried; the evaluator never ends because of it.
// Thread-safe: Run on one thread; stats() from any.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "actor/acting_policy.h"
#include "actor/env.h"
#include "actor/multi_goal.h"
#include "actor/parameter_client.h"
#include "actor/render/renderer.h"
#include "common/flow_policy.h"

namespace meow {

struct EvaluatorConfig {
  std::string env = "MultiGoal-v0";
  std::string learner_address;
  GrpcSecurity security;     // TLS and token (default: plaintext, no token)
  std::string algo = "meow";  // the acting policy's algorithm (ValidateAlgorithm)
  FlowPolicyConfig policy;   // alpha and sigmas; sizes come from the env
  int64_t interval = 10000;  // environment steps between evaluations
  int64_t episodes = 10;
  bool deterministic = true;
  int64_t max_steps = 0;     // steps per episode at most (0: the task's limit)
  uint64_t seed = 0;         // episode i resets with seed + i; sampled actions come from seed + 100
  bool send_weights = true;  // include the evaluated weights in the report
  absl::Duration poll_interval = absl::Milliseconds(500);
  absl::Duration rpc_timeout = absl::Seconds(5);
  // Every video_every-th evaluation and the final one (0: none) also records its first episode as
  // video_dir/step-<env steps>.mp4 (MuJoCo tasks; the folder is made). A video that fails is
  // counted and named in the stats; the evaluation goes on.
  int64_t video_every = 0;
  std::string video_dir;
  RenderSettings video;

  absl::Status Validate() const;
};

struct EvaluatorStats {
  int64_t evaluations = 0;
  int64_t last_env_steps = 0;
  int64_t last_version = 0;
  double last_mean = 0;  // NaN before the first evaluation
  double last_std = 0;
  std::optional<MultiGoalCounts> last_goals;  // MultiGoal-v0: where the last evaluation's episodes ended
  int64_t errors = 0;  // learner calls that failed (retried)
  bool learner_done = false;
  int64_t videos = 0;        // written
  int64_t video_errors = 0;  // failed
  std::string last_video;    // path of the newest one
  std::string last_video_error;
};

class Evaluator {
 public:
  static absl::StatusOr<std::unique_ptr<Evaluator>> Create(const EvaluatorConfig& config);
  // Evaluates until the learner says training is over or `stop` is set.
  absl::Status Run(const std::atomic<bool>& stop);
  EvaluatorStats stats() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  Evaluator(const EvaluatorConfig& config, std::unique_ptr<Env> env);
  // Fetches the newest weights, evaluates them at `env_steps` and reports (and records a video
  // when due; `final` = the run's last evaluation). Errors only for bad weights or a failing
  // environment.
  absl::Status EvaluateOnce(int64_t env_steps, bool final);
  // The video of this evaluation when one is due; failures go to the stats.
  void RecordVideo(int64_t env_steps, bool final);

  EvaluatorConfig config_;
  std::unique_ptr<Env> env_;
  ParameterClient learner_;
  std::unique_ptr<ActingPolicy> policy_;
  mutable absl::Mutex mu_;
  EvaluatorStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meow
