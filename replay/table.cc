#include "replay/table.h"

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "replay/selectors/uniform.h"

namespace meow {

absl::Status TableConfig::Validate() const {
  if (obs_dim < 1) {
    return absl::InvalidArgumentError(absl::StrCat("table.obs_dim: expected >= 1, got ", obs_dim));
  }
  if (action_dim < 1) {
    return absl::InvalidArgumentError(absl::StrCat("table.action_dim: expected >= 1, got ", action_dim));
  }
  if (capacity < 1) {
    return absl::InvalidArgumentError(absl::StrCat("table.capacity: expected >= 1, got ", capacity));
  }
  if (max_batch_rows < 1 || max_batch_rows > capacity) {
    return absl::InvalidArgumentError(
        absl::StrCat("table.max_batch_rows: expected in [1, capacity=", capacity, "], got ", max_batch_rows));
  }
  if (max_actors < 1) {
    return absl::InvalidArgumentError(absl::StrCat("table.max_actors: expected >= 1, got ", max_actors));
  }
  if (max_sample_rows < 1) {
    return absl::InvalidArgumentError(absl::StrCat("table.max_sample_rows: expected >= 1, got ", max_sample_rows));
  }
  if (rate_limiter.min_size_to_sample > capacity) {
    return absl::InvalidArgumentError(absl::StrCat("rate_limiter.min_size_to_sample (", rate_limiter.min_size_to_sample,
                                                   ") is above table.capacity (", capacity,
                                                   "): the table could never hold enough to sample"));
  }
  return rate_limiter.Validate();
}

absl::StatusOr<std::unique_ptr<Table>> Table::Create(const TableConfig& config,
                                                     std::unique_ptr<ItemSelector> selector) {
  if (absl::Status status = config.Validate(); !status.ok()) return status;
  if (selector == nullptr) selector = std::make_unique<UniformSelector>(config.capacity);
  return std::unique_ptr<Table>(new Table(config, std::move(selector)));
}

Table::Table(const TableConfig& config, std::unique_ptr<ItemSelector> selector)
    : config_(config),
      signature_{config.obs_dim, config.action_dim, config.max_batch_rows},
      store_(config.obs_dim, config.action_dim, config.capacity),
      selector_(std::move(selector)),
      limiter_(config.rate_limiter),
      rng_(config.seed) {}

Table::~Table() { Close(); }

absl::Status Table::LogStatusLocked() const {
  if (log_ == nullptr) return absl::OkStatus();
  absl::Status status = log_->status();
  if (status.ok()) return status;
  return absl::UnavailableError(absl::StrCat("replay cannot log inserts (", status.message(),
                                             "); it refuses them until restarted, clients keep their batches"));
}

absl::Status Table::ReadOnlyError() const {
  return absl::FailedPreconditionError(absl::StrCat("this replay serves the fixed dataset ", config_.read_only_source,
                                                    " (offline training) and takes no inserts"));
}

absl::StatusOr<InsertSession> Table::OpenSession(uint64_t actor_id, uint64_t incarnation) {
  if (config_.read_only) return ReadOnlyError();
  absl::MutexLock lock(&mu_);
  if (absl::Status status = LogStatusLocked(); !status.ok()) return status;
  if (actors_.find(actor_id) == actors_.end() && static_cast<int64_t>(actors_.size()) >= config_.max_actors) {
    return absl::ResourceExhaustedError(
        absl::StrCat("replay keeps state for at most table.max_actors=", config_.max_actors,
                     " actor ids and has no room for actor id ", actor_id, " (ids in use: ", actors_.size(), ")"));
  }
  ActorState& actor = actors_[actor_id];
  if (actor.open && incarnation != 0 && actor.incarnation != 0 && actor.incarnation != incarnation) {
    return absl::AlreadyExistsError(
        absl::StrCat("actor id ", actor_id,
                     " is in use by another live actor (a different process or inserter "
                     "has an insert stream open with it); two actors with one id would drop each other's "
                     "batches as duplicates: give every actor its own id (meow actor --actor_id=N, or -1 to "
                     "take it from the host name)"));
  }
  actor.session = next_session_++;
  actor.incarnation = incarnation;
  actor.open = true;
  return InsertSession{actor.session, actor.last_sequence_number};
}

void Table::SetTrainingDone(bool done, int64_t env_steps) {
  absl::MutexLock lock(&mu_);  // waiting inserts re-check when it is released
  training_done_ = done;
  done_env_steps_ = env_steps;
}

void Table::CloseSession(uint64_t actor_id, uint64_t session) {
  absl::MutexLock lock(&mu_);
  auto it = actors_.find(actor_id);
  if (it == actors_.end() || it->second.session != session) return;
  it->second.open = false;
  // An id that never stored a batch holds nothing worth keeping (a client cycling through ids
  // must not grow the table's memory).
  if (it->second.last_sequence_number == 0) actors_.erase(it);
}

void Table::StoreLocked(const TransitionBatchView& rows, const void* per_row_versions) {
  // Only the newest `capacity` rows of an oversized block can survive FIFO eviction.
  const int64_t skip = std::max<int64_t>(0, rows.rows - store_.capacity());
  const int64_t n = rows.rows - skip;
  const size_t obs_row = sizeof(float) * rows.obs_dim;
  const size_t action_row = sizeof(float) * rows.action_dim;
  const int64_t first = store_.AddRows(
      n, rows.obs + skip * obs_row, rows.action + skip * action_row, rows.reward + skip * sizeof(float),
      rows.next_obs + skip * obs_row, rows.terminated + skip, rows.truncated == nullptr ? nullptr : rows.truncated + skip,
      per_row_versions == nullptr ? nullptr : static_cast<const char*>(per_row_versions) + skip * sizeof(int64_t),
      rows.policy_version);
  for (int64_t i = 0; i < n; ++i) {
    int64_t slot = first + i;
    if (slot >= store_.capacity()) slot -= store_.capacity();
    selector_->Insert(slot);
  }
  if (per_row_versions == nullptr) {
    newest_policy_version_ = std::max(newest_policy_version_, rows.policy_version);
  } else {
    for (int64_t i = 0; i < n; ++i) {
      int64_t version;
      std::memcpy(&version, static_cast<const char*>(per_row_versions) + (skip + i) * sizeof(int64_t), sizeof(version));
      newest_policy_version_ = std::max(newest_policy_version_, version);
    }
  }
  limiter_.Inserted(rows.rows);
  ++counters_.inserted_batches;
  counters_.inserted_transitions += rows.rows;
}

absl::StatusOr<InsertResult> Table::Insert(const proto::TransitionBatch& batch, uint64_t session,
                                           absl::Duration timeout, Cancellation* cancel) {
  if (config_.read_only) return ReadOnlyError();
  // Validation needs no lock: a bad batch never touches the table.
  absl::StatusOr<TransitionBatchView> view = ValidateTransitionBatch(batch, signature_);
  if (view.ok() && batch.sequence_number() == 0) {
    view = absl::InvalidArgumentError("TransitionBatch.sequence_number: expected >= 1, got 0");
  }
  if (!view.ok()) {
    rejected_batches_.fetch_add(1, std::memory_order_relaxed);
    return view.status();
  }
  const uint64_t actor_id = batch.actor_id();
  const uint64_t sequence_number = batch.sequence_number();
  const absl::Time deadline = absl::Now() + timeout;

  // Declared before the lock so that it is released after it (see Cancellation).
  std::unique_ptr<Cancellation::Registration> wake = RegisterIfPresent(cancel, [this] { absl::MutexLock lock(&mu_); });
  absl::MutexLock lock(&mu_);
  auto superseded = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (session == 0) return false;
    auto it = actors_.find(actor_id);
    return it == actors_.end() || it->second.session != session;
  };
  auto duplicate = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = actors_.find(actor_id);
    return it != actors_.end() && sequence_number <= it->second.last_sequence_number;
  };
  auto cancelled = [&] { return cancel != nullptr && cancel->cancelled(); };
  for (;;) {
    if (closed_) return absl::CancelledError("replay table is closed");
    if (cancelled()) return absl::CancelledError("insert cancelled");
    if (absl::Status status = LogStatusLocked(); !status.ok()) return status;
    if (superseded()) {
      return absl::AbortedError(
          absl::StrCat("the insert stream of actor ", actor_id, " was superseded by a newer stream"));
    }
    if (training_done_) {
      return absl::OutOfRangeError(absl::StrCat("training is over (the learner finished at ", done_env_steps_,
                                                " environment steps); replay takes no more transitions"));
    }
    if (duplicate()) {
      ++duplicate_batches_;
      return InsertResult{/*duplicate=*/true, log_ != nullptr ? log_->position() : 0};
    }
    if (limiter_.CanInsert(store_.size())) break;
    // The learner is behind: wait until it catches up (or we are told to stop).
    auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return closed_ || cancelled() || superseded() || duplicate() || training_done_ ||
             limiter_.CanInsert(store_.size());
    };
    const absl::Time start = absl::Now();
    limiter_.BeginInsertWait();
    const bool ready_in_time = mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
    limiter_.EndInsertWait(absl::Now() - start);
    if (!ready_in_time) {
      return absl::DeadlineExceededError(absl::StrCat(
          "insert waited ", absl::FormatDuration(timeout),
          " for the rate limiter (samples_per_insert=", limiter_.config().samples_per_insert,
          ", diff=", limiter_.diff(), ", max_diff=", limiter_.config().max_diff, "): the sampler is behind"));
    }
  }
  StoreLocked(*view, nullptr);
  actors_[actor_id].last_sequence_number = sequence_number;
  return InsertResult{/*duplicate=*/false, log_ != nullptr ? log_->Append(batch) : 0};
}

absl::StatusOr<proto::SampleResponse> Table::Sample(int64_t rows, absl::Duration timeout, Cancellation* cancel) {
  if (rows < 1) {
    return absl::InvalidArgumentError(absl::StrCat("SampleRequest.batch_size: expected >= 1, got ", rows));
  }
  if (rows > config_.max_sample_rows) {
    return absl::ResourceExhaustedError(
        absl::StrCat("SampleRequest.batch_size: ", rows, " rows exceed the limit of ", config_.max_sample_rows));
  }
  // Build the response's columns outside the lock; the gather fills them in place.
  proto::SampleResponse response;
  proto::TransitionBatch& batch = *response.mutable_batch();
  auto column = [rows](proto::Tensor* tensor, proto::DType dtype, int64_t cols) {
    tensor->set_dtype(dtype);
    tensor->add_shape(rows);
    if (cols > 0) tensor->add_shape(cols);
    std::string* data = tensor->mutable_data();
    data->resize(static_cast<size_t>(rows * std::max<int64_t>(cols, 1) * DTypeSize(dtype)));
    return data->data();
  };
  char* obs = column(batch.mutable_obs(), proto::DTYPE_FLOAT32, config_.obs_dim);
  char* action = column(batch.mutable_action(), proto::DTYPE_FLOAT32, config_.action_dim);
  char* reward = column(batch.mutable_reward(), proto::DTYPE_FLOAT32, 0);
  char* next_obs = column(batch.mutable_next_obs(), proto::DTYPE_FLOAT32, config_.obs_dim);
  auto* terminated = reinterpret_cast<uint8_t*>(column(batch.mutable_terminated(), proto::DTYPE_BOOL, 0));
  char* versions = column(response.mutable_policy_version(), proto::DTYPE_INT64, 0);
  std::vector<int64_t> slots(static_cast<size_t>(rows));
  const absl::Time deadline = absl::Now() + timeout;

  std::unique_ptr<Cancellation::Registration> wake = RegisterIfPresent(cancel, [this] { absl::MutexLock lock(&mu_); });
  absl::MutexLock lock(&mu_);
  auto cancelled = [&] { return cancel != nullptr && cancel->cancelled(); };
  for (;;) {
    if (closed_) return absl::CancelledError("replay table is closed");
    if (cancelled()) return absl::CancelledError("sample cancelled");
    if (limiter_.CanSample(store_.size())) break;
    // Too few rows, or the actors are behind the sampling ratio: wait for inserts.
    auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return closed_ || cancelled() || limiter_.CanSample(store_.size());
    };
    const absl::Time start = absl::Now();
    limiter_.BeginSampleWait();
    const bool ready_in_time = mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
    limiter_.EndSampleWait(absl::Now() - start);
    if (!ready_in_time) {
      return absl::DeadlineExceededError(
          absl::StrCat("sample waited ", absl::FormatDuration(timeout), " for the rate limiter (size=", store_.size(),
                       ", min_size_to_sample=", limiter_.config().min_size_to_sample, ", diff=", limiter_.diff(),
                       ", min_diff=", limiter_.config().min_diff, "): the inserters are behind"));
    }
  }
  selector_->Sample(absl::MakeSpan(slots), rng_);
  store_.Gather(slots, obs, action, reward, next_obs, terminated, /*truncated=*/nullptr, versions);
  limiter_.Sampled(rows);
  ++counters_.sampled_batches;
  counters_.sampled_transitions += rows;
  response.set_table_size(store_.size());
  return response;
}

void Table::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;  // waiters re-evaluate their conditions when the lock is released
}

void Table::SetLog(InsertLog* log) {
  absl::MutexLock lock(&mu_);
  log_ = log;
}

TableState Table::Copy(absl::FunctionRef<void()> while_locked) {
  // Allocate (and fault in) the copy before locking, with room for rows that arrive meanwhile,
  // so the lock covers only the memcpy.
  int64_t estimate;
  {
    absl::MutexLock lock(&mu_);
    estimate = store_.size();
  }
  const int64_t room = std::min(config_.capacity, estimate + 16 * config_.max_batch_rows);
  TableState state{TransitionStore(config_.obs_dim, config_.action_dim, std::max<int64_t>(room, 1)), {}, {}, {}};
  absl::MutexLock lock(&mu_);
  const absl::Time locked = absl::Now();
  if (store_.size() <= state.store.capacity()) {
    store_.CopyOldestFirstTo(state.store);
  } else {
    state.store = store_.CompactCopy();  // it grew by more than the room left
  }
  state.counters = counters_;
  for (const auto& [actor_id, actor] : actors_) {
    if (actor.last_sequence_number > 0) {
      state.last_sequence_numbers[actor_id] = actor.last_sequence_number;
    }
  }
  while_locked();
  state.lock_time = absl::Now() - locked;
  return state;
}

absl::Status Table::LoadRows(const TransitionBatchView& rows, const void* per_row_versions) {
  if (rows.obs_dim != config_.obs_dim || rows.action_dim != config_.action_dim) {
    return absl::FailedPreconditionError(
        absl::StrCat("rows have obs_dim=", rows.obs_dim, ", action_dim=", rows.action_dim,
                     " but the table has obs_dim=", config_.obs_dim, ", action_dim=", config_.action_dim));
  }
  absl::MutexLock lock(&mu_);
  StoreLocked(rows, per_row_versions);
  return absl::OkStatus();
}

void Table::LoadState(const std::map<uint64_t, uint64_t>& last_sequence_numbers, const TableCounters& counters) {
  absl::MutexLock lock(&mu_);
  for (const auto& [actor_id, last] : last_sequence_numbers) {
    ActorState& actor = actors_[actor_id];
    actor.last_sequence_number = std::max(actor.last_sequence_number, last);
  }
  counters_ = counters;
  limiter_.Reset(counters.inserted_transitions, counters.sampled_transitions);
}

absl::StatusOr<bool> Table::Replay(const proto::TransitionBatch& batch) {
  BatchSignature signature = signature_;
  signature.max_rows = std::numeric_limits<int64_t>::max();  // logged under an older limit
  absl::StatusOr<TransitionBatchView> view = ValidateTransitionBatch(batch, signature);
  if (!view.ok()) return view.status();
  absl::MutexLock lock(&mu_);
  ActorState& actor = actors_[batch.actor_id()];
  if (batch.sequence_number() != 0 && batch.sequence_number() <= actor.last_sequence_number) {
    return false;
  }
  StoreLocked(*view, nullptr);
  actor.last_sequence_number = std::max(actor.last_sequence_number, batch.sequence_number());
  return true;
}

void Table::CenterRateLimiter() {
  absl::MutexLock lock(&mu_);
  limiter_.Center();
}

proto::TableInfo Table::Info() const {
  proto::TableInfo info;
  info.set_obs_dim(config_.obs_dim);
  info.set_action_dim(config_.action_dim);
  info.set_capacity(config_.capacity);
  info.set_rejected_batches(rejected_batches_.load(std::memory_order_relaxed));
  absl::MutexLock lock(&mu_);
  info.set_size(store_.size());
  info.set_inserted_batches(counters_.inserted_batches);
  info.set_inserted_transitions(counters_.inserted_transitions);
  info.set_sampled_batches(counters_.sampled_batches);
  info.set_sampled_transitions(counters_.sampled_transitions);
  info.set_duplicate_batches(duplicate_batches_);
  info.set_newest_policy_version(newest_policy_version_);
  info.set_training_done(training_done_);
  info.set_bytes(store_.bytes());
  int64_t actors = 0;
  for (const auto& [actor_id, actor] : actors_) {
    if (actor.last_sequence_number == 0) continue;
    ++actors;
    (*info.mutable_last_sequence_number_by_actor())[actor_id] = actor.last_sequence_number;
  }
  info.set_actors(actors);
  info.set_selector(selector_->name());
  return info;
}

proto::RateLimiterInfo Table::RateLimiterState() const {
  absl::MutexLock lock(&mu_);
  return limiter_.Info(store_.size());
}

int64_t Table::size() const {
  absl::MutexLock lock(&mu_);
  return store_.size();
}

uint64_t Table::LastSequenceNumber(uint64_t actor_id) const {
  absl::MutexLock lock(&mu_);
  auto it = actors_.find(actor_id);
  return it == actors_.end() ? 0 : it->second.last_sequence_number;
}

}  // namespace meow
