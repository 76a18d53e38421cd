// `meow`: the one binary users run. `meow <subcommand> [--flags]`; `meow help` lists subcommands.
// Flags are read here only, turned into config structs, validated, and passed to the libraries.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/flags/marshalling.h"

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "actor/env_registry.h"
#include "actor/evaluate.h"
#include "common/flow_policy.h"
#include "common/presets.h"
#include "common/safetensors.h"
#include "common/runtime.h"
#include "learner/report.h"
#include "replay/replay_server.h"
#include "learner/sync_trainer.h"

ABSL_FLAG(std::string, env, "MultiGoal-v0", "Task to train on (see `meow help` for the list).");
ABSL_FLAG(std::string, run_dir, "", "Run directory (config, metrics.csv, policies). Default: runs/<env>-seed<seed>.");
ABSL_FLAG(uint64_t, seed, 1, "Random seed (network init, actions, sampling, env resets).");
ABSL_FLAG(std::string, device, "auto", "Learner device: auto, cpu or cuda.");
ABSL_FLAG(std::optional<int64_t>, total_env_steps, std::nullopt, "Environment steps to train for (preset).");
ABSL_FLAG(std::optional<int64_t>, learning_starts, std::nullopt, "Random actions and no updates before this many steps (preset).");
ABSL_FLAG(std::optional<int64_t>, batch_size, std::nullopt, "Update batch size (preset: 256).");
ABSL_FLAG(std::optional<int64_t>, buffer_size, std::nullopt, "Replay capacity in transitions (preset: 1e6).");
ABSL_FLAG(std::optional<int64_t>, eval_interval, std::nullopt, "Environment steps between evaluations (preset).");
ABSL_FLAG(std::optional<int64_t>, eval_episodes, std::nullopt, "Episodes per evaluation (preset: 10).");
ABSL_FLAG(std::optional<bool>, deterministic_eval, std::nullopt, "Evaluate with the deterministic action (preset: true).");
ABSL_FLAG(std::optional<double>, alpha, std::nullopt, "Entropy temperature alpha (preset).");
ABSL_FLAG(std::optional<double>, tau, std::nullopt, "Polyak rate of the target network (preset).");
ABSL_FLAG(std::optional<double>, sigma_max, std::nullopt, "Upper bound of the prior's log sigma (preset).");
ABSL_FLAG(std::optional<double>, sigma_min, std::nullopt, "Lower bound of the prior's log sigma (preset).");
ABSL_FLAG(std::optional<double>, gamma, std::nullopt, "Discount (preset).");
ABSL_FLAG(std::optional<double>, lr, std::nullopt, "Adam learning rate (preset: 1e-3).");
ABSL_FLAG(std::optional<double>, grad_clip, std::nullopt, "Global gradient-norm clip (preset: 30).");
ABSL_FLAG(std::string, policy, "", "meow eval: policy file (safetensors, from meow train or the reference code).");
ABSL_FLAG(int64_t, episodes, 10, "meow eval: number of episodes (resets seeded seed, seed+1, ...).");
ABSL_FLAG(bool, stochastic, false, "meow eval: sample actions instead of the deterministic rule.");
ABSL_FLAG(std::vector<std::string>, run_dirs, {},
          "meow report: run directories to overlay, comma-separated (default: --run_dir).");
ABSL_FLAG(std::string, out, "", "meow report: output HTML file (default: RUN_DIR/report.html).");
ABSL_FLAG(std::string, address, "127.0.0.1:7777",
          "meow replay: host:port to listen on (0.0.0.0:PORT to serve other machines; port 0 picks one).");
ABSL_FLAG(std::string, replay_dir, "", "meow replay: directory for the snapshot and log (empty: memory only).");
ABSL_FLAG(bool, fsync_before_ack, false,
          "meow replay: acknowledge a batch only after its log record is fsynced (survives power loss).");
ABSL_FLAG(absl::Duration, snapshot_interval, absl::Minutes(10), "meow replay: time between snapshots.");
ABSL_FLAG(int64_t, min_replay_size, 256, "meow replay: rows stored before sampling starts.");
ABSL_FLAG(std::optional<double>, samples_per_insert, std::nullopt,
          "meow replay: sampled per inserted transitions to hold (e.g. 256 for one update of 256 per env "
          "step); unset: sampling runs free.");
ABSL_FLAG(double, samples_per_insert_tolerance, 25600,
          "meow replay: slack of the samples-per-insert ratio, in sampled transitions.");
ABSL_FLAG(int32_t, threads, 1,
          "LibTorch compute threads for the learner (OpenBLAS runs single-threaded under it). "
          "More than one helps only on an otherwise idle machine with spare cores.");
ABSL_FLAG(int64_t, log_interval, 1000, "Environment steps between progress lines and metrics rows.");

namespace meow {
namespace {

constexpr char kUsage[] = R"(meow: distributed MEow training (maximum-entropy RL with a flow policy)

usage: meow <subcommand> [--flag=value ...]   (flags may also come from --flagfile=FILE)

subcommands:
  train   train an agent in this process (default task MultiGoal-v0)
  eval    run a saved policy: meow eval --policy=FILE --env=TASK [--episodes=N]
  replay  a replay server: meow replay --env=TASK --address=HOST:PORT [--replay_dir=DIR]
  report  learning curves as one HTML page: meow report --run_dir=DIR (or --run_dirs=A,B,...)
  help    this text; `meow <subcommand> --help` lists every flag
)";

int Fail(const absl::Status& status) {
  absl::FPrintF(stderr, "meow: %s\n", status.ToString());
  return status.code() == absl::StatusCode::kInvalidArgument ||
                 status.code() == absl::StatusCode::kNotFound
             ? 2
             : 1;
}

absl::StatusOr<SyncTrainConfig> TrainConfigFromFlags() {
  const std::string env = absl::GetFlag(FLAGS_env);
  auto preset = GetPreset(env);
  if (!preset.ok()) {
    return absl::NotFoundError(absl::StrCat("--env=", env, ": ", preset.status().message()));
  }
  SyncTrainConfig c;
  c.env = env;
  c.seed = absl::GetFlag(FLAGS_seed);
  c.device = absl::GetFlag(FLAGS_device);
  c.total_env_steps = absl::GetFlag(FLAGS_total_env_steps).value_or(preset->total_env_steps);
  c.learning_starts = absl::GetFlag(FLAGS_learning_starts).value_or(preset->learning_starts);
  c.batch_size = absl::GetFlag(FLAGS_batch_size).value_or(preset->batch_size);
  c.buffer_size = absl::GetFlag(FLAGS_buffer_size).value_or(preset->buffer_size);
  c.eval_interval = absl::GetFlag(FLAGS_eval_interval).value_or(preset->eval_interval);
  c.eval_episodes = absl::GetFlag(FLAGS_eval_episodes).value_or(preset->eval_episodes);
  c.deterministic_eval = absl::GetFlag(FLAGS_deterministic_eval).value_or(preset->deterministic_eval);
  c.policy.alpha = absl::GetFlag(FLAGS_alpha).value_or(preset->alpha);
  c.policy.sigma_max = absl::GetFlag(FLAGS_sigma_max).value_or(preset->sigma_max);
  c.policy.sigma_min = absl::GetFlag(FLAGS_sigma_min).value_or(preset->sigma_min);
  c.update.tau = absl::GetFlag(FLAGS_tau).value_or(preset->tau);
  c.update.gamma = absl::GetFlag(FLAGS_gamma).value_or(preset->gamma);
  c.update.lr = absl::GetFlag(FLAGS_lr).value_or(preset->lr);
  c.update.grad_clip = absl::GetFlag(FLAGS_grad_clip).value_or(preset->grad_clip);
  c.log_interval = absl::GetFlag(FLAGS_log_interval);
  c.run_dir = absl::GetFlag(FLAGS_run_dir);
  if (c.run_dir.empty()) c.run_dir = absl::StrCat("runs/", env, "-seed", c.seed);
  // Name the flag in every validation error.
  c.policy.obs_dim = c.policy.action_dim = 1;  // filled from the env later
  if (absl::Status s = c.policy.Validate(); !s.ok()) return absl::InvalidArgumentError(absl::StrCat("bad flag: ", s.message()));
  if (absl::Status s = c.Validate(); !s.ok()) return absl::InvalidArgumentError(absl::StrCat("bad flag: ", s.message()));
  return c;
}

int RunTrain() {
  auto config = TrainConfigFromFlags();
  if (!config.ok()) return Fail(config.status());
  const int threads = absl::GetFlag(FLAGS_threads);
  if (threads < 1 || threads > 256) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("bad flag: --threads=", threads, ": expected 1 to 256")));
  }
  SetComputeThreads(threads);
  absl::PrintF("meow train: %s, %d env steps, run dir %s\n", config->env, config->total_env_steps,
               config->run_dir);
  auto result = TrainSync(*config);
  if (!result.ok()) return Fail(result.status());
  absl::PrintF("done: %d updates (%d skipped as non-finite) in %.1f s", result->updates,
               result->skipped_updates, result->seconds);
  if (!result->evals.empty()) absl::PrintF(", last eval return %.2f", result->evals.back().mean);
  absl::PrintF("\nmetrics: %s/metrics.csv  policy: %s/policy_latest.safetensors\n", config->run_dir,
               config->run_dir);
  return 0;
}

int RunEval() {
  const std::string path = absl::GetFlag(FLAGS_policy);
  if (path.empty()) return Fail(absl::InvalidArgumentError("meow eval needs --policy=FILE"));
  const int64_t episodes = absl::GetFlag(FLAGS_episodes);
  if (episodes < 1) {
    return Fail(absl::InvalidArgumentError(absl::StrCat("bad flag: --episodes=", episodes, ": expected >= 1")));
  }
  SetComputeThreads(std::max(1, absl::GetFlag(FLAGS_threads)));
  auto env = MakeEnv(absl::GetFlag(FLAGS_env));
  if (!env.ok()) return Fail(env.status());
  auto file = ReadSafetensors(path);
  if (!file.ok()) return Fail(file.status());
  auto config = ConfigFromWeights(*file, FlowPolicyConfig());
  if (!config.ok()) return Fail(absl::InvalidArgumentError(absl::StrCat(path, ": ", config.status().message())));
  if (config->obs_dim != (*env)->spec().obs_dim || config->action_dim != (*env)->spec().action_dim) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        path, " holds a policy for ", config->obs_dim, " observations and ", config->action_dim,
        " actions; ", (*env)->spec().name, " has ", (*env)->spec().obs_dim, " and ",
        (*env)->spec().action_dim)));
  }
  FlowPolicy policy(*config);
  if (absl::Status s = policy->ImportWeights(*file); !s.ok()) {
    return Fail(absl::Status(s.code(), absl::StrCat(path, ": ", s.message())));
  }
  const bool deterministic = !absl::GetFlag(FLAGS_stochastic);
  auto summary = Evaluate(*policy, **env, episodes, deterministic, absl::GetFlag(FLAGS_seed));
  if (!summary.ok()) return Fail(summary.status());
  for (size_t i = 0; i < summary->episodes.size(); ++i) {
    const EpisodeResult& e = summary->episodes[i];
    absl::PrintF("episode %d: return %.2f, %d steps, %s\n", i, e.episode_return, e.length,
                 e.terminated ? "terminated" : "truncated or step limit");
  }
  absl::PrintF("%s, %d %s episodes: return %.2f +- %.2f\n", (*env)->spec().name, episodes,
               deterministic ? "deterministic" : "stochastic", summary->mean, summary->std);
  return 0;
}

int RunReplayServer() {
  const std::string env_name = absl::GetFlag(FLAGS_env);
  auto env = MakeEnv(env_name);
  if (!env.ok()) return Fail(absl::NotFoundError(absl::StrCat("--env=", env_name, ": ", env.status().message())));
  auto preset = GetPreset(env_name);
  ReplayServerConfig config;
  config.address = absl::GetFlag(FLAGS_address);
  config.table.obs_dim = (*env)->spec().obs_dim;
  config.table.action_dim = (*env)->spec().action_dim;
  config.table.capacity =
      absl::GetFlag(FLAGS_buffer_size).value_or(preset.ok() ? preset->buffer_size : 1'000'000);
  config.table.seed = absl::GetFlag(FLAGS_seed);
  const int64_t min_size = absl::GetFlag(FLAGS_min_replay_size);
  if (auto ratio = absl::GetFlag(FLAGS_samples_per_insert); ratio.has_value()) {
    config.table.rate_limiter = RateLimiterConfig::SampleToInsertRatio(
        *ratio, min_size, absl::GetFlag(FLAGS_samples_per_insert_tolerance));
  } else {
    config.table.rate_limiter = RateLimiterConfig::MinSize(min_size);
  }
  config.persistence.directory = absl::GetFlag(FLAGS_replay_dir);
  config.persistence.fsync_before_ack = absl::GetFlag(FLAGS_fsync_before_ack);
  config.persistence.snapshot_interval = absl::GetFlag(FLAGS_snapshot_interval);
  if (absl::Status s = config.Validate(); !s.ok()) {
    return Fail(absl::InvalidArgumentError(absl::StrCat("bad flag: ", s.message())));
  }
  absl::PrintF("meow replay: %s (obs %d, action %d, capacity %d) on %s%s\n", env_name,
               config.table.obs_dim, config.table.action_dim, config.table.capacity, config.address,
               config.persistence.directory.empty() ? ", memory only"
                                                    : absl::StrCat(", persisted in ", config.persistence.directory));
  if (absl::Status s = RunReplay(config); !s.ok()) return Fail(s);
  return 0;
}

int RunReport() {
  std::vector<std::string> dirs = absl::GetFlag(FLAGS_run_dirs);
  if (dirs.empty() && !absl::GetFlag(FLAGS_run_dir).empty()) dirs.push_back(absl::GetFlag(FLAGS_run_dir));
  if (dirs.empty()) return Fail(absl::InvalidArgumentError("meow report needs --run_dir=DIR or --run_dirs=A,B"));
  std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) out = dirs.size() == 1 ? dirs[0] + "/report.html" : "report.html";
  if (absl::Status s = WriteReport(dirs, out); !s.ok()) return Fail(s);
  absl::PrintF("wrote %s (open it in a browser)\n", out);
  return 0;
}

}  // namespace
}  // namespace meow

int main(int argc, char** argv) {
  meow::TuneAllocator();
  absl::SetProgramUsageMessage(meow::kUsage);
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() < 2) {
    std::fputs(meow::kUsage, stderr);
    return 2;
  }
  const std::string command = positional[1];
  if (positional.size() > 2) {
    absl::FPrintF(stderr, "meow %s: unexpected argument \"%s\" (flags are --name=value)\n", command,
                  positional[2]);
    return 2;
  }
  if (command == "train") return meow::RunTrain();
  if (command == "eval") return meow::RunEval();
  if (command == "report") return meow::RunReport();
  if (command == "replay") return meow::RunReplayServer();
  if (command == "help") {
    std::fputs(meow::kUsage, stdout);
    return 0;
  }
  absl::FPrintF(stderr, "meow: unknown subcommand \"%s\"\n\n%s", command, meow::kUsage);
  return 2;
}
