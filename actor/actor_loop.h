// The actor process's loop: V environments stepped together, one batched policy call for all of
// them, transitions streamed to replay, weights refreshed from the learner at an interval.
//
// Until the actor holds weights (version 0) it acts uniformly at random in [-1, 1]^A; the learner
// publishes its first weights only once it starts learning, which gives the reference's random
// actions before learning_starts without actors sharing a step counter. Each transition carries
// the version of the policy that chose it. On truncation the stored next observation is the
// episode's final one; `terminated` is set only for true terminal states.
//
// At each refresh the actor also reports the episodes it finished to the learner
// (LearnerService.Report, kept and resent while the learner is away, at most kMaxPendingEpisodes)
// and stops when the learner answers that training is over, or when replay refuses its inserts
// because the learner told it so (OUT_OF_RANGE): an actor held by the rate limiter after the
// learner has exited still hears it.
//
// Lost connections never end the loop: the inserter buffers (bounded) and resends, a failed weight
// fetch is counted and retried at the next interval, and the actor keeps acting on the weights it
// has. Only bad input (a refused batch, malformed weights) ends it with an error.
// Thread-safe: Run on one thread; stats() from any.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "actor/acting_policy.h"
#include "actor/parameter_client.h"
#include "actor/vector_env.h"
#include "common/flow_policy.h"
#include "replay/replay_client.h"

namespace meow {

struct ActorConfig {
  std::string env = "MultiGoal-v0";
  int num_envs = 1;  // V
  uint64_t actor_id = 0;
  uint64_t seed = 1;  // env resets (seed + actor_id * 1000 + i) and actions
  std::vector<std::string> replay_addresses;
  std::string learner_address;
  GrpcSecurity security;          // TLS and token for both (default: plaintext, no token)
  std::string algo = "meow";      // the acting policy's algorithm (ValidateAlgorithm)
  FlowPolicyConfig policy;        // alpha and sigmas; sizes come from the env
  int64_t steps_per_batch = 8;    // vector steps per inserted batch (V x this rows)
  int64_t refresh_interval = 50;  // vector steps between weight fetches
  int64_t max_vector_steps = 0;   // 0: until stopped
  int max_episode_steps = 0;      // > 0: a shorter time limit than the task's (VectorEnvOptions)
  absl::Duration rpc_timeout = absl::Seconds(2);
  // Batches sent to replay and not yet acknowledged, at most; past that the actor waits. Replay's
  // rate limiter holds inserts back while the learner is behind, so with a small window the actor
  // waits too, instead of stepping on with ever staler weights (its queue would let the data run
  // ahead of the learner by this many batches). More hides network latency to a remote replay.
  int max_unacked_batches = 1;

  absl::Status Validate() const;
};

struct ActorStats {
  int64_t env_steps = 0;  // transitions produced (V per vector step)
  int64_t episodes = 0;
  double last_episode_return = 0;  // NaN until an episode ends
  int64_t policy_version = 0;      // 0: acting at random
  int64_t weight_updates = 0;      // newer weights loaded
  int64_t fetch_errors = 0;        // weight fetches that failed (learner unreachable, ...)
  int64_t batches_queued = 0;
  int64_t simulator_warnings = 0;
  int64_t report_errors = 0;     // episode reports that failed (resent later)
  bool learner_done = false;     // the learner said training is over
  ReplayInserter::Stats replay;  // the inserter's: acknowledged batches, reconnects, errors
};

class Actor {
 public:
  static absl::StatusOr<std::unique_ptr<Actor>> Create(const ActorConfig& config);

  // Acts until `stop` is set or max_vector_steps are done, then flushes the inserter (briefly).
  absl::Status Run(const std::atomic<bool>& stop);
  ActorStats stats() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  Actor(const ActorConfig& config, std::unique_ptr<VectorEnv> envs, std::unique_ptr<ReplayInserter> inserter);
  // Loads newer weights when the learner has them. Errors other than malformed weights are
  // counted and swallowed.
  absl::Status MaybeRefresh();
  // Whether the learner said training is over (without the inserter's statistics).
  bool learner_done() const ABSL_LOCKS_EXCLUDED(mu_);
  // Sends the pending episodes; sets learner_done when the learner says training is over.
  void ReportEpisodes();

  static constexpr size_t kMaxPendingEpisodes = 10000;

  ActorConfig config_;
  std::unique_ptr<VectorEnv> envs_;
  std::unique_ptr<ReplayInserter> inserter_;
  ParameterClient parameters_;
  std::unique_ptr<ActingPolicy> policy_;
  std::vector<proto::Episode> pending_episodes_;  // used by Run's thread only
  mutable absl::Mutex mu_;
  ActorStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meow
