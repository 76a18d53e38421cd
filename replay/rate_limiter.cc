#include "replay/rate_limiter.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace meow {

RateLimiterConfig RateLimiterConfig::MinSize(int64_t min_size) {
  RateLimiterConfig config;
  config.min_size_to_sample = min_size;
  return config;
}

RateLimiterConfig RateLimiterConfig::SampleToInsertRatio(double samples_per_insert, int64_t min_size,
                                                         double error_buffer) {
  RateLimiterConfig config;
  config.min_size_to_sample = min_size;
  config.samples_per_insert = samples_per_insert;
  const double offset = samples_per_insert * static_cast<double>(min_size);
  config.min_diff = offset - error_buffer;
  config.max_diff = offset + error_buffer;
  return config;
}

absl::Status RateLimiterConfig::Validate() const {
  if (min_size_to_sample < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("rate_limiter.min_size_to_sample: expected >= 1, got ", min_size_to_sample));
  }
  if (!(samples_per_insert >= 0) || std::isinf(samples_per_insert)) {
    return absl::InvalidArgumentError(
        absl::StrCat("rate_limiter.samples_per_insert: expected a finite value >= 0, got ", samples_per_insert));
  }
  if (samples_per_insert == 0 && std::isfinite(min_diff)) {
    return absl::InvalidArgumentError(
        absl::StrCat("rate_limiter.samples_per_insert is 0 with min_diff=", min_diff,
                     ": sampling would stop for good once that many transitions were drawn (let sampling run "
                     "free with no ratio instead)"));
  }
  if (std::isnan(min_diff) || std::isnan(max_diff) || !(min_diff < max_diff)) {
    return absl::InvalidArgumentError(
        absl::StrCat("rate_limiter.min_diff (", min_diff, ") must be below rate_limiter.max_diff (", max_diff, ")"));
  }
  return absl::OkStatus();
}

void RateLimiter::Center() {
  if (!std::isfinite(config_.min_diff) || !std::isfinite(config_.max_diff)) return;
  const double middle = 0.5 * (config_.min_diff + config_.max_diff);
  sampled_ = static_cast<int64_t>(std::llround(static_cast<double>(inserted_) * config_.samples_per_insert - middle));
}

proto::RateLimiterInfo RateLimiter::Info(int64_t table_size) const {
  proto::RateLimiterInfo info;
  info.set_min_size_to_sample(config_.min_size_to_sample);
  info.set_samples_per_insert(config_.samples_per_insert);
  info.set_min_diff(config_.min_diff);
  info.set_max_diff(config_.max_diff);
  info.set_diff(diff());
  info.set_can_insert(CanInsert(table_size));
  info.set_can_sample(CanSample(table_size));
  info.set_insert_waits(insert_waits_);
  info.set_insert_wait_seconds(absl::ToDoubleSeconds(insert_wait_));
  info.set_sample_waits(sample_waits_);
  info.set_sample_wait_seconds(absl::ToDoubleSeconds(sample_wait_));
  info.set_blocked_inserts(blocked_inserts_);
  info.set_blocked_samples(blocked_samples_);
  return info;
}

}  // namespace meow
