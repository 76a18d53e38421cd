#include "replay/persistence.h"

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <map>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "replay/record_io.h"
#include "replay/snapshot.h"

namespace meow {
namespace {

constexpr char kSnapshotPrefix[] = "snapshot-";
constexpr char kLogPrefix[] = "log-";
constexpr char kSuffix[] = ".meow";

void Report(const std::string& message) { std::cerr << "[replay] " << message << std::endl; }

// Generations of the files named <prefix><digits>.meow in `files`.
std::vector<int64_t> Generations(const std::vector<std::string>& files, absl::string_view prefix) {
  std::vector<int64_t> generations;
  for (absl::string_view name : files) {
    if (!absl::ConsumePrefix(&name, prefix) || !absl::ConsumeSuffix(&name, kSuffix)) continue;
    int64_t generation = 0;
    if (!name.empty() && absl::SimpleAtoi(name, &generation) && generation >= 0) {
      generations.push_back(generation);
    }
  }
  std::sort(generations.begin(), generations.end());
  return generations;
}

absl::StatusOr<std::vector<std::string>> ListFiles(const std::string& directory) {
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(directory, ec)) {
    files.push_back(entry.path().filename().string());
  }
  if (ec) {
    return absl::InternalError(absl::StrCat("cannot list ", directory, ": ", ec.message()));
  }
  return files;
}

proto::LogHeader MakeLogHeader(const Table& table, int64_t generation) {
  proto::LogHeader header;
  header.set_format_version(kStorageFormatVersion);
  header.set_generation(generation);
  header.set_obs_dim(table.config().obs_dim);
  header.set_action_dim(table.config().action_dim);
  return header;
}

absl::Status CheckSignature(const std::string& path, int obs_dim, int action_dim, const Table& table) {
  if (obs_dim == table.config().obs_dim && action_dim == table.config().action_dim) {
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(
      absl::StrCat(path, " holds transitions with obs_dim=", obs_dim, ", action_dim=", action_dim,
                   " but the table has obs_dim=", table.config().obs_dim, ", action_dim=", table.config().action_dim,
                   "; use another directory or the matching task"));
}

// Loads the good chunks and the state of `snapshot` into `table`. The per-actor sequence numbers
// only of a complete snapshot: a partial one lost its newest rows, and claiming their batches as
// stored would make clients drop them instead of resending.
absl::Status LoadSnapshot(const LoadedSnapshot& snapshot, Table* table) {
  const BatchSignature signature{snapshot.header.obs_dim(), snapshot.header.action_dim()};
  for (const proto::SnapshotChunk& chunk : snapshot.chunks) {
    absl::StatusOr<TransitionBatchView> view = ValidateTransitionBatch(chunk.rows(), signature);
    if (!view.ok()) return view.status();  // ReadSnapshot validated it already
    if (absl::Status s = table->LoadRows(*view, chunk.policy_version().data().data()); !s.ok()) {
      return s;
    }
  }
  std::map<uint64_t, uint64_t> last_sequence_numbers;
  if (snapshot.complete) {
    for (const proto::ActorSequence& actor : snapshot.header.actors()) {
      last_sequence_numbers[actor.actor_id()] = actor.last_sequence_number();
    }
  }
  TableCounters counters;
  counters.inserted_batches = snapshot.header.inserted_batches();
  counters.inserted_transitions = snapshot.header.inserted_transitions();
  counters.sampled_batches = snapshot.header.sampled_batches();
  counters.sampled_transitions = snapshot.header.sampled_transitions();
  table->LoadState(last_sequence_numbers, counters);
  return absl::OkStatus();
}

}  // namespace

absl::Status PersistenceConfig::Validate() const {
  if (directory.empty()) return absl::OkStatus();
  if (snapshot_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("persistence.snapshot_interval: expected > 0, got ", absl::FormatDuration(snapshot_interval)));
  }
  if (snapshot_log_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("persistence.snapshot_log_bytes: expected >= 0, got ", snapshot_log_bytes));
  }
  return absl::OkStatus();
}

std::string SnapshotPath(const std::string& directory, int64_t generation) {
  return absl::StrFormat("%s/%s%012d%s", directory, kSnapshotPrefix, generation, kSuffix);
}

std::string LogPath(const std::string& directory, int64_t generation) {
  return absl::StrFormat("%s/%s%012d%s", directory, kLogPrefix, generation, kSuffix);
}

absl::StatusOr<RecoveryReport> RecoverTable(const std::string& directory, Table* table) {
  absl::StatusOr<std::vector<std::string>> files = ListFiles(directory);
  if (!files.ok()) return files.status();
  RecoveryReport report;
  const std::vector<int64_t> snapshots = Generations(*files, kSnapshotPrefix);
  const std::vector<int64_t> logs = Generations(*files, kLogPrefix);
  if (!snapshots.empty()) report.max_generation = snapshots.back();
  if (!logs.empty()) report.max_generation = std::max(report.max_generation, logs.back());

  // The newest snapshot that reads back completely; else the newest readable part of one.
  std::optional<LoadedSnapshot> chosen;
  int64_t chosen_generation = -1;
  std::optional<LoadedSnapshot> partial;
  int64_t partial_generation = -1;
  for (auto it = snapshots.rbegin(); it != snapshots.rend(); ++it) {
    const std::string path = SnapshotPath(directory, *it);
    absl::StatusOr<LoadedSnapshot> loaded = ReadSnapshot(path);
    if (loaded.ok() && loaded->header.generation() != *it) {
      loaded = absl::DataLossError(absl::StrCat(path, ": header says generation ", loaded->header.generation()));
    }
    if (!loaded.ok()) {
      if (loaded.status().code() == absl::StatusCode::kFailedPrecondition) return loaded.status();
      report.errors.push_back(std::string(loaded.status().message()));
      continue;
    }
    if (absl::Status s = CheckSignature(path, loaded->header.obs_dim(), loaded->header.action_dim(), *table); !s.ok()) {
      return s;
    }
    if (loaded->complete) {
      chosen = *std::move(loaded);
      chosen_generation = *it;
      break;
    }
    report.errors.push_back(std::string(loaded->error.message()));
    if (!partial.has_value()) {
      partial = *std::move(loaded);
      partial_generation = *it;
    }
  }
  if (!chosen.has_value() && partial.has_value()) {
    chosen = std::move(partial);
    chosen_generation = partial_generation;
  }
  if (chosen.has_value()) {
    if (absl::Status s = LoadSnapshot(*chosen, table); !s.ok()) return s;
    report.snapshot_generation = chosen_generation;
    report.snapshot_complete = chosen->complete;
    report.snapshot_rows = chosen->rows;
    if (!chosen->complete) {
      report.errors.push_back(absl::StrCat(SnapshotPath(directory, chosen_generation), " is partial (", chosen->rows,
                                           " of ", chosen->header.rows(),
                                           " rows): its per-actor sequence numbers are not restored, so "
                                           "actors resend what they still hold"));
    }
    chosen.reset();  // free the copy before replaying logs
  }

  // Every log from the snapshot's generation on, oldest first, each up to its last good record.
  for (int64_t generation : logs) {
    if (generation < report.snapshot_generation) continue;
    const std::string path = LogPath(directory, generation);
    absl::StatusOr<std::unique_ptr<RecordReader>> reader = RecordReader::Open(path);
    if (!reader.ok()) {
      report.errors.push_back(std::string(reader.status().message()));
      continue;
    }
    bool header_seen = false;
    for (;;) {
      absl::StatusOr<std::optional<std::string>> payload = (*reader)->Next();
      if (!payload.ok()) {
        report.errors.push_back(std::string(payload.status().message()));
        break;
      }
      if (!payload->has_value()) break;  // clean end (an empty file is a log created at a crash)
      if (!header_seen) {
        proto::LogHeader header;
        if (!header.ParseFromString(**payload)) {
          report.errors.push_back(absl::StrCat(path, ": unparsable log header"));
          break;
        }
        if (absl::Status s = CheckSignature(path, header.obs_dim(), header.action_dim(), *table); !s.ok()) {
          return s;
        }
        header_seen = true;
        continue;
      }
      proto::TransitionBatch batch;
      absl::StatusOr<bool> stored =
          batch.ParseFromString(**payload) ? table->Replay(batch) : absl::DataLossError("unparsable batch");
      if (!stored.ok()) {
        report.errors.push_back(absl::StrCat(path, ": record ending at offset ", (*reader)->offset(),
                                             " skipped: ", stored.status().message()));
        continue;
      }
      if (*stored) {
        ++report.log_batches;
      } else {
        ++report.log_duplicates;
      }
    }
  }
  if (report.log_batches > 0) {
    table->CenterRateLimiter();
    report.rate_limiter_centered = true;
  }
  report.transitions = table->size();
  return report;
}

absl::StatusOr<std::unique_ptr<Persistence>> Persistence::Open(const PersistenceConfig& config, Table* table) {
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  if (config.directory.empty()) {
    return absl::InvalidArgumentError("persistence.directory: expected a path, got \"\"");
  }
  std::error_code ec;
  std::filesystem::create_directories(config.directory, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create replay directory ", config.directory, ": ", ec.message()));
  }
  // One server per directory: a second one would interleave logs.
  absl::StatusOr<DirectoryLock> dir_lock = DirectoryLock::Acquire(config.directory, "replay directory");
  if (!dir_lock.ok()) return dir_lock.status();
  // Leftovers of snapshots that were being written at a crash.
  if (auto files = ListFiles(config.directory); files.ok()) {
    for (const std::string& name : *files) {
      if (absl::EndsWith(name, ".tmp")) std::filesystem::remove(config.directory + "/" + name, ec);
    }
  }

  absl::StatusOr<RecoveryReport> recovery = RecoverTable(config.directory, table);
  if (!recovery.ok()) return recovery.status();
  for (const std::string& error : recovery->errors) Report(absl::StrCat("recovery: ", error));
  if (recovery->snapshot_generation >= 0 || recovery->log_batches > 0) {
    Report(absl::StrCat("recovered ", table->size(), " transitions from ", config.directory, " (snapshot generation ",
                        recovery->snapshot_generation, ": ", recovery->snapshot_rows, " rows; ", recovery->log_batches,
                        " logged batches",
                        recovery->rate_limiter_centered ? "; rate limiter put mid-band, as samples are not logged" : "",
                        ")"));
  }

  std::unique_ptr<Persistence> persistence(new Persistence(config, table, *std::move(dir_lock), *std::move(recovery)));
  const int64_t generation = persistence->recovery_.max_generation + 1;
  absl::StatusOr<std::unique_ptr<ReplayLog>> log = ReplayLog::Create(
      LogPath(config.directory, generation), MakeLogHeader(*table, generation), config.fsync_before_ack);
  if (!log.ok()) return log.status();
  persistence->log_ = *std::move(log);
  {
    absl::MutexLock lock(&persistence->mu_);
    persistence->generation_ = generation;
    if (persistence->recovery_.snapshot_complete) {
      persistence->last_good_snapshot_ = persistence->recovery_.snapshot_generation;
    }
  }
  table->SetLog(persistence->log_.get());
  // A fresh snapshot folds the replayed logs in and supersedes damaged files. Failing to write
  // it is reported, not fatal: the logs still hold everything.
  if (absl::StatusOr<proto::CheckpointResponse> snapshot = persistence->Snapshot(); !snapshot.ok()) {
    Report(absl::StrCat("start-up snapshot failed: ", snapshot.status().message()));
  }
  persistence->thread_ = std::thread([p = persistence.get()] { p->SnapshotLoop(); });
  return persistence;
}

Persistence::Persistence(const PersistenceConfig& config, Table* table, DirectoryLock dir_lock, RecoveryReport recovery)
    : config_(config), table_(table), dir_lock_(std::move(dir_lock)), recovery_(std::move(recovery)) {
  absl::MutexLock lock(&mu_);
  last_snapshot_time_ = absl::Now();
}

Persistence::~Persistence() {
  Stop();
  log_.reset();
}

void Persistence::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return;
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
  if (log_ != nullptr) table_->SetLog(nullptr);
}

absl::StatusOr<proto::CheckpointResponse> Persistence::Snapshot() {
  absl::MutexLock snapshot_lock(&snapshot_mu_);
  const absl::Time start = absl::Now();
  int64_t generation;
  {
    absl::MutexLock lock(&mu_);
    generation = generation_ + 1;
  }
  // Copy the table and switch to the next log atomically: the snapshot then holds exactly the
  // batches logged before it. The next log file is created before and the previous one written
  // and closed after, so that no file I/O happens under the table's lock.
  auto failed = [&](const absl::Status& status) {
    absl::MutexLock lock(&mu_);
    last_snapshot_error_ = std::string(status.message());
    return status;
  };
  absl::Status rotated =
      log_->PrepareRotation(LogPath(config_.directory, generation), MakeLogHeader(*table_, generation));
  if (!rotated.ok()) return failed(rotated);
  TableState state = table_->Copy([&] { rotated = log_->SwitchToPrepared(); });
  if (rotated.ok()) rotated = log_->FinishRotation(absl::InfiniteFuture());
  if (!rotated.ok()) return failed(rotated);
  const absl::Duration copy_time = state.lock_time;
  int64_t previous_good;
  {
    absl::MutexLock lock(&mu_);
    generation_ = generation;
    previous_good = last_good_snapshot_;
  }
  const std::string path = SnapshotPath(config_.directory, generation);
  absl::Status written = WriteSnapshot(path, state, generation, table_->config().capacity);
  const int64_t rows = state.store.size();
  state = TableState{TransitionStore(1, 1, 1), {}, {}, {}};  // free the copy before cleaning up
  const absl::Duration total = absl::Now() - start;
  if (written.ok()) DeleteOldFiles(previous_good, generation);
  absl::MutexLock lock(&mu_);
  last_snapshot_time_ = absl::Now();
  if (!written.ok()) {
    last_snapshot_error_ = std::string(written.message());
    return written;
  }
  last_good_snapshot_ = generation;
  ++snapshots_written_;
  last_snapshot_path_ = path;
  last_snapshot_seconds_ = absl::ToDoubleSeconds(total);
  last_copy_seconds_ = absl::ToDoubleSeconds(copy_time);
  last_snapshot_error_.clear();
  proto::CheckpointResponse response;
  response.set_path(path);
  response.set_generation(generation);
  response.set_rows(rows);
  response.set_seconds(absl::ToDoubleSeconds(total));
  return response;
}

void Persistence::DeleteOldFiles(int64_t previous_good, int64_t newest) {
  absl::StatusOr<std::vector<std::string>> files = ListFiles(config_.directory);
  if (!files.ok()) return;
  // Logs are needed from the fallback snapshot on (or from the newest, without a fallback).
  const int64_t first_log = previous_good >= 0 ? previous_good : newest;
  std::error_code ec;
  for (int64_t generation : Generations(*files, kSnapshotPrefix)) {
    if (generation < newest && generation != previous_good) {
      std::filesystem::remove(SnapshotPath(config_.directory, generation), ec);
    }
  }
  for (int64_t generation : Generations(*files, kLogPrefix)) {
    if (generation < first_log) std::filesystem::remove(LogPath(config_.directory, generation), ec);
  }
}

void Persistence::SnapshotLoop() {
  const int64_t log_limit = config_.snapshot_log_bytes > 0 ? config_.snapshot_log_bytes : table_->Info().bytes();
  const absl::Duration poll = std::min(absl::Seconds(1), config_.snapshot_interval);
  for (;;) {
    bool due;
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stop_), poll)) return;
      due = absl::Now() - last_snapshot_time_ >= config_.snapshot_interval;
    }
    if (!due && log_->file_bytes() < log_limit) continue;
    if (absl::StatusOr<proto::CheckpointResponse> snapshot = Snapshot(); !snapshot.ok()) {
      Report(absl::StrCat("snapshot failed: ", snapshot.status().message()));
    }
  }
}

proto::PersistenceInfo Persistence::Info() const {
  proto::PersistenceInfo info;
  info.set_enabled(true);
  info.set_directory(config_.directory);
  info.set_fsync_before_ack(config_.fsync_before_ack);
  info.set_log_records(log_->file_records());
  info.set_log_bytes(log_->file_bytes());
  if (absl::Status s = log_->status(); !s.ok()) info.set_log_error(std::string(s.message()));
  info.set_recovered_transitions(recovery_.transitions);
  for (const std::string& error : recovery_.errors) info.add_recovery_errors(error);
  absl::MutexLock lock(&mu_);
  info.set_generation(generation_);
  info.set_snapshots_written(snapshots_written_);
  info.set_last_snapshot_path(last_snapshot_path_);
  info.set_last_snapshot_seconds(last_snapshot_seconds_);
  info.set_last_snapshot_copy_seconds(last_copy_seconds_);
  info.set_last_snapshot_error(last_snapshot_error_);
  return info;
}

}  // namespace meow
