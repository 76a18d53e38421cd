// Offline datasets: a fixed set of transitions in the D4RL layout, as HDF5 files that offline-RL
// users already have tools for (h5py, d4rl), and the bridge between them and replay's storage.
//
// File layout (every dataset at the root, N rows):
//   observations       float32 [N, S]
//   actions            float32 [N, A], in [-1, 1]
//   rewards            float32 [N]
//   next_observations  float32 [N, S]
//   terminals          bool    [N]   true termination (the target does not bootstrap)
//   timeouts           bool    [N]   the episode ended by its time limit (truncation)
//   metadata/...       scalar strings and integers: task, source, policy, env_steps, episodes, ...
// Booleans are written as h5py writes numpy bools (an int8 enum FALSE = 0, TRUE = 1). Reading
// accepts that, integers and floats of 0 / 1; float columns may be stored in any HDF5 float or
// integer type. A file without next_observations (D4RL's raw layout) gets them from the next row
// within an episode, and the last row of an episode that ended by timeout is dropped, since its
// successor is unknown (d4rl.qlearning_dataset does the same).
//
// Thread-safe: HDF5's serial library is not, so every call here takes one process-wide lock.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/tensor_codec.h"
#include "replay/transition_store.h"

namespace meow {

// What a dataset says about itself (metadata/ in the file). Values read from a user's file that
// are not ours land in `extra`.
struct DatasetMetadata {
  std::string task;    // e.g. "Hopper-v4"; empty when the file does not say
  std::string source;  // "replay", "policy", "random", or what the file says
  std::string policy;  // the policy file or run that acted, when there was one
  int64_t env_steps = -1;  // environment steps of the run behind it (-1: unknown)
  int64_t episodes = -1;   // episodes the rows come from (-1: unknown)
  std::map<std::string, std::string> extra;
};

// Rows in columns, row-major, as in the file.
struct Dataset {
  int obs_dim = 0;
  int action_dim = 0;
  int64_t rows = 0;
  std::vector<float> observations, actions, rewards, next_observations;
  std::vector<uint8_t> terminals, timeouts;
  DatasetMetadata metadata;

  // Appends one row (sizes obs_dim, action_dim, obs_dim).
  void Add(const float* obs, const float* action, float reward, const float* next_obs, bool terminal, bool timeout);
};

// Checks the columns: sizes agree with rows and dims, values finite, actions in [-1, 1], flags 0
// or 1. InvalidArgument naming the column (and the row) otherwise.
absl::Status ValidateDataset(const Dataset& dataset);

// Writes `dataset` (validated first) to `path` through a temporary file renamed into place, so a
// failed write leaves any earlier file as it was.
absl::Status WriteDataset(const std::string& path, const Dataset& dataset);

// Reads and validates a dataset file. Errors name the file and the key: NOT_FOUND for a missing
// file, INVALID_ARGUMENT for a file that is not HDF5, a missing key, a shape that does not fit,
// a non-finite value or an action outside [-1, 1].
absl::StatusOr<Dataset> ReadDataset(const std::string& path);

// FAILED_PRECONDITION naming both when the dataset says it is of another task, or when its
// sizes are not the task's (`obs_dim`, `action_dim`); OK for a file that names no task but fits.
absl::Status CheckDatasetTask(const Dataset& dataset, const std::string& task, int obs_dim, int action_dim);

// Episodes as the rows run (an episode ends at a terminal or a timeout row; rows after the last
// end form an unfinished episode), with their undiscounted returns.
struct DatasetSummary {
  int64_t rows = 0;
  int64_t terminals = 0;
  int64_t timeouts = 0;
  int64_t episodes = 0;         // finished ones
  int64_t unfinished_rows = 0;  // rows after the last episode end
  double return_mean = 0, return_min = 0, return_max = 0, return_std = 0;  // over finished episodes
  double reward_mean = 0;
  double action_abs_mean = 0;
};
DatasetSummary SummarizeDataset(const Dataset& dataset);

// The rows of a replay store, oldest first. Episode boundaries are where replay recorded them:
// rows of several actors interleave in a store, so the summary's episodes are only meaningful for
// datasets written in episode order (rollouts); a replay export says so in its metadata.
Dataset DatasetFromStore(const TransitionStore& store);

// What a replay directory holds (replay/persistence.h: the newest good snapshot and the logs
// after it), read without changing the directory, as a dataset oldest row first, with the
// recovery report's problems in `errors` (each names its file). The table is sized as the
// replay's was (its snapshots' capacity; `default_capacity` when there is no snapshot), so rows
// the replay had evicted stay out. FAILED_PRECONDITION when the files are of other sizes than
// obs_dim / action_dim, NOT_FOUND when the directory holds no replay files.
struct ReplayExport {
  Dataset dataset;
  int64_t snapshot_generation = -1;
  int64_t log_batches = 0;
  std::vector<std::string> errors;
};
absl::StatusOr<ReplayExport> DatasetFromReplayDirectory(const std::string& directory, int obs_dim, int action_dim,
                                                        int64_t default_capacity = 1'000'000);

// D4RL's reference returns of a locomotion task (d4rl/infos.py REF_MIN_SCORE / REF_MAX_SCORE of the
// v2 datasets: a random policy's and an expert's), used for our v4 tasks of the same robot, and
// the normalised score 100 * (R - random) / (expert - random). nullopt for other tasks.
struct ReferenceReturns {
  double random = 0;
  double expert = 0;
};
std::optional<ReferenceReturns> D4rlReferenceReturns(const std::string& task);
double NormalizedScore(const ReferenceReturns& reference, double episode_return);

// A view of the dataset's rows for Table::LoadRows (a read-only replay table); `dataset` must
// outlive it. Policy version 0 for every row.
TransitionBatchView DatasetView(const Dataset& dataset);

}  // namespace meow
