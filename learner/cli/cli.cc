#include "learner/cli/cli.h"

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <thread>
#include <tuple>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "actor/acting_policy.h"
#include "actor/render/video_writer.h"
#include "common/address.h"
#include "common/presets.h"
#include "common/runtime.h"

ABSL_FLAG(std::string, env, "MultiGoal-v0", "Task to train on (see `meow help` for the list).");
ABSL_FLAG(std::string, run_dir, "",
          "Run directory (config, metrics.csv, policies). Default: runs/<env>-seed<seed> (with --sync: "
          "runs/<env>-seed<seed>-sync; another --algo: runs/<env>-<algo>-seed<seed>).");
ABSL_FLAG(uint64_t, seed, 1, "Random seed (network init, actions, sampling, env resets).");
ABSL_FLAG(std::string, device, "auto", "Learner device: auto, cpu or cuda.");
ABSL_FLAG(std::optional<int64_t>, total_env_steps, std::nullopt, "Environment steps to train for (preset).");
ABSL_FLAG(std::optional<int64_t>, learning_starts, std::nullopt,
          "Random actions and no updates before this many steps (preset).");
ABSL_FLAG(std::optional<int64_t>, batch_size, std::nullopt, "Update batch size (preset: 256).");
ABSL_FLAG(std::optional<int64_t>, buffer_size, std::nullopt, "Replay capacity in transitions (preset: 1e6).");
ABSL_FLAG(std::optional<int64_t>, eval_interval, std::nullopt, "Environment steps between evaluations (preset).");
ABSL_FLAG(std::optional<int64_t>, eval_episodes, std::nullopt,
          "Episodes per evaluation (preset: 10; MultiGoal-v0: 100 rollouts from the origin).");
ABSL_FLAG(std::optional<bool>, deterministic_eval, std::nullopt,
          "Evaluate with the deterministic action (preset: true; MultiGoal-v0: false, sampled actions).");
ABSL_FLAG(std::optional<int64_t>, eval_max_steps, std::nullopt,
          "Steps per evaluation episode at most (preset: 0, the task's limit; MultiGoal-v0: 50).");
ABSL_FLAG(std::optional<double>, alpha, std::nullopt, "Entropy temperature alpha (preset).");
ABSL_FLAG(std::optional<double>, tau, std::nullopt, "Polyak rate of the target network (preset).");
ABSL_FLAG(std::optional<double>, sigma_max, std::nullopt, "Upper bound of the prior's log sigma (preset).");
ABSL_FLAG(std::optional<double>, sigma_min, std::nullopt, "Lower bound of the prior's log sigma (preset).");
ABSL_FLAG(std::optional<double>, gamma, std::nullopt, "Discount (preset).");
ABSL_FLAG(std::optional<double>, lr, std::nullopt, "Adam learning rate (preset: 1e-3).");
ABSL_FLAG(std::optional<double>, grad_clip, std::nullopt, "Global gradient-norm clip (preset: 30).");
ABSL_FLAG(std::string, algo, "meow",
          "The algorithm: meow (the default); sac (CleanRL's SAC: tanh-Gaussian policy, two critics, "
          "the temperature tuned toward entropy -|A|; learning_starts 5000 and tau 0.005 unless given); or sql "
          "(soft Q-learning as the MEow authors ran it: two critics, the soft value by importance sampling, "
          "amortised SVGD; the per-task --reward_scale, learning_starts 5000 (MultiGoal-v0: 1000 of 6000 steps), "
          "tau 0.005, stochastic evaluation unless given); or cnf, offline only (--offline --dataset=FILE: \"Let "
          "Offline RL Flow\"'s flow action encoder pre-trained on the dataset, then its latent controller); or bc, "
          "offline only (plain behaviour cloning: SAC's actor network regressed onto the dataset's actions).");
ABSL_FLAG(std::optional<double>, policy_lr, std::nullopt,
          "SAC and SQL: the policy's (SQL: the sampler's) Adam learning rate (3e-4).");
ABSL_FLAG(std::optional<double>, q_lr, std::nullopt,
          "SAC and SQL: the critics' Adam learning rate (SAC: 1e-3, also the temperature's; SQL: 3e-4).");
ABSL_FLAG(std::optional<double>, reward_scale, std::nullopt,
          "SQL: the reward scale, 1/alpha (per task: Hopper-v4 and HalfCheetah-v4 30, Walker2d-v4 10, Ant-v4 300, "
          "Humanoid-v4 100, MultiGoal-v0 0.1; required on other tasks).");
ABSL_FLAG(std::optional<int64_t>, svgd_particles, std::nullopt,
          "SQL: particles per state of the SVGD sampler update (16).");
ABSL_FLAG(std::optional<int64_t>, value_particles, std::nullopt,
          "SQL: uniform actions per state of the importance-sampled soft value (16).");
ABSL_FLAG(std::optional<std::string>, kernel_bandwidth, std::nullopt,
          "SQL: the RBF kernel's bandwidth rule, log_batch (median / log(batch + 1), the authors' PyTorch SQL; "
          "the default) or log_particles (median / log(fixed particles), the official code).");
ABSL_FLAG(std::optional<std::string>, particle_draws, std::nullopt,
          "SQL: independent (two draws of --svgd_particles, fixed and updated; the default) or split (one "
          "draw split in halves, the official code).");
ABSL_FLAG(std::optional<std::string>, value_draws, std::nullopt,
          "SQL: per_row (fresh uniform actions per state; the default) or shared (one set for the whole "
          "batch, the official code).");
ABSL_FLAG(std::optional<bool>, autotune, std::nullopt,
          "SAC: tune the temperature toward the target entropy -|A| (default true; false: --alpha, default 0.2, "
          "stays fixed).");
ABSL_FLAG(int64_t, log_interval, 1000, "Environment steps between progress lines and metrics rows.");
ABSL_FLAG(int64_t, video_every, 0,
          "Every N-th evaluation and the final one also write their first episode as an MP4 (train: "
          "RUN_DIR/videos/step-<env steps>.mp4; eval --learner: --video_dir). 0: none. MuJoCo tasks; needs ffmpeg. "
          "Each video costs one more episode plus ~15 s of drawing on 2 cores.");
ABSL_FLAG(int32_t, video_width, 480, "Video frame width in pixels (even).");
ABSL_FLAG(int32_t, video_height, 480, "Video frame height in pixels (even).");
ABSL_FLAG(std::string, address, "",
          "HOST:PORT to listen on (default 127.0.0.1:7777 for replay, "
          "127.0.0.1:7778 for the learner; 0.0.0.0:PORT serves other machines; port 0 picks one).");
ABSL_FLAG(std::vector<std::string>, replay, {}, "Replay servers host:port, comma-separated (shards).");
ABSL_FLAG(std::string, learner, "", "The learner's host:port.");
ABSL_FLAG(std::string, metrics_address, "",
          "HOST:PORT for Prometheus metrics (GET /metrics) and a liveness check (GET /healthz); empty: none.");
ABSL_FLAG(absl::Duration, connect_timeout, absl::Seconds(60), "How long to wait for replay and the learner at start.");
ABSL_FLAG(int32_t, threads, 1,
          "LibTorch compute threads for the learner (OpenBLAS runs single-threaded under it). "
          "More than one helps only on an otherwise idle machine with spare cores.");
ABSL_FLAG(std::optional<int32_t>, learner_threads, std::nullopt,
          "CPU threads the learner splits each update's batch across (data parallel, the same update up "
          "to float summation order). Default on the CPU: local mode, the cores less one for each actor "
          "thread after the first (at least 1, at most 8); meow learner, the cores less one (at most 8); "
          "--sync, 1. On cuda: 1.");
ABSL_FLAG(bool, cuda_graph, true,
          "On cuda (MEow): record the whole update as a CUDA graph once and replay it; false issues the "
          "same device-resident ops one by one.");
ABSL_FLAG(int32_t, updates_per_graph, 1,
          "On cuda (MEow): batches staged at once and updates run per graph launch (1 to 64).");
ABSL_FLAG(std::optional<int32_t>, actors, std::nullopt,
          "Actor threads (preset: 1 on the MuJoCo tasks, where two learned markedly "
          "worse on Hopper-v4; 2 on MultiGoal-v0, where two learned better than one).");
ABSL_FLAG(int32_t, envs_per_actor, 1, "Environments each actor steps together.");
ABSL_FLAG(int64_t, refresh_interval, 10, "Vector steps between weight fetches.");
ABSL_FLAG(int32_t, max_unacked_batches, 1,
          "Transition batches an actor may have sent to replay without "
          "acknowledgement; past that it waits, so replay's rate limiter holds it back. More hides "
          "network latency but lets the actors act further behind the learner.");
ABSL_FLAG(std::optional<double>, samples_per_insert, std::nullopt,
          "Sampled per inserted transitions to hold (e.g. 256 for one update of 256 per env "
          "step); unset: sampling runs free.");
ABSL_FLAG(std::optional<double>, samples_per_insert_tolerance, std::nullopt,
          "Slack of the samples-per-insert ratio, in sampled transitions "
          "(default: samples_per_insert, one inserted transition's worth). The actors may run this "
          "far ahead of the learner, acting with weights that many updates old.");
ABSL_FLAG(bool, run_free, false,
          "No update-to-data ratio (the learner samples as fast as it can); default: one "
          "update of batch_size per environment step, held by replay's rate limiter.");
ABSL_FLAG(std::optional<double>, stop_at_return, std::nullopt, "Stop once an evaluation's mean return reaches this.");
ABSL_FLAG(int64_t, publish_interval, 10, "Updates between published weight versions.");
ABSL_FLAG(int64_t, checkpoint_interval, 5000, "Updates between checkpoints.");
ABSL_FLAG(std::string, tls_cert, "", "Servers: PEM certificate chain; with --tls_key, every server speaks TLS only.");
ABSL_FLAG(std::string, tls_key, "", "Servers: PEM private key of --tls_cert.");
ABSL_FLAG(std::string, tls_ca, "", "Clients: PEM roots that verify the servers; set, every client uses TLS.");
ABSL_FLAG(std::string, tls_server_name, "",
          "Clients: the name the servers' certificate carries, when it is not the host dialled.");
ABSL_FLAG(std::string, auth_token_file, "",
          "A file holding the shared bearer token: sent on every call, and required by every server "
          "(UNAUTHENTICATED otherwise; health checks stay open).");

ABSL_DECLARE_FLAG(bool, offline);
ABSL_DECLARE_FLAG(std::string, dataset);

namespace meow::cli {

const std::vector<const char*> kTrainingFlags = {"env",
                                                 "algo",
                                                 "seed",
                                                 "run_dir",
                                                 "device",
                                                 "total_env_steps",
                                                 "learning_starts",
                                                 "batch_size",
                                                 "buffer_size",
                                                 "eval_interval",
                                                 "eval_episodes",
                                                 "deterministic_eval",
                                                 "eval_max_steps",
                                                 "alpha",
                                                 "tau",
                                                 "sigma_max",
                                                 "sigma_min",
                                                 "gamma",
                                                 "lr",
                                                 "grad_clip",
                                                 "policy_lr",
                                                 "q_lr",
                                                 "autotune",
                                                 "reward_scale",
                                                 "svgd_particles",
                                                 "value_particles",
                                                 "kernel_bandwidth",
                                                 "particle_draws",
                                                 "value_draws",
                                                 "log_interval",
                                                 "threads",
                                                 "learner_threads",
                                                 "cuda_graph",
                                                 "updates_per_graph"};
const std::vector<const char*> kClientSecurityFlags = {"tls_ca", "tls_server_name", "auth_token_file"};
const std::vector<const char*> kServerSecurityFlags = {"tls_cert", "tls_key", "auth_token_file"};

std::vector<const char*> Concat(std::initializer_list<std::vector<const char*>> lists) {
  std::vector<const char*> all;
  for (const auto& list : lists) {
    for (const char* name : list) {
      bool seen = false;
      for (const char* have : all) seen |= std::string(have) == name;
      if (!seen) all.push_back(name);
    }
  }
  return all;
}

void PrintHelp(const Subcommand& command) {
  absl::PrintF("meow %s: %s\n\nusage: %s\n\nflags (also from --flagfile=FILE):\n", command.name, command.summary,
               command.usage);
  for (const char* name : command.flags) {
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr) {  // a list naming a flag nobody defines is a bug in this binary
      absl::PrintF("  --%s (undefined)\n", name);
      continue;
    }
    const std::string value = flag->DefaultValue();
    absl::PrintF("  --%s  %s\n      default: %s\n", name, flag->Help(), value.empty() ? "(empty)" : value);
  }
  absl::PrintF("\n`meow help` lists the subcommands; `meow %s --helpfull` every flag of the binary.\n", command.name);
}

int Fail(const absl::Status& status) {
  absl::FPrintF(stderr, "meow: %s\n", status.ToString());
  return status.code() == absl::StatusCode::kInvalidArgument || status.code() == absl::StatusCode::kNotFound ? 2 : 1;
}

absl::Status CheckRange(const char* flag, int64_t value, int64_t lo, int64_t hi) {
  if (value >= lo && value <= hi) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("bad flag: --", flag, "=", value, ": expected ", lo, " to ", hi));
}

absl::Status CheckAddress(const char* flag, const std::string& address) {
  auto parsed = ParseHostPort(address);
  if (parsed.ok()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("bad flag: --", flag, "=", address, ": expected HOST:PORT (", parsed.status().message(), ")"));
}

absl::Status CheckVideoSizeFlags(bool wanted) {
  if (!wanted) return absl::OkStatus();
  for (auto [flag, pixels] : {std::pair<const char*, int>{"--video_width=", absl::GetFlag(FLAGS_video_width)},
                              {"--video_height=", absl::GetFlag(FLAGS_video_height)}}) {
    if (absl::Status s = CheckFrameSize(flag, pixels); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("bad flag: ", s.message()));
    }
  }
  return absl::OkStatus();
}

absl::Status SetThreadsFromFlag() {
  const int threads = absl::GetFlag(FLAGS_threads);
  if (absl::Status s = CheckRange("threads", threads, 1, 256); !s.ok()) return s;
  SetComputeThreads(threads);
  return absl::OkStatus();
}

absl::StatusOr<TrainSettings> TrainConfigFromFlags(bool sync_run_dir) {
  const std::string env = absl::GetFlag(FLAGS_env);
  auto preset = GetPreset(env);
  if (!preset.ok()) {
    return absl::NotFoundError(absl::StrCat("--env=", env, ": ", preset.status().message()));
  }
  TrainSettings c;
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
  c.eval_max_steps = absl::GetFlag(FLAGS_eval_max_steps).value_or(preset->eval_max_steps);
  c.policy.alpha = absl::GetFlag(FLAGS_alpha).value_or(preset->alpha);
  c.policy.sigma_max = absl::GetFlag(FLAGS_sigma_max).value_or(preset->sigma_max);
  c.policy.sigma_min = absl::GetFlag(FLAGS_sigma_min).value_or(preset->sigma_min);
  c.update.tau = absl::GetFlag(FLAGS_tau).value_or(preset->tau);
  c.update.gamma = absl::GetFlag(FLAGS_gamma).value_or(preset->gamma);
  c.update.lr = absl::GetFlag(FLAGS_lr).value_or(preset->lr);
  c.update.grad_clip = absl::GetFlag(FLAGS_grad_clip).value_or(preset->grad_clip);
  if (auto threads = absl::GetFlag(FLAGS_learner_threads); threads.has_value()) {
    if (absl::Status s = CheckRange("learner_threads", *threads, 1, 256); !s.ok()) return s;
    c.update.threads = *threads;
  }
  c.update.graph.capture = absl::GetFlag(FLAGS_cuda_graph);
  c.update.graph.updates_per_launch = absl::GetFlag(FLAGS_updates_per_graph);
  if (absl::Status s = CheckRange("updates_per_graph", c.update.graph.updates_per_launch, 1, 64); !s.ok()) return s;
  c.algo = absl::GetFlag(FLAGS_algo);
  if (absl::Status s = ValidateAlgorithm(c.algo); !s.ok()) return absl::InvalidArgumentError(absl::StrCat("bad flag: ", s.message()));
  if (c.algo == "sac") {
    // CleanRL's sac_continuous_action.py, not MEow's per-task preset, unless the flags say otherwise.
    c.learning_starts = absl::GetFlag(FLAGS_learning_starts).value_or(5000);
    c.sac.tau = absl::GetFlag(FLAGS_tau).value_or(0.005);
    c.sac.gamma = absl::GetFlag(FLAGS_gamma).value_or(0.99);
    c.sac.policy_lr = absl::GetFlag(FLAGS_policy_lr).value_or(3e-4);
    c.sac.q_lr = absl::GetFlag(FLAGS_q_lr).value_or(1e-3);
    c.sac.alpha_lr = c.sac.q_lr;
    c.sac.autotune = absl::GetFlag(FLAGS_autotune).value_or(true);
    c.sac.alpha = absl::GetFlag(FLAGS_alpha).value_or(0.2);
  } else if (c.algo == "sql") {
    // The MEow authors' SQL (conf/base.yaml), not MEow's per-task preset, unless the flags say otherwise.
    if (absl::GetFlag(FLAGS_alpha).has_value()) {
      return absl::InvalidArgumentError("bad flag: --alpha is not SQL's: its temperature is 1 / --reward_scale");
    }
    bool no_scale = false;
    const TrainSettings sql = SqlConfigFromPreset(*preset, &no_scale);
    c.algo = sql.algo;
    c.learning_starts = absl::GetFlag(FLAGS_learning_starts).value_or(sql.learning_starts);
    c.total_env_steps = absl::GetFlag(FLAGS_total_env_steps).value_or(sql.total_env_steps);
    c.deterministic_eval = absl::GetFlag(FLAGS_deterministic_eval).value_or(sql.deterministic_eval);
    c.sql = sql.sql;
    c.sql.tau = absl::GetFlag(FLAGS_tau).value_or(c.sql.tau);
    c.sql.gamma = absl::GetFlag(FLAGS_gamma).value_or(c.sql.gamma);
    c.sql.policy_lr = absl::GetFlag(FLAGS_policy_lr).value_or(c.sql.policy_lr);
    c.sql.q_lr = absl::GetFlag(FLAGS_q_lr).value_or(c.sql.q_lr);
    if (auto scale = absl::GetFlag(FLAGS_reward_scale); scale.has_value()) {
      c.sql.reward_scale = *scale;
    } else if (no_scale) {
      return absl::InvalidArgumentError(absl::StrCat("--algo=sql on ", env,
                                                     ": no published reward scale for this task; pass --reward_scale"));
    }
    c.sql.svgd_particles = absl::GetFlag(FLAGS_svgd_particles).value_or(c.sql.svgd_particles);
    c.sql.value_particles = absl::GetFlag(FLAGS_value_particles).value_or(c.sql.value_particles);
    c.sql.kernel_bandwidth = absl::GetFlag(FLAGS_kernel_bandwidth).value_or(c.sql.kernel_bandwidth);
    c.sql.particle_draws = absl::GetFlag(FLAGS_particle_draws).value_or(c.sql.particle_draws);
    c.sql.value_draws = absl::GetFlag(FLAGS_value_draws).value_or(c.sql.value_draws);
  }
  // Each algorithm's own flags are refused for the others.
  for (auto [name, given, owners] :
       {std::tuple{"policy_lr", absl::GetFlag(FLAGS_policy_lr).has_value(), "sac sql"},
        std::tuple{"q_lr", absl::GetFlag(FLAGS_q_lr).has_value(), "sac sql"},
        std::tuple{"autotune", absl::GetFlag(FLAGS_autotune).has_value(), "sac"},
        std::tuple{"lr", absl::GetFlag(FLAGS_lr).has_value(), "meow"},
        std::tuple{"grad_clip", absl::GetFlag(FLAGS_grad_clip).has_value(), "meow"},
        std::tuple{"sigma_max", absl::GetFlag(FLAGS_sigma_max).has_value(), "meow"},
        std::tuple{"sigma_min", absl::GetFlag(FLAGS_sigma_min).has_value(), "meow"},
        std::tuple{"reward_scale", absl::GetFlag(FLAGS_reward_scale).has_value(), "sql"},
        std::tuple{"svgd_particles", absl::GetFlag(FLAGS_svgd_particles).has_value(), "sql"},
        std::tuple{"value_particles", absl::GetFlag(FLAGS_value_particles).has_value(), "sql"},
        std::tuple{"kernel_bandwidth", absl::GetFlag(FLAGS_kernel_bandwidth).has_value(), "sql"},
        std::tuple{"particle_draws", absl::GetFlag(FLAGS_particle_draws).has_value(), "sql"},
        std::tuple{"value_draws", absl::GetFlag(FLAGS_value_draws).has_value(), "sql"}}) {
    if (given && !absl::StrContains(owners, c.algo)) {
      return absl::InvalidArgumentError(absl::StrCat("bad flag: --", name, " is for --algo=",
                                                     absl::StrReplaceAll(owners, {{" ", " or --algo="}}), ", not ",
                                                     c.algo));
    }
  }
  c.log_interval = absl::GetFlag(FLAGS_log_interval);
  c.run_dir = absl::GetFlag(FLAGS_run_dir);
  // --sync writes its own layout and cannot resume: its default run dir is its own.
  // Another algorithm's runs have their own default (runs/<env>-<algo>-seed<seed>).
  if (c.run_dir.empty()) {
    c.run_dir = absl::StrCat(DefaultRunDir(c.algo == "meow" ? env : absl::StrCat(env, "-", c.algo), c.seed),
                             sync_run_dir ? "-sync" : "");
  }
  // Name the flag in every validation error.
  c.policy.obs_dim = c.policy.action_dim = 1;  // filled from the env later
  if (absl::Status s = c.policy.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("bad flag: ", s.message()));
  }
  if (absl::Status s = c.Validate(); !s.ok())
    return absl::InvalidArgumentError(absl::StrCat("bad flag: ", s.message()));
  return c;
}

absl::StatusOr<TrainConfig> DistributedConfigFromFlags(bool local, const GrpcSecurity& security) {
  auto sync = TrainConfigFromFlags();
  if (!sync.ok()) return sync.status();
  TrainConfig c;
  static_cast<TrainSettings&>(c) = *sync;
  c.security = security;
  c.video_every = absl::GetFlag(FLAGS_video_every);
  if (absl::Status s = CheckRange("video_every", c.video_every, 0, 1'000'000); !s.ok()) return s;
  if (absl::Status s = CheckVideoSizeFlags(c.video_every > 0); !s.ok()) return s;
  c.video_width = absl::GetFlag(FLAGS_video_width);
  c.video_height = absl::GetFlag(FLAGS_video_height);
  if (absl::GetFlag(FLAGS_run_free)) {
    c.samples_per_insert = 0;
  } else if (auto spi = absl::GetFlag(FLAGS_samples_per_insert); spi.has_value()) {
    if (!(*spi > 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad flag: --samples_per_insert=", *spi, ": expected > 0 (or --run_free)"));
    }
    c.samples_per_insert = *spi;
  }
  c.stop_at_eval_return = absl::GetFlag(FLAGS_stop_at_return);
  c.publish_interval = absl::GetFlag(FLAGS_publish_interval);
  c.checkpoint_interval = absl::GetFlag(FLAGS_checkpoint_interval);
  c.actor_refresh_interval = absl::GetFlag(FLAGS_refresh_interval);
  c.actor_max_unacked_batches = absl::GetFlag(FLAGS_max_unacked_batches);
  if (absl::Status s = CheckRange("max_unacked_batches", c.actor_max_unacked_batches, 1, 4096); !s.ok()) return s;
  if (auto tolerance = absl::GetFlag(FLAGS_samples_per_insert_tolerance); tolerance.has_value()) {
    if (!(*tolerance > 0) || !std::isfinite(*tolerance)) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad flag: --samples_per_insert_tolerance=", *tolerance, ": expected a finite value > 0"));
    }
    c.rate_tolerance = *tolerance;
  }
  c.connect_timeout = absl::GetFlag(FLAGS_connect_timeout);
  c.metrics_address = absl::GetFlag(FLAGS_metrics_address);
  if (!c.metrics_address.empty()) {
    if (absl::Status s = CheckAddress("metrics_address", c.metrics_address); !s.ok()) return s;
  }
  for (auto [flag, v, hi] :
       {std::tuple<const char*, int64_t, int64_t>{"publish_interval", c.publish_interval, 1'000'000},
        {"checkpoint_interval", c.checkpoint_interval, int64_t{1} << 40},
        {"refresh_interval", c.actor_refresh_interval, 1'000'000}}) {
    if (absl::Status s = CheckRange(flag, v, 1, hi); !s.ok()) return s;
  }
  if (local) {
    auto preset = GetPreset(c.env);
    c.actors = absl::GetFlag(FLAGS_actors).value_or(preset.ok() ? preset->local_actors : 1);
    if (absl::Status s = CheckRange("actors", c.actors, 1, 1024); !s.ok()) return s;
    c.envs_per_actor = absl::GetFlag(FLAGS_envs_per_actor);
    if (absl::Status s = CheckRange("envs_per_actor", c.envs_per_actor, 1, 4096); !s.ok()) return s;
    c.address = "127.0.0.1:0";  // local mode binds loopback only
  } else {
    c.replay_addresses = absl::GetFlag(FLAGS_replay);
    if (c.replay_addresses.empty()) {
      return absl::InvalidArgumentError("meow learner needs --replay=HOST:PORT[,HOST:PORT...]");
    }
    for (const std::string& a : c.replay_addresses) {
      if (absl::Status s = CheckAddress("replay", a); !s.ok()) return s;
    }
    c.address = absl::GetFlag(FLAGS_address).empty() ? "127.0.0.1:7778" : absl::GetFlag(FLAGS_address);
    if (absl::Status s = CheckAddress("address", c.address); !s.ok()) return s;
  }
  // Offline training (meow train --offline): set here so that the checks below know it.
  if (local && absl::GetFlag(FLAGS_offline)) c.offline_dataset = absl::GetFlag(FLAGS_dataset);
  if (!absl::GetFlag(FLAGS_learner_threads).has_value()) {
    // The split of the cores. The learner is the bound and the actors spend most of their time
    // held by the rate limiter (94-96% on Hopper-v4), so in local mode the first actor shares the
    // learner's cores and each further one takes a core (on 2 cores with 1 actor, 2 learner
    // threads made 1.2x the updates of 1, README "Speed"); `meow learner` leaves one core to its
    // servers. A CUDA learner has no use for more threads.
    auto device = ResolveDevice(c.device);
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    const int spare = local ? cores - (c.actors - 1) : cores - 1;
    c.update.threads = device.ok() && device->is_cpu() ? std::clamp(spare, 1, 8) : 1;
  }
  if (absl::Status s = c.Validate(); !s.ok())
    return absl::InvalidArgumentError(absl::StrCat("bad flag: ", s.message()));
  return c;
}

namespace {

std::atomic<bool> g_stop{false};

extern "C" void OnStopSignal(int) {
  g_stop.store(true);
  // A second signal ends the process at once.
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
}

}  // namespace

const std::atomic<bool>& InstallStopHandlers() {
  std::signal(SIGINT, OnStopSignal);
  std::signal(SIGTERM, OnStopSignal);
  return g_stop;
}

}  // namespace meow::cli
