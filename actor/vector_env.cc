#include "actor/vector_env.h"

#include <algorithm>
#include <functional>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "actor/env_registry.h"
#include "common/status.h"

namespace meow {

// Runs fn(0) ... fn(n - 1) on the workers and the calling thread, each index exactly once, and
// returns when all have finished. Workers are started once and sleep between calls.
// ParallelFor is called by one thread at a time (the VectorEnv's owner).
class VectorEnv::WorkerPool {
 public:
  explicit WorkerPool(int num_threads) {
    threads_.reserve(num_threads);
    for (int t = 0; t < num_threads; ++t) threads_.emplace_back([this] { WorkerLoop(); });
  }

  ~WorkerPool() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    work_cv_.SignalAll();
    for (std::thread& thread : threads_) thread.join();
  }

  void ParallelFor(int n, const std::function<void(int)>& fn) ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      fn_ = &fn;
      n_ = n;
      next_ = 0;
      done_ = 0;
      ++generation_;
    }
    work_cv_.SignalAll();
    RunItems();
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &WorkerPool::AllDone));
    fn_ = nullptr;
  }

 private:
  bool AllDone() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_ == n_; }

  // Takes indices until none is left in the current round.
  void RunItems() ABSL_LOCKS_EXCLUDED(mu_) {
    while (true) {
      const std::function<void(int)>* fn;
      int index;
      {
        absl::MutexLock lock(&mu_);
        if (fn_ == nullptr || next_ >= n_) return;
        fn = fn_;
        index = next_++;
      }
      (*fn)(index);
      absl::MutexLock lock(&mu_);
      ++done_;
    }
  }

  void WorkerLoop() ABSL_LOCKS_EXCLUDED(mu_) {
    uint64_t seen = 0;
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        while (!stop_ && generation_ == seen) work_cv_.Wait(&mu_);
        if (stop_) return;
        seen = generation_;
      }
      RunItems();
    }
  }

  absl::Mutex mu_;
  absl::CondVar work_cv_;  // signalled when a round starts or the pool stops
  const std::function<void(int)>* fn_ ABSL_GUARDED_BY(mu_) = nullptr;
  int n_ ABSL_GUARDED_BY(mu_) = 0;
  int next_ ABSL_GUARDED_BY(mu_) = 0;
  int done_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

absl::Status VectorEnvOptions::Validate() const {
  if (num_threads < 0 || num_threads > 256) {
    return absl::InvalidArgumentError(absl::StrCat("num_threads must be in [0, 256], got ", num_threads));
  }
  if (max_episode_steps < 0) {
    return absl::InvalidArgumentError(absl::StrCat("max_episode_steps must be >= 0, got ", max_episode_steps));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<VectorEnv>> VectorEnv::Create(std::string_view task, int num_envs,
                                                             const VectorEnvOptions& options) {
  if (num_envs < 1) {
    return absl::InvalidArgumentError(absl::StrCat("num_envs must be >= 1, got ", num_envs));
  }
  std::vector<std::unique_ptr<Env>> envs;
  envs.reserve(num_envs);
  for (int i = 0; i < num_envs; ++i) {
    MEOW_ASSIGN_OR_RETURN(std::unique_ptr<Env> env, MakeEnv(task));
    envs.push_back(std::move(env));
  }
  return Create(std::move(envs), options);
}

absl::StatusOr<std::unique_ptr<VectorEnv>> VectorEnv::Create(std::vector<std::unique_ptr<Env>> envs,
                                                             const VectorEnvOptions& options) {
  MEOW_RETURN_IF_ERROR(options.Validate());
  if (envs.empty()) return absl::InvalidArgumentError("VectorEnv needs at least one environment");
  for (size_t i = 0; i < envs.size(); ++i) {
    if (envs[i] == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("VectorEnv: environment ", i, " is null"));
    }
    const EnvSpec& a = envs[0]->spec();
    const EnvSpec& b = envs[i]->spec();
    if (a.name != b.name || a.obs_dim != b.obs_dim || a.action_dim != b.action_dim) {
      return absl::InvalidArgumentError(absl::StrCat("VectorEnv: environment ", i, " is ", b.name, " (obs ", b.obs_dim,
                                                     ", action ", b.action_dim, "), environment 0 is ", a.name,
                                                     " (obs ", a.obs_dim, ", action ", a.action_dim, ")"));
    }
  }
  return std::unique_ptr<VectorEnv>(new VectorEnv(std::move(envs), options));
}

VectorEnv::VectorEnv(std::vector<std::unique_ptr<Env>> envs, const VectorEnvOptions& options)
    : envs_(std::move(envs)), max_episode_steps_(options.max_episode_steps) {
  const size_t n = envs_.size(), obs_dim = spec().obs_dim;
  observations_.assign(n * obs_dim, 0.0);
  final_observations_.assign(n * obs_dim, 0.0);
  rewards_.assign(n, 0.0);
  terminated_.assign(n, 0);
  truncated_.assign(n, 0);
  episode_steps_.assign(n, 0);
  warnings_.assign(n, std::string());
  step_status_.assign(n, absl::OkStatus());
  if (options.num_threads > 0) pool_ = std::make_unique<WorkerPool>(options.num_threads);
}

VectorEnv::~VectorEnv() = default;

absl::Status VectorEnv::Reset(std::optional<uint64_t> seed) {
  const int obs_dim = spec().obs_dim;
  for (int i = 0; i < num_envs(); ++i) {
    std::optional<uint64_t> instance_seed;
    if (seed.has_value()) instance_seed = *seed + static_cast<uint64_t>(i);
    MEOW_RETURN_IF_ERROR(envs_[i]->Reset(instance_seed));
    absl::Span<const double> obs = envs_[i]->Observation();
    std::copy(obs.begin(), obs.end(), observations_.begin() + i * obs_dim);
  }
  std::fill(rewards_.begin(), rewards_.end(), 0.0);
  std::fill(terminated_.begin(), terminated_.end(), 0);
  std::fill(truncated_.begin(), truncated_.end(), 0);
  std::fill(episode_steps_.begin(), episode_steps_.end(), 0);
  for (std::string& w : warnings_) w.clear();
  started_ = true;
  return absl::OkStatus();
}

absl::Status VectorEnv::StepOne(int i, absl::Span<const float> action) {
  Env& env = *envs_[i];
  const int obs_dim = spec().obs_dim;
  MEOW_ASSIGN_OR_RETURN(StepResult result, env.Step(action));
  rewards_[i] = result.reward;
  ++episode_steps_[i];
  if (max_episode_steps_ > 0 && episode_steps_[i] >= max_episode_steps_ && !result.terminated) result.truncated = true;
  terminated_[i] = result.terminated;
  truncated_[i] = result.truncated;
  warnings_[i] = std::move(result.warning);
  absl::Span<const double> obs = env.Observation();
  if (result.terminated || result.truncated) {
    std::copy(obs.begin(), obs.end(), final_observations_.begin() + i * obs_dim);
    episode_steps_[i] = 0;
    MEOW_RETURN_IF_ERROR(env.Reset(std::nullopt));
    obs = env.Observation();
  }
  std::copy(obs.begin(), obs.end(), observations_.begin() + i * obs_dim);
  return absl::OkStatus();
}

absl::Status VectorEnv::Step(absl::Span<const float> actions) {
  if (!started_) return absl::FailedPreconditionError("VectorEnv: Step called before Reset");
  const int action_dim = spec().action_dim;
  const size_t expected = static_cast<size_t>(num_envs()) * action_dim;
  if (actions.size() != expected) {
    return absl::InvalidArgumentError(absl::StrCat(spec().name, ": actions has ", actions.size(),
                                                   " entries, expected num_envs x action_dim = ", num_envs(), " x ",
                                                   action_dim, " = ", expected));
  }
  // Check every row before stepping any instance, so a bad row leaves all of them untouched.
  for (int i = 0; i < num_envs(); ++i) {
    absl::Status status = ValidateAction(spec(), actions.subspan(i * action_dim, action_dim));
    if (!status.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("instance ", i, ": ", status.message()));
    }
  }
  auto step_one = [&](int i) { step_status_[i] = StepOne(i, actions.subspan(i * action_dim, action_dim)); };
  if (pool_ != nullptr) {
    pool_->ParallelFor(num_envs(), step_one);
  } else {
    for (int i = 0; i < num_envs(); ++i) step_one(i);
  }
  for (int i = 0; i < num_envs(); ++i) {
    if (!warnings_[i].empty()) ++warning_count_;
  }
  for (int i = 0; i < num_envs(); ++i) {
    if (!step_status_[i].ok()) {
      return absl::Status(step_status_[i].code(), absl::StrCat("instance ", i, ": ", step_status_[i].message()));
    }
  }
  return absl::OkStatus();
}

}  // namespace meow
