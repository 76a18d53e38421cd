// Learner checkpoints in a run directory: RUN_DIR/checkpoints/ckpt-<updates>.safetensors.
//
// Each file holds an Algorithm's state (for MEow: the flat parameters, target parameters and Adam
// moments), the LibTorch CPU generator state, and in its metadata the algorithm's name and its
// state metadata, the counters (environment steps, updates, skipped updates, weight version), and
// a CRC-32C of every tensor. A checkpoint of another algorithm is refused by name (files without
// the name are MEow's). A
// file is written to a temporary name, fsynced and renamed, so a crash never leaves a torn
// checkpoint; the newest `keep` files are kept. Restoring tries the newest first: a file that is
// truncated, malformed, fails its checksums or does not fit the updater is reported by name and
// the previous one is used.
// Not thread-safe: the learner loop saves and restores.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "learner/algorithm.h"

namespace meow {

struct LearnerCounters {
  int64_t env_steps = 0;
  int64_t updates = 0;  // applied updates (Algorithm::updates)
  int64_t skipped = 0;  // non-finite updates skipped
  int64_t version = 0;  // weight version last published
};

struct RestoreResult {
  std::optional<LearnerCounters> counters;  // nullopt: no usable checkpoint (a fresh start)
  std::string path;                         // the file restored from
  std::vector<std::string> problems;        // one line per checkpoint that could not be used
};

class CheckpointStore {
 public:
  explicit CheckpointStore(std::string run_dir, int keep = 3);

  // Writes a checkpoint of `algorithm` with `counters` and removes all but the newest `keep`.
  absl::Status Save(const Algorithm& algorithm, const LearnerCounters& counters);

  // Restores the newest usable checkpoint into `algorithm` (and the LibTorch CPU generator).
  // Errors for an unreadable directory, and FailedPrecondition when every checkpoint is another
  // algorithm's; other bad files are skipped and listed in `problems`.
  absl::StatusOr<RestoreResult> RestoreLatest(Algorithm& algorithm);

  // Checkpoint files, newest first.
  std::vector<std::string> List() const;
  const std::string& dir() const { return dir_; }

 private:
  absl::StatusOr<LearnerCounters> RestoreFrom(const std::string& path, Algorithm& algorithm);

  std::string dir_;
  int keep_;
};

}  // namespace meow
