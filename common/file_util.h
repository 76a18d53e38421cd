// Small file helpers shared by every process: whole-file reads, crash-safe writes (the one
// atomic-write helper: AtomicFileWriter, and WriteFileAtomically over it), POSIX writes and syncs
// with errors that name the file, and the directory lock.
// Thread-safe: free functions without shared state; an AtomicFileWriter or DirectoryLock is used
// by one thread.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meow {

// Reads a whole file. NotFound if it cannot be opened.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// Writes `bytes` to `path` + ".tmp", fsyncs it, renames it over `path` and fsyncs the directory,
// so after a crash `path` holds either the old or the new contents, never a torn mix (one
// AtomicFileWriter call sequence).
absl::Status WriteFileAtomically(const std::string& path, const std::string& bytes);

// write(2) all of `data` to `fd`, retrying short writes; errors name `path`.
absl::Status WriteAll(int fd, absl::string_view data, const std::string& path);
// fdatasync(2) with an error naming `path`.
absl::Status SyncFile(int fd, const std::string& path);
// fsync(2) on a directory, making renames and new files in it durable.
absl::Status SyncDirectory(const std::string& dir);

// Writes a file through `path`.tmp (data synced), then renames it over `path` and syncs the
// directory: after a crash `path` is either absent/old or complete. Not thread-safe per path.
class AtomicFileWriter {
 public:
  static absl::StatusOr<std::unique_ptr<AtomicFileWriter>> Create(const std::string& path);
  ~AtomicFileWriter();  // removes the temp file unless committed
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  absl::Status Append(absl::string_view data);
  absl::Status Commit();  // sync, close, rename, sync directory

 private:
  AtomicFileWriter(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}

  std::string path_;
  int fd_;  // owned; -1 once closed
  bool committed_ = false;
};

// An exclusive lock on DIR/LOCK (flock), held until destroyed: one process per directory.
// FailedPrecondition naming the directory when another process holds it.
class DirectoryLock {
 public:
  static absl::StatusOr<DirectoryLock> Acquire(const std::string& dir, const std::string& what);
  DirectoryLock(DirectoryLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  DirectoryLock& operator=(DirectoryLock&& other) noexcept;
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;
  ~DirectoryLock();

 private:
  explicit DirectoryLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace meow
