// Owns a replay directory: recovers the table from it at start, logs every stored batch, and
// writes snapshots (periodically, when the log outgrows the table, and on request).
//
// Files: snapshot-<G>.meow holds the table as it was when log-<G>.meow was started (formats in
// replay/storage.proto). Recovery loads the newest snapshot that reads back completely (falling
// back to older ones, then to the good part of a damaged one) and replays every log from that
// generation on, each up to its last good record; what it could not read is reported with the
// file name, never a crash. It then starts a new generation and writes a fresh snapshot. After
// each snapshot the previous good snapshot and the logs since it are kept (a fallback should the
// newest be damaged later); older files are deleted.
//
// A snapshot locks the table only to copy it in memory and switch log files (Table::Copy); the
// file is written afterwards, beside ongoing inserts and samples.
//
// Thread-safe. The table must outlive this object. Lock order: snapshot_mu_ -> table -> mu_.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/file_util.h"
#include "proto/replay.pb.h"
#include "replay/replay_log.h"
#include "replay/table.h"

namespace meow {

struct PersistenceConfig {
  std::string directory;  // created if missing; empty = no persistence (memory only)
  // Acknowledge a batch only after its log record is fsynced (survives a power cut); otherwise
  // after write(2) (survives a kill of the process, which is cheaper).
  bool fsync_before_ack = false;
  absl::Duration snapshot_interval = absl::Minutes(10);  // absl::InfiniteDuration(): never
  // Snapshot once the current log holds this many bytes; 0 = the table's column bytes (a longer
  // log costs more to replay than the snapshot it would replace).
  int64_t snapshot_log_bytes = 0;

  absl::Status Validate() const;
};

// What start-up recovery found.
struct RecoveryReport {
  int64_t snapshot_generation = -1;  // generation loaded, -1 when none
  bool snapshot_complete = false;
  int64_t snapshot_rows = 0;
  int64_t log_batches = 0;             // batches replayed from logs
  int64_t log_duplicates = 0;          // logged batches already in the snapshot (skipped)
  int64_t max_generation = 0;          // highest generation seen in the directory
  int64_t transitions = 0;             // rows in the table after recovery
  bool rate_limiter_centered = false;  // logs were replayed: see Table::CenterRateLimiter
  std::vector<std::string> errors;     // each names its file
};

// Loads `directory` into `table` (see the class comment of Persistence). Errors only for a
// directory that cannot be listed, or files of another signature (FAILED_PRECONDITION); damaged
// files end up in RecoveryReport::errors.
absl::StatusOr<RecoveryReport> RecoverTable(const std::string& directory, Table* table);

std::string SnapshotPath(const std::string& directory, int64_t generation);
std::string LogPath(const std::string& directory, int64_t generation);

class Persistence {
 public:
  // Locks `config.directory` against a second server, recovers it into `table` (which must be
  // empty and not serving yet), starts a new log generation attached to the table, writes a
  // fresh snapshot and starts the periodic snapshot thread.
  static absl::StatusOr<std::unique_ptr<Persistence>> Open(const PersistenceConfig& config, Table* table);
  ~Persistence();  // Stop()s; writes no snapshot (call Snapshot() first for a clean shutdown)
  Persistence(const Persistence&) = delete;
  Persistence& operator=(const Persistence&) = delete;

  // Writes a snapshot now; returns where and how long it took.
  absl::StatusOr<proto::CheckpointResponse> Snapshot() ABSL_LOCKS_EXCLUDED(snapshot_mu_, mu_);

  // Returns once log `position` (from InsertResult) is durable in the configured sense.
  absl::Status WaitDurable(uint64_t position, absl::Time deadline) { return log_->WaitDurable(position, deadline); }
  // The log's sticky write error, OK when none.
  absl::Status log_status() const { return log_->status(); }

  proto::PersistenceInfo Info() const ABSL_LOCKS_EXCLUDED(mu_);
  const RecoveryReport& recovery() const { return recovery_; }

  // Stops the snapshot thread and detaches the log from the table. Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  Persistence(const PersistenceConfig& config, Table* table, DirectoryLock dir_lock, RecoveryReport recovery);

  void SnapshotLoop() ABSL_LOCKS_EXCLUDED(mu_);
  // Deletes files no longer needed once snapshot `newest` exists (see the class comment).
  void DeleteOldFiles(int64_t previous_good, int64_t newest);

  const PersistenceConfig config_;
  Table* const table_;      // not owned
  DirectoryLock dir_lock_;  // held for the object's life: one server per directory
  const RecoveryReport recovery_;
  std::unique_ptr<ReplayLog> log_;  // set in Open, then constant

  absl::Mutex snapshot_mu_;  // one snapshot at a time
  mutable absl::Mutex mu_ ABSL_ACQUIRED_AFTER(snapshot_mu_);
  int64_t generation_ ABSL_GUARDED_BY(mu_) = 0;  // of the current log
  int64_t last_good_snapshot_ ABSL_GUARDED_BY(mu_) = -1;
  int64_t snapshots_written_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_snapshot_time_ ABSL_GUARDED_BY(mu_);
  std::string last_snapshot_path_ ABSL_GUARDED_BY(mu_);
  double last_snapshot_seconds_ ABSL_GUARDED_BY(mu_) = 0;
  double last_copy_seconds_ ABSL_GUARDED_BY(mu_) = 0;
  std::string last_snapshot_error_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace meow
