#include "learner/training_components.h"

#include <cstdio>
#include <thread>
#include <utility>

#include <torch/utils.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "actor/actor_loop.h"
#include "actor/evaluator.h"
#include "replay/dataset.h"
#include "replay/replay_client.h"
#include "replay/replay_server.h"

namespace meow {

// A thread with its result.
struct TrainingComponents::Worker {
  std::thread thread;
  std::atomic<bool> finished{false};
  absl::Status status;  // written before `finished` is set
  std::string name;

  template <typename F>
  Worker(std::string worker_name, F body) : name(std::move(worker_name)) {
    thread = std::thread([this, body = std::move(body)]() mutable {
      status = body();
      finished.store(true);
    });
  }
  ~Worker() { Join(); }
  void Join() {
    if (thread.joinable()) thread.join();
  }
  // The worker's error, named; OK while it runs or when it succeeded.
  absl::Status Error() const {
    if (!finished.load() || status.ok()) return absl::OkStatus();
    return absl::Status(status.code(), absl::StrCat(name, ": ", status.message()));
  }
};

TrainingComponents::TrainingComponents(const TrainConfig& config) : config_(config) {}

TrainingComponents::~TrainingComponents() {
  StopAll();
  Shutdown();
}

absl::StatusOr<std::unique_ptr<TrainingComponents>> TrainingComponents::Create(const TrainConfig& config,
                                                                               const c10::Device& device,
                                                                               WeightShapes policy_shapes,
                                                                               const Dataset* dataset) {
  std::unique_ptr<TrainingComponents> c(new TrainingComponents(config));
  if (absl::Status s = c->StartReplay(dataset); !s.ok()) return s;

  ParameterServerConfig pc;
  pc.address = config.address;
  pc.security = config.security;
  pc.rpc_metrics = c->rpc_metrics_;
  pc.evaluated_weight_shapes = std::move(policy_shapes);
  auto server = StartParameterServer(pc);
  if (!server.ok()) return server.status();
  c->server_ = *std::move(server);

  // The learner: network initialisation from the seed, or the newest checkpoint.
  torch::manual_seed(config.seed);
  LearnerConfig lc;
  lc.replay_addresses = c->replay_addresses_;
  lc.security = config.security;
  lc.algo = config.algo;
  lc.policy = config.policy;
  lc.update = config.update;
  lc.sac = config.sac;
  lc.sql = config.sql;
  lc.cnf = config.cnf;
  lc.cnf_flow_path = config.run_dir + "/flow/flow_best.safetensors";
  lc.batch_size = static_cast<int>(config.batch_size);
  lc.device = device.str();
  lc.run_dir = config.run_dir;
  lc.publish_interval = config.publish_interval;
  lc.checkpoint_interval = config.checkpoint_interval;
  // Offline, the budget is counted in updates: the loop ends itself there.
  if (config.offline()) lc.max_updates = config.total_env_steps;
  auto learner = Learner::Create(lc, c->server_->store());
  if (!learner.ok()) return learner.status();
  c->learner_ = *std::move(learner);
  return c;
}

absl::Status TrainingComponents::StartReplay(const Dataset* dataset) {
  if (!config_.local()) {
    replay_addresses_ = config_.replay_addresses;
    if (absl::Status s =
            WaitForReplay(replay_addresses_, static_cast<int>(config_.policy.obs_dim),
                          static_cast<int>(config_.policy.action_dim), config_.connect_timeout, config_.security);
        !s.ok()) {
      return s;
    }
    // A replay that a finished run marked done takes transitions again for this one.
    for (const std::string& address : replay_addresses_) {
      if (absl::Status s = SetReplayTrainingDone(address, false, 0, absl::Seconds(10), config_.security); !s.ok()) {
        return absl::Status(s.code(), absl::StrCat("replay at ", address, ": ", s.message()));
      }
    }
    return absl::OkStatus();
  }
  if (config_.offline()) {
    if (dataset == nullptr) return absl::InvalidArgumentError("offline training needs its dataset");
    return StartDatasetReplay(*dataset);
  }
  const double spi = config_.resolved_samples_per_insert();
  ReplayServerConfig rc;
  rc.address = "127.0.0.1:0";
  rc.table.obs_dim = static_cast<int>(config_.policy.obs_dim);
  rc.table.action_dim = static_cast<int>(config_.policy.action_dim);
  rc.table.capacity = config_.buffer_size;
  rc.table.seed = config_.seed;
  const int64_t min_size = std::max<int64_t>(config_.learning_starts, config_.batch_size);
  rc.table.rate_limiter = spi > 0
                              ? RateLimiterConfig::SampleToInsertRatio(spi, min_size, config_.resolved_rate_tolerance())
                              : RateLimiterConfig::MinSize(min_size);
  rc.persistence.directory = config_.run_dir + "/replay";
  rc.insert_timeout = absl::Seconds(10);
  rc.security = config_.security;
  rc.rpc_metrics = rpc_metrics_;
  auto started = StartReplayServer(rc);
  if (!started.ok()) {
    return absl::Status(started.status().code(),
                        absl::StrCat("embedded replay (", rc.persistence.directory, "): ", started.status().message()));
  }
  replay_ = *std::move(started);
  replay_addresses_ = {replay_->address()};
  return absl::OkStatus();
}

absl::Status TrainingComponents::StartDatasetReplay(const Dataset& dataset) {
  if (dataset.rows < config_.batch_size) {
    return absl::FailedPreconditionError(absl::StrCat(config_.offline_dataset, ": ", dataset.rows,
                                                      " rows, fewer than one batch (batch_size ", config_.batch_size,
                                                      ")"));
  }
  dataset_rows_ = dataset.rows;
  dataset_summary_ = SummarizeDataset(dataset);
  // A replay export interleaves its actors' rows: its "episodes" would be meaningless.
  if (dataset.metadata.extra.count("row_order") > 0) dataset_summary_.episodes = 0;
  // The dataset is the table, as it is: memory only (the file is the copy on disk), sampled
  // uniformly and freely (no inserts to pace against), refusing inserts.
  ReplayServerConfig rc;
  rc.address = "127.0.0.1:0";
  rc.table.obs_dim = dataset.obs_dim;
  rc.table.action_dim = dataset.action_dim;
  rc.table.capacity = dataset.rows;
  rc.table.max_batch_rows = std::min<int64_t>(dataset.rows, rc.table.max_batch_rows);
  rc.table.seed = config_.seed;
  rc.table.rate_limiter = RateLimiterConfig::MinSize(config_.batch_size);
  rc.table.read_only = true;
  rc.table.read_only_source = config_.offline_dataset;
  rc.security = config_.security;
  rc.rpc_metrics = rpc_metrics_;
  auto started = StartReplayServer(rc);
  if (!started.ok()) return started.status();
  replay_ = *std::move(started);
  if (absl::Status s = replay_->table()->LoadRows(DatasetView(dataset), nullptr); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat(config_.offline_dataset, ": ", s.message()));
  }
  replay_addresses_ = {replay_->address()};
  return absl::OkStatus();
}

absl::Status TrainingComponents::StartWorkers() {
  Learner* learner = learner_.get();
  learner_worker_ = std::make_unique<Worker>("learner", [learner, this] { return learner->Run(learner_stop_); });
  if (!config_.local()) return absl::OkStatus();
  if (config_.offline()) return StartEvaluator();  // no actors: the data is fixed
  absl::Status s = StartActors();
  if (s.ok()) s = StartEvaluator();
  if (!s.ok()) StopAll();
  return s;
}

absl::Status TrainingComponents::StartActors() {
  for (int i = 0; i < config_.actors; ++i) {
    ActorConfig ac;
    ac.env = config_.env;
    ac.num_envs = config_.envs_per_actor;
    ac.actor_id = static_cast<uint64_t>(i);
    ac.seed = config_.seed;
    ac.replay_addresses = replay_addresses_;
    ac.learner_address = server_->address();
    ac.security = config_.security;
    ac.algo = config_.algo;
    ac.policy = config_.policy;
    ac.refresh_interval = config_.actor_refresh_interval;
    ac.steps_per_batch = config_.actor_steps_per_batch;
    ac.max_unacked_batches = config_.actor_max_unacked_batches;
    auto actor = Actor::Create(ac);
    if (!actor.ok()) return actor.status();
    actors_.push_back(*std::move(actor));
  }
  for (size_t i = 0; i < actors_.size(); ++i) {
    Actor* actor = actors_[i].get();
    actor_workers_.push_back(
        std::make_unique<Worker>(absl::StrCat("actor ", i), [actor, this] { return actor->Run(actor_stop_); }));
  }
  return absl::OkStatus();
}

absl::Status TrainingComponents::StartEvaluator() {
  if (!config_.evaluator || config_.eval_episodes <= 0) return absl::OkStatus();
  EvaluatorConfig ec;
  ec.env = config_.env;
  ec.learner_address = server_->address();
  ec.security = config_.security;
  ec.video_every = config_.video_every;
  ec.video_dir = config_.run_dir + "/videos";
  ec.video.width = config_.video_width;
  ec.video.height = config_.video_height;
  ec.algo = config_.algo;
  ec.policy = config_.policy;
  ec.interval = config_.eval_interval;
  ec.episodes = config_.eval_episodes;
  ec.deterministic = config_.deterministic_eval;
  ec.max_steps = config_.eval_max_steps;
  auto made = Evaluator::Create(ec);
  if (!made.ok()) return made.status();
  evaluator_ = *std::move(made);
  Evaluator* evaluator = evaluator_.get();
  eval_worker_ = std::make_unique<Worker>("evaluator", [evaluator, this] { return evaluator->Run(eval_stop_); });
  return absl::OkStatus();
}

absl::Status TrainingComponents::Failure() const {
  if (learner_worker_ != nullptr && learner_worker_->finished.load()) {
    // Offline, the loop ends by itself once it has made its updates.
    const bool budget_spent = config_.offline() && learner_->stats().updates >= config_.total_env_steps;
    if (!learner_worker_->status.ok()) return learner_worker_->status;
    if (!budget_spent) return absl::InternalError("the learner loop ended early");
  }
  for (const auto& w : actor_workers_) {
    if (absl::Status s = w->Error(); !s.ok()) return s;
  }
  if (eval_worker_ != nullptr) return eval_worker_->Error();
  return absl::OkStatus();
}

absl::Status TrainingComponents::StopLearner() {
  learner_stop_.store(true);
  if (learner_worker_ == nullptr) return absl::OkStatus();
  learner_worker_->Join();
  return learner_worker_->status;
}

void TrainingComponents::AnnounceDone(int64_t env_steps, bool tell_replay) {
  server_->board()->SetDone();
  if (config_.local() || !tell_replay) return;
  // Replay carries "done" to actors that do not ask the learner in time (held by the rate
  // limiter, or after this process has exited): their inserts end with OUT_OF_RANGE.
  for (const std::string& address : replay_addresses_) {
    if (absl::Status s = SetReplayTrainingDone(address, true, env_steps, absl::Seconds(5), config_.security); !s.ok()) {
      absl::FPrintF(stderr, "meow: could not tell replay at %s that training is over: %s\n", address, s.message());
    }
  }
}

absl::Status TrainingComponents::StopActorsAndEvaluator(bool abort_evaluation) {
  if (abort_evaluation) eval_stop_.store(true);
  actor_stop_.store(true);
  absl::Status first;
  for (auto& w : actor_workers_) {
    w->Join();
    if (first.ok()) first = w->Error();
  }
  if (eval_worker_ != nullptr) {
    eval_worker_->Join();
    if (first.ok()) first = eval_worker_->Error();
  }
  return first;
}

std::vector<int64_t> TrainingComponents::ActorVersions() const {
  std::vector<int64_t> versions;
  for (const auto& actor : actors_) versions.push_back(actor->stats().policy_version);
  return versions;
}

void TrainingComponents::StopAll() {
  learner_stop_.store(true);
  actor_stop_.store(true);
  eval_stop_.store(true);
  if (learner_worker_ != nullptr) learner_worker_->Join();
  for (auto& w : actor_workers_) w->Join();
  if (eval_worker_ != nullptr) eval_worker_->Join();
}

void TrainingComponents::Shutdown() {
  if (server_ != nullptr) server_->Shutdown();
  if (replay_ != nullptr) replay_->Shutdown();
}

}  // namespace meow
