// The components of a distributed run, started and stopped by one owner:
//   replay: an embedded replay server on 127.0.0.1 persisted in RUN_DIR/replay (local mode), or
//     the given shards, waited for and told to take transitions again (learner mode), or
//     (offline) an embedded replay serving the dataset file as a read-only table;
//   the learner's gRPC server (ParameterService + LearnerService) and the learner loop, which
//     restores the newest checkpoint of the run directory when there is one;
//   local mode only: the actor threads (none offline) and the evaluator thread, over real gRPC
//     on 127.0.0.1.
// Create starts the servers and the learner (not its loop); StartWorkers starts the threads. The
// shutdown order is the caller's (RunTraining): StopLearner, then AnnounceDone, then
// StopActorsAndEvaluator, then Shutdown; the destructor stops whatever is still running.
// Thread-compatible: one owner; Failure() reads workers' results safely.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/rpc_metrics.h"
#include "learner/learner_loop.h"
#include "learner/parameter_server.h"
#include "learner/train_config.h"
#include "replay/dataset.h"

namespace meow {

class Actor;
class Evaluator;
class ReplayServer;

class TrainingComponents {
 public:
  // `config` is valid with obs_dim and action_dim filled; evaluations whose weights do not have
  // `policy_shapes` are refused by the learner's server. Offline, `dataset` is config's dataset
  // file as read and checked against the task (copied into the replay table; the caller may drop
  // it afterwards).
  static absl::StatusOr<std::unique_ptr<TrainingComponents>> Create(const TrainConfig& config,
                                                                    const c10::Device& device,
                                                                    WeightShapes policy_shapes,
                                                                    const Dataset* dataset = nullptr);
  ~TrainingComponents();

  // The learner loop on its own thread; local mode: the actors and the evaluator too.
  absl::Status StartWorkers();

  const std::vector<std::string>& replay_addresses() const { return replay_addresses_; }
  ReplayServer* embedded_replay() { return replay_.get(); }  // null in learner mode
  int64_t dataset_rows() const { return dataset_rows_; }     // offline: rows of the dataset
  // Offline: the dataset's episodes (their mean return is what the report draws the runs against).
  const DatasetSummary& dataset_summary() const { return dataset_summary_; }
  ParameterServer& server() { return *server_; }
  // The RPCs answered by the learner's server and the embedded replay.
  RpcMetrics& rpc_metrics() { return *rpc_metrics_; }
  Learner& learner() { return *learner_; }

  // The first failure of a worker: the learner loop ending (by error, or at all before it was
  // asked to), an actor's or the evaluator's error. OK while all is well.
  absl::Status Failure() const;

  // Stops the learner loop (it publishes and checkpoints its final weights); its status.
  absl::Status StopLearner();
  // Tells actors and evaluators that training is over: the board says "done", and in learner mode
  // each replay shard too (actors that do not ask the learner in time hear it from replay), with
  // `env_steps` the run's total.
  void AnnounceDone(int64_t env_steps, bool tell_replay);
  // Stops the actors (and the evaluator at once when `abort_evaluation`; otherwise it finishes
  // its final evaluation) and joins them; the first error among them.
  absl::Status StopActorsAndEvaluator(bool abort_evaluation);
  // Each local actor's policy version.
  std::vector<int64_t> ActorVersions() const;
  // Stops the learner's server and the embedded replay.
  void Shutdown();

 private:
  struct Worker;
  explicit TrainingComponents(const TrainConfig& config);
  absl::Status StartReplay(const Dataset* dataset);
  absl::Status StartDatasetReplay(const Dataset& dataset);  // offline: the dataset as a read-only table
  absl::Status StartActors();
  absl::Status StartEvaluator();
  void StopAll();

  TrainConfig config_;
  std::shared_ptr<RpcMetrics> rpc_metrics_ = std::make_shared<RpcMetrics>();
  std::unique_ptr<ReplayServer> replay_;
  std::vector<std::string> replay_addresses_;
  int64_t dataset_rows_ = 0;
  DatasetSummary dataset_summary_;
  std::unique_ptr<ParameterServer> server_;
  std::unique_ptr<Learner> learner_;
  std::vector<std::unique_ptr<Actor>> actors_;
  std::unique_ptr<Evaluator> evaluator_;
  std::atomic<bool> learner_stop_{false}, actor_stop_{false}, eval_stop_{false};
  std::unique_ptr<Worker> learner_worker_;
  std::vector<std::unique_ptr<Worker>> actor_workers_;
  std::unique_ptr<Worker> eval_worker_;
};

}  // namespace meow
