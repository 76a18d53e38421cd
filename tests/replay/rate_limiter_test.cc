#include "replay/rate_limiter.h"

#include <limits>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meow {
namespace {

using ::testing::HasSubstr;

TEST(RateLimiterConfigTest, ValidatesEachField) {
  RateLimiterConfig config;
  EXPECT_TRUE(config.Validate().ok());
  config.min_size_to_sample = 0;
  EXPECT_THAT(config.Validate().message(), HasSubstr("rate_limiter.min_size_to_sample"));
  config = RateLimiterConfig();
  config.samples_per_insert = -1;
  EXPECT_THAT(config.Validate().message(), HasSubstr("rate_limiter.samples_per_insert"));
  config = RateLimiterConfig();
  config.min_diff = 5;
  config.max_diff = 5;
  EXPECT_THAT(config.Validate().message(), HasSubstr("rate_limiter.min_diff"));
}

TEST(RateLimiterTest, MinSizeGatesSamplingOnly) {
  RateLimiter limiter(RateLimiterConfig::MinSize(100));
  EXPECT_TRUE(limiter.CanInsert(0));
  EXPECT_FALSE(limiter.CanSample(99));
  limiter.Inserted(100);
  EXPECT_TRUE(limiter.CanSample(100));
  limiter.Sampled(1'000'000);  // runs free: sampling never blocks inserts
  EXPECT_TRUE(limiter.CanInsert(100));
  EXPECT_TRUE(limiter.CanSample(100));
}

TEST(RateLimiterTest, RatioBlocksWhicheverSideRunsAhead) {
  // 256 sampled transitions per inserted one, 512 transitions of slack either way.
  RateLimiter limiter(RateLimiterConfig::SampleToInsertRatio(256, /*min_size=*/10, 512));
  limiter.Inserted(10);  // diff = 2560, the band's centre
  EXPECT_TRUE(limiter.CanSample(10));
  EXPECT_TRUE(limiter.CanInsert(10));
  limiter.Inserted(2);  // diff = 3072 = max_diff: inserts wait for the sampler
  EXPECT_FALSE(limiter.CanInsert(12));
  EXPECT_TRUE(limiter.CanSample(12));
  limiter.Sampled(256);  // diff = 2816
  EXPECT_TRUE(limiter.CanInsert(12));
  limiter.Sampled(768);  // diff = 2048 = min_diff: samples wait for the actors
  EXPECT_FALSE(limiter.CanSample(12));
  EXPECT_TRUE(limiter.CanInsert(12));
  proto::RateLimiterInfo info = limiter.Info(12);
  EXPECT_EQ(info.diff(), 2048);
  EXPECT_FALSE(info.can_sample());
  EXPECT_TRUE(info.can_insert());
}

TEST(RateLimiterTest, BelowMinSizeInsertsAreNeverBlocked) {
  RateLimiter limiter(RateLimiterConfig::SampleToInsertRatio(1, /*min_size=*/1000, 1));
  limiter.Inserted(999);  // diff far above max_diff, but the table is still filling up
  EXPECT_TRUE(limiter.CanInsert(999));
  EXPECT_FALSE(limiter.CanSample(999));
}

TEST(RateLimiterTest, NeverBlocksBothSides) {
  // A random walk of batch sizes: at every point one side may go on.
  RateLimiter limiter(RateLimiterConfig::SampleToInsertRatio(4, /*min_size=*/64, 100));
  std::mt19937_64 rng(7);
  int64_t size = 0;
  for (int step = 0; step < 100000; ++step) {
    const bool can_insert = limiter.CanInsert(size);
    const bool can_sample = limiter.CanSample(size);
    ASSERT_TRUE(can_insert || can_sample) << "step " << step << " diff " << limiter.diff();
    const bool insert = can_insert && (!can_sample || rng() % 2 == 0);
    if (insert) {
      const int64_t n = 1 + rng() % 64;
      limiter.Inserted(n);
      size += n;
    } else {
      limiter.Sampled(1 + rng() % 512);
    }
  }
}

TEST(RateLimiterTest, ReportsWaits) {
  RateLimiter limiter(RateLimiterConfig::MinSize(1));
  limiter.BeginSampleWait();
  EXPECT_EQ(limiter.Info(0).blocked_samples(), 1);
  limiter.EndSampleWait(absl::Milliseconds(250));
  limiter.BeginInsertWait();
  limiter.EndInsertWait(absl::Milliseconds(100));
  proto::RateLimiterInfo info = limiter.Info(0);
  EXPECT_EQ(info.blocked_samples(), 0);
  EXPECT_EQ(info.sample_waits(), 1);
  EXPECT_DOUBLE_EQ(info.sample_wait_seconds(), 0.25);
  EXPECT_EQ(info.insert_waits(), 1);
  EXPECT_DOUBLE_EQ(info.insert_wait_seconds(), 0.1);
}

}  // namespace
}  // namespace meow
