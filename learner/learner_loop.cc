#include "learner/learner_loop.h"

#include <chrono>
#include <filesystem>
#include <system_error>
#include <utility>

#include <ATen/ATen.h>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "actor/acting_policy.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "learner/meow_graph_update.h"
#include "learner/meow_update.h"
#include "learner/train_config.h"

namespace meow {
namespace {

// Versions reserved per write of RUN_DIR/version_reserved (one small write per this many publishes).
constexpr int64_t kVersionBlock = 1000;

std::string ReservationPath(const std::string& run_dir) { return run_dir + "/version_reserved"; }

// The reserved version of `run_dir`, 0 when none was written.
absl::StatusOr<int64_t> ReadReservation(const std::string& run_dir) {
  const std::string path = ReservationPath(run_dir);
  auto text = ReadFile(path);
  if (absl::IsNotFound(text.status())) return 0;
  if (!text.ok()) return text.status();
  int64_t version;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &version) || version < 0) {
    return absl::DataLossError(absl::StrCat(path, ": expected a weight version (a number >= 0), found \"",
                                            absl::CHexEscape(text->substr(0, 40)), "\"; it guards weight ",
                                            "versions against going backwards, so the learner will not start ",
                                            "without it (write the newest version any actor saw, or a larger one)"));
  }
  return version;
}

}  // namespace

absl::Status LearnerConfig::Validate() const {
  if (replay_addresses.empty()) return absl::InvalidArgumentError("at least one replay address is needed");
  if (batch_size < 1) return absl::InvalidArgumentError(absl::StrCat("batch_size must be >= 1, got ", batch_size));
  if (publish_interval < 1) return absl::InvalidArgumentError("publish_interval must be >= 1");
  if (checkpoint_interval < 1) return absl::InvalidArgumentError("checkpoint_interval must be >= 1");
  if (max_updates < 0) return absl::InvalidArgumentError("max_updates must be >= 0");
  if (absl::Status s = policy.Validate(); !s.ok()) return s;
  if (absl::Status s = ValidateAlgorithm(algo); !s.ok()) return s;
  if (algo == "sac") return sac.Validate();
  if (algo == "sql") return sql.Validate();
  if (algo == "cnf") {
    if (cnf_flow_path.empty()) return absl::InvalidArgumentError("algo cnf needs the pre-trained flow (cnf_flow_path)");
    return cnf.Validate();
  }
  return update.Validate();
}

absl::StatusOr<std::unique_ptr<Learner>> Learner::Create(const LearnerConfig& config, ParameterStore* store) {
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  auto device = ResolveDevice(config.device);
  if (!device.ok()) return device.status();
  absl::StatusOr<std::unique_ptr<Algorithm>> algorithm;
  if (config.algo == "sac") {
    SacPolicyConfig sizes;
    sizes.obs_dim = config.policy.obs_dim;
    sizes.action_dim = config.policy.action_dim;
    algorithm = SacUpdater::Create(sizes, config.sac, *device);
  } else if (config.algo == "sql") {
    SqlPolicyConfig sizes;
    sizes.obs_dim = config.policy.obs_dim;
    sizes.action_dim = config.policy.action_dim;
    algorithm = SqlUpdater::Create(sizes, config.sql, *device);
  } else if (config.algo == "bc") {
    SacPolicyConfig sizes;
    sizes.obs_dim = config.policy.obs_dim;
    sizes.action_dim = config.policy.action_dim;
    auto made = BcUpdater::Create(sizes, BcUpdateConfig(), *device);
    if (made.ok()) {
      algorithm = std::unique_ptr<Algorithm>(*std::move(made));
    } else {
      algorithm = made.status();
    }
  } else if (config.algo == "cnf") {
    CnfPolicyConfig sizes;
    sizes.flow.obs_dim = config.policy.obs_dim;
    sizes.flow.action_dim = config.policy.action_dim;
    auto flow = ReadSafetensors(config.cnf_flow_path);
    if (!flow.ok()) return flow.status();
    auto made = CnfUpdater::Create(sizes, config.cnf, *flow, *device);
    if (made.ok()) {
      algorithm = std::unique_ptr<Algorithm>(*std::move(made));
    } else {
      algorithm = absl::Status(made.status().code(), absl::StrCat(config.cnf_flow_path, ": ", made.status().message()));
    }
  } else if (device->is_cuda()) {
    // On a GPU the update runs device-resident, as a CUDA graph unless update.graph.capture is off.
    auto made = MeowGraphUpdater::Create(config.policy, config.update, *device);
    if (made.ok()) {
      algorithm = std::unique_ptr<Algorithm>(*std::move(made));
    } else {
      algorithm = made.status();
    }
  } else {
    algorithm = MeowUpdater::Create(config.policy, config.update, *device);
  }
  if (!algorithm.ok()) return algorithm.status();
  return Create(config, store, *std::move(algorithm));
}

absl::StatusOr<std::unique_ptr<Learner>> Learner::Create(const LearnerConfig& config, ParameterStore* store,
                                                         std::unique_ptr<Algorithm> algorithm) {
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  if (algorithm == nullptr) return absl::InvalidArgumentError("the learner needs an algorithm");
  ReplaySamplerConfig sampler_config;
  sampler_config.addresses = config.replay_addresses;
  sampler_config.security = config.security;
  sampler_config.batch_size = config.batch_size;
  sampler_config.prefetch_batches = config.prefetch_batches;
  sampler_config.obs_dim = static_cast<int>(config.policy.obs_dim);
  sampler_config.action_dim = static_cast<int>(config.policy.action_dim);
  auto sampler = ReplaySampler::Create(sampler_config);
  if (!sampler.ok()) return sampler.status();
  std::unique_ptr<Learner> learner(new Learner(config, store, std::move(algorithm), *std::move(sampler)));
  if (!config.run_dir.empty()) {
    learner->checkpoints_ = std::make_unique<CheckpointStore>(config.run_dir);
    auto restored = learner->checkpoints_->RestoreLatest(*learner->algorithm_);
    if (!restored.ok()) return restored.status();
    absl::MutexLock lock(&learner->mu_);
    learner->stats_.checkpoint_problems = restored->problems;
    if (restored->counters.has_value()) {
      learner->stats_.restored_from = restored->path;
      learner->stats_.updates = restored->counters->updates;
      learner->stats_.skipped = restored->counters->skipped;
      learner->stats_.version = restored->counters->version;
      learner->restored_env_steps_ = restored->counters->env_steps;
      learner->env_steps_.store(restored->counters->env_steps);
    }
    auto reserved = ReadReservation(config.run_dir);
    if (!reserved.ok()) return reserved.status();
    // Versions up to the reservation may be out there: the next one goes above them.
    learner->reserved_version_ = *reserved;
    learner->stats_.version = std::max(learner->stats_.version, *reserved);
  }
  // Restored weights go out at once, under the next version.
  if (learner->stats().version > 0) {
    if (absl::Status s = learner->Publish(); !s.ok()) return s;
  }
  return learner;
}

Learner::Learner(const LearnerConfig& config, ParameterStore* store, std::unique_ptr<Algorithm> algorithm,
                 std::unique_ptr<ReplaySampler> sampler)
    : config_(config), store_(store), algorithm_(std::move(algorithm)), sampler_(std::move(sampler)) {}

LearnerStats Learner::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

absl::Status Learner::Publish() {
  int64_t version;
  {
    absl::MutexLock lock(&mu_);
    version = std::max(stats_.version, store_->version()) + 1;
  }
  if (absl::Status s = ReserveVersion(version); !s.ok()) return s;
  if (absl::Status s = store_->Publish(version, algorithm_->ActingWeights()); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  stats_.version = version;
  published_at_[version] = algorithm_->updates();
  if (published_at_.size() > 100'000) published_at_.erase(published_at_.begin());
  return absl::OkStatus();
}

std::optional<int64_t> Learner::UpdatesBehind(int64_t version) const {
  absl::MutexLock lock(&mu_);
  auto it = published_at_.find(version);
  if (it == published_at_.end()) return std::nullopt;
  return stats_.updates - it->second;
}

absl::Status Learner::ReserveVersion(int64_t version) {
  if (config_.run_dir.empty()) return absl::OkStatus();
  {
    absl::MutexLock lock(&mu_);
    if (version <= reserved_version_) return absl::OkStatus();
  }
  const int64_t reserved = version + kVersionBlock - 1;
  std::error_code ec;
  std::filesystem::create_directories(config_.run_dir, ec);
  if (ec) {
    return absl::InternalError(absl::StrCat("cannot create the run directory ", config_.run_dir, ": ", ec.message()));
  }
  if (absl::Status s = WriteFileAtomically(ReservationPath(config_.run_dir), absl::StrCat(reserved, "\n")); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("reserving weight versions: ", s.message()));
  }
  absl::MutexLock lock(&mu_);
  reserved_version_ = reserved;
  return absl::OkStatus();
}

absl::Status Learner::Checkpoint() {
  if (checkpoints_ == nullptr) return absl::OkStatus();
  algorithm_->Synchronize();  // exact counters from an asynchronous (GPU) learner
  LearnerCounters counters;
  {
    absl::MutexLock lock(&mu_);
    counters.updates = algorithm_->updates();
    counters.skipped = algorithm_->skipped_updates();
    counters.version = stats_.version;
  }
  counters.env_steps = env_steps_.load();
  return checkpoints_->Save(*algorithm_, counters);
}

absl::Status Learner::Run(const std::atomic<bool>& stop) {
  const auto options = at::TensorOptions().dtype(at::kFloat);
  const int64_t s = config_.policy.obs_dim, a = config_.policy.action_dim;
  int64_t since_publish = 0, since_checkpoint = 0;
  // Actors act at random until the first weights exist: publish right after the first update.
  bool published = stats().version > 0;
  while (!stop.load() && (config_.max_updates == 0 || algorithm_->updates() < config_.max_updates)) {
    auto batch = sampler_->Next(config_.sample_timeout);
    if (!batch.ok()) {
      if (absl::IsDeadlineExceeded(batch.status()) || absl::IsUnavailable(batch.status())) {
        absl::MutexLock lock(&mu_);
        ++stats_.sample_waits;  // replay not ready, rate-limited, or restarting
        continue;
      }
      return batch.status();
    }
    const int64_t rows = batch->rows;
    // Views of the sampled columns (they outlive Update, which copies what it keeps); copied to a
    // GPU here unless the algorithm stages host batches itself.
    const c10::Device batch_device = algorithm_->TakesHostBatches() ? c10::Device(c10::kCPU) : algorithm_->device();
    auto column = [&](std::vector<float>& v, std::vector<int64_t> shape) {
      return at::from_blob(v.data(), shape, options).to(batch_device);
    };
    Batch b{column(batch->obs, {rows, s}), column(batch->action, {rows, a}), column(batch->reward, {rows}),
            column(batch->next_obs, {rows, s}), column(batch->terminated, {rows})};
    const auto update_start = std::chrono::steady_clock::now();
    auto step = algorithm_->Update(b);
    if (!step.ok()) return step.status();
    const double update_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - update_start).count();
    double staleness = 0;
    {
      absl::MutexLock lock(&mu_);
      stats_.update_seconds += update_seconds;
      for (int64_t v : batch->policy_version) staleness += static_cast<double>(stats_.version - v);
      stats_.mean_staleness = rows > 0 ? staleness / rows : 0;
      stats_.updates = algorithm_->updates();
      stats_.skipped = algorithm_->skipped_updates();
      stats_.last_loss = step->loss;
      if (!step->skipped) stats_.last_update = *step;
    }
    if (++since_publish >= config_.publish_interval || !published) {
      since_publish = 0;
      published = true;
      if (absl::Status st = Publish(); !st.ok()) return st;
    }
    if (++since_checkpoint >= config_.checkpoint_interval) {
      since_checkpoint = 0;
      if (absl::Status st = Checkpoint(); !st.ok()) return st;
    }
  }
  algorithm_->Synchronize();
  {
    absl::MutexLock lock(&mu_);
    stats_.updates = algorithm_->updates();
    stats_.skipped = algorithm_->skipped_updates();
  }
  if (absl::Status st = Publish(); !st.ok()) return st;
  return Checkpoint();
}

}  // namespace meow
