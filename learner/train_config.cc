#include "learner/train_config.h"

#include <utility>

#include <torch/cuda.h>

#include "absl/strings/str_cat.h"
#include "actor/acting_policy.h"
#include "absl/strings/str_format.h"
#include "common/address.h"

namespace meow {

absl::Status TrainSettings::Validate() const {
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
  if (eval_max_steps < 0)
    return absl::InvalidArgumentError(absl::StrCat("eval_max_steps must be >= 0, got ", eval_max_steps));
  if (log_interval <= 0)
    return absl::InvalidArgumentError(absl::StrCat("log_interval must be > 0, got ", log_interval));
  if (absl::Status s = ValidateAlgorithm(algo); !s.ok()) return s;
  if (algo == "sac") return sac.Validate();
  if (algo == "sql") return sql.Validate();
  return update.Validate();
}

absl::Status TrainConfig::Validate() const {
  if (absl::Status s = TrainSettings::Validate(); !s.ok()) return s;
  for (auto [name, v] : {std::pair<const char*, int64_t>{"envs_per_actor", envs_per_actor},
                         {"actor_refresh_interval", actor_refresh_interval},
                         {"actor_steps_per_batch", actor_steps_per_batch},
                         {"actor_max_unacked_batches", actor_max_unacked_batches},
                         {"publish_interval", publish_interval},
                         {"checkpoint_interval", checkpoint_interval}}) {
    if (v <= 0) return absl::InvalidArgumentError(absl::StrCat(name, " must be > 0, got ", v));
  }
  if ((algo == "cnf" || algo == "bc") && !offline()) {
    return absl::InvalidArgumentError(absl::StrCat("--algo=", algo, " trains offline: meow train --offline --dataset=FILE --algo=", algo));
  }
  if (algo == "cnf") {
    if (absl::Status s = cnf.Validate(); !s.ok()) return s;
    if (flow_epochs < 1) return absl::InvalidArgumentError(absl::StrCat("flow_epochs must be >= 1, got ", flow_epochs));
  }
  if (offline() && !local()) {
    return absl::InvalidArgumentError("offline training runs in local mode (meow train --offline), not with --replay");
  }
  if (!offline() && learning_starts > buffer_size) {
    return absl::InvalidArgumentError(absl::StrCat("learning_starts (", learning_starts,
                                                   ") must not exceed buffer_size (", buffer_size,
                                                   "): replay could never hold enough to start"));
  }
  if (!offline() && batch_size > buffer_size) {
    return absl::InvalidArgumentError(absl::StrCat("batch_size (", batch_size, ") must not exceed buffer_size (",
                                                   buffer_size, "): replay samples only once it holds a batch"));
  }
  if (local() && !offline() && (actors < 1 || actors > 1024)) {
    return absl::InvalidArgumentError(absl::StrCat("actors must be in [1, 1024], got ", actors));
  }
  if (run_dir.empty()) return absl::InvalidArgumentError("run_dir must be set");
  if (rate_tolerance < 0) return absl::InvalidArgumentError("rate_tolerance must be >= 0");
  for (const std::string& a : replay_addresses) {
    if (absl::Status s = ValidateAddress("replay address", a); !s.ok()) return s;
  }
  return absl::OkStatus();
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

TrainSettings ConfigFromPreset(const TaskPreset& preset) {
  TrainSettings c;
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
  c.eval_max_steps = preset.eval_max_steps;
  return c;
}

TrainSettings SqlConfigFromPreset(const TaskPreset& preset, bool* no_scale) {
  TrainSettings c = ConfigFromPreset(preset);
  c.algo = "sql";
  c.learning_starts = preset.sql_learning_starts;
  if (preset.sql_total_env_steps > 0) c.total_env_steps = preset.sql_total_env_steps;
  c.deterministic_eval = false;  // both SQL codes evaluate with sampled actions
  if (preset.sql_reward_scale > 0) c.sql.reward_scale = preset.sql_reward_scale;
  if (no_scale != nullptr) *no_scale = !(preset.sql_reward_scale > 0);
  return c;
}

std::vector<std::pair<std::string, std::string>> SettingsLines(const TrainSettings& s, const std::string& mode,
                                                               const c10::Device& device) {
  auto g = [](double v) { return absl::StrFormat("%g", v); };
  std::vector<std::pair<std::string, std::string>> lines = {{"env", s.env}};
  // MEow's config.txt keeps its earlier lines; another algorithm's says which it is.
  if (s.algo != "meow") lines.emplace_back("algo", s.algo);
  lines.insert(lines.end(), {{"mode", mode},
                             {"seed", absl::StrCat(s.seed)},
                             {"device", device.str()},
                             {"total_env_steps", absl::StrCat(s.total_env_steps)},
                             {"learning_starts", absl::StrCat(s.learning_starts)},
                             {"batch_size", absl::StrCat(s.batch_size)},
                             {"buffer_size", absl::StrCat(s.buffer_size)},
                             {"eval_interval", absl::StrCat(s.eval_interval)},
                             {"eval_episodes", absl::StrCat(s.eval_episodes)},
                             {"deterministic_eval", absl::StrCat(s.deterministic_eval ? 1 : 0)},
                             {"eval_max_steps", absl::StrCat(s.eval_max_steps)}});
  if (s.algo == "sac") {
    lines.insert(lines.end(), {{"gamma", g(s.sac.gamma)},
                               {"tau", g(s.sac.tau)},
                               {"policy_lr", g(s.sac.policy_lr)},
                               {"q_lr", g(s.sac.q_lr)},
                               {"policy_frequency", absl::StrCat(s.sac.policy_frequency)},
                               {"autotune", absl::StrCat(s.sac.autotune ? 1 : 0)},
                               {"alpha", s.sac.autotune ? "autotuned from 1" : g(s.sac.alpha)}});
    return lines;
  }
  if (s.algo == "sql") {
    lines.insert(lines.end(), {{"gamma", g(s.sql.gamma)},
                               {"tau", g(s.sql.tau)},
                               {"policy_lr", g(s.sql.policy_lr)},
                               {"q_lr", g(s.sql.q_lr)},
                               {"reward_scale", g(s.sql.reward_scale)},
                               {"value_particles", absl::StrCat(s.sql.value_particles)},
                               {"svgd_particles", absl::StrCat(s.sql.svgd_particles)},
                               {"kernel_bandwidth", s.sql.kernel_bandwidth},
                               {"particle_draws", s.sql.particle_draws},
                               {"value_draws", s.sql.value_draws}});
    return lines;
  }
  // The offline algorithms' own settings follow in the run's config (TrainConfig); MEow's are not theirs.
  if (s.algo == "cnf" || s.algo == "bc") return lines;
  lines.insert(lines.end(), {{"alpha", g(s.policy.alpha)},
                             {"sigma_max", g(s.policy.sigma_max)},
                             {"sigma_min", g(s.policy.sigma_min)},
                             {"gamma", g(s.update.gamma)},
                             {"tau", g(s.update.tau)},
                             {"lr", g(s.update.lr)},
                             {"grad_clip", g(s.update.grad_clip)},
                             {"learner_threads", absl::StrCat(s.update.threads)}});
  if (device.is_cuda() && s.algo == "meow") {
    lines.insert(lines.end(), {{"cuda_graph", s.update.graph.capture ? "true" : "false"},
                               {"updates_per_graph", absl::StrCat(s.update.graph.updates_per_launch)}});
  }
  return lines;
}

}  // namespace meow
