// The learner process's loop: batches from replay (prefetched), one MEow update each, weights
// published to the ParameterStore every `publish_interval` updates, checkpoints in the run
// directory every `checkpoint_interval` updates.
//
// Replay's rate limiter decides when learning starts (its minimum size, e.g. learning_starts) and
// the update-to-data ratio; the learner publishes its first weights after its first update, so
// actors act at random until then. On start it restores the newest usable checkpoint of its run
// directory (naming any bad one) and publishes the restored weights under the next version, so
// versions keep increasing across restarts.
// Thread-safe: Run on one thread; stats() from any.
#pragma once

#include <atomic>
#include <cstdint>
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
#include "common/grpc_security.h"
#include "learner/checkpoint.h"
#include "learner/meow_update.h"
#include "learner/bc_update.h"
#include "learner/cnf_update.h"
#include "learner/sac_update.h"
#include "learner/sql_update.h"
#include "learner/parameter_server.h"
#include "replay/replay_client.h"

namespace meow {

struct LearnerConfig {
  std::vector<std::string> replay_addresses;
  GrpcSecurity security;    // TLS and token for replay (default: plaintext, no token)
  std::string algo = "meow";  // "meow" (policy, update), "sac", "sql" or "cnf" (the sizes of policy; sac, sql, cnf)
  FlowPolicyConfig policy;    // obs_dim and action_dim must be set
  MeowUpdateConfig update;
  SacUpdateConfig sac;
  SqlUpdateConfig sql;
  CnfUpdateConfig cnf;
  std::string cnf_flow_path;  // algo "cnf": the pre-trained flow (RUN_DIR/flow/flow_best.safetensors)
  int batch_size = 256;
  int prefetch_batches = 8;
  std::string device = "cpu";
  std::string run_dir;                 // empty: no checkpoints
  int64_t publish_interval = 10;       // updates between published weight versions
  int64_t checkpoint_interval = 5000;  // updates between checkpoints
  int64_t max_updates = 0;             // 0: until stopped
  absl::Duration sample_timeout = absl::Milliseconds(500);

  absl::Status Validate() const;
};

struct LearnerStats {
  int64_t updates = 0;       // applied
  int64_t skipped = 0;       // non-finite, skipped
  int64_t version = 0;       // last published weight version
  int64_t sample_waits = 0;  // Next() calls that timed out (replay not ready or rate-limited)
  double update_seconds = 0; // wall time spent in updates since start (the learner's busy time)
  double last_loss = 0;
  UpdateStats last_update;    // of the newest applied update
  double mean_staleness = 0;  // version - policy_version of the rows in the last batch
  std::string restored_from;  // checkpoint file, if any
  std::vector<std::string> checkpoint_problems;
};

class Learner {
 public:
  static absl::StatusOr<std::unique_ptr<Learner>> Create(const LearnerConfig& config, ParameterStore* store);
  // The same with an algorithm the caller built (not null; its sizes must be config.policy's):
  // config.algo and config.device are not used to build one.
  static absl::StatusOr<std::unique_ptr<Learner>> Create(const LearnerConfig& config, ParameterStore* store,
                                                         std::unique_ptr<Algorithm> algorithm);
  absl::Status Run(const std::atomic<bool>& stop);
  LearnerStats stats() const ABSL_LOCKS_EXCLUDED(mu_);
  Algorithm& algorithm() { return *algorithm_; }
  // Environment steps stored in replay, as the caller sees them; saved in checkpoints.
  void set_env_steps(int64_t steps) { env_steps_.store(steps); }
  // Environment steps of the restored checkpoint (0 for a fresh start).
  int64_t restored_env_steps() const { return restored_env_steps_; }
  // How many updates behind the learner weight version `version` is: the updates applied since it
  // was published by this process (the newest 100,000 versions are remembered). nullopt for an
  // unknown version (0, from another learner process, or forgotten). Data in replay carries the
  // version that chose its actions, so this is how stale the acting policy was.
  std::optional<int64_t> UpdatesBehind(int64_t version) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  Learner(const LearnerConfig& config, ParameterStore* store, std::unique_ptr<Algorithm> algorithm,
          std::unique_ptr<ReplaySampler> sampler);
  absl::Status Publish() ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Checkpoint() ABSL_LOCKS_EXCLUDED(mu_);
  // Writes a reservation above `version` when `version` is past the current one.
  absl::Status ReserveVersion(int64_t version) ABSL_LOCKS_EXCLUDED(mu_);

  LearnerConfig config_;
  ParameterStore* store_;                 // not owned
  std::unique_ptr<Algorithm> algorithm_;  // MEow (MeowUpdater)
  std::unique_ptr<ReplaySampler> sampler_;
  std::unique_ptr<CheckpointStore> checkpoints_;  // null without a run dir
  // Versions up to this one may have been published by this run dir's learners (the file
  // RUN_DIR/version_reserved, written before a version above it goes out). A restarted learner
  // starts above it, so weight versions never go backwards, even past the newest checkpoint.
  int64_t reserved_version_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<int64_t> env_steps_{0};
  int64_t restored_env_steps_ = 0;
  mutable absl::Mutex mu_;
  LearnerStats stats_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, int64_t> published_at_ ABSL_GUARDED_BY(mu_);  // version -> updates then
};

}  // namespace meow
