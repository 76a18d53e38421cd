#include "learner/sync_trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <optional>
#include <random>
#include <utility>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/utils.h>

#include "actor/env_registry.h"
#include "actor/evaluate.h"
#include "common/run_dir.h"
#include "learner/progress.h"
#include "learner/run_directory.h"
#include "replay/transition_store.h"

namespace meow {
namespace {

constexpr double kNan = std::numeric_limits<double>::quiet_NaN();

// One run of the reference loop: the environments, the networks, the transitions, and the run
// directory's parts.
class SyncRun {
 public:
  static absl::StatusOr<std::unique_ptr<SyncRun>> Create(const TrainSettings& input);
  absl::StatusOr<SyncTrainResult> Run();

 private:
  SyncRun(TrainSettings config, c10::Device device, std::unique_ptr<Env> env, std::unique_ptr<Env> eval_env);
  // Chooses the action of step t, steps the environment and stores the transition.
  absl::Status Act(int64_t t);
  // One update on a uniform batch.
  absl::Status Update();
  absl::Status Evaluate(int64_t steps_done);
  // A periodic metrics row and the progress line.
  absl::Status Log(int64_t steps_done);
  double elapsed() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }

  TrainSettings config_;
  c10::Device device_;
  std::unique_ptr<Env> env_, eval_env_;
  int obs_dim_, action_dim_;
  std::unique_ptr<MeowUpdater> updater_;
  std::unique_ptr<FlowActingPolicy> acting_;  // acts with updater_'s online network
  std::optional<at::Generator> gen_;          // the actions' generator (CPU only; CUDA uses its default)
  std::mt19937_64 rng_;
  TransitionStore store_;
  Batch host_;                             // the sampled batch
  std::unique_ptr<RunDirectory> run_dir_;  // null when run_dir is empty
  ProgressLine progress_;
  RateMeter rates_;
  std::chrono::steady_clock::time_point start_;

  std::vector<float> obs_, next_obs_, action_;
  double episode_return_ = 0, last_episode_return_ = kNan;
  int64_t episodes_ = 0;
  UpdateStats last_stats_;
  EvalPoint last_eval_{0, kNan, kNan, 0, std::nullopt};
  std::vector<EvalPoint> evals_;
};

SyncRun::SyncRun(TrainSettings config, c10::Device device, std::unique_ptr<Env> env, std::unique_ptr<Env> eval_env)
    : config_(std::move(config)),
      device_(device),
      env_(std::move(env)),
      eval_env_(std::move(eval_env)),
      obs_dim_(env_->spec().obs_dim),
      action_dim_(env_->spec().action_dim),
      rng_(config_.seed + 2),
      store_(obs_dim_, action_dim_, std::min(config_.buffer_size, config_.total_env_steps)),
      progress_(config_.env, config_.progress),
      obs_(obs_dim_),
      next_obs_(obs_dim_),
      action_(action_dim_) {
  auto options = at::TensorOptions().dtype(at::kFloat);
  const int64_t b = config_.batch_size;
  host_ = Batch{at::empty({b, obs_dim_}, options), at::empty({b, action_dim_}, options), at::empty({b}, options),
                at::empty({b, obs_dim_}, options), at::empty({b}, options)};
  if (device_.is_cpu()) gen_ = at::make_generator<at::CPUGeneratorImpl>(config_.seed + 1);
}

absl::StatusOr<std::unique_ptr<SyncRun>> SyncRun::Create(const TrainSettings& input) {
  if (absl::Status s = input.Validate(); !s.ok()) return s;
  if (input.algo != "meow") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--sync is MEow's single-threaded reference loop; --algo=", input.algo,
        " trains in local mode (meow train without --sync) or as separate processes"));
  }
  TrainSettings config = input;
  auto env = MakeEnv(config.env);
  if (!env.ok()) return env.status();
  auto eval_env = MakeEnv(config.env);
  if (!eval_env.ok()) return eval_env.status();
  config.policy.obs_dim = (*env)->spec().obs_dim;
  config.policy.action_dim = (*env)->spec().action_dim;
  auto device = ResolveDevice(config.device);
  if (!device.ok()) return device.status();
  std::unique_ptr<SyncRun> run(new SyncRun(config, *device, *std::move(env), *std::move(eval_env)));

  torch::manual_seed(config.seed);  // network initialisation
  auto updater = MeowUpdater::Create(config.policy, config.update, *device);
  if (!updater.ok()) return updater.status();
  run->updater_ = *std::move(updater);
  run->acting_ = std::make_unique<FlowActingPolicy>(run->updater_->policy());
  if (!config.run_dir.empty()) {
    auto run_dir = RunDirectory::Open(config.run_dir, kSyncRun, /*resumable=*/false);
    if (!run_dir.ok()) return run_dir.status();
    run->run_dir_ = *std::move(run_dir);
    if (absl::Status s = run->run_dir_->WriteConfig(SettingsLines(config, kSyncRun, *device)); !s.ok()) return s;
  }
  return run;
}

absl::Status SyncRun::Act(int64_t t) {
  if (t < config_.learning_starts) {
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    for (float& a : action_) a = uniform(rng_);
  } else {
    const at::Tensor a =
        acting_->Act(ObservationTensor(env_->Observation(), device_), /*deterministic=*/false, gen_).to(at::kCPU);
    std::copy(a.data_ptr<float>(), a.data_ptr<float>() + action_dim_, action_.begin());
  }
  auto step = env_->Step(action_);
  if (!step.ok()) return step.status();
  auto copy_obs = [this](std::vector<float>& dst) {
    auto src = env_->Observation();
    for (int i = 0; i < obs_dim_; ++i) dst[i] = static_cast<float>(src[i]);
  };
  copy_obs(next_obs_);  // the final observation on truncation, as the reference stores
  store_.Add(obs_, action_, static_cast<float>(step->reward), next_obs_, step->terminated);
  episode_return_ += step->reward;
  if (step->terminated || step->truncated) {
    last_episode_return_ = episode_return_;
    episode_return_ = 0;
    ++episodes_;
    if (absl::Status s = env_->Reset(std::nullopt); !s.ok()) return s;
    copy_obs(obs_);
  } else {
    obs_.swap(next_obs_);
  }
  return absl::OkStatus();
}

absl::Status SyncRun::Update() {
  store_.Sample(config_.batch_size, rng_, host_.obs.data_ptr<float>(), host_.action.data_ptr<float>(),
                host_.reward.data_ptr<float>(), host_.next_obs.data_ptr<float>(), host_.terminated.data_ptr<float>());
  Batch batch = host_;
  if (!device_.is_cpu()) {
    batch = Batch{host_.obs.to(device_), host_.action.to(device_), host_.reward.to(device_), host_.next_obs.to(device_),
                  host_.terminated.to(device_)};
  }
  auto stats = updater_->Step(batch);
  if (!stats.ok()) return stats.status();
  last_stats_ = *stats;
  return absl::OkStatus();
}

absl::Status SyncRun::Evaluate(int64_t steps_done) {
  ActingPolicy& policy = *acting_;  // the trained network itself
  auto summary = meow::Evaluate(*acting_, *eval_env_, config_.eval_episodes, config_.deterministic_eval,
                                /*seed_base=*/0, gen_, config_.eval_max_steps);
  if (!summary.ok()) return summary.status();
  last_eval_ = {steps_done, summary->mean, summary->std, static_cast<int64_t>(summary->episodes.size()),
                summary->goals};
  evals_.push_back(last_eval_);
  if (run_dir_ == nullptr) return absl::OkStatus();
  // An evaluation's row: the eval columns and the counters, as local mode writes it.
  std::map<std::string, double> row = EvalColumns(last_eval_, config_.env);
  row.insert({{"wall_time", elapsed()},
              {"env_steps", static_cast<double>(steps_done)},
              {"updates", static_cast<double>(updater_->steps())},
              {"episodes", static_cast<double>(episodes_)},
              {"version", static_cast<double>(updater_->steps())}});
  if (absl::Status s = run_dir_->metrics().Row(row, steps_done); !s.ok()) return s;
  if (absl::Status s = run_dir_->SaveLatest(policy); !s.ok()) return s;
  if (run_dir_->IsBest(last_eval_.score())) return run_dir_->SaveBest(last_eval_.score(), policy);
  return absl::OkStatus();
}

absl::Status SyncRun::Log(int64_t steps_done) {
  rates_.Mark(elapsed(), steps_done, updater_->steps() + updater_->skipped_steps());
  if (run_dir_ != nullptr) {
    // A periodic row. Update statistics are empty until the first update. The weights act as soon
    // as they are updated (version = updates, acting lag 0 once learning started); there is no
    // rate limiter to wait on and no staleness recorded per row.
    const bool updated = updater_->steps() + updater_->skipped_steps() > 0;
    absl::Status s = run_dir_->metrics().Row({{"wall_time", elapsed()},
                                              {"env_steps", static_cast<double>(steps_done)},
                                              {"updates", static_cast<double>(updater_->steps())},
                                              {"episodes", static_cast<double>(episodes_)},
                                              {"episode_return", last_episode_return_},
                                              {"loss", updated ? last_stats_.loss : kNan},
                                              {"q_mean", updated ? last_stats_.q_mean : kNan},
                                              {"v_mean", updated ? last_stats_.v_mean : kNan},
                                              {"grad_norm", updated ? last_stats_.grad_norm : kNan},
                                              {"skipped_updates", static_cast<double>(updater_->skipped_steps())},
                                              {"steps_per_s", rates_.steps_per_s()},
                                              {"updates_per_s", rates_.updates_per_s()},
                                              {"version", static_cast<double>(updater_->steps())},
                                              {"replay_size", static_cast<double>(store_.size())},
                                              {"insert_waits", 0},
                                              {"sample_waits", 0},
                                              {"insert_wait_s", 0},
                                              {"sample_wait_s", 0},
                                              {"acting_lag", updated ? 0 : kNan},
                                              {"alpha", updated ? last_stats_.alpha : kNan}},
                                             steps_done);
    if (!s.ok()) return s;
  }
  ProgressFigures f;
  f.steps = steps_done;
  f.total_steps = config_.total_env_steps;
  f.updates = updater_->steps();
  f.version = updater_->steps();
  f.replay_size = store_.size();
  f.steps_per_s = rates_.steps_per_s();
  f.updates_per_s = rates_.updates_per_s();
  f.episode_return = last_episode_return_;
  f.eval_return = last_eval_.mean;
  f.eval_goals = last_eval_.goals;
  progress_.Print(f);
  return absl::OkStatus();
}

absl::StatusOr<SyncTrainResult> SyncRun::Run() {
  start_ = std::chrono::steady_clock::now();
  rates_.Start(0, 0, 0);
  if (absl::Status s = env_->Reset(config_.seed); !s.ok()) return s;
  auto src = env_->Observation();
  for (int i = 0; i < obs_dim_; ++i) obs_[i] = static_cast<float>(src[i]);
  for (int64_t t = 0; t < config_.total_env_steps; ++t) {
    if (absl::Status s = Act(t); !s.ok()) return s;
    if (t >= config_.learning_starts) {
      if (absl::Status s = Update(); !s.ok()) return s;
    }
    const int64_t steps_done = t + 1;
    if (steps_done % config_.eval_interval == 0 && steps_done > config_.learning_starts && config_.eval_episodes > 0) {
      if (absl::Status s = Evaluate(steps_done); !s.ok()) return s;
    }
    if (steps_done % config_.log_interval == 0 || steps_done == config_.total_env_steps) {
      if (absl::Status s = Log(steps_done); !s.ok()) return s;
    }
  }
  progress_.Finish();
  if (run_dir_ != nullptr) {
    if (absl::Status s = run_dir_->SaveLatest(*acting_); !s.ok()) return s;
  }
  SyncTrainResult result;
  result.evals = std::move(evals_);
  result.updates = updater_->steps();
  result.skipped_updates = updater_->skipped_steps();
  result.seconds = elapsed();
  result.updater = std::move(updater_);
  return result;
}

}  // namespace

absl::StatusOr<SyncTrainResult> TrainSync(const TrainSettings& config) {
  auto run = SyncRun::Create(config);
  if (!run.ok()) return run.status();
  return (*run)->Run();
}

}  // namespace meow
