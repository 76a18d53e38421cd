#include "learner/training.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <thread>
#include <utility>

#include <torch/utils.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "actor/actor_loop.h"
#include "actor/env_registry.h"
#include "actor/evaluator.h"
#include "actor/parameter_client.h"
#include "common/address.h"
#include "common/file_util.h"
#include "common/metrics_http.h"
#include "common/rpc_metrics.h"
#include "common/run_dir.h"
#include "learner/learner_loop.h"
#include "learner/parameter_server.h"
#include "learner/report.h"
#include "learner/run_metrics.h"
#include "replay/replay_client.h"
#include "replay/replay_server.h"

namespace meow {

absl::Status TrainConfig::Validate() const {
  if (absl::Status s = SyncTrainConfig::Validate(); !s.ok()) return s;
  for (auto [name, v] : {std::pair<const char*, int64_t>{"envs_per_actor", envs_per_actor},
                         {"actor_refresh_interval", actor_refresh_interval},
                         {"actor_steps_per_batch", actor_steps_per_batch},
                         {"actor_max_unacked_batches", actor_max_unacked_batches},
                         {"publish_interval", publish_interval},
                         {"checkpoint_interval", checkpoint_interval}}) {
    if (v <= 0) return absl::InvalidArgumentError(absl::StrCat(name, " must be > 0, got ", v));
  }
  if (learning_starts > buffer_size) {
    return absl::InvalidArgumentError(absl::StrCat("learning_starts (", learning_starts,
                                                   ") must not exceed buffer_size (", buffer_size,
                                                   "): replay could never hold enough to start"));
  }
  if (batch_size > buffer_size) {
    return absl::InvalidArgumentError(absl::StrCat("batch_size (", batch_size, ") must not exceed buffer_size (",
                                                   buffer_size, "): replay samples only once it holds a batch"));
  }
  if (local() && (actors < 1 || actors > 1024)) {
    return absl::InvalidArgumentError(absl::StrCat("actors must be in [1, 1024], got ", actors));
  }
  if (run_dir.empty()) return absl::InvalidArgumentError("run_dir must be set");
  if (rate_tolerance < 0) return absl::InvalidArgumentError("rate_tolerance must be >= 0");
  for (const std::string& a : replay_addresses) {
    if (absl::Status s = ValidateAddress("replay address", a); !s.ok()) return s;
  }
  return absl::OkStatus();
}

std::string DefaultRunDir(const std::string& env, uint64_t seed) { return absl::StrCat("runs/", env, "-seed", seed); }

namespace {

// A thread with its result.
struct Worker {
  std::thread thread;
  std::atomic<bool> finished{false};
  absl::Status status;  // written before `finished` is set
  std::string name;

  template <typename F>
  void Start(std::string worker_name, F body) {
    name = std::move(worker_name);
    thread = std::thread([this, body = std::move(body)]() mutable {
      status = body();
      finished.store(true);
    });
  }
  void Join() {
    if (thread.joinable()) thread.join();
  }
};

struct ReplayView {
  int64_t inserted = 0;
  int64_t size = 0;
  int64_t insert_waits = 0;
  int64_t sample_waits = 0;
  double insert_wait_s = 0;
  double sample_wait_s = 0;
  int64_t newest_policy_version = 0;  // highest over the shards
};

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
  std::error_code ec;
  std::filesystem::create_directories(config.run_dir, ec);
  if (ec)
    return absl::PermissionDeniedError(absl::StrCat("cannot create run dir ", config.run_dir, ": ", ec.message()));
  // One learner per run dir: a second would interleave checkpoints, metrics and weight versions.
  auto run_dir_lock = DirectoryLock::Acquire(config.run_dir, "run dir");
  if (!run_dir_lock.ok()) return run_dir_lock.status();
  if (absl::Status s = ClaimRunDir(config.run_dir, kDistributedRun, /*resumable=*/true); !s.ok()) return s;

  const double spi = config.samples_per_insert.value_or(static_cast<double>(config.batch_size));
  const double tolerance = config.rate_tolerance > 0 ? config.rate_tolerance : std::max(spi, 1.0);
  TrainResult result;

  // Replay: embedded (local mode) or the given shards.
  std::unique_ptr<ReplayServer> replay;
  std::vector<std::string> replay_addresses = config.replay_addresses;
  if (config.local()) {
    ReplayServerConfig rc;
    rc.address = "127.0.0.1:0";
    rc.table.obs_dim = static_cast<int>(config.policy.obs_dim);
    rc.table.action_dim = static_cast<int>(config.policy.action_dim);
    rc.table.capacity = config.buffer_size;
    rc.table.seed = config.seed;
    const int64_t min_size = std::max<int64_t>(config.learning_starts, config.batch_size);
    rc.table.rate_limiter = spi > 0 ? RateLimiterConfig::SampleToInsertRatio(spi, min_size, tolerance)
                                    : RateLimiterConfig::MinSize(min_size);
    rc.persistence.directory = config.run_dir + "/replay";
    rc.insert_timeout = absl::Seconds(10);
    auto started = StartReplayServer(rc);
    if (!started.ok()) {
      return absl::Status(started.status().code(), absl::StrCat("embedded replay (", rc.persistence.directory,
                                                                "): ", started.status().message()));
    }
    replay = *std::move(started);
    replay_addresses = {replay->address()};
  } else {
    if (absl::Status s = WaitForReplay(replay_addresses, static_cast<int>(config.policy.obs_dim),
                                       static_cast<int>(config.policy.action_dim), config.connect_timeout);
        !s.ok()) {
      return s;
    }
    // A replay that a finished run marked done takes transitions again for this one.
    for (const std::string& address : replay_addresses) {
      if (absl::Status s = SetReplayTrainingDone(address, false, 0, absl::Seconds(10)); !s.ok()) {
        return absl::Status(s.code(), absl::StrCat("replay at ", address, ": ", s.message()));
      }
    }
  }

  ParameterServerConfig pc;
  pc.address = config.address;
  FlowPolicy export_policy(config.policy);  // writes policy_latest / policy_best
  pc.evaluated_weight_shapes = ShapesOf(export_policy->ExportWeights());
  auto server_or = StartParameterServer(pc);
  if (!server_or.ok()) return server_or.status();
  std::unique_ptr<ParameterServer> server = *std::move(server_or);
  result.learner_address = server->address();
  TrainingBoard* board = server->board();

  {
    std::string resolved = absl::StrFormat(
        "env=%s\nmode=%s\nseed=%d\ndevice=%s\ntotal_env_steps=%d\nlearning_starts=%d\nbatch_size=%d\n"
        "buffer_size=%d\neval_interval=%d\neval_episodes=%d\ndeterministic_eval=%d\nalpha=%g\n"
        "sigma_max=%g\nsigma_min=%g\ngamma=%g\ntau=%g\nlr=%g\ngrad_clip=%g\nsamples_per_insert=%g\n"
        "rate_tolerance=%g\nreplay=%s\nlearner=%s\nactors=%d\nenvs_per_actor=%d\n"
        "publish_interval=%d\ncheckpoint_interval=%d\nrefresh_interval=%d\nmax_unacked_batches=%d\n",
        config.env, config.local() ? "local" : "learner", config.seed, device->str(), config.total_env_steps,
        config.learning_starts, config.batch_size, config.buffer_size, config.eval_interval, config.eval_episodes,
        config.deterministic_eval, config.policy.alpha, config.policy.sigma_max, config.policy.sigma_min,
        config.update.gamma, config.update.tau, config.update.lr, config.update.grad_clip, spi, tolerance,
        absl::StrJoin(replay_addresses, ","), server->address(), config.local() ? config.actors : 0,
        config.envs_per_actor, config.publish_interval, config.checkpoint_interval, config.actor_refresh_interval,
        config.actor_max_unacked_batches);
    if (absl::Status s = WriteFileAtomically(config.run_dir + "/config.txt", resolved); !s.ok()) return s;
  }
  auto writer_or = RunMetricsWriter::Open(config.run_dir);
  if (!writer_or.ok()) return writer_or.status();
  std::unique_ptr<RunMetricsWriter> writer = *std::move(writer_or);

  // The learner: network initialisation from the seed, or the newest checkpoint.
  torch::manual_seed(config.seed);
  LearnerConfig lc;
  lc.replay_addresses = replay_addresses;
  lc.policy = config.policy;
  lc.update = config.update;
  lc.batch_size = static_cast<int>(config.batch_size);
  lc.device = device->str();
  lc.run_dir = config.run_dir;
  lc.publish_interval = config.publish_interval;
  lc.checkpoint_interval = config.checkpoint_interval;
  auto learner_or = Learner::Create(lc, server->store());
  if (!learner_or.ok()) return learner_or.status();
  std::unique_ptr<Learner> learner = *std::move(learner_or);
  {
    const LearnerStats restored = learner->stats();
    result.restored_from = restored.restored_from;
    for (const std::string& problem : restored.checkpoint_problems) {
      absl::FPrintF(stderr, "meow: checkpoint skipped: %s\n", problem);
    }
    if (config.progress && !restored.restored_from.empty()) {
      absl::PrintF("resumed from %s (update %d, weight version %d)\n", restored.restored_from, restored.updates,
                   restored.version);
    }
  }

  std::atomic<bool> learner_stop{false}, actor_stop{false}, eval_stop{false};
  Worker learner_worker;
  learner_worker.Start("learner", [&] { return learner->Run(learner_stop); });

  std::vector<std::unique_ptr<Actor>> actors;
  std::vector<std::unique_ptr<Worker>> actor_workers;
  std::unique_ptr<Evaluator> evaluator;
  Worker eval_worker;
  auto stop_all = [&] {
    learner_stop.store(true);
    actor_stop.store(true);
    eval_stop.store(true);
    learner_worker.Join();
    for (auto& w : actor_workers) w->Join();
    eval_worker.Join();
  };
  if (config.local()) {
    for (int i = 0; i < config.actors; ++i) {
      ActorConfig ac;
      ac.env = config.env;
      ac.num_envs = config.envs_per_actor;
      ac.actor_id = static_cast<uint64_t>(i);
      ac.seed = config.seed;
      ac.replay_addresses = replay_addresses;
      ac.learner_address = server->address();
      ac.policy = config.policy;
      ac.refresh_interval = config.actor_refresh_interval;
      ac.steps_per_batch = config.actor_steps_per_batch;
      ac.max_unacked_batches = config.actor_max_unacked_batches;
      auto actor = Actor::Create(ac);
      if (!actor.ok()) {
        stop_all();
        return actor.status();
      }
      actors.push_back(*std::move(actor));
    }
    for (size_t i = 0; i < actors.size(); ++i) {
      auto w = std::make_unique<Worker>();
      Actor* actor = actors[i].get();
      w->Start(absl::StrCat("actor ", i), [actor, &actor_stop] { return actor->Run(actor_stop); });
      actor_workers.push_back(std::move(w));
    }
    if (config.evaluator && config.eval_episodes > 0) {
      EvaluatorConfig ec;
      ec.env = config.env;
      ec.learner_address = server->address();
      ec.policy = config.policy;
      ec.interval = config.eval_interval;
      ec.episodes = config.eval_episodes;
      ec.deterministic = config.deterministic_eval;
      auto made = Evaluator::Create(ec);
      if (!made.ok()) {
        stop_all();
        return made.status();
      }
      evaluator = *std::move(made);
      eval_worker.Start("evaluator", [&] { return evaluator->Run(eval_stop); });
    }
  }

  // The metrics loop; its newest row is also served in the Prometheus format.
  absl::Mutex latest_mu;
  std::map<std::string, double> latest_row;
  std::unique_ptr<MetricsHttpServer> metrics_server;
  if (!config.metrics_address.empty()) {
    ReplayServer* embedded = replay.get();
    Learner* live = learner.get();
    auto started = MetricsHttpServer::Start(config.metrics_address, [&latest_mu, &latest_row, embedded, live] {
      PrometheusText text;
      // Live figures (metrics.csv rows come every log_interval steps).
      const LearnerStats st = live->stats();
      text.Gauge("learner_version", "Weight version last published (never goes backwards, also across restarts).",
                 static_cast<double>(st.version));
      text.Counter("learner_updates_total", "Updates applied, restored ones included.",
                   static_cast<double>(st.updates));
      {
        absl::MutexLock lock(&latest_mu);
        for (const auto& [name, value] : latest_row) {
          text.Gauge(absl::StrCat("train_", name), absl::StrCat("metrics.csv column ", name, " (newest value)"), value);
        }
      }
      if (embedded != nullptr) {
        proto::InfoResponse info;
        *info.mutable_table() = embedded->table()->Info();
        *info.mutable_rate_limiter() = embedded->table()->RateLimiterState();
        AppendProtoNumbers(text, "replay", info);
      }
      RpcMetrics::Global().AppendTo(text);
      return text.text();
    });
    if (!started.ok()) {
      stop_all();
      return started.status();
    }
    metrics_server = *std::move(started);
  }
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  const bool tty = isatty(STDOUT_FILENO);
  ReplayView view;
  absl::Time next_info = absl::InfinitePast(), next_progress = absl::InfinitePast();
  int64_t next_row = 0;
  bool first = true;
  int64_t episodes = 0, window_episodes = 0;
  double window_return = 0, last_episode_mean = std::nan("");
  double last_eval_mean = std::nan(""), last_eval_std = std::nan("");
  int64_t last_eval_steps = -1;
  double window_time = 0;
  int64_t window_steps = 0, window_updates = 0;
  double sps = std::nan(""), ups = std::nan("");
  bool target_reached = false;
  absl::Status failure;

  // One channel per shard for the whole run (a new one per poll would reconnect, and handshake
  // TLS, four times a second); gRPC reconnects it when a shard comes back.
  std::vector<std::unique_ptr<proto::ReplayService::Stub>> info_stubs;
  for (const std::string& address : replay_addresses) {
    info_stubs.push_back(proto::ReplayService::NewStub(CreateChannel(address, 64 << 20)));
  }
  auto poll_replay = [&] {
    ReplayView sum;
    for (auto& stub : info_stubs) {
      grpc::ClientContext context;
      context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
      proto::InfoResponse info;
      if (!stub->Info(&context, proto::InfoRequest(), &info).ok()) return;  // keep the last view while a shard is away
      sum.inserted += info.table().inserted_transitions();
      sum.size += info.table().size();
      sum.insert_waits += info.rate_limiter().insert_waits();
      sum.sample_waits += info.rate_limiter().sample_waits();
      sum.insert_wait_s += info.rate_limiter().insert_wait_seconds();
      sum.sample_wait_s += info.rate_limiter().sample_wait_seconds();
      sum.newest_policy_version = std::max(sum.newest_policy_version, info.table().newest_policy_version());
    }
    view = sum;
  };
  // A periodic row (eval columns empty) or an evaluation's row (only the eval columns and the
  // counters), so every series stays in order of environment steps.
  auto write_row = [&](int64_t env_steps, double eval_mean, double eval_std) -> absl::Status {
    const LearnerStats ls = learner->stats();
    const bool eval_row = std::isfinite(eval_mean);
    const bool updated = ls.updates > 0 && !eval_row;
    const double nan = std::nan("");
    auto periodic = [&](double v) { return eval_row ? nan : v; };
    // How many updates behind the learner the newest data in replay was made (nan while it is
    // all random).
    const std::optional<int64_t> lag = learner->UpdatesBehind(view.newest_policy_version);
    std::vector<std::pair<std::string, double>> row = {
        {"wall_time", writer->wall_offset() + elapsed()},
        {"env_steps", static_cast<double>(env_steps)},
        {"updates", static_cast<double>(ls.updates)},
        {"episodes", static_cast<double>(episodes)},
        {"episode_return", periodic(last_episode_mean)},
        {"eval_return_mean", eval_mean},
        {"eval_return_std", eval_std},
        {"loss", updated ? ls.last_update.loss : nan},
        {"q_mean", updated ? ls.last_update.q_mean : nan},
        {"v_mean", updated ? ls.last_update.v_mean : nan},
        {"grad_norm", updated ? ls.last_update.grad_norm : nan},
        {"skipped_updates", periodic(static_cast<double>(ls.skipped))},
        {"steps_per_s", periodic(sps)},
        {"updates_per_s", periodic(ups)},
        {"staleness", updated ? ls.mean_staleness : nan},
        {"version", static_cast<double>(ls.version)},
        {"replay_size", periodic(static_cast<double>(view.size))},
        {"insert_waits", periodic(static_cast<double>(view.insert_waits))},
        {"sample_waits", periodic(static_cast<double>(view.sample_waits))},
        {"insert_wait_s", periodic(view.insert_wait_s)},
        {"sample_wait_s", periodic(view.sample_wait_s)},
        {"acting_lag", periodic(lag.has_value() ? static_cast<double>(*lag) : nan)}};
    {
      absl::MutexLock lock(&latest_mu);
      for (const auto& [name, value] : row) {
        if (std::isfinite(value)) latest_row[name] = value;
      }
    }
    return writer->Row(std::map<std::string, double>(row.begin(), row.end()), env_steps);
  };
  auto save_latest = [&]() -> absl::Status {
    auto latest = server->store()->Latest();
    if (latest == nullptr) return absl::OkStatus();
    auto weights = DecodePolicyWeights(*latest);
    if (!weights.ok()) return weights.status();
    if (absl::Status s = export_policy->ImportWeights(weights->weights); !s.ok()) return s;
    return export_policy->SaveSafetensors(config.run_dir + "/policy_latest.safetensors");
  };
  auto take_reports = [&]() -> absl::Status {
    for (const proto::Episode& e : board->TakeEpisodes()) {
      ++episodes;
      ++window_episodes;
      window_return += e.episode_return();
    }
    for (EvaluationRecord& record : board->TakeEvaluations()) {
      result.evals.push_back({record.env_steps, record.mean, record.std});
      last_eval_mean = record.mean;
      last_eval_std = record.std;
      last_eval_steps = std::max(last_eval_steps, record.env_steps);
      if (absl::Status s = write_row(record.env_steps, record.mean, record.std); !s.ok()) return s;
      if (absl::Status s = save_latest(); !s.ok()) return s;
      if (record.mean > writer->best_eval() && !record.weights.tensors.empty()) {
        // The service checked names, shapes and values; should the weights still not import,
        // the report is dropped (policy_best stays as it is) and training goes on.
        if (absl::Status s = export_policy->ImportWeights(record.weights); !s.ok()) {
          absl::FPrintF(stderr, "meow: evaluation from %s ignored: its weights do not fit the policy: %s\n",
                        record.source, s.message());
          continue;
        }
        if (absl::Status s = export_policy->SaveSafetensors(config.run_dir + "/policy_best.safetensors"); !s.ok())
          return s;
        writer->set_best_eval(record.mean);
      }
      if (config.stop_at_eval_return.has_value() && record.mean >= *config.stop_at_eval_return) {
        target_reached = true;
      }
    }
    return absl::OkStatus();
  };
  auto print_progress = [&](bool final_line) {
    if (!config.progress) return;
    const LearnerStats ls = learner->stats();
    const double rate = std::isfinite(sps) && sps > 0 ? sps : 0;
    const double eta = rate > 0 ? (config.total_env_steps - view.inserted) / rate : NAN;
    absl::PrintF(
        "%s[%s] steps %d/%d  updates %d  %.0f steps/s  %.0f updates/s  version %d  "
        "episode %.1f  eval %.1f  replay %d  ETA %s%s",
        tty ? "\r\033[K" : "", config.env, view.inserted, config.total_env_steps, ls.updates,
        std::isfinite(sps) ? sps : 0.0, std::isfinite(ups) ? ups : 0.0, ls.version, last_episode_mean, last_eval_mean,
        view.size, final_line ? std::string("-") : FormatDuration(eta), tty && !final_line ? "" : "\n");
    std::fflush(stdout);
  };

  while (true) {
    const absl::Time now = absl::Now();
    if (now >= next_info) {
      poll_replay();
      next_info = now + absl::Milliseconds(250);
    }
    const LearnerStats ls = learner->stats();
    learner->set_env_steps(view.inserted);
    board->SetProgress({view.inserted, ls.updates, ls.version, config.total_env_steps});
    if (absl::Status s = take_reports(); !s.ok()) {
      failure = s;
      break;
    }
    if (first) {
      first = false;
      next_row = (view.inserted / config.log_interval + 1) * config.log_interval;
      window_time = elapsed();
      window_steps = view.inserted;
      window_updates = ls.updates;
    }
    if (view.inserted >= next_row) {
      const double t = elapsed();
      if (t > window_time) {
        sps = (view.inserted - window_steps) / (t - window_time);
        ups = (ls.updates - window_updates) / (t - window_time);
      }
      window_time = t;
      window_steps = view.inserted;
      window_updates = ls.updates;
      if (window_episodes > 0) last_episode_mean = window_return / window_episodes;
      window_episodes = 0;
      window_return = 0;
      if (absl::Status s = write_row(view.inserted, std::nan(""), std::nan("")); !s.ok()) {
        failure = s;
        break;
      }
      next_row = (view.inserted / config.log_interval + 1) * config.log_interval;
      if (!tty) print_progress(false);
    }
    if (tty && now >= next_progress) {
      print_progress(false);
      next_progress = now + absl::Seconds(1);
    }
    if (learner_worker.finished.load()) {
      failure =
          learner_worker.status.ok() ? absl::InternalError("the learner loop ended early") : learner_worker.status;
      break;
    }
    for (auto& w : actor_workers) {
      if (w->finished.load() && !w->status.ok())
        failure = absl::Status(w->status.code(), absl::StrCat(w->name, ": ", w->status.message()));
    }
    if (eval_worker.finished.load() && !eval_worker.status.ok())
      failure = absl::Status(eval_worker.status.code(), absl::StrCat("evaluator: ", eval_worker.status.message()));
    if (!failure.ok()) break;
    if (stop.load()) {
      result.interrupted = true;
      break;
    }
    if (view.inserted >= config.total_env_steps || target_reached) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  if (tty && config.progress) absl::PrintF("\n");

  // Shut down in order: the learner's final weights and checkpoint, then "done" for actors and
  // the evaluator, the final evaluation, the last rows.
  learner_stop.store(true);
  learner_worker.Join();
  if (failure.ok() && !learner_worker.status.ok()) failure = learner_worker.status;
  poll_replay();
  const LearnerStats final_stats = learner->stats();
  board->SetProgress({view.inserted, final_stats.updates, final_stats.version, config.total_env_steps});
  board->SetDone();
  if (!config.local() && failure.ok() && !result.interrupted) {
    // Replay carries "done" to actors that do not ask the learner in time (held by the rate
    // limiter, or after this process has exited): their inserts end with OUT_OF_RANGE.
    for (const std::string& address : replay_addresses) {
      if (absl::Status s = SetReplayTrainingDone(address, true, view.inserted, absl::Seconds(5)); !s.ok()) {
        absl::FPrintF(stderr, "meow: could not tell replay at %s that training is over: %s\n", address, s.message());
      }
    }
  }
  if (!failure.ok() || result.interrupted) eval_stop.store(true);
  actor_stop.store(true);
  for (auto& w : actor_workers) {
    w->Join();
    if (failure.ok() && !w->status.ok())
      failure = absl::Status(w->status.code(), absl::StrCat(w->name, ": ", w->status.message()));
  }
  eval_worker.Join();
  if (failure.ok() && !eval_worker.status.ok())
    failure = absl::Status(eval_worker.status.code(), absl::StrCat("evaluator: ", eval_worker.status.message()));
  if (!config.local() && failure.ok() && !result.interrupted && board->evaluations_received() > 0 &&
      last_eval_steps < view.inserted) {
    // The evaluator process evaluates the final weights once it hears "done": wait for it.
    board->WaitForEvaluation(absl::Now() + config.final_eval_wait);
  }
  if (failure.ok()) {
    if (absl::Status s = take_reports(); !s.ok()) failure = s;
  }
  if (failure.ok()) {
    if (window_episodes > 0) last_episode_mean = window_return / window_episodes;
    if (absl::Status s = write_row(view.inserted, std::nan(""), std::nan("")); !s.ok()) failure = s;
  }
  if (failure.ok()) {
    if (absl::Status s = save_latest(); !s.ok()) failure = s;
  }
  if (!config.local() && !result.interrupted) absl::SleepFor(config.linger);  // actors hear "done"
  for (auto& actor : actors) result.actor_versions.push_back(actor->stats().policy_version);
  if (config.progress) print_progress(true);
  server->Shutdown();
  if (replay != nullptr) replay->Shutdown();
  if (!failure.ok()) return failure;
  result.env_steps = view.inserted;
  result.updates = final_stats.updates;
  result.skipped_updates = final_stats.skipped;
  result.version = final_stats.version;
  result.seconds = elapsed();
  return result;
}

}  // namespace meow
