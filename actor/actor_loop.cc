#include "actor/actor_loop.h"

#include <cmath>
#include <random>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/utils.h>

#include "absl/strings/str_cat.h"
#include "common/address.h"
#include "common/tensor_codec.h"

namespace meow {

absl::Status ActorConfig::Validate() const {
  if (num_envs < 1) return absl::InvalidArgumentError(absl::StrCat("num_envs must be >= 1, got ", num_envs));
  if (replay_addresses.empty()) return absl::InvalidArgumentError("at least one replay address is needed");
  if (learner_address.empty()) return absl::InvalidArgumentError("a learner address is needed");
  for (const std::string& a : replay_addresses) {
    if (absl::Status s = ValidateAddress("replay address", a); !s.ok()) return s;
  }
  if (absl::Status s = ValidateAddress("learner address", learner_address); !s.ok()) return s;
  if (steps_per_batch < 1)
    return absl::InvalidArgumentError(absl::StrCat("steps_per_batch must be >= 1, got ", steps_per_batch));
  if (refresh_interval < 1)
    return absl::InvalidArgumentError(absl::StrCat("refresh_interval must be >= 1, got ", refresh_interval));
  if (max_vector_steps < 0) return absl::InvalidArgumentError("max_vector_steps must be >= 0");
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Actor>> Actor::Create(const ActorConfig& input) {
  if (absl::Status s = input.Validate(); !s.ok()) return s;
  VectorEnvOptions env_options;
  env_options.max_episode_steps = input.max_episode_steps;
  auto envs = VectorEnv::Create(input.env, input.num_envs, env_options);
  if (!envs.ok()) return envs.status();
  ActorConfig config = input;
  config.policy.obs_dim = (*envs)->spec().obs_dim;
  config.policy.action_dim = (*envs)->spec().action_dim;
  if (absl::Status s = config.policy.Validate(); !s.ok()) return s;
  if (absl::Status s = ValidateAlgorithm(config.algo); !s.ok()) return s;
  ReplayInserterConfig inserter_config;
  inserter_config.addresses = config.replay_addresses;
  inserter_config.actor_id = config.actor_id;
  inserter_config.max_unacked_batches = config.max_unacked_batches;
  inserter_config.security = config.security;
  auto inserter = ReplayInserter::Create(inserter_config);
  if (!inserter.ok()) return inserter.status();
  return std::unique_ptr<Actor>(new Actor(config, *std::move(envs), *std::move(inserter)));
}

Actor::Actor(const ActorConfig& config, std::unique_ptr<VectorEnv> envs, std::unique_ptr<ReplayInserter> inserter)
    : config_(config),
      envs_(std::move(envs)),
      inserter_(std::move(inserter)),
      parameters_(config.learner_address, config.security),
      policy_(*NewActingPolicy(config.algo, config.policy)) {
  stats_.last_episode_return = std::nan("");
}

ActorStats Actor::stats() const {
  ActorStats stats;
  {
    absl::MutexLock lock(&mu_);
    stats = stats_;
  }
  stats.replay = inserter_->stats();
  return stats;
}

bool Actor::learner_done() const {
  absl::MutexLock lock(&mu_);
  return stats_.learner_done;
}

absl::Status Actor::MaybeRefresh() {
  int64_t version;
  {
    absl::MutexLock lock(&mu_);
    version = stats_.policy_version;
  }
  auto got = parameters_.Get(version + 1, config_.rpc_timeout);
  if (!got.ok()) {
    if (absl::IsInvalidArgument(got.status())) return got.status();  // malformed weights
    absl::MutexLock lock(&mu_);
    ++stats_.fetch_errors;  // the learner may be restarting: act on the weights we have
    return absl::OkStatus();
  }
  if (!got->has_value()) return absl::OkStatus();
  if (absl::Status s = policy_->LoadWeights((*got)->weights); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("weights version ", (*got)->version, " from ", config_.learner_address, ": ", s.message()));
  }
  absl::MutexLock lock(&mu_);
  stats_.policy_version = (*got)->version;
  ++stats_.weight_updates;
  return absl::OkStatus();
}

void Actor::ReportEpisodes() {
  proto::ReportRequest request;
  request.set_source(absl::StrCat("actor-", config_.actor_id));
  for (const proto::Episode& e : pending_episodes_) *request.add_episodes() = e;
  auto response = parameters_.Report(request, config_.rpc_timeout);
  absl::MutexLock lock(&mu_);
  if (!response.ok()) {
    ++stats_.report_errors;  // kept for the next report
    return;
  }
  pending_episodes_.clear();
  if (response->done()) stats_.learner_done = true;
}

absl::Status Actor::Run(const std::atomic<bool>& stop) {
  torch::NoGradGuard no_grad;
  const int v = envs_->num_envs(), s = envs_->spec().obs_dim, a = envs_->spec().action_dim;
  const uint64_t seed = config_.seed + config_.actor_id * 1000;
  if (absl::Status st = envs_->Reset(seed); !st.ok()) return st;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed + 7);
  std::mt19937_64 rng(seed + 11);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);

  const int64_t rows = v * config_.steps_per_batch;
  std::vector<float> obs_rows, act_rows, rew_rows, next_rows;
  std::vector<uint8_t> term_rows, trunc_rows;
  obs_rows.reserve(rows * s);
  act_rows.reserve(rows * a);
  next_rows.reserve(rows * s);
  std::vector<float> current(v * s), actions(v * a);
  std::vector<double> episode_return(v, 0.0);
  std::vector<int64_t> episode_length(v, 0);
  auto load_current = [&] {
    auto o = envs_->observations();
    for (int i = 0; i < v * s; ++i) current[i] = static_cast<float>(o[i]);
  };
  load_current();
  int64_t batch_version = -1;  // the version of the rows gathered so far

  auto flush_rows = [&]() -> absl::Status {
    if (rew_rows.empty()) return absl::OkStatus();
    proto::TransitionBatch batch =
        MakeTransitionBatch(s, a, obs_rows, act_rows, rew_rows, next_rows, term_rows, batch_version, trunc_rows);
    obs_rows.clear();
    act_rows.clear();
    rew_rows.clear();
    next_rows.clear();
    term_rows.clear();
    trunc_rows.clear();
    // A replay that is down makes Insert wait once the bounded buffer is full: keep trying.
    while (true) {
      absl::Status st = inserter_->Insert(batch, config_.rpc_timeout);
      if (st.ok()) break;
      if (absl::IsOutOfRange(st)) {
        // Replay says training is over (the learner may have exited already).
        absl::MutexLock lock(&mu_);
        stats_.learner_done = true;
        return absl::OkStatus();
      }
      if (!absl::IsDeadlineExceeded(st)) return st;
      if (stop.load()) return absl::OkStatus();
      // Replay is away or holding inserts back (rate limiter): the learner may have finished.
      ReportEpisodes();
      if (learner_done()) return absl::OkStatus();
    }
    absl::MutexLock lock(&mu_);
    ++stats_.batches_queued;
    return absl::OkStatus();
  };

  for (int64_t t = 0; !stop.load() && (config_.max_vector_steps == 0 || t < config_.max_vector_steps); ++t) {
    if (t % config_.refresh_interval == 0) {
      if (absl::Status st = MaybeRefresh(); !st.ok()) return st;
      ReportEpisodes();
      if (learner_done()) break;
    }
    int64_t version;
    {
      absl::MutexLock lock(&mu_);
      version = stats_.policy_version;
    }
    // Rows of one batch share a version: start a new batch when the policy changed.
    if (version != batch_version) {
      if (absl::Status st = flush_rows(); !st.ok()) return st;
      batch_version = version;
    }
    if (version == 0) {
      for (float& x : actions) x = uniform(rng);
    } else {
      const at::Tensor obs = at::from_blob(current.data(), {v, s}, at::kFloat);
      const at::Tensor act = policy_->Act(obs, /*deterministic=*/false, gen).contiguous();
      std::copy(act.data_ptr<float>(), act.data_ptr<float>() + v * a, actions.begin());
    }
    if (absl::Status st = envs_->Step(actions); !st.ok()) return st;

    auto next = envs_->observations();
    auto final_obs = envs_->final_observations();
    auto rewards = envs_->rewards();
    auto terminated = envs_->terminated();
    auto truncated = envs_->truncated();
    int64_t ended = 0;
    double last_return = 0;
    for (int i = 0; i < v; ++i) {
      const bool done = terminated[i] || truncated[i];
      obs_rows.insert(obs_rows.end(), current.begin() + i * s, current.begin() + (i + 1) * s);
      act_rows.insert(act_rows.end(), actions.begin() + i * a, actions.begin() + (i + 1) * a);
      rew_rows.push_back(static_cast<float>(rewards[i]));
      const double* src = done ? &final_obs[i * s] : &next[i * s];
      for (int j = 0; j < s; ++j) next_rows.push_back(static_cast<float>(src[j]));
      term_rows.push_back(terminated[i]);
      trunc_rows.push_back(truncated[i] && !terminated[i]);
      episode_return[i] += rewards[i];
      ++episode_length[i];
      if (done) {
        ++ended;
        last_return = episode_return[i];
        if (pending_episodes_.size() >= kMaxPendingEpisodes) {
          pending_episodes_.erase(pending_episodes_.begin());
        }
        proto::Episode& e = pending_episodes_.emplace_back();
        e.set_episode_return(episode_return[i]);
        e.set_length(episode_length[i]);
        episode_return[i] = 0;
        episode_length[i] = 0;
      }
    }
    load_current();
    {
      absl::MutexLock lock(&mu_);
      stats_.env_steps += v;
      stats_.episodes += ended;
      if (ended > 0) stats_.last_episode_return = last_return;
      stats_.simulator_warnings = envs_->warning_count();
    }
    if (static_cast<int64_t>(rew_rows.size()) >= rows) {
      if (absl::Status st = flush_rows(); !st.ok()) return st;
    }
  }
  if (absl::Status st = flush_rows(); !st.ok()) return st;
  // When stopping, replay may be holding inserts back (rate limiter) or gone: do not wait long.
  const bool ending = stop.load() || learner_done();
  absl::Status flushed = inserter_->Flush(ending ? absl::Milliseconds(500) : absl::Seconds(5));
  if (!pending_episodes_.empty() && !stop.load()) ReportEpisodes();
  if (absl::IsOutOfRange(flushed)) return absl::OkStatus();  // training is over
  return ending && absl::IsDeadlineExceeded(flushed) ? absl::OkStatus() : flushed;
}

}  // namespace meow
