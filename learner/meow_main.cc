// `meow`: the one binary users run. `meow <subcommand> [--flags]`; `meow help` lists subcommands.
// Flags are read here only, turned into config structs, validated, and passed to the libraries.
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>

#include "absl/flags/marshalling.h"

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "actor/actor_loop.h"
#include "actor/env_registry.h"
#include "actor/evaluate.h"
#include "actor/evaluator.h"
#include "actor/multi_goal.h"
#include "common/flow_policy.h"
#include "common/presets.h"
#include "common/safetensors.h"
#include "common/runtime.h"
#include "learner/report.h"
#include "replay/replay_server.h"
#include "learner/sync_trainer.h"
#include "learner/training.h"
#include "replay/grpc_security.h"
#include "replay/load_generator.h"
#include "replay/replay_client.h"
#include "replay/rpc_metrics.h"
#include "common/metrics_http.h"

ABSL_FLAG(std::string, env, "MultiGoal-v0", "Task to train on (see `meow help` for the list).");
ABSL_FLAG(std::string, run_dir, "",
          "Run directory (config, metrics.csv, policies). Default: runs/<env>-seed<seed> (with --sync: "
          "runs/<env>-seed<seed>-sync).");
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
ABSL_FLAG(int64_t, max_steps, 0, "meow eval: steps per episode at most (0: the task's limit).");
ABSL_FLAG(std::vector<std::string>, run_dirs, {},
          "meow report: run directories to overlay, comma-separated (default: --run_dir).");
ABSL_FLAG(std::string, out, "", "meow report: output HTML file (default: RUN_DIR/report.html).");
ABSL_FLAG(std::string, address, "",
          "meow replay / meow learner: host:port to listen on (default 127.0.0.1:7777 for replay, "
          "127.0.0.1:7778 for the learner; 0.0.0.0:PORT serves other machines; port 0 picks one).");
ABSL_FLAG(bool, sync, false,
          "meow train: the single-threaded reference loop (one env, one update per step) instead of "
          "replay + learner + actors over gRPC.");
ABSL_FLAG(std::optional<int32_t>, actors, std::nullopt,
          "meow train: actor threads (preset: 1 on the MuJoCo tasks, where two learned markedly "
          "worse on Hopper-v4; 2 on MultiGoal-v0, where two learned better than one).");
ABSL_FLAG(int32_t, envs_per_actor, 1, "meow train / meow actor: environments each actor steps together.");
ABSL_FLAG(bool, run_free, false,
          "meow train: no update-to-data ratio (the learner samples as fast as it can); default: one "
          "update of batch_size per environment step, held by replay's rate limiter.");
ABSL_FLAG(std::vector<std::string>, replay, {},
          "meow learner / meow actor: replay servers host:port, comma-separated (shards).");
ABSL_FLAG(std::string, learner, "", "meow actor / meow eval: the learner's host:port.");
ABSL_FLAG(std::optional<int64_t>, actor_id, std::nullopt,
          "meow actor (required): this actor's id, unique per run (it numbers the actor's batches and "
          "picks its replay shard; a restarted actor with the same id continues where it stopped); -1 "
          "derives it from the host name (a Kubernetes pod's name), so a restarted container keeps it.");
ABSL_FLAG(std::string, metrics_address, "",
          "host:port for Prometheus metrics (GET /metrics) and a liveness check (GET /healthz); empty: none.");
ABSL_FLAG(absl::Duration, connect_timeout, absl::Seconds(60),
          "meow learner / actor / eval: how long to wait for replay and the learner at start.");
ABSL_FLAG(std::optional<double>, stop_at_return, std::nullopt,
          "meow train / meow learner: stop once an evaluation's mean return reaches this.");
ABSL_FLAG(int64_t, publish_interval, 10, "meow train / meow learner: updates between published weight versions.");
ABSL_FLAG(int64_t, checkpoint_interval, 5000, "meow train / meow learner: updates between checkpoints.");
ABSL_FLAG(std::string, tls_cert, "", "Servers: PEM certificate chain; with --tls_key, every server speaks TLS only.");
ABSL_FLAG(std::string, tls_key, "", "Servers: PEM private key of --tls_cert.");
ABSL_FLAG(std::string, tls_ca, "", "Clients: PEM roots that verify the servers; set, every client uses TLS.");
ABSL_FLAG(std::string, tls_server_name, "",
          "Clients: the name the servers' certificate carries, when it is not the host dialled.");
ABSL_FLAG(std::string, auth_token_file, "",
          "A file holding the shared bearer token: sent on every call, and required by every server "
          "(UNAUTHENTICATED otherwise; health checks stay open).");
ABSL_FLAG(int64_t, refresh_interval, 10, "meow train / meow actor: vector steps between weight fetches.");
ABSL_FLAG(std::string, replay_dir, "", "meow replay: directory for the snapshot and log (empty: memory only).");
ABSL_FLAG(bool, fsync_before_ack, false,
          "meow replay: acknowledge a batch only after its log record is fsynced (survives power loss).");
ABSL_FLAG(absl::Duration, snapshot_interval, absl::Minutes(10), "meow replay: time between snapshots.");
ABSL_FLAG(int64_t, min_replay_size, 256, "meow replay: rows stored before sampling starts.");
ABSL_FLAG(std::optional<double>, samples_per_insert, std::nullopt,
          "meow replay: sampled per inserted transitions to hold (e.g. 256 for one update of 256 per env "
          "step); unset: sampling runs free.");
ABSL_FLAG(std::optional<double>, samples_per_insert_tolerance, std::nullopt,
          "meow train / meow replay: slack of the samples-per-insert ratio, in sampled transitions "
          "(default: samples_per_insert, one inserted transition's worth). The actors may run this "
          "far ahead of the learner, acting with weights that many updates old.");
ABSL_FLAG(int32_t, max_unacked_batches, 1,
          "meow train / meow actor: transition batches an actor may have sent to replay without "
          "acknowledgement; past that it waits, so replay's rate limiter holds it back. More hides "
          "network latency but lets the actors act further behind the learner.");
ABSL_FLAG(int32_t, threads, 1,
          "LibTorch compute threads for the learner (OpenBLAS runs single-threaded under it). "
          "More than one helps only on an otherwise idle machine with spare cores.");
ABSL_FLAG(int32_t, streams, 64, "meow load: concurrent insert streams (one per simulated actor).");
ABSL_FLAG(int32_t, rows_per_batch, 32, "meow load: transitions per inserted batch.");
ABSL_FLAG(int32_t, samplers, 1, "meow load: samplers drawing batches of --batch_size (default 256) meanwhile.");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(60), "meow load: how long to insert.");
ABSL_FLAG(uint64_t, first_actor_id, 1'000'000, "meow load: actor id of the first stream (the others follow).");
ABSL_FLAG(int64_t, log_interval, 1000, "Environment steps between progress lines and metrics rows.");

namespace meow {
namespace {

constexpr char kUsage[] = R"(meow: distributed MEow training (maximum-entropy RL with a flow policy)

usage: meow <subcommand> [--flag=value ...]   (flags may also come from --flagfile=FILE)

subcommands:
  train   train an agent: replay, learner, actors and an evaluator in this process, over gRPC
          on 127.0.0.1 (default task MultiGoal-v0; e.g. meow train --env=Hopper-v4)
  replay  a replay server: meow replay --env=TASK --address=HOST:PORT [--replay_dir=DIR]
  learner the learner: meow learner --env=TASK --replay=HOST:PORT[,...] --address=HOST:PORT
  actor   an actor: meow actor --env=TASK --replay=HOST:PORT[,...] --learner=HOST:PORT --actor_id=N
  eval    run a saved policy: meow eval --policy=FILE --env=TASK [--episodes=N]
          or evaluate a running learner's weights: meow eval --env=TASK --learner=HOST:PORT
  report  learning curves as one HTML page: meow report --run_dir=DIR (or --run_dirs=A,B,...)
  load    load a running replay: meow load --replay=HOST:PORT [--streams=64 --duration=60s]
          (insert streams and a sampler; reports throughput, limiter waits and any error, and
          checks that replay stored every acknowledged batch exactly once)
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
  // --sync writes its own layout and cannot resume: its default run dir is its own.
  if (c.run_dir.empty()) {
    c.run_dir = absl::StrCat("runs/", env, "-seed", c.seed, absl::GetFlag(FLAGS_sync) ? "-sync" : "");
  }
  // Name the flag in every validation error.
  c.policy.obs_dim = c.policy.action_dim = 1;  // filled from the env later
  if (absl::Status s = c.policy.Validate(); !s.ok()) return absl::InvalidArgumentError(absl::StrCat("bad flag: ", s.message()));
  if (absl::Status s = c.Validate(); !s.ok()) return absl::InvalidArgumentError(absl::StrCat("bad flag: ", s.message()));
  return c;
}

std::atomic<bool> g_stop{false};

extern "C" void OnStopSignal(int) {
  g_stop.store(true);
  // A second signal ends the process at once.
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
}

void InstallStopHandlers() {
  std::signal(SIGINT, OnStopSignal);
  std::signal(SIGTERM, OnStopSignal);
}

absl::Status CheckRange(const char* flag, int64_t value, int64_t lo, int64_t hi) {
  if (value >= lo && value <= hi) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("bad flag: --", flag, "=", value, ": expected ", lo, " to ", hi));
}

absl::Status CheckAddress(const char* flag, const std::string& address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size() ||
      address.find_first_not_of("0123456789", colon + 1) != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("bad flag: --", flag, "=", address, ": expected HOST:PORT"));
  }
  return absl::OkStatus();
}

absl::Status SetThreadsFromFlag() {
  const int threads = absl::GetFlag(FLAGS_threads);
  if (absl::Status s = CheckRange("threads", threads, 1, 256); !s.ok()) return s;
  SetComputeThreads(threads);
  return absl::OkStatus();
}

// The distributed configuration: the shared training flags plus the process layout.
absl::StatusOr<TrainConfig> DistributedConfigFromFlags(bool local) {
  auto sync = TrainConfigFromFlags();
  if (!sync.ok()) return sync.status();
  TrainConfig c;
  static_cast<SyncTrainConfig&>(c) = *sync;
  if (absl::GetFlag(FLAGS_run_free)) {
    c.samples_per_insert = 0;
  } else if (auto spi = absl::GetFlag(FLAGS_samples_per_insert); spi.has_value()) {
    if (!(*spi > 0)) {
      return absl::InvalidArgumentError(absl::StrCat("bad flag: --samples_per_insert=", *spi,
                                                     ": expected > 0 (or --run_free)"));
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
      return absl::InvalidArgumentError(absl::StrCat("bad flag: --samples_per_insert_tolerance=", *tolerance,
                                                     ": expected a finite value > 0"));
    }
    c.rate_tolerance = *tolerance;
  }
  c.connect_timeout = absl::GetFlag(FLAGS_connect_timeout);
  c.metrics_address = absl::GetFlag(FLAGS_metrics_address);
  if (!c.metrics_address.empty()) {
    if (absl::Status s = CheckAddress("metrics_address", c.metrics_address); !s.ok()) return s;
  }
  for (auto [flag, v, hi] : {std::tuple<const char*, int64_t, int64_t>{"publish_interval", c.publish_interval, 1'000'000},
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
  if (absl::Status s = c.Validate(); !s.ok()) return absl::InvalidArgumentError(absl::StrCat("bad flag: ", s.message()));
  return c;
}

int RunDistributed(bool local) {
  auto config = DistributedConfigFromFlags(local);
  if (!config.ok()) return Fail(config.status());
  if (absl::Status s = SetThreadsFromFlag(); !s.ok()) return Fail(s);
  InstallStopHandlers();
  if (local) {
    absl::PrintF("meow train: %s, %d env steps, %d actor%s x %d env%s, run dir %s\n", config->env,
                 config->total_env_steps, config->actors, config->actors == 1 ? "" : "s",
                 config->envs_per_actor, config->envs_per_actor == 1 ? "" : "s", config->run_dir);
  } else {
    absl::PrintF("meow learner: %s, %d env steps, replay %s, serving on %s, run dir %s\n", config->env,
                 config->total_env_steps, absl::StrJoin(config->replay_addresses, ","), config->address,
                 config->run_dir);
  }
  std::fflush(stdout);
  auto result = RunTraining(*config, g_stop);
  if (!result.ok()) return Fail(result.status());
  absl::PrintF("%s: %d env steps, %d updates (%d skipped as non-finite), weight version %d, %.1f s",
               result->interrupted ? "stopped" : "done", result->env_steps, result->updates,
               result->skipped_updates, result->version, result->seconds);
  if (!result->evals.empty()) absl::PrintF(", last eval return %.2f", result->evals.back().mean);
  absl::PrintF("\nrun dir: %s (metrics.csv, policy_best.safetensors; curves: meow report --run_dir=%s)\n",
               config->run_dir, config->run_dir);
  if (result->interrupted) absl::PrintF("the same command resumes from the newest checkpoint\n");
  return 0;
}

int RunTrain() {
  if (!absl::GetFlag(FLAGS_tls_cert).empty() && absl::GetFlag(FLAGS_tls_ca).empty()) {
    return Fail(absl::InvalidArgumentError(
        "--tls_cert without --tls_ca: in one process the clients must verify its own servers"));
  }
  if (!absl::GetFlag(FLAGS_sync)) return RunDistributed(/*local=*/true);
  auto config = TrainConfigFromFlags();
  if (!config.ok()) return Fail(config.status());
  if (absl::Status s = SetThreadsFromFlag(); !s.ok()) return Fail(s);
  absl::PrintF("meow train --sync: %s, %d env steps, run dir %s\n", config->env, config->total_env_steps,
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

// 40 bits of FNV-1a of the host name: a stable actor id per Kubernetes pod.
uint64_t ActorIdFromHostName() {
  char name[256] = {};
  gethostname(name, sizeof(name) - 1);
  uint64_t h = 1469598103934665603ull;
  for (const char* p = name; *p != 0; ++p) {
    h ^= static_cast<unsigned char>(*p);
    h *= 1099511628211ull;
  }
  return h & ((uint64_t{1} << 40) - 1);
}

// The --metrics_address page of an actor or evaluator process: its stats and RPC counts.
absl::StatusOr<std::unique_ptr<MetricsHttpServer>> StartProcessMetrics(std::function<void(PrometheusText&)> fill) {
  const std::string address = absl::GetFlag(FLAGS_metrics_address);
  if (address.empty()) return std::unique_ptr<MetricsHttpServer>();
  if (absl::Status s = CheckAddress("metrics_address", address); !s.ok()) return s;
  return MetricsHttpServer::Start(address, [fill = std::move(fill)] {
    PrometheusText text;
    fill(text);
    RpcMetrics::Global().AppendTo(text);
    return text.text();
  });
}

// Waits for the learner to answer, up to --connect_timeout.
absl::Status WaitForLearner(ParameterClient& client, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    auto response = client.Report(proto::ReportRequest(), absl::Seconds(1));
    if (response.ok()) return absl::OkStatus();
    if (absl::IsInvalidArgument(response.status()) || absl::Now() >= deadline) {
      return absl::UnavailableError(absl::StrCat("cannot reach the learner at ", client.address(), " within ",
                                                 absl::FormatDuration(timeout), ": ",
                                                 response.status().message()));
    }
    absl::SleepFor(absl::Milliseconds(250));
  }
}

absl::StatusOr<FlowPolicyConfig> PolicyFromFlags() {
  auto config = TrainConfigFromFlags();
  if (!config.ok()) return config.status();
  return config->policy;
}

int RunActorProcess() {
  auto policy = PolicyFromFlags();
  if (!policy.ok()) return Fail(policy.status());
  ActorConfig c;
  c.env = absl::GetFlag(FLAGS_env);
  c.policy = *policy;
  c.seed = absl::GetFlag(FLAGS_seed);
  c.replay_addresses = absl::GetFlag(FLAGS_replay);
  c.learner_address = absl::GetFlag(FLAGS_learner);
  if (c.replay_addresses.empty()) return Fail(absl::InvalidArgumentError("meow actor needs --replay=HOST:PORT[,...]"));
  if (c.learner_address.empty()) return Fail(absl::InvalidArgumentError("meow actor needs --learner=HOST:PORT"));
  for (const std::string& a : c.replay_addresses) {
    if (absl::Status s = CheckAddress("replay", a); !s.ok()) return Fail(s);
  }
  if (absl::Status s = CheckAddress("learner", c.learner_address); !s.ok()) return Fail(s);
  if (!absl::GetFlag(FLAGS_actor_id).has_value()) {
    return Fail(absl::InvalidArgumentError(
        "meow actor needs --actor_id=N, unique per actor of a run (two actors with one id are "
        "refused by replay), or --actor_id=-1 to take it from the host name"));
  }
  int64_t id = *absl::GetFlag(FLAGS_actor_id);
  if (id == -1) id = static_cast<int64_t>(ActorIdFromHostName());
  if (absl::Status s = CheckRange("actor_id", id, 0, int64_t{1} << 40); !s.ok()) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(s.message(), " (or -1: from the host name)")));
  }
  c.actor_id = static_cast<uint64_t>(id);
  c.num_envs = absl::GetFlag(FLAGS_envs_per_actor);
  if (absl::Status s = CheckRange("envs_per_actor", c.num_envs, 1, 4096); !s.ok()) return Fail(s);
  c.refresh_interval = absl::GetFlag(FLAGS_refresh_interval);
  if (absl::Status s = CheckRange("refresh_interval", c.refresh_interval, 1, 1'000'000); !s.ok()) return Fail(s);
  c.max_unacked_batches = absl::GetFlag(FLAGS_max_unacked_batches);
  if (absl::Status s = CheckRange("max_unacked_batches", c.max_unacked_batches, 1, 4096); !s.ok()) return Fail(s);
  if (absl::Status s = SetThreadsFromFlag(); !s.ok()) return Fail(s);
  auto env = MakeEnv(c.env);
  if (!env.ok()) return Fail(env.status());
  const absl::Duration timeout = absl::GetFlag(FLAGS_connect_timeout);
  if (absl::Status s = WaitForReplay(c.replay_addresses, (*env)->spec().obs_dim, (*env)->spec().action_dim, timeout);
      !s.ok()) {
    return Fail(s);
  }
  ParameterClient probe(c.learner_address);
  if (absl::Status s = WaitForLearner(probe, timeout); !s.ok()) return Fail(s);
  auto actor = Actor::Create(c);
  if (!actor.ok()) return Fail(actor.status());
  Actor* raw_actor = actor->get();
  auto metrics = StartProcessMetrics([raw_actor](PrometheusText& text) {
    const ActorStats st = raw_actor->stats();
    text.Counter("actor_env_steps_total", "Transitions produced.", st.env_steps);
    text.Counter("actor_episodes_total", "Episodes finished.", st.episodes);
    text.Gauge("actor_last_episode_return", "Return of the newest finished episode.", st.last_episode_return);
    text.Gauge("actor_policy_version", "Weight version acting (0: random actions).", st.policy_version);
    text.Counter("actor_weight_updates_total", "Newer weights loaded.", st.weight_updates);
    text.Counter("actor_fetch_errors_total", "Weight fetches that failed.", st.fetch_errors);
    text.Counter("actor_report_errors_total", "Episode reports that failed.", st.report_errors);
    text.Counter("actor_batches_total", "Transition batches queued for replay.", st.batches_queued);
    text.Counter("actor_simulator_warnings_total", "MuJoCo warnings.", st.simulator_warnings);
    text.Gauge("actor_acked_sequence_number",
               "Highest batch sequence number replay acknowledged (it holds every batch up to it).",
               static_cast<double>(st.replay.acked_sequence_number));
    text.Counter("actor_acked_batches_total", "Batches replay acknowledged (resends of stored ones included).",
                 st.replay.acked);
    text.Gauge("actor_unacked_batches", "Batches queued or in flight to replay.", st.replay.unacked);
    text.Counter("actor_replay_connects_total", "Insert streams opened to replay.", st.replay.connects);
  });
  if (!metrics.ok()) return Fail(metrics.status());
  InstallStopHandlers();
  absl::PrintF("meow actor %d: %s x %d, replay %s, learner %s\n", c.actor_id, c.env, c.num_envs,
               absl::StrJoin(c.replay_addresses, ","), c.learner_address);
  std::fflush(stdout);
  absl::Status status;
  std::atomic<bool> done{false};
  std::thread runner([&] {
    status = (*actor)->Run(g_stop);
    done.store(true);
  });
  absl::Time next_line = absl::Now() + absl::Seconds(10);
  while (!done.load()) {
    absl::SleepFor(absl::Milliseconds(100));
    if (absl::Now() >= next_line) {
      const ActorStats st = (*actor)->stats();
      absl::PrintF("actor %d: %d env steps, %d episodes (last return %.1f), policy version %d, "
                   "%d fetch errors\n", c.actor_id, st.env_steps, st.episodes, st.last_episode_return,
                   st.policy_version, st.fetch_errors);
      std::fflush(stdout);
      next_line += absl::Seconds(10);
    }
  }
  runner.join();
  if (!status.ok()) return Fail(status);
  const ActorStats st = (*actor)->stats();
  absl::PrintF("actor %d %s: %d env steps, %d episodes, policy version %d\n", c.actor_id,
               st.learner_done ? "done (training is over)" : "stopped", st.env_steps, st.episodes,
               st.policy_version);
  return 0;
}

int RunEvaluatorProcess() {
  auto config = TrainConfigFromFlags();
  if (!config.ok()) return Fail(config.status());
  EvaluatorConfig c;
  c.env = config->env;
  c.policy = config->policy;
  c.learner_address = absl::GetFlag(FLAGS_learner);
  if (absl::Status s = CheckAddress("learner", c.learner_address); !s.ok()) return Fail(s);
  c.interval = config->eval_interval;
  c.episodes = config->eval_episodes;
  if (absl::Status s = CheckRange("eval_episodes", c.episodes, 1, 1'000'000); !s.ok()) return Fail(s);
  c.deterministic = !absl::GetFlag(FLAGS_stochastic) && config->deterministic_eval;
  if (absl::Status s = SetThreadsFromFlag(); !s.ok()) return Fail(s);
  ParameterClient probe(c.learner_address);
  if (absl::Status s = WaitForLearner(probe, absl::GetFlag(FLAGS_connect_timeout)); !s.ok()) return Fail(s);
  auto evaluator = Evaluator::Create(c);
  if (!evaluator.ok()) return Fail(evaluator.status());
  Evaluator* raw_evaluator = evaluator->get();
  auto metrics = StartProcessMetrics([raw_evaluator](PrometheusText& text) {
    const EvaluatorStats st = raw_evaluator->stats();
    text.Counter("eval_evaluations_total", "Evaluations reported.", st.evaluations);
    text.Gauge("eval_return_mean", "Mean return of the newest evaluation.", st.last_mean);
    text.Gauge("eval_return_std", "Return spread of the newest evaluation.", st.last_std);
    text.Gauge("eval_env_steps", "Environment steps at the newest evaluation.", st.last_env_steps);
    text.Gauge("eval_policy_version", "Weight version of the newest evaluation.", st.last_version);
    text.Counter("eval_errors_total", "Learner calls that failed.", st.errors);
  });
  if (!metrics.ok()) return Fail(metrics.status());
  InstallStopHandlers();
  absl::PrintF("meow eval: %s, %d episodes every %d env steps, learner %s\n", c.env, c.episodes, c.interval,
               c.learner_address);
  std::fflush(stdout);
  absl::Status status;
  std::atomic<bool> done{false};
  std::thread runner([&] {
    status = (*evaluator)->Run(g_stop);
    done.store(true);
  });
  int64_t printed = 0;
  while (!done.load()) {
    absl::SleepFor(absl::Milliseconds(100));
    const EvaluatorStats st = (*evaluator)->stats();
    if (st.evaluations > printed) {
      printed = st.evaluations;
      absl::PrintF("eval at %d env steps (version %d): return %.2f +- %.2f\n", st.last_env_steps,
                   st.last_version, st.last_mean, st.last_std);
      std::fflush(stdout);
    }
  }
  runner.join();
  if (!status.ok()) return Fail(status);
  absl::PrintF("evaluator %s after %d evaluations\n", (*evaluator)->stats().learner_done ? "done" : "stopped",
               (*evaluator)->stats().evaluations);
  return 0;
}

int RunEval() {
  const std::string path = absl::GetFlag(FLAGS_policy);
  if (path.empty() && !absl::GetFlag(FLAGS_learner).empty()) return RunEvaluatorProcess();
  if (path.empty()) {
    return Fail(absl::InvalidArgumentError("meow eval needs --policy=FILE, or --learner=HOST:PORT to follow a run"));
  }
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
  const int64_t max_steps = absl::GetFlag(FLAGS_max_steps);
  if (max_steps < 0) {
    return Fail(absl::InvalidArgumentError(absl::StrCat("bad flag: --max_steps=", max_steps, ": expected >= 0")));
  }
  // Actions are sampled from a stream seeded by --seed, so a stochastic evaluation repeats.
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(absl::GetFlag(FLAGS_seed) + 100);
  auto summary = Evaluate(*policy, **env, episodes, deterministic, absl::GetFlag(FLAGS_seed), generator, max_steps);
  if (!summary.ok()) return Fail(summary.status());
  for (size_t i = 0; i < summary->episodes.size(); ++i) {
    const EpisodeResult& e = summary->episodes[i];
    absl::PrintF("episode %d: return %.2f, %d steps, %s\n", i, e.episode_return, e.length,
                 e.terminated ? "terminated" : "truncated or step limit");
  }
  absl::PrintF("%s, %d %s episodes: return %.2f +- %.2f\n", (*env)->spec().name, episodes,
               deterministic ? "deterministic" : "stochastic", summary->mean, summary->std);
  if ((*env)->spec().name == "MultiGoal-v0") {
    // Which goal each episode ended at: a multi-modal policy reaches all four.
    const MultiGoalCounts goals = CountMultiGoalEnds(*summary);
    absl::PrintF("goals reached: (+5,0) %d, (-5,0) %d, (0,+5) %d, (0,-5) %d; unfinished %d of %d\n",
                 goals.reached[0], goals.reached[1], goals.reached[2], goals.reached[3],
                 goals.unfinished, episodes);
  }
  return 0;
}

int RunReplayServer() {
  const std::string env_name = absl::GetFlag(FLAGS_env);
  auto env = MakeEnv(env_name);
  if (!env.ok()) return Fail(absl::NotFoundError(absl::StrCat("--env=", env_name, ": ", env.status().message())));
  auto preset = GetPreset(env_name);
  ReplayServerConfig config;
  config.address = absl::GetFlag(FLAGS_address).empty() ? "127.0.0.1:7777" : absl::GetFlag(FLAGS_address);
  if (absl::Status s = CheckAddress("address", config.address); !s.ok()) return Fail(s);
  config.table.obs_dim = (*env)->spec().obs_dim;
  config.table.action_dim = (*env)->spec().action_dim;
  config.table.capacity =
      absl::GetFlag(FLAGS_buffer_size).value_or(preset.ok() ? preset->buffer_size : 1'000'000);
  config.table.seed = absl::GetFlag(FLAGS_seed);
  const int64_t min_size = absl::GetFlag(FLAGS_min_replay_size);
  if (min_size < 1 || min_size > config.table.capacity) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "bad flag: --min_replay_size=", min_size, ": expected in [1, --buffer_size=", config.table.capacity,
        "]; replay could never hold enough to sample")));
  }
  if (auto ratio = absl::GetFlag(FLAGS_samples_per_insert); ratio.has_value()) {
    if (!(*ratio > 0) || !std::isfinite(*ratio)) {
      return Fail(absl::InvalidArgumentError(absl::StrCat(
          "bad flag: --samples_per_insert=", *ratio,
          ": expected a finite value > 0 (leave it unset to let sampling run free)")));
    }
    const double tolerance = absl::GetFlag(FLAGS_samples_per_insert_tolerance).value_or(std::max(*ratio, 1.0));
    if (!(tolerance > 0) || !std::isfinite(tolerance)) {
      return Fail(absl::InvalidArgumentError(absl::StrCat("bad flag: --samples_per_insert_tolerance=", tolerance,
                                                          ": expected a finite value > 0")));
    }
    config.table.rate_limiter = RateLimiterConfig::SampleToInsertRatio(*ratio, min_size, tolerance);
  } else {
    config.table.rate_limiter = RateLimiterConfig::MinSize(min_size);
  }
  config.persistence.directory = absl::GetFlag(FLAGS_replay_dir);
  config.persistence.fsync_before_ack = absl::GetFlag(FLAGS_fsync_before_ack);
  config.persistence.snapshot_interval = absl::GetFlag(FLAGS_snapshot_interval);
  config.metrics_address = absl::GetFlag(FLAGS_metrics_address);
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

int RunLoad() {
  const std::vector<std::string> replay = absl::GetFlag(FLAGS_replay);
  if (replay.size() != 1) {
    return Fail(absl::InvalidArgumentError("meow load needs exactly one --replay=HOST:PORT"));
  }
  if (absl::Status s = CheckAddress("replay", replay[0]); !s.ok()) return Fail(s);
  ReplayLoadConfig config;
  config.address = replay[0];
  config.streams = absl::GetFlag(FLAGS_streams);
  config.rows_per_batch = absl::GetFlag(FLAGS_rows_per_batch);
  config.samplers = absl::GetFlag(FLAGS_samplers);
  config.sample_batch_size = static_cast<int>(absl::GetFlag(FLAGS_batch_size).value_or(256));
  config.duration = absl::GetFlag(FLAGS_duration);
  config.first_actor_id = absl::GetFlag(FLAGS_first_actor_id);
  config.seed = absl::GetFlag(FLAGS_seed);
  config.report_interval = absl::Seconds(5);
  if (absl::Status s = config.Validate(); !s.ok()) {
    return Fail(absl::InvalidArgumentError(absl::StrCat("bad flag: ", s.message())));
  }
  absl::PrintF("meow load: %d insert streams of %d-row batches and %d sampler(s) against %s for %s\n",
               config.streams, config.rows_per_batch, config.samplers, config.address,
               absl::FormatDuration(config.duration));
  std::fflush(stdout);
  auto result = RunReplayLoad(config, [](const std::string& line) {
    absl::PrintF("%s\n", line);
    std::fflush(stdout);
  });
  if (!result.ok()) return Fail(result.status());
  absl::PrintF("result: %s\n", result->Summary());
  if (!result->ok()) {
    absl::FPrintF(stderr, "meow load: errors during the run; the first: %s\n", result->first_error);
    return 1;
  }
  if (result->stored_batches_of_load != result->batches_acked) {
    absl::FPrintF(stderr,
                  "meow load: replay stored %d batches of the load's actors but acknowledged %d: not exactly once\n",
                  result->stored_batches_of_load, result->batches_acked);
    return 1;
  }
  absl::PrintF("exactly once: replay stored %d batches for the %d streams, as many as it acknowledged\n",
               result->stored_batches_of_load, config.streams);
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
  if (command == "train" || command == "replay" || command == "learner" || command == "actor" ||
      command == "eval" || command == "load") {
    auto security = meow::LoadGrpcSecurity(absl::GetFlag(FLAGS_tls_cert), absl::GetFlag(FLAGS_tls_key),
                                           absl::GetFlag(FLAGS_tls_ca), absl::GetFlag(FLAGS_auth_token_file),
                                           absl::GetFlag(FLAGS_tls_server_name));
    if (!security.ok()) return meow::Fail(security.status());
    meow::SetProcessGrpcSecurity(*security);
  }
  if (command == "train") return meow::RunTrain();
  if (command == "eval") return meow::RunEval();
  if (command == "report") return meow::RunReport();
  if (command == "load") return meow::RunLoad();
  if (command == "replay") return meow::RunReplayServer();
  if (command == "learner") return meow::RunDistributed(/*local=*/false);
  if (command == "actor") return meow::RunActorProcess();
  if (command == "help") {
    std::fputs(meow::kUsage, stdout);
    return 0;
  }
  absl::FPrintF(stderr, "meow: unknown subcommand \"%s\"\n\n%s", command, meow::kUsage);
  return 2;
}
