// `meow train`: local mode (replay, learner, actors and an evaluator in this process, over gRPC on
// 127.0.0.1), or with --sync the single-threaded reference loop.
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/flags/internal/parse.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "actor/acting_policy.h"
#include "actor/evaluate.h"
#include "actor/multi_goal.h"
#include "learner/cli/cli.h"

ABSL_FLAG(bool, offline, false,
          "Train on a fixed dataset (--dataset=FILE, HDF5 in the D4RL layout) instead of acting: replay serves it "
          "as a read-only table, no actors run, evaluations still play the task; the budget and intervals count "
          "updates.");
ABSL_FLAG(int64_t, total_updates, 100000, "With --offline: the learner's updates.");
ABSL_FLAG(int64_t, flow_epochs, 100,
          "--algo=cnf: epochs of the flow's pre-training on the dataset (the CNF paper: expert 50, medium 100, "
          "replay 350).");
ABSL_FLAG(std::optional<double>, awac_lambda, std::nullopt,
          "--algo=cnf: the temperature lambda of the latent controller's advantage weights exp(adv / lambda), "
          "capped at 100 (1/3, the reference's for locomotion; large: every row weighs alike, behaviour cloning "
          "in the latent space).");
ABSL_DECLARE_FLAG(std::string, dataset);
ABSL_DECLARE_FLAG(std::optional<double>, tau);
ABSL_DECLARE_FLAG(std::optional<double>, gamma);
ABSL_FLAG(bool, sync, false,
          "The single-threaded reference loop (one env, one update per step) instead of "
          "replay + learner + actors over gRPC.");

namespace meow::cli {
namespace {

// MultiGoal-v0 ends with what was learned in the papers' terms: stochastic rollouts of the final
// policy from the origin, counted by goal (the learning tests' measure), kept in the run dir for
// `meow report`'s figure. Other tasks: nothing (their evaluation return says it).
void SayWhatWasLearned(const std::string& env, const std::string& run_dir) {
  if (env != "MultiGoal-v0") return;
  auto policy = LoadActingPolicy(run_dir + "/policy_latest.safetensors", MultiGoalEnv().spec());
  if (!policy.ok()) return;  // interrupted before the first weights: nothing learned to show
  constexpr int kRollouts = 100, kMaxSteps = 50;
  auto rollouts = RollOutMultiGoal(**policy, kRollouts, kMaxSteps, /*seed=*/1000);
  if (!rollouts.ok()) {
    absl::FPrintF(stderr, "rollouts of the final policy failed: %s\n", rollouts.status().message());
    return;
  }
  const std::string csv = run_dir + "/multigoal_rollouts.csv";
  if (absl::Status s = WriteMultiGoalRollouts(csv, *rollouts); !s.ok()) {
    absl::FPrintF(stderr, "%s\n", s.message());
  }
  absl::PrintF("what was learned: %d stochastic rollouts from the origin (at most %d steps) %s\n", kRollouts, kMaxSteps,
               DescribeGoals(rollouts->Count()));
  absl::PrintF("picture: meow report --run_dir=%s (the rollouts over the reward, goals marked)\n", run_dir);
}

// ", last eval return 3512.40", or on MultiGoal-v0 ", last eval: 4 goals reached (35/6/33/18 of 100
// rollouts)"; nothing before the first evaluation.
std::string LastEval(const std::vector<EvalPoint>& evals) {
  if (evals.empty()) return "";
  const EvalPoint& e = evals.back();
  if (!e.goals.has_value()) return absl::StrFormat(", last eval return %.2f", e.mean);
  const MultiGoalCounts& g = *e.goals;
  return absl::StrFormat(", last eval: %d goals reached (%d/%d/%d/%d of %d rollouts)", g.goals(), g.reached[0],
                         g.reached[1], g.reached[2], g.reached[3], e.episodes);
}

}  // namespace

int RunDistributedTraining(const TrainConfig& config) {
  if (absl::Status s = SetThreadsFromFlag(); !s.ok()) return Fail(s);
  const std::atomic<bool>& stop = InstallStopHandlers();
  if (config.offline()) {
    absl::PrintF("meow train --offline: %s, %d updates on %s, run dir %s\n", config.env, config.total_env_steps,
                 config.offline_dataset, config.run_dir);
  } else if (config.local()) {
    absl::PrintF("meow train: %s, %d env steps, %d actor%s x %d env%s, run dir %s\n", config.env,
                 config.total_env_steps, config.actors, config.actors == 1 ? "" : "s", config.envs_per_actor,
                 config.envs_per_actor == 1 ? "" : "s", config.run_dir);
  } else {
    absl::PrintF("meow learner: %s, %d env steps, replay %s, serving on %s, run dir %s\n", config.env,
                 config.total_env_steps, absl::StrJoin(config.replay_addresses, ","), config.address, config.run_dir);
  }
  std::fflush(stdout);
  auto result = RunTraining(config, stop);
  if (!result.ok()) return Fail(result.status());
  if (config.offline()) {
    absl::PrintF("%s: %d updates on %s (%d skipped as non-finite), weight version %d, %.1f s",
                 result->interrupted ? "stopped" : "done", result->updates, config.offline_dataset,
                 result->skipped_updates, result->version, result->seconds);
  } else {
    absl::PrintF("%s: %d env steps, %d updates (%d skipped as non-finite), weight version %d, %.1f s",
                 result->interrupted ? "stopped" : "done", result->env_steps, result->updates,
                 result->skipped_updates, result->version, result->seconds);
  }
  absl::PrintF("%s", LastEval(result->evals));
  absl::PrintF("\nrun dir: %s (metrics.csv, policy_best.safetensors; curves: meow report --run_dir=%s)\n",
               config.run_dir, config.run_dir);
  if (result->interrupted) absl::PrintF("the same command resumes from the newest checkpoint\n");
  SayWhatWasLearned(config.env, config.run_dir);
  return 0;
}

namespace {

int RunSync() {
  auto config = TrainConfigFromFlags(/*sync_run_dir=*/true);
  if (!config.ok()) return Fail(config.status());
  if (absl::Status s = SetThreadsFromFlag(); !s.ok()) return Fail(s);
  absl::PrintF("meow train --sync: %s, %d env steps, run dir %s\n", config->env, config->total_env_steps,
               config->run_dir);
  auto result = TrainSync(*config);
  if (!result.ok()) return Fail(result.status());
  absl::PrintF("done: %d updates (%d skipped as non-finite) in %.1f s", result->updates, result->skipped_updates,
               result->seconds);
  absl::PrintF("%s", LastEval(result->evals));
  absl::PrintF("\nmetrics: %s/metrics.csv  policy: %s/policy_latest.safetensors\n", config->run_dir, config->run_dir);
  SayWhatWasLearned(config->env, config->run_dir);
  return 0;
}

// `meow train --offline --dataset=FILE`: local mode on a fixed dataset, counted in updates.
absl::StatusOr<TrainConfig> OfflineConfigFromFlags(const GrpcSecurity& security) {
  auto given = [](absl::string_view flag) { return absl::flags_internal::WasPresentOnCommandLine(flag); };
  const std::string dataset = absl::GetFlag(FLAGS_dataset);
  if (dataset.empty()) {
    return absl::InvalidArgumentError("meow train --offline needs --dataset=FILE (meow dataset export makes one)");
  }
  for (const char* flag : {"total_env_steps", "learning_starts", "actors", "envs_per_actor", "sync", "run_free",
                           "samples_per_insert", "samples_per_insert_tolerance", "refresh_interval",
                           "max_unacked_batches", "buffer_size"}) {
    if (given(flag)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "bad flag: --", flag, " is for training online; --offline trains on the dataset's rows (--total_updates=N)"));
    }
  }
  auto config = DistributedConfigFromFlags(/*local=*/true, security);
  if (!config.ok()) return config.status();
  TrainConfig c = *std::move(config);
  c.offline_dataset = dataset;
  c.total_env_steps = absl::GetFlag(FLAGS_total_updates);
  c.flow_epochs = absl::GetFlag(FLAGS_flow_epochs);
  if (absl::Status s = CheckRange("flow_epochs", c.flow_epochs, 1, 100'000); !s.ok()) return s;
  if (c.algo == "cnf" && !given("batch_size")) c.batch_size = 512;  // the CNF paper's latent controller
  if (c.algo != "cnf" && (given("flow_epochs") || given("awac_lambda"))) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad flag: --", given("flow_epochs") ? "flow_epochs" : "awac_lambda", " is for --algo=cnf"));
  }
  c.cnf.awac_lambda = absl::GetFlag(FLAGS_awac_lambda).value_or(c.cnf.awac_lambda);
  // --tau and --gamma are the critics' (the reference's 2e-3 and 0.99 unless given); BC has none.
  if (c.algo == "cnf") {
    c.cnf.tau = absl::GetFlag(FLAGS_tau).value_or(c.cnf.tau);
    c.cnf.gamma = absl::GetFlag(FLAGS_gamma).value_or(c.cnf.gamma);
    if (absl::Status s = c.cnf.Validate(); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("bad flag: ", s.message()));
    }
  } else if (c.algo == "bc" && (given("tau") || given("gamma"))) {
    return absl::InvalidArgumentError(absl::StrCat("bad flag: --", given("tau") ? "tau" : "gamma",
                                                   " is for algorithms with critics; --algo=bc has none"));
  }
  if (absl::Status s = CheckRange("total_updates", c.total_env_steps, 1, int64_t{1} << 40); !s.ok()) return s;
  if (!given("eval_interval")) c.eval_interval = std::min<int64_t>(5000, c.total_env_steps);
  if (!given("log_interval")) c.log_interval = std::min<int64_t>(1000, c.total_env_steps);
  if (absl::GetFlag(FLAGS_run_dir).empty()) {
    c.run_dir = DefaultRunDir(absl::StrCat(c.env, "-offline-", c.algo), c.seed);
  }
  c.actors = 0;
  if (absl::Status s = c.Validate(); !s.ok()) return absl::InvalidArgumentError(absl::StrCat("bad flag: ", s.message()));
  return c;
}

int RunTrain(const GrpcSecurity& security) {
  if (!absl::GetFlag(FLAGS_tls_cert).empty() && absl::GetFlag(FLAGS_tls_ca).empty()) {
    return Fail(absl::InvalidArgumentError(
        "--tls_cert without --tls_ca: in one process the clients must verify its own servers"));
  }
  if (absl::GetFlag(FLAGS_offline)) {
    auto config = OfflineConfigFromFlags(security);
    if (!config.ok()) return Fail(config.status());
    return RunDistributedTraining(*config);
  }
  if (absl::flags_internal::WasPresentOnCommandLine("total_updates") ||
      absl::flags_internal::WasPresentOnCommandLine("dataset")) {
    return Fail(absl::InvalidArgumentError("bad flag: --dataset and --total_updates are for --offline training"));
  }
  if (absl::GetFlag(FLAGS_sync)) return RunSync();
  auto config = DistributedConfigFromFlags(/*local=*/true, security);
  if (!config.ok()) return Fail(config.status());
  return RunDistributedTraining(*config);
}

}  // namespace

const Subcommand& TrainCommand() {
  static const Subcommand command{
      "train",
      "meow train [--env=TASK] [--seed=N] [--run_dir=DIR] [--sync] [flags]   or   meow train --offline "
      "--dataset=FILE --env=TASK [--total_updates=N]",
      "train an agent: replay, learner, actors and an evaluator in this process over gRPC on 127.0.0.1 "
      "(or --sync: the single-threaded reference loop; or --offline: the learner on a fixed dataset served "
      "by replay as a read-only table, no actors, evaluations in the task). The same command resumes a "
      "stopped run.",
      Concat({kTrainingFlags,
              {"sync", "offline", "dataset", "total_updates", "flow_epochs", "awac_lambda", "actors", "envs_per_actor", "refresh_interval", "publish_interval", "checkpoint_interval",
               "max_unacked_batches", "samples_per_insert", "samples_per_insert_tolerance", "run_free",
               "stop_at_return", "metrics_address", "video_every", "video_width", "video_height"},
              kServerSecurityFlags,
              kClientSecurityFlags}),
      /*speaks_grpc=*/true,
      RunTrain};
  return command;
}

}  // namespace meow::cli
