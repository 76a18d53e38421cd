// Framed, checksummed records: the on-disk unit of replay's snapshots and logs. A record is
//   magic "MWR1" (u32 LE) | payload length (u32 LE) | masked CRC-32C of the payload (u32 LE) |
//   payload.
// A torn write leaves a short header or payload; a flipped bit fails the magic or the checksum.
// Either way the reader stops at the last good record and says which file and offset failed.
// The POSIX write, sync and atomic-file helpers it uses live in common/file_util.h.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/file_util.h"
#include "google/protobuf/message_lite.h"

namespace meow {

inline constexpr uint32_t kRecordMagic = 0x3152574du;  // "MWR1" little-endian
inline constexpr size_t kRecordHeaderBytes = 12;
inline constexpr uint32_t kMaxRecordBytes = 1u << 30;

// Appends one record holding `message` to `out`, serialising straight into it.
void AppendRecord(const google::protobuf::MessageLite& message, std::string* out);
// Appends one record holding `payload` to `out`.
void AppendRecord(absl::string_view payload, std::string* out);

// Reads records front to back. Not thread-safe; owns its file handle.
class RecordReader {
 public:
  static absl::StatusOr<std::unique_ptr<RecordReader>> Open(const std::string& path);
  ~RecordReader();
  RecordReader(const RecordReader&) = delete;
  RecordReader& operator=(const RecordReader&) = delete;

  // The next record's payload; nullopt at a clean end of file; DATA_LOSS naming the file and the
  // offset for a truncated or corrupt record (after which the reader stays at that offset).
  absl::StatusOr<std::optional<std::string>> Next();

  // Bytes of the file covered by the good records read so far.
  int64_t offset() const { return offset_; }
  const std::string& path() const { return path_; }

 private:
  RecordReader(std::string path, FILE* file) : path_(std::move(path)), file_(file) {}

  std::string path_;
  FILE* file_;  // owned
  int64_t offset_ = 0;
  bool failed_ = false;
};

}  // namespace meow
