#include "learner/training.h"

#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "actor/env_registry.h"
#include "common/metrics_http.h"
#include "common/run_dir.h"
#include "learner/bc_update.h"
#include "learner/cnf_training.h"
#include "learner/progress.h"
#include "learner/run_directory.h"
#include "learner/training_components.h"
#include "learner/training_monitor.h"
#include "replay/dataset.h"

namespace meow {

std::string DefaultRunDir(const std::string& env, uint64_t seed) { return absl::StrCat("runs/", env, "-seed", seed); }

namespace {

// config.txt of a distributed run: the shared settings, then the layout.
std::vector<std::pair<std::string, std::string>> ConfigLines(const TrainConfig& config, const c10::Device& device,
                                                             TrainingComponents& components) {
  auto lines = SettingsLines(config, config.offline() ? "offline" : config.local() ? "local" : "learner", device);
  if (config.offline()) {
    lines.push_back({"offline_dataset", config.offline_dataset});
    lines.push_back({"dataset_rows", absl::StrCat(components.dataset_rows())});
    const DatasetSummary& summary = components.dataset_summary();
    lines.push_back({"dataset_episodes", absl::StrCat(summary.episodes)});
    // Episodes are contiguous only in rollouts (a replay export interleaves its actors' rows).
    if (summary.episodes > 0) lines.push_back({"dataset_return_mean", absl::StrFormat("%.6g", summary.return_mean)});
    lines.push_back({"clock", "updates (total_env_steps, eval_interval, log_interval and metrics.csv's env_steps count them)"});
  }
  auto g = [](double v) { return absl::StrFormat("%g", v); };
  if (config.algo == "cnf") {
    const CnfUpdateConfig& cnf = config.cnf;
    lines.insert(lines.end(), {{"flow_epochs", absl::StrCat(config.flow_epochs)},
                               {"flow_batch_size", absl::StrCat(config.flow_batch_size)},
                               {"gamma", g(cnf.gamma)},
                               {"tau", g(cnf.tau)},
                               {"lr", g(cnf.lr)},
                               {"awac_lambda", g(cnf.awac_lambda)},
                               {"max_weight", g(cnf.max_weight)},
                               {"critic_layers", absl::StrCat(cnf.critic_layers)},
                               {"critic_hidden", absl::StrCat(cnf.critic_hidden)}});
  } else if (config.algo == "bc") {
    lines.push_back({"lr", g(BcUpdateConfig().lr)});
  }
  const std::vector<std::pair<std::string, std::string>> layout = {
      {"samples_per_insert", g(config.resolved_samples_per_insert())},
      {"rate_tolerance", g(config.resolved_rate_tolerance())},
      {"replay", absl::StrJoin(components.replay_addresses(), ",")},
      {"learner", components.server().address()},
      {"actors", absl::StrCat(config.local() ? config.actors : 0)},
      {"envs_per_actor", absl::StrCat(config.envs_per_actor)},
      {"publish_interval", absl::StrCat(config.publish_interval)},
      {"checkpoint_interval", absl::StrCat(config.checkpoint_interval)},
      {"refresh_interval", absl::StrCat(config.actor_refresh_interval)},
      {"max_unacked_batches", absl::StrCat(config.actor_max_unacked_batches)}};
  lines.insert(lines.end(), layout.begin(), layout.end());
  return lines;
}

// The metrics loop, until the budget is spent, an evaluation reaches the target, a component
// fails (its error) or `stop` is set (`interrupted`).
absl::Status FollowTraining(const TrainConfig& config, TrainingComponents& components, TrainingMonitor& monitor,
                            ProgressLine& progress, const std::atomic<bool>& stop, bool& interrupted) {
  absl::Time next_progress = absl::InfinitePast();
  while (true) {
    absl::StatusOr<bool> wrote_row = monitor.Step();
    if (!wrote_row.ok()) return wrote_row.status();
    if (*wrote_row && !progress.tty()) progress.Print(monitor.Figures());
    if (const absl::Time now = absl::Now(); progress.tty() && now >= next_progress) {
      progress.Print(monitor.Figures());
      next_progress = now + absl::Seconds(1);
    }
    if (absl::Status failure = components.Failure(); !failure.ok()) return failure;
    if (stop.load()) {
      interrupted = true;
      return absl::OkStatus();
    }
    if (monitor.env_steps() >= config.total_env_steps || monitor.target_reached()) return absl::OkStatus();
    absl::SleepFor(absl::Milliseconds(100));
  }
}

// Shuts down in order: the learner's final weights and checkpoint, then "done" for actors and the
// evaluator, the final evaluation, the last rows. The first failure, `failure` included.
absl::Status ShutDownInOrder(const TrainConfig& config, TrainingComponents& components, TrainingMonitor& monitor,
                             absl::Status failure, bool interrupted) {
  if (absl::Status s = components.StopLearner(); failure.ok() && !s.ok()) failure = s;
  monitor.FollowNow();
  const bool finished = failure.ok() && !interrupted;
  components.AnnounceDone(monitor.env_steps(), /*tell_replay=*/finished);
  if (absl::Status s = components.StopActorsAndEvaluator(/*abort_evaluation=*/!finished); failure.ok() && !s.ok()) {
    failure = s;
  }
  TrainingBoard* board = components.server().board();
  if (!config.local() && finished && board->evaluations_received() > 0 &&
      monitor.last_eval_steps() < monitor.env_steps()) {
    // The evaluator process evaluates the final weights once it hears "done": wait for it.
    board->WaitForEvaluation(absl::Now() + config.final_eval_wait);
  }
  if (failure.ok()) failure = monitor.Finish();
  if (!config.local() && !interrupted) absl::SleepFor(config.linger);  // actors hear "done"
  return failure;
}

}  // namespace

absl::StatusOr<TrainResult> RunTraining(const TrainConfig& input, const std::atomic<bool>& stop) {
  if (absl::Status s = input.Validate(); !s.ok()) return s;
  TrainConfig config = input;
  {
    auto env = MakeEnv(config.env);
    if (!env.ok()) return env.status();
    config.policy.obs_dim = (*env)->spec().obs_dim;
    config.policy.action_dim = (*env)->spec().action_dim;
  }
  if (absl::Status s = config.policy.Validate(); !s.ok()) return s;
  auto device = ResolveDevice(config.device);
  if (!device.ok()) return device.status();
  // Offline: the dataset, read and checked once, before any run dir exists for a run that cannot start.
  std::optional<Dataset> dataset;
  if (config.offline()) {
    absl::StatusOr<Dataset> read = ReadDataset(config.offline_dataset);
    if (!read.ok()) return read.status();
    if (absl::Status s = CheckDatasetTask(*read, config.env, static_cast<int>(config.policy.obs_dim),
                                          static_cast<int>(config.policy.action_dim));
        !s.ok()) {
      return absl::Status(s.code(), absl::StrCat(config.offline_dataset, ": ", s.message()));
    }
    dataset = *std::move(read);
  }
  // One learner per run dir: a second would interleave checkpoints, metrics and weight versions.
  auto run_dir = RunDirectory::Open(config.run_dir, kDistributedRun, /*resumable=*/true);
  if (!run_dir.ok()) return run_dir.status();

  if (config.algo == "cnf") {
    // CNF's first stage: the flow pre-trained on the dataset (resumed or skipped as its files say).
    CnfFlowStageConfig stage;
    stage.run_dir = config.run_dir;
    stage.flow.obs_dim = config.policy.obs_dim;
    stage.flow.action_dim = config.policy.action_dim;
    stage.epochs = config.flow_epochs;
    stage.batch_size = config.flow_batch_size;
    stage.seed = config.seed;
    stage.optimiser.seed = config.seed;
    stage.progress = config.progress;
    absl::StatusOr<std::string> flow = RunFlowPretraining(*dataset, stage, stop);
    if (!flow.ok()) return flow.status();
  }
  auto export_policy = NewActingPolicy(config.algo, config.policy);  // writes policy_latest / policy_best
  if (!export_policy.ok()) return export_policy.status();
  auto components_or = TrainingComponents::Create(config, *device, ShapesOf((*export_policy)->ExportWeights()),
                                                  dataset.has_value() ? &*dataset : nullptr);
  dataset.reset();  // the embedded replay's table holds the rows now
  if (!components_or.ok()) return components_or.status();
  TrainingComponents& components = **components_or;
  if (absl::Status s = (*run_dir)->WriteConfig(ConfigLines(config, *device, components)); !s.ok()) return s;

  TrainResult result;
  result.learner_address = components.server().address();
  {
    const LearnerStats restored = components.learner().stats();
    result.restored_from = restored.restored_from;
    for (const std::string& problem : restored.checkpoint_problems) {
      absl::FPrintF(stderr, "meow: checkpoint skipped: %s\n", problem);
    }
    if (config.progress && !restored.restored_from.empty()) {
      absl::PrintF("resumed from %s (update %d, weight version %d)\n", restored.restored_from, restored.updates,
                   restored.version);
    }
  }
  if (absl::Status s = components.StartWorkers(); !s.ok()) return s;

  TrainingMonitor monitor(config, components, **run_dir, **export_policy);
  std::unique_ptr<MetricsHttpServer> metrics_server;
  if (!config.metrics_address.empty()) {
    auto started = MetricsHttpServer::Start(config.metrics_address, [&monitor] { return monitor.MetricsPage(); });
    if (!started.ok()) return started.status();
    metrics_server = *std::move(started);
  }

  ProgressLine progress(config.env, config.progress);
  progress.set_offline(config.offline());
  absl::Status failure = FollowTraining(config, components, monitor, progress, stop, result.interrupted);
  progress.Finish();
  failure = ShutDownInOrder(config, components, monitor, std::move(failure), result.interrupted);
  result.actor_versions = components.ActorVersions();
  progress.Print(monitor.Figures(), /*final_line=*/true);
  components.Shutdown();
  if (!failure.ok()) return failure;
  const LearnerStats final_stats = components.learner().stats();
  result.env_steps = monitor.env_steps();
  result.updates = final_stats.updates;
  result.skipped_updates = final_stats.skipped;
  result.version = final_stats.version;
  result.seconds = monitor.elapsed();
  result.evals = monitor.evals();
  return result;
}

}  // namespace meow
