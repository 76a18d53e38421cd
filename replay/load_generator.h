// A load generator for a running replay service (`meow load`): N concurrent insert streams (one
// ReplayInserter each, as N actors would) and optional samplers (as learners would), for a fixed
// time. It reports what replay acknowledged and stored, what the rate limiter held back, and every
// error; operators use it to size a replay deployment, the fault drills to load one.
//
// Thread-safe: RunReplayLoad owns its threads; `progress` is called from the calling thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/grpc_security.h"
#include "proto/replay.pb.h"

namespace meow {

struct ReplayLoadConfig {
  std::string address;  // one replay server
  int streams = 64;     // concurrent insert streams, actor ids first_actor_id + i
  uint64_t first_actor_id = 1'000'000;
  int rows_per_batch = 32;  // transitions per inserted batch
  int samplers = 1;         // prefetching samplers drawing batches of sample_batch_size
  int sample_batch_size = 256;
  absl::Duration duration = absl::Seconds(60);
  absl::Duration report_interval = absl::Seconds(5);
  uint64_t seed = 1;
  GrpcSecurity security;  // TLS and token (default: plaintext, no token)

  absl::Status Validate() const;
};

struct ReplayLoadResult {
  double seconds = 0;
  int64_t batches_acked = 0;  // acknowledged by replay, all streams
  int64_t rows_acked = 0;
  int64_t batches_unacked = 0;  // still queued when the run ended (not errors)
  int64_t duplicates = 0;       // acknowledged as already stored (resends after a reconnect)
  int64_t insert_errors = 0;    // Insert calls that failed other than by waiting
  int64_t rejected = 0;         // batches replay refused as bad input
  int64_t reconnects = 0;       // insert streams opened beyond the first per stream
  int64_t sampled_batches = 0;
  int64_t sample_errors = 0;
  std::string first_error;  // the first error seen, if any
  // Replay's own view, before and after: stored batches of the load's actors must equal
  // batches_acked (each acknowledged batch stored exactly once).
  proto::InfoResponse before;
  proto::InfoResponse after;
  int64_t stored_batches_of_load = 0;  // sum of replay's last sequence numbers of the load's actors

  bool ok() const { return insert_errors == 0 && rejected == 0 && sample_errors == 0; }
  // One line of key=value pairs, for scripts.
  std::string Summary() const;
};

// Runs the load. Errors only for a bad config or a replay that cannot be reached at the start;
// failures during the run are counted in the result. `progress`, when set, gets a line every
// report_interval.
absl::StatusOr<ReplayLoadResult> RunReplayLoad(const ReplayLoadConfig& config,
                                               const std::function<void(const std::string&)>& progress);

}  // namespace meow
