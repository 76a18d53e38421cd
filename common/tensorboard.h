// TensorBoard event files: scalars that TensorBoard plots, written as TFRecords of Event protos.
//
// File format (TFRecord): per record, the payload length as a little-endian uint64, the masked
// CRC-32C of those 8 bytes (uint32), the payload (a serialised Event), and the masked CRC-32C of
// the payload. The first record is Event{file_version: "brain.Event:2"}; each scalar row is one
// Event with the step and one Summary.Value per tag.
// Not thread-safe: one writer per file, used by one thread (the learner's metrics loop).
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace meow {

class TensorBoardWriter {
 public:
  // Creates DIR/events.out.tfevents.<seconds>.<host> (DIR is created when missing).
  static absl::StatusOr<std::unique_ptr<TensorBoardWriter>> Create(const std::string& dir);
  ~TensorBoardWriter();

  // One Event at `step` holding every finite value of `scalars` (NaN and inf are left out).
  absl::Status AddScalars(int64_t step, double wall_time, const std::map<std::string, double>& scalars);
  absl::Status Flush();
  const std::string& path() const { return path_; }

 private:
  TensorBoardWriter(std::string path, std::FILE* file) : path_(std::move(path)), file_(file) {}
  absl::Status WriteRecord(const std::string& payload);

  std::string path_;
  std::FILE* file_;  // owned
};

// A scalar read back from an event file.
struct ScalarEvent {
  int64_t step = 0;
  double wall_time = 0;
  std::string tag;
  float value = 0;
};

// Reads every scalar of an event file, checking each record's checksums. DataLoss naming the file
// and the record's offset for a torn or corrupt record.
absl::StatusOr<std::vector<ScalarEvent>> ReadTensorBoardScalars(const std::string& path);

}  // namespace meow
