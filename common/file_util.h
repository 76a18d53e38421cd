// Small file helpers shared by every process: whole-file reads and crash-safe writes.
// Thread-safe: free functions without shared state.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace meow {

// Reads a whole file. NotFound if it cannot be opened.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// Writes `bytes` to `path` + ".tmp", fsyncs it, renames it over `path` and fsyncs the directory,
// so after a crash `path` holds either the old or the new contents, never a torn mix.
absl::Status WriteFileAtomically(const std::string& path, const std::string& bytes);

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
