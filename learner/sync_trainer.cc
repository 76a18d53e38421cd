#include "learner/sync_trainer.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <optional>
#include <random>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/cuda.h>
#include <torch/utils.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "actor/env_registry.h"
#include "actor/evaluate.h"
#include "common/file_util.h"
#include "common/run_dir.h"
#include "learner/meow_update.h"
#include "learner/run_metrics.h"
#include "replay/transition_store.h"

namespace meow {

absl::Status SyncTrainConfig::Validate() const {
  if (total_env_steps <= 0)
    return absl::InvalidArgumentError(absl::StrCat("total_env_steps must be > 0, got ", total_env_steps));
  if (learning_starts < 0)
    return absl::InvalidArgumentError(absl::StrCat("learning_starts must be >= 0, got ", learning_starts));
  if (batch_size <= 0) return absl::InvalidArgumentError(absl::StrCat("batch_size must be > 0, got ", batch_size));
  if (buffer_size <= 0) return absl::InvalidArgumentError(absl::StrCat("buffer_size must be > 0, got ", buffer_size));
  if (eval_interval <= 0)
    return absl::InvalidArgumentError(absl::StrCat("eval_interval must be > 0, got ", eval_interval));
  if (eval_episodes < 0)
    return absl::InvalidArgumentError(absl::StrCat("eval_episodes must be >= 0, got ", eval_episodes));
  if (log_interval <= 0)
    return absl::InvalidArgumentError(absl::StrCat("log_interval must be > 0, got ", log_interval));
  return update.Validate();
}

absl::StatusOr<c10::Device> ResolveDevice(const std::string& device) {
  if (device == "cpu") return c10::Device(c10::kCPU);
  const bool cuda = torch::cuda::is_available();
  if (device == "auto") return cuda ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  if (device == "cuda") {
    if (!cuda) {
      return absl::FailedPreconditionError(
          "--device=cuda: this LibTorch has no CUDA support or no CUDA device is present");
    }
    return c10::Device(c10::kCUDA, 0);
  }
  return absl::InvalidArgumentError(absl::StrCat("--device=", device, ": expected cpu, cuda or auto"));
}

SyncTrainConfig ConfigFromPreset(const TaskPreset& preset) {
  SyncTrainConfig c;
  c.env = preset.env;
  c.policy.alpha = preset.alpha;
  c.policy.sigma_max = preset.sigma_max;
  c.policy.sigma_min = preset.sigma_min;
  c.update.gamma = preset.gamma;
  c.update.tau = preset.tau;
  c.update.lr = preset.lr;
  c.update.grad_clip = preset.grad_clip;
  c.total_env_steps = preset.total_env_steps;
  c.learning_starts = preset.learning_starts;
  c.batch_size = preset.batch_size;
  c.buffer_size = preset.buffer_size;
  c.eval_interval = preset.eval_interval;
  c.eval_episodes = preset.eval_episodes;
  c.deterministic_eval = preset.deterministic_eval;
  return c;
}

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(seconds);
  if (s >= 3600) return absl::StrFormat("%dh%02dm", s / 3600, (s / 60) % 60);
  if (s >= 60) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%ds", s);
}

absl::StatusOr<SyncTrainResult> TrainSync(const SyncTrainConfig& input) {
  if (absl::Status s = input.Validate(); !s.ok()) return s;
  SyncTrainConfig config = input;
  auto env_or = MakeEnv(config.env);
  if (!env_or.ok()) return env_or.status();
  std::unique_ptr<Env> env = *std::move(env_or);
  auto eval_env_or = MakeEnv(config.env);
  if (!eval_env_or.ok()) return eval_env_or.status();
  std::unique_ptr<Env> eval_env = *std::move(eval_env_or);
  const int obs_dim = env->spec().obs_dim, action_dim = env->spec().action_dim;
  config.policy.obs_dim = obs_dim;
  config.policy.action_dim = action_dim;
  auto device = ResolveDevice(config.device);
  if (!device.ok()) return device.status();

  torch::manual_seed(config.seed);  // network initialisation
  auto updater_or = MeowUpdater::Create(config.policy, config.update, *device);
  if (!updater_or.ok()) return updater_or.status();
  SyncTrainResult result;
  result.updater = *std::move(updater_or);
  MeowUpdater& updater = *result.updater;
  FlowPolicyImpl& policy = *updater.policy();
  at::Generator action_gen = at::make_generator<at::CPUGeneratorImpl>(config.seed + 1);
  std::optional<at::Generator> gen;
  if (device->is_cpu()) gen = action_gen;
  std::mt19937_64 rng(config.seed + 2);
  TransitionStore store(obs_dim, action_dim, std::min(config.buffer_size, config.total_env_steps));

  std::unique_ptr<RunMetricsWriter> metrics;  // the schema local mode writes
  std::optional<DirectoryLock> run_dir_lock;  // one process per run dir
  if (!config.run_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(config.run_dir, ec);
    if (ec)
      return absl::PermissionDeniedError(absl::StrCat("cannot create --run_dir=", config.run_dir, ": ", ec.message()));
    auto lock = DirectoryLock::Acquire(config.run_dir, "run dir");
    if (!lock.ok()) return lock.status();
    run_dir_lock.emplace(*std::move(lock));
    if (absl::Status s = ClaimRunDir(config.run_dir, kSyncRun, /*resumable=*/false); !s.ok()) return s;
    std::string resolved = absl::StrFormat(
        "env=%s\nseed=%d\ndevice=%s\ntotal_env_steps=%d\nlearning_starts=%d\nbatch_size=%d\n"
        "buffer_size=%d\neval_interval=%d\neval_episodes=%d\ndeterministic_eval=%d\nalpha=%g\n"
        "sigma_max=%g\nsigma_min=%g\ngamma=%g\ntau=%g\nlr=%g\ngrad_clip=%g\n",
        config.env, config.seed, device->str(), config.total_env_steps, config.learning_starts, config.batch_size,
        config.buffer_size, config.eval_interval, config.eval_episodes, config.deterministic_eval, config.policy.alpha,
        config.policy.sigma_max, config.policy.sigma_min, config.update.gamma, config.update.tau, config.update.lr,
        config.update.grad_clip);
    if (absl::Status s = WriteFileAtomically(config.run_dir + "/config.txt", resolved); !s.ok()) return s;
    auto writer = RunMetricsWriter::Open(config.run_dir);
    if (!writer.ok()) return writer.status();
    metrics = *std::move(writer);
  }

  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  const bool tty = isatty(STDOUT_FILENO);

  std::vector<float> obs(obs_dim), next_obs(obs_dim), action(action_dim);
  auto copy_obs = [&](std::vector<float>& dst) {
    auto src = env->Observation();
    for (int i = 0; i < obs_dim; ++i) dst[i] = static_cast<float>(src[i]);
  };
  if (absl::Status s = env->Reset(config.seed); !s.ok()) return s;
  copy_obs(obs);

  auto options = at::TensorOptions().dtype(at::kFloat);
  Batch host{at::empty({config.batch_size, obs_dim}, options), at::empty({config.batch_size, action_dim}, options),
             at::empty({config.batch_size}, options), at::empty({config.batch_size, obs_dim}, options),
             at::empty({config.batch_size}, options)};
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  double episode_return = 0, last_episode_return = NAN, best_eval = -INFINITY;
  int64_t episodes = 0;
  UpdateStats last_stats;
  EvalPoint last_eval{0, NAN, NAN};
  double last_log_time = 0;
  int64_t last_log_steps = 0, last_log_updates = 0;

  for (int64_t t = 0; t < config.total_env_steps; ++t) {
    if (t < config.learning_starts) {
      for (float& a : action) a = uniform(rng);
    } else {
      torch::NoGradGuard no_grad;
      const at::Tensor a = policy
                               .Sample(ObservationTensor(env->Observation(), *device),
                                       /*deterministic=*/false, gen)
                               .action.to(at::kCPU);
      std::copy(a.data_ptr<float>(), a.data_ptr<float>() + action_dim, action.begin());
    }
    auto step = env->Step(action);
    if (!step.ok()) return step.status();
    copy_obs(next_obs);  // the final observation on truncation, as the reference stores
    store.Add(obs, action, static_cast<float>(step->reward), next_obs, step->terminated);
    episode_return += step->reward;
    if (step->terminated || step->truncated) {
      last_episode_return = episode_return;
      episode_return = 0;
      ++episodes;
      if (absl::Status s = env->Reset(std::nullopt); !s.ok()) return s;
      copy_obs(obs);
    } else {
      obs.swap(next_obs);
    }

    if (t >= config.learning_starts) {
      store.Sample(config.batch_size, rng, host.obs.data_ptr<float>(), host.action.data_ptr<float>(),
                   host.reward.data_ptr<float>(), host.next_obs.data_ptr<float>(), host.terminated.data_ptr<float>());
      Batch batch = host;
      if (!device->is_cpu()) {
        batch = Batch{host.obs.to(*device), host.action.to(*device), host.reward.to(*device), host.next_obs.to(*device),
                      host.terminated.to(*device)};
      }
      auto stats = updater.Step(batch);
      if (!stats.ok()) return stats.status();
      last_stats = *stats;
    }

    const int64_t steps_done = t + 1;
    if (steps_done % config.eval_interval == 0 && steps_done > config.learning_starts && config.eval_episodes > 0) {
      auto summary = Evaluate(policy, *eval_env, config.eval_episodes, config.deterministic_eval,
                              /*seed_base=*/0, gen);
      if (!summary.ok()) return summary.status();
      last_eval = {steps_done, summary->mean, summary->std};
      result.evals.push_back(last_eval);
      if (metrics != nullptr) {
        // An evaluation's row: the eval columns and the counters, as local mode writes it.
        absl::Status s = metrics->Row({{"wall_time", elapsed()},
                                       {"env_steps", static_cast<double>(steps_done)},
                                       {"updates", static_cast<double>(updater.steps())},
                                       {"episodes", static_cast<double>(episodes)},
                                       {"eval_return_mean", summary->mean},
                                       {"eval_return_std", summary->std},
                                       {"version", static_cast<double>(updater.steps())}},
                                      steps_done);
        if (!s.ok()) return s;
      }
      if (!config.run_dir.empty()) {
        if (absl::Status s = policy.SaveSafetensors(config.run_dir + "/policy_latest.safetensors"); !s.ok()) return s;
        if (summary->mean > best_eval) {
          best_eval = summary->mean;
          if (absl::Status s = policy.SaveSafetensors(config.run_dir + "/policy_best.safetensors"); !s.ok()) return s;
        }
      }
    }

    if (steps_done % config.log_interval == 0 || steps_done == config.total_env_steps) {
      const double now = elapsed();
      const double dt = std::max(now - last_log_time, 1e-9);
      const double sps = (steps_done - last_log_steps) / dt;
      const double ups = (updater.steps() + updater.skipped_steps() - last_log_updates) / dt;
      last_log_time = now;
      last_log_steps = steps_done;
      last_log_updates = updater.steps() + updater.skipped_steps();
      if (metrics != nullptr) {
        // A periodic row. Update statistics are empty until the first update. The weights act
        // as soon as they are updated (version = updates, acting lag 0 once learning started);
        // there is no rate limiter to wait on and no staleness recorded per row.
        const bool updated = updater.steps() + updater.skipped_steps() > 0;
        const double nan = std::numeric_limits<double>::quiet_NaN();
        absl::Status s = metrics->Row({{"wall_time", now},
                                       {"env_steps", static_cast<double>(steps_done)},
                                       {"updates", static_cast<double>(updater.steps())},
                                       {"episodes", static_cast<double>(episodes)},
                                       {"episode_return", last_episode_return},
                                       {"loss", updated ? last_stats.loss : nan},
                                       {"q_mean", updated ? last_stats.q_mean : nan},
                                       {"v_mean", updated ? last_stats.v_mean : nan},
                                       {"grad_norm", updated ? last_stats.grad_norm : nan},
                                       {"skipped_updates", static_cast<double>(updater.skipped_steps())},
                                       {"steps_per_s", sps},
                                       {"updates_per_s", ups},
                                       {"version", static_cast<double>(updater.steps())},
                                       {"replay_size", static_cast<double>(store.size())},
                                       {"insert_waits", 0},
                                       {"sample_waits", 0},
                                       {"insert_wait_s", 0},
                                       {"sample_wait_s", 0},
                                       {"acting_lag", updated ? 0 : nan}},
                                      steps_done);
        if (!s.ok()) return s;
      }
      if (config.progress) {
        // The recent rate: warm-up steps (no updates) run far faster than the rest.
        const double eta = (config.total_env_steps - steps_done) / std::max(sps, 1e-9);
        absl::PrintF(
            "%s[%s] steps %d/%d  updates %d  %.0f steps/s  %.0f updates/s  episode return %.1f  "
            "eval %.1f  loss %.3g  skipped %d  ETA %s%s",
            tty ? "\r\033[K" : "", config.env, steps_done, config.total_env_steps, updater.steps(), sps, ups,
            last_episode_return, last_eval.mean, last_stats.loss, updater.skipped_steps(), FormatDuration(eta),
            tty ? "" : "\n");
        std::fflush(stdout);
      }
    }
  }
  if (config.progress && tty) absl::PrintF("\n");
  if (!config.run_dir.empty()) {
    if (absl::Status s = policy.SaveSafetensors(config.run_dir + "/policy_latest.safetensors"); !s.ok()) return s;
  }
  result.updates = updater.steps();
  result.skipped_updates = updater.skipped_steps();
  result.seconds = elapsed();
  return result;
}

}  // namespace meow
