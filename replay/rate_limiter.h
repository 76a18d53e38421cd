// Decides when the table may take an insert or serve a sample, so that the learner's
// update-to-data ratio holds (Reverb's rate limiter, counted in transitions).
//
// diff = inserted_transitions * samples_per_insert - sampled_transitions. Sampling needs at least
// min_size_to_sample rows in the table and diff > min_diff; inserting needs diff < max_diff (or a
// table below min_size_to_sample). The checks look at the state before the operation, so one call
// may overshoot the band by its own size, and since min_diff < max_diff at least one side can
// always go on: the two sides never block each other for good. Whichever side runs ahead waits.
// The paper's setting (one update of 256 per environment step) is samples_per_insert = 256 with a
// band of a few batches; `MinSize` runs free.
//
// Not thread-safe: the table owns it and calls it under the table's mutex. The table does the
// waiting (with timeouts and cancellation) and reports each wait here.
#pragma once

#include <cstdint>
#include <limits>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "proto/replay.pb.h"

namespace meow {

struct RateLimiterConfig {
  int64_t min_size_to_sample = 1;
  double samples_per_insert = 1.0;  // sampled transitions per inserted transition
  double min_diff = -std::numeric_limits<double>::infinity();
  double max_diff = std::numeric_limits<double>::infinity();

  // Samples only once `min_size` rows are stored; otherwise never blocks.
  static RateLimiterConfig MinSize(int64_t min_size);
  // Keeps sampled/inserted near `samples_per_insert`, allowing `error_buffer` transitions of slack
  // either way around the point reached when the table first holds `min_size` rows (Reverb's
  // SampleToInsertRatio).
  static RateLimiterConfig SampleToInsertRatio(double samples_per_insert, int64_t min_size, double error_buffer);

  absl::Status Validate() const;
};

class RateLimiter {
 public:
  explicit RateLimiter(const RateLimiterConfig& config) : config_(config) {}

  bool CanInsert(int64_t table_size) const {
    return table_size < config_.min_size_to_sample || diff() < config_.max_diff;
  }
  bool CanSample(int64_t table_size) const {
    return table_size >= config_.min_size_to_sample && diff() > config_.min_diff;
  }

  void Inserted(int64_t transitions) { inserted_ += transitions; }
  void Sampled(int64_t transitions) { sampled_ += transitions; }
  // Restores the counts after recovery.
  void Reset(int64_t inserted, int64_t sampled) {
    inserted_ = inserted;
    sampled_ = sampled;
  }
  // Moves diff to the middle of [min_diff, max_diff] (when both are finite) by adjusting the
  // sampled count: the neutral state, where both sides may go on.
  void Center();

  // Bookkeeping of calls that had to wait (counted once each, with their total wait).
  void BeginInsertWait() { ++blocked_inserts_; }
  void EndInsertWait(absl::Duration waited) {
    --blocked_inserts_;
    ++insert_waits_;
    insert_wait_ += waited;
  }
  void BeginSampleWait() { ++blocked_samples_; }
  void EndSampleWait(absl::Duration waited) {
    --blocked_samples_;
    ++sample_waits_;
    sample_wait_ += waited;
  }

  double diff() const {
    return static_cast<double>(inserted_) * config_.samples_per_insert - static_cast<double>(sampled_);
  }
  const RateLimiterConfig& config() const { return config_; }
  proto::RateLimiterInfo Info(int64_t table_size) const;

 private:
  RateLimiterConfig config_;
  int64_t inserted_ = 0;  // transitions
  int64_t sampled_ = 0;   // transitions
  int64_t insert_waits_ = 0;
  int64_t sample_waits_ = 0;
  absl::Duration insert_wait_;
  absl::Duration sample_wait_;
  int blocked_inserts_ = 0;
  int blocked_samples_ = 0;
};

}  // namespace meow
