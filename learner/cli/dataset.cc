// `meow dataset`: offline datasets as HDF5 files in the D4RL layout (replay/dataset.h).
//   meow dataset export --env=TASK --out=FILE.hdf5 --replay_dir=DIR     a replay directory's rows
//   meow dataset export --env=TASK --out=FILE.hdf5 --policy=FILE|random [--episodes=N]
//                       [--stochastic] [--action_noise=S] [--random_action_prob=P]
//   meow dataset info --dataset=FILE [--env=TASK]                       its summary (and a task check)
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>

#include "absl/flags/flag.h"
#include "absl/flags/internal/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "actor/acting_policy.h"
#include "actor/env_registry.h"
#include "common/runtime.h"
#include "common/safetensors.h"
#include "learner/cli/cli.h"
#include "learner/dataset_rollouts.h"
#include "replay/dataset.h"

ABSL_FLAG(std::string, dataset, "",
          "An HDF5 dataset in the D4RL layout (meow dataset info; meow train --offline trains on it).");
ABSL_FLAG(double, action_noise, 0.0,
          "meow dataset export --policy: std of Gaussian noise added to each action (then clipped to [-1, 1]).");
ABSL_FLAG(double, random_action_prob, 0.0,
          "meow dataset export --policy: chance that a step's action is uniformly random instead.");
ABSL_DECLARE_FLAG(std::string, out);
ABSL_DECLARE_FLAG(std::string, replay_dir);
ABSL_DECLARE_FLAG(std::string, policy);
ABSL_DECLARE_FLAG(int64_t, episodes);
ABSL_DECLARE_FLAG(bool, stochastic);
ABSL_DECLARE_FLAG(int64_t, max_steps);

namespace meow::cli {
namespace {

namespace fs = std::filesystem;

void PrintSummary(const std::string& path, const Dataset& d) {
  const DatasetSummary s = SummarizeDataset(d);
  const DatasetMetadata& m = d.metadata;
  absl::PrintF("%s\n", path);
  absl::PrintF("  task: %s\n", m.task.empty() ? "(not stated)" : m.task);
  absl::PrintF("  source: %s%s\n", m.source.empty() ? "(not stated)" : m.source,
               m.policy.empty() ? "" : absl::StrCat(" (", m.policy, ")"));
  if (m.env_steps >= 0) absl::PrintF("  env_steps of the run behind it: %d\n", m.env_steps);
  absl::PrintF("  rows: %d (observations %d, actions %d)\n", s.rows, d.obs_dim, d.action_dim);
  absl::PrintF("  terminals: %d, timeouts: %d\n", s.terminals, s.timeouts);
  const bool interleaved = m.extra.count("row_order") > 0;
  if (interleaved) {
    absl::PrintF("  episodes: not contiguous (%s)\n", m.extra.at("row_order"));
  } else {
    absl::PrintF("  episodes: %d finished%s\n", s.episodes,
                 s.unfinished_rows > 0 ? absl::StrCat(", and ", s.unfinished_rows, " rows of an unfinished one") : "");
    if (s.episodes > 0) {
      absl::PrintF("  episode return: mean %.2f, std %.2f, min %.2f, max %.2f\n", s.return_mean, s.return_std,
                   s.return_min, s.return_max);
      if (auto reference = D4rlReferenceReturns(m.task); reference.has_value()) {
        absl::PrintF("  normalised score of the mean (D4RL's reference returns %.1f and %.1f): %.1f\n",
                     reference->random, reference->expert, NormalizedScore(*reference, s.return_mean));
      }
    }
  }
  absl::PrintF("  reward per row: mean %.4f; |action| mean %.3f\n", s.reward_mean, s.action_abs_mean);
  for (const auto& [key, value] : m.extra) {
    if (key != "row_order") absl::PrintF("  %s: %s\n", key, value);
  }
}

int RunInfo() {
  const std::string path = absl::GetFlag(FLAGS_dataset);
  if (path.empty()) return Fail(absl::InvalidArgumentError("meow dataset info needs --dataset=FILE"));
  absl::StatusOr<Dataset> dataset = ReadDataset(path);
  if (!dataset.ok()) return Fail(dataset.status());
  PrintSummary(path, *dataset);
  if (absl::flags_internal::WasPresentOnCommandLine("env")) {
    const std::string task = absl::GetFlag(FLAGS_env);
    auto env = MakeEnv(task);
    if (!env.ok()) return Fail(env.status());
    if (absl::Status s = CheckDatasetTask(*dataset, task, (*env)->spec().obs_dim, (*env)->spec().action_dim);
        !s.ok()) {
      return Fail(s);
    }
    absl::PrintF("  fits %s\n", task);
  }
  return 0;
}

// A replay directory as given, or a run directory's replay/ (local mode's layout).
std::string ReplayDirectoryOf(const std::string& dir) {
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(dir, error)) {
    if (entry.path().extension() == ".meow") return dir;
  }
  if (fs::is_directory(fs::path(dir) / "replay", error)) return (fs::path(dir) / "replay").string();
  return dir;
}

int RunExport() {
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) return Fail(absl::InvalidArgumentError("meow dataset export needs --out=FILE.hdf5"));
  const std::string replay_dir = absl::GetFlag(FLAGS_replay_dir);
  const std::string policy_path = absl::GetFlag(FLAGS_policy);
  if (replay_dir.empty() == policy_path.empty()) {
    return Fail(absl::InvalidArgumentError(
        "meow dataset export needs one source: --replay_dir=DIR (a replay or run directory) or "
        "--policy=FILE (or --policy=random for uniformly random actions)"));
  }
  const std::string task = absl::GetFlag(FLAGS_env);
  auto env = MakeEnv(task);
  if (!env.ok()) return Fail(env.status());
  const EnvSpec& spec = (*env)->spec();
  Dataset dataset;
  if (!replay_dir.empty()) {
    const std::string dir = ReplayDirectoryOf(replay_dir);
    absl::StatusOr<ReplayExport> exported = DatasetFromReplayDirectory(dir, spec.obs_dim, spec.action_dim);
    if (!exported.ok()) return Fail(exported.status());
    for (const std::string& error : exported->errors) absl::FPrintF(stderr, "meow: %s: %s\n", dir, error);
    if (exported->dataset.rows == 0) {
      return Fail(absl::FailedPreconditionError(absl::StrCat(dir, ": the replay holds no rows")));
    }
    dataset = std::move(exported->dataset);
    dataset.metadata.extra["replay_directory"] = dir;
    absl::PrintF("read %d rows from %s (snapshot generation %d, %d logged batches after it)\n", dataset.rows, dir,
                 exported->snapshot_generation, exported->log_batches);
  } else {
    RolloutConfig config;
    config.episodes = absl::GetFlag(FLAGS_episodes);
    config.stochastic = absl::GetFlag(FLAGS_stochastic);
    config.action_noise = absl::GetFlag(FLAGS_action_noise);
    config.random_action_prob = absl::GetFlag(FLAGS_random_action_prob);
    config.seed = absl::GetFlag(FLAGS_seed);
    config.max_steps = absl::GetFlag(FLAGS_max_steps);
    if (absl::Status s = config.Validate(); !s.ok()) {
      return Fail(absl::InvalidArgumentError(absl::StrCat("bad flag: --", s.message())));
    }
    std::unique_ptr<ActingPolicy> policy;
    if (policy_path != "random") {
      auto loaded = LoadActingPolicy(policy_path, spec);
      if (!loaded.ok()) return Fail(loaded.status());
      policy = *std::move(loaded);
    }
    SetComputeThreads(std::max(1, absl::GetFlag(FLAGS_threads)));
    absl::StatusOr<Dataset> collected = CollectRollouts(policy.get(), **env, config);
    if (!collected.ok()) return Fail(collected.status());
    dataset = *std::move(collected);
    if (policy != nullptr) {
      dataset.metadata.policy = policy_path;
      const SafetensorsFile exported = policy->ExportWeights();
      if (auto it = exported.metadata.find("meow.algorithm"); it != exported.metadata.end()) {
        dataset.metadata.extra["algorithm"] = it->second;
      }
    }
  }
  dataset.metadata.task = task;
  if (absl::Status s = WriteDataset(out, dataset); !s.ok()) return Fail(s);
  PrintSummary(out, dataset);
  return 0;
}

int RunDataset(const GrpcSecurity&) {
  const std::vector<std::string>& words = CommandWords();
  if (words.size() != 1 || (words[0] != "export" && words[0] != "info")) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("meow dataset: expected `meow dataset export ...` or `meow dataset info ...`",
                     words.empty() ? "" : absl::StrCat(", got \"", words[0], "\""))));
  }
  return words[0] == "export" ? RunExport() : RunInfo();
}

}  // namespace

const Subcommand& DatasetCommand() {
  static const Subcommand command{
      "dataset",
      "meow dataset export --env=TASK --out=FILE.hdf5 (--replay_dir=DIR | --policy=FILE|random [--episodes=N]) "
      "  or   meow dataset info --dataset=FILE [--env=TASK]",
      "offline datasets as HDF5 files in the D4RL layout (observations, actions, rewards, next_observations, "
      "terminals, timeouts, metadata/). export: a replay directory's rows (a run directory's replay/ too), or "
      "the episodes of a saved policy (--stochastic samples; --action_noise and --random_action_prob mix in "
      "noise; --policy=random acts uniformly at random). info: rows, episodes and their returns (with D4RL's "
      "normalised score where the task has reference returns); --env checks that the file fits the task.",
      {"env", "out", "replay_dir", "policy", "episodes", "stochastic", "max_steps", "action_noise",
       "random_action_prob", "seed", "threads", "dataset"},
      /*speaks_grpc=*/false,
      RunDataset,
      /*takes_words=*/true};
  return command;
}

}  // namespace meow::cli
