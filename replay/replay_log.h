// The append-only log of batches stored since the last snapshot, with group commit.
//
// The table calls Append under its own mutex; Append only frames the batch into an in-memory
// buffer. An acknowledgement waits in WaitDurable: the first waiter to find no write in progress
// becomes the leader, takes the whole buffer, writes it with one write(2) (and one fdatasync when
// `fsync` is set) outside the lock, and releases every waiter its write covered. So a process
// kill never loses an acknowledged batch (its bytes reached the kernel before the ack), and with
// `fsync` neither does a power cut. A write error is sticky: later waits return it and the
// server stops acknowledging inserts.
//
// Rotation (for snapshots) in three steps, so that no file I/O happens under the table's mutex:
// PrepareRotation creates the next file and writes its header (a failure leaves the current file
// in use); SwitchToPrepared, under the table's mutex, only swaps descriptors and buffers (what is
// still buffered for the old file stays with it); the next write (or FinishRotation) writes the
// old file's rest, syncs and closes it before anything of the new one. Positions count records
// across files.
//
// Thread-safe. Lock order: the table's mutex -> ReplayLog::mu_.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/transition.pb.h"
#include "replay/storage.pb.h"
#include "replay/table.h"

namespace meow {

class ReplayLog final : public InsertLog {
 public:
  // Creates (truncating) the log file at `path` and writes `header` as its first record.
  static absl::StatusOr<std::unique_ptr<ReplayLog>> Create(const std::string& path, const proto::LogHeader& header,
                                                           bool fsync);
  ~ReplayLog() override;  // writes what is buffered (best effort) and closes the file
  ReplayLog(const ReplayLog&) = delete;
  ReplayLog& operator=(const ReplayLog&) = delete;

  uint64_t Append(const proto::TransitionBatch& batch) override ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t position() const override ABSL_LOCKS_EXCLUDED(mu_);

  // Returns once every record up to `position` is written (and synced with `fsync`), or the
  // sticky write error, or DEADLINE_EXCEEDED.
  absl::Status WaitDurable(uint64_t position, absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);

  // Creates the next file at `path` with `header` (I/O; call without the table's mutex). A file
  // prepared before and never switched to is closed and replaced.
  absl::Status PrepareRotation(const std::string& path, const proto::LogHeader& header) ABSL_LOCKS_EXCLUDED(mu_);
  // Continues in the prepared file; no I/O, no waiting (call under the table's mutex).
  // FAILED_PRECONDITION without a prepared file or while the previous rotation is unfinished.
  absl::Status SwitchToPrepared() ABSL_LOCKS_EXCLUDED(mu_);
  // Returns once the previous file is completely written (synced with `fsync`) and closed.
  absl::Status FinishRotation(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);

  // The sticky write error, OK when none.
  absl::Status status() const override ABSL_LOCKS_EXCLUDED(mu_);
  std::string path() const ABSL_LOCKS_EXCLUDED(mu_);
  int64_t file_records() const ABSL_LOCKS_EXCLUDED(mu_);  // batches in the current file
  int64_t file_bytes() const ABSL_LOCKS_EXCLUDED(mu_);    // bytes of the current file
  bool fsync() const { return fsync_; }

 private:
  ReplayLog(std::string path, int fd, bool fsync, int64_t header_bytes);

  // Opens `path` and writes the header record; returns the descriptor.
  static absl::StatusOr<int> OpenFile(const std::string& path, const proto::LogHeader& header, bool fsync,
                                      int64_t* bytes);
  // A file and the framed records that still have to reach it.
  struct File {
    int fd = -1;
    std::string path;
    int64_t header_bytes = 0;
  };
  struct Retiring {
    File file;
    std::string pending;
  };
  // Writes what is left for a retired file, syncs (with fsync_) and closes it.
  absl::Status Retire(Retiring retiring);

  const bool fsync_;
  mutable absl::Mutex mu_;
  std::string path_ ABSL_GUARDED_BY(mu_);
  int fd_ ABSL_GUARDED_BY(mu_);
  std::string pending_ ABSL_GUARDED_BY(mu_);    // framed records not yet written
  std::string spare_ ABSL_GUARDED_BY(mu_);      // an empty buffer kept for its capacity
  uint64_t appended_ ABSL_GUARDED_BY(mu_) = 0;  // newest record's position
  uint64_t durable_ ABSL_GUARDED_BY(mu_) = 0;   // every record up to here is written (+synced)
  bool writing_ ABSL_GUARDED_BY(mu_) = false;   // a leader writes outside the lock
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  std::optional<File> prepared_ ABSL_GUARDED_BY(mu_);      // created, not yet switched to
  std::optional<Retiring> retiring_ ABSL_GUARDED_BY(mu_);  // switched away from, not yet closed
  int64_t file_records_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t file_bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace meow
