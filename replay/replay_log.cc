#include "replay/replay_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "replay/record_io.h"

namespace meow {

absl::StatusOr<int> ReplayLog::OpenFile(const std::string& path, const proto::LogHeader& header, bool fsync,
                                        int64_t* bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("cannot create ", path, ": ", std::strerror(errno)));
  }
  std::string record;
  AppendRecord(header, &record);
  absl::Status status = WriteAll(fd, record, path);
  if (status.ok() && fsync) status = SyncFile(fd, path);
  if (status.ok() && fsync) {
    const std::string dir = std::filesystem::path(path).parent_path().string();
    status = SyncDirectory(dir.empty() ? "." : dir);
  }
  if (!status.ok()) {
    ::close(fd);
    return status;
  }
  *bytes = static_cast<int64_t>(record.size());
  return fd;
}

absl::StatusOr<std::unique_ptr<ReplayLog>> ReplayLog::Create(const std::string& path, const proto::LogHeader& header,
                                                             bool fsync) {
  int64_t bytes = 0;
  absl::StatusOr<int> fd = OpenFile(path, header, fsync, &bytes);
  if (!fd.ok()) return fd.status();
  return std::unique_ptr<ReplayLog>(new ReplayLog(path, *fd, fsync, bytes));
}

ReplayLog::ReplayLog(std::string path, int fd, bool fsync, int64_t header_bytes)
    : fsync_(fsync), path_(std::move(path)), fd_(fd), file_bytes_(header_bytes) {}

ReplayLog::~ReplayLog() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](bool* writing) { return !*writing; }, &writing_));
  if (retiring_.has_value()) {
    if (error_.ok()) (void)WriteAll(retiring_->file.fd, retiring_->pending, retiring_->file.path);
    ::close(retiring_->file.fd);
  }
  if (error_.ok() && !pending_.empty()) (void)WriteAll(fd_, pending_, path_);
  ::close(fd_);
  if (prepared_.has_value()) ::close(prepared_->fd);
}

absl::Status ReplayLog::Retire(Retiring retiring) {
  absl::Status status = WriteAll(retiring.file.fd, retiring.pending, retiring.file.path);
  if (status.ok() && fsync_) status = SyncFile(retiring.file.fd, retiring.file.path);
  ::close(retiring.file.fd);
  return status;
}

uint64_t ReplayLog::Append(const proto::TransitionBatch& batch) {
  absl::MutexLock lock(&mu_);
  const size_t before = pending_.size();
  AppendRecord(batch, &pending_);
  ++file_records_;
  file_bytes_ += static_cast<int64_t>(pending_.size() - before);
  return ++appended_;
}

uint64_t ReplayLog::position() const {
  absl::MutexLock lock(&mu_);
  return appended_;
}

absl::Status ReplayLog::WaitDurable(uint64_t position, absl::Time deadline) {
  mu_.Lock();
  for (;;) {
    if (!error_.ok()) {
      absl::Status error = error_;
      mu_.Unlock();
      return error;
    }
    // A file switched away from still has to be written and closed, even when nothing of it
    // is pending (FinishRotation relies on that).
    if (durable_ >= position && !retiring_.has_value()) break;
    if (!writing_) {
      // Become the leader: write everything buffered so far in one go, outside the lock.
      writing_ = true;
      std::optional<Retiring> retiring = std::move(retiring_);
      retiring_.reset();
      std::string buffer = std::move(spare_);
      buffer.swap(pending_);
      const uint64_t target = appended_;
      const int fd = fd_;
      const std::string path = path_;
      mu_.Unlock();
      // The file switched away from first: its records come before the current file's.
      absl::Status status = retiring.has_value() ? Retire(*std::move(retiring)) : absl::OkStatus();
      if (status.ok()) status = WriteAll(fd, buffer, path);
      if (status.ok() && fsync_) status = SyncFile(fd, path);
      buffer.clear();
      mu_.Lock();
      spare_ = std::move(buffer);
      writing_ = false;
      if (status.ok()) {
        durable_ = std::max(durable_, target);
      } else {
        error_ = status;
      }
      continue;
    }
    // Another thread is writing; its write may cover us, else we lead the next one.
    auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !writing_; };
    if (!mu_.AwaitWithDeadline(absl::Condition(&done), deadline)) {
      mu_.Unlock();
      return absl::DeadlineExceededError(absl::StrCat("waiting for the replay log ", path(), " to be written"));
    }
  }
  mu_.Unlock();
  return absl::OkStatus();
}

absl::Status ReplayLog::PrepareRotation(const std::string& path, const proto::LogHeader& header) {
  {
    absl::MutexLock lock(&mu_);
    if (!error_.ok()) return error_;
    if (prepared_.has_value()) {  // left by a rotation that failed later: replaced
      ::close(prepared_->fd);
      prepared_.reset();
    }
  }
  int64_t header_bytes = 0;
  absl::StatusOr<int> fd = OpenFile(path, header, fsync_, &header_bytes);
  if (!fd.ok()) return fd.status();
  absl::MutexLock lock(&mu_);
  prepared_ = File{*fd, path, header_bytes};
  return absl::OkStatus();
}

absl::Status ReplayLog::SwitchToPrepared() {
  absl::MutexLock lock(&mu_);
  if (!prepared_.has_value()) return absl::FailedPreconditionError("no replay log file prepared");
  if (!error_.ok()) return error_;
  if (retiring_.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the replay log's previous file ", retiring_->file.path, " is not closed yet"));
  }
  Retiring retiring;
  retiring.file = File{fd_, path_, 0};
  retiring.pending = std::move(pending_);
  pending_.clear();
  retiring_ = std::move(retiring);
  fd_ = prepared_->fd;
  path_ = prepared_->path;
  file_records_ = 0;
  file_bytes_ = prepared_->header_bytes;
  prepared_.reset();
  return absl::OkStatus();
}

absl::Status ReplayLog::FinishRotation(absl::Time deadline) {
  uint64_t target;
  {
    absl::MutexLock lock(&mu_);
    target = appended_;
  }
  return WaitDurable(target, deadline);
}

absl::Status ReplayLog::status() const {
  absl::MutexLock lock(&mu_);
  return error_;
}

std::string ReplayLog::path() const {
  absl::MutexLock lock(&mu_);
  return path_;
}

int64_t ReplayLog::file_records() const {
  absl::MutexLock lock(&mu_);
  return file_records_;
}

int64_t ReplayLog::file_bytes() const {
  absl::MutexLock lock(&mu_);
  return file_bytes_;
}

}  // namespace meow
