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
// Rotate switches to a new file (used by snapshots, under the table's mutex): the new file is
// created first, so a failure leaves the current one in use; then the buffer is flushed to the old
// file. Positions count records across files.
//
// Thread-safe. Lock order: the table's mutex -> ReplayLog::mu_.
#pragma once

#include <cstdint>
#include <memory>
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
  static absl::StatusOr<std::unique_ptr<ReplayLog>> Create(const std::string& path,
                                                           const proto::LogHeader& header,
                                                           bool fsync);
  ~ReplayLog() override;  // writes what is buffered (best effort) and closes the file
  ReplayLog(const ReplayLog&) = delete;
  ReplayLog& operator=(const ReplayLog&) = delete;

  uint64_t Append(const proto::TransitionBatch& batch) override ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t position() const override ABSL_LOCKS_EXCLUDED(mu_);

  // Returns once every record up to `position` is written (and synced with `fsync`), or the
  // sticky write error, or DEADLINE_EXCEEDED.
  absl::Status WaitDurable(uint64_t position, absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);

  // Continues in a new file at `path` (see the class comment).
  absl::Status Rotate(const std::string& path, const proto::LogHeader& header)
      ABSL_LOCKS_EXCLUDED(mu_);

  // The sticky write error, OK when none.
  absl::Status status() const override ABSL_LOCKS_EXCLUDED(mu_);
  std::string path() const ABSL_LOCKS_EXCLUDED(mu_);
  int64_t file_records() const ABSL_LOCKS_EXCLUDED(mu_);  // batches in the current file
  int64_t file_bytes() const ABSL_LOCKS_EXCLUDED(mu_);    // bytes of the current file
  bool fsync() const { return fsync_; }

 private:
  ReplayLog(std::string path, int fd, bool fsync, int64_t header_bytes);

  // Opens `path` and writes the header record; returns the descriptor.
  static absl::StatusOr<int> OpenFile(const std::string& path, const proto::LogHeader& header,
                                      bool fsync, int64_t* bytes);

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
  int64_t file_records_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t file_bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace meow
