#include "learner/training_monitor.h"

#include <cmath>
#include <cstdio>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/flow_policy.h"
#include "common/grpc_channel.h"
#include "common/metrics_http.h"
#include "common/rpc_metrics.h"
#include "common/weights_codec.h"
#include "replay/replay_server.h"

namespace meow {

TrainingMonitor::TrainingMonitor(const TrainConfig& config, TrainingComponents& components, RunDirectory& run_dir,
                                 ActingPolicy& export_policy)
    : config_(config),
      components_(components),
      run_dir_(run_dir),
      export_policy_(export_policy),
      start_(std::chrono::steady_clock::now()),
      last_episode_mean_(std::nan("")),
      last_eval_mean_(std::nan("")) {
  for (const std::string& address : components_.replay_addresses()) {
    info_stubs_.push_back(proto::ReplayService::NewStub(CreateChannel(address, 64 << 20, config_.security)));
  }
}

double TrainingMonitor::elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void TrainingMonitor::PollReplay() {
  ReplayView sum;
  for (auto& stub : info_stubs_) {
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
  // Offline, nothing is inserted: the run's clock is the learner's updates.
  if (config_.offline()) sum.inserted = components_.learner().stats().updates;
  view_ = sum;
}

void TrainingMonitor::Follow() {
  const LearnerStats ls = components_.learner().stats();
  components_.learner().set_env_steps(view_.inserted);
  components_.server().board()->SetProgress({view_.inserted, ls.updates, ls.version, config_.total_env_steps});
}

void TrainingMonitor::FollowNow() {
  PollReplay();
  Follow();
}

absl::StatusOr<bool> TrainingMonitor::Step() {
  if (const absl::Time now = absl::Now(); now >= next_poll_) {
    PollReplay();
    next_poll_ = now + absl::Milliseconds(250);
  }
  Follow();
  if (absl::Status s = TakeReports(); !s.ok()) return s;
  const int64_t updates = components_.learner().stats().updates;
  if (first_) {
    first_ = false;
    next_row_ = (view_.inserted / config_.log_interval + 1) * config_.log_interval;
    rates_.Start(elapsed(), view_.inserted, updates);
    busy_mark_ = {elapsed(), components_.learner().stats().update_seconds, view_.insert_wait_s};
  }
  if (view_.inserted < next_row_) return false;
  rates_.Mark(elapsed(), view_.inserted, updates);
  MarkBusy();
  CloseEpisodeWindow();
  if (absl::Status s = WriteRow(view_.inserted, nullptr); !s.ok()) return s;
  next_row_ = (view_.inserted / config_.log_interval + 1) * config_.log_interval;
  return true;
}

void TrainingMonitor::MarkBusy() {
  const BusyMark now{elapsed(), components_.learner().stats().update_seconds, view_.insert_wait_s};
  const double window = now.time - busy_mark_.time;
  if (window > 0) {
    learner_busy_ = std::clamp((now.update_seconds - busy_mark_.update_seconds) / window, 0.0, 1.0);
    // Replay's insert waits over the actor threads' time; only local mode knows how many actors
    // there are (for `meow learner` they are elsewhere: not shown).
    if (config_.local()) {
      actors_waiting_ = std::clamp(
          (now.insert_wait_s - busy_mark_.insert_wait_s) / window / std::max(1, config_.actors), 0.0, 1.0);
    }
  }
  busy_mark_ = now;
}

void TrainingMonitor::CloseEpisodeWindow() {
  if (window_episodes_ > 0) last_episode_mean_ = window_return_ / static_cast<double>(window_episodes_);
  window_episodes_ = 0;
  window_return_ = 0;
}

absl::Status TrainingMonitor::Finish() {
  if (absl::Status s = TakeReports(); !s.ok()) return s;
  CloseEpisodeWindow();
  if (absl::Status s = WriteRow(view_.inserted, nullptr); !s.ok()) return s;
  return SaveLatest();
}

absl::Status TrainingMonitor::WriteRow(int64_t env_steps, const EvalPoint* eval) {
  Learner& learner = components_.learner();
  const LearnerStats ls = learner.stats();
  const bool eval_row = eval != nullptr;
  const bool updated = ls.updates > 0 && !eval_row;
  const double nan = std::nan("");
  auto periodic = [&](double v) { return eval_row ? nan : v; };
  // How many updates behind the learner the newest data in replay was made (nan while it is all
  // random).
  const std::optional<int64_t> lag = learner.UpdatesBehind(view_.newest_policy_version);
  std::vector<std::pair<std::string, double>> row = {
      {"wall_time", run_dir_.metrics().wall_offset() + elapsed()},
      {"env_steps", static_cast<double>(env_steps)},
      {"updates", static_cast<double>(ls.updates)},
      {"episodes", static_cast<double>(episodes_)},
      {"episode_return", periodic(last_episode_mean_)},
      {"loss", updated ? ls.last_update.loss : nan},
      {"q_mean", updated ? ls.last_update.q_mean : nan},
      {"v_mean", updated ? ls.last_update.v_mean : nan},
      {"grad_norm", updated ? ls.last_update.grad_norm : nan},
      {"skipped_updates", periodic(static_cast<double>(ls.skipped))},
      {"steps_per_s", periodic(rates_.steps_per_s())},
      {"updates_per_s", periodic(rates_.updates_per_s())},
      {"learner_busy", periodic(learner_busy_)},
      {"actors_waiting", periodic(actors_waiting_)},
      {"staleness", updated ? ls.mean_staleness : nan},
      {"version", static_cast<double>(ls.version)},
      {"replay_size", periodic(static_cast<double>(view_.size))},
      {"insert_waits", periodic(static_cast<double>(view_.insert_waits))},
      {"sample_waits", periodic(static_cast<double>(view_.sample_waits))},
      {"insert_wait_s", periodic(view_.insert_wait_s)},
      {"sample_wait_s", periodic(view_.sample_wait_s)},
      {"acting_lag", periodic(lag.has_value() ? static_cast<double>(*lag) : nan)},
      {"alpha", updated ? ls.last_update.alpha : nan},
      {"entropy", updated ? ls.last_update.entropy : nan}};
  if (eval_row) {
    for (const auto& column : EvalColumns(*eval, config_.env)) row.push_back(column);
  }
  {
    absl::MutexLock lock(&latest_mu_);
    for (const auto& [name, value] : row) {
      if (std::isfinite(value)) latest_row_[name] = value;
    }
  }
  return run_dir_.metrics().Row(std::map<std::string, double>(row.begin(), row.end()), env_steps);
}

absl::Status TrainingMonitor::SaveLatest() {
  auto latest = components_.server().store()->Latest();
  if (latest == nullptr) return absl::OkStatus();
  auto weights = DecodePolicyWeights(*latest);
  if (!weights.ok()) return weights.status();
  if (absl::Status s = export_policy_.LoadWeights(weights->weights); !s.ok()) return s;
  return run_dir_.SaveLatest(export_policy_);
}

absl::Status TrainingMonitor::TakeReports() {
  TrainingBoard* board = components_.server().board();
  for (const proto::Episode& e : board->TakeEpisodes()) {
    ++episodes_;
    ++window_episodes_;
    window_return_ += e.episode_return();
  }
  for (EvaluationRecord& record : board->TakeEvaluations()) {
    const EvalPoint point{record.env_steps, record.mean, record.std, static_cast<int64_t>(record.returns.size()),
                          record.goals};
    evals_.push_back(point);
    last_eval_mean_ = record.mean;
    last_eval_goals_ = record.goals;
    last_eval_steps_ = std::max(last_eval_steps_, record.env_steps);
    if (absl::Status s = WriteRow(record.env_steps, &point); !s.ok()) return s;
    if (absl::Status s = SaveLatest(); !s.ok()) return s;
    if (run_dir_.IsBest(point.score()) && !record.weights.tensors.empty()) {
      // The service checked names, shapes and values; should the weights still not import, the
      // report is dropped (policy_best stays as it is) and training goes on.
      if (absl::Status s = export_policy_.LoadWeights(record.weights); !s.ok()) {
        absl::FPrintF(stderr, "meow: evaluation from %s ignored: its weights do not fit the policy: %s\n",
                      record.source, s.message());
        continue;
      }
      if (absl::Status s = run_dir_.SaveBest(point.score(), export_policy_); !s.ok()) return s;
    }
    if (config_.stop_at_eval_return.has_value() && record.mean >= *config_.stop_at_eval_return) {
      target_reached_ = true;
    }
  }
  return absl::OkStatus();
}

ProgressFigures TrainingMonitor::Figures() const {
  const LearnerStats ls = components_.learner().stats();
  ProgressFigures f;
  f.steps = view_.inserted;
  f.total_steps = config_.total_env_steps;
  f.updates = ls.updates;
  f.version = ls.version;
  f.replay_size = view_.size;
  f.steps_per_s = rates_.steps_per_s();
  f.updates_per_s = rates_.updates_per_s();
  f.learner_busy = learner_busy_;
  f.actors_waiting = actors_waiting_;
  f.episode_return = last_episode_mean_;
  f.eval_return = last_eval_mean_;
  f.eval_goals = last_eval_goals_;
  return f;
}

std::string TrainingMonitor::MetricsPage() const {
  PrometheusText text;
  // Live figures (metrics.csv rows come every log_interval steps).
  const LearnerStats st = components_.learner().stats();
  text.Gauge("learner_version", "Weight version last published (never goes backwards, also across restarts).",
             static_cast<double>(st.version));
  text.Counter("learner_updates_total", "Updates applied, restored ones included.", static_cast<double>(st.updates));
  {
    absl::MutexLock lock(&latest_mu_);
    for (const auto& [name, value] : latest_row_) {
      text.Gauge(absl::StrCat("train_", name), absl::StrCat("metrics.csv column ", name, " (newest value)"), value);
    }
  }
  if (ReplayServer* embedded = components_.embedded_replay(); embedded != nullptr) {
    proto::InfoResponse info;
    *info.mutable_table() = embedded->table()->Info();
    *info.mutable_rate_limiter() = embedded->table()->RateLimiterState();
    AppendProtoNumbers(text, "replay", info);
  }
  components_.rpc_metrics().AppendTo(text);
  return text.text();
}

}  // namespace meow
