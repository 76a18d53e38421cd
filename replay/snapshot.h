// Writing and reading replay snapshots (format in replay/storage.proto): a header with the
// signature, counters and per-actor sequence numbers, the rows in chunks oldest first, and a
// footer that marks the file complete. Files are written through a temp file and renamed.
// Thread-safe: free functions; concurrent calls must use different paths.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "replay/storage.pb.h"
#include "replay/table.h"

namespace meow {

inline constexpr int kStorageFormatVersion = 1;

// Writes `state` as snapshot `generation` to `path`. Rows go in chunks of `chunk_rows`.
absl::Status WriteSnapshot(const std::string& path, const TableState& state, int64_t generation, int64_t capacity,
                           int64_t chunk_rows = 16384);

struct LoadedSnapshot {
  proto::SnapshotHeader header;
  std::vector<proto::SnapshotChunk> chunks;  // good chunks, oldest rows first
  int64_t rows = 0;                          // rows in `chunks`
  bool complete = false;                     // every chunk and the footer read and consistent
  absl::Status error;                        // why not complete (names the file), OK if complete
};

// Reads a snapshot. An unreadable header is an error (DATA_LOSS / NOT_FOUND naming the file); a
// later problem keeps the good chunks before it and sets `error`.
absl::StatusOr<LoadedSnapshot> ReadSnapshot(const std::string& path);

// Reads only a snapshot's header (its signature, capacity and row count), with ReadSnapshot's
// errors for an unreadable one.
absl::StatusOr<proto::SnapshotHeader> ReadSnapshotHeader(const std::string& path);

}  // namespace meow
