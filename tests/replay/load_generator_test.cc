// The load generator (`meow load`) against a real replay server on 127.0.0.1: concurrent insert
// streams and a sampler under a rate limiter that holds inserts back; every acknowledged batch is
// stored exactly once, the table stays within its capacity, and the limiter's waits are reported.
#include "replay/load_generator.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "replay/replay_server.h"

namespace meow {
namespace {

using ::testing::HasSubstr;

TEST(ReplayLoadTest, StreamsUnderTheRateLimiterStoreEveryAcknowledgedBatchOnce) {
  ReplayServerConfig replay_config;
  replay_config.table.obs_dim = 11;
  replay_config.table.action_dim = 3;
  replay_config.table.capacity = 20'000;
  // Every inserted row allows 64 sampled rows: one sampler of 256-row batches cannot keep up with
  // the streams, so inserts wait.
  replay_config.table.rate_limiter = RateLimiterConfig::SampleToInsertRatio(64, 256, 64.0 * 2048);
  auto replay = StartReplayServer(replay_config);
  ASSERT_TRUE(replay.ok()) << replay.status();

  ReplayLoadConfig config;
  config.address = (*replay)->address();
  config.streams = 16;
  config.rows_per_batch = 32;
  config.duration = absl::Seconds(3);
  config.report_interval = absl::Seconds(1);
  std::vector<std::string> lines;
  auto result = RunReplayLoad(config, [&](const std::string& line) { lines.push_back(line); });
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->ok()) << result->Summary() << " first error: " << result->first_error;
  EXPECT_GT(result->batches_acked, 16);
  EXPECT_GT(result->sampled_batches, 0);
  // Exactly once: replay's stored batches of the load's actors equal what it acknowledged.
  EXPECT_EQ(result->stored_batches_of_load, result->batches_acked);
  EXPECT_EQ(result->after.table().inserted_batches() - result->before.table().inserted_batches(),
            result->batches_acked);
  EXPECT_EQ(result->after.table().inserted_transitions(), result->rows_acked);
  EXPECT_LE(result->after.table().size(), replay_config.table.capacity);
  EXPECT_GT(result->after.rate_limiter().insert_waits(), 0);
  EXPECT_GE(lines.size(), 2u);
  EXPECT_THAT(result->Summary(), HasSubstr("insert_errors=0"));
  EXPECT_THAT(lines.front(), HasSubstr("rows/s in"));

  // A second run continues the same actors' numbering; the delta still matches.
  config.duration = absl::Seconds(1);
  auto again = RunReplayLoad(config, nullptr);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->ok()) << again->Summary();
  EXPECT_EQ(again->stored_batches_of_load, again->batches_acked);
}

TEST(ReplayLoadTest, BadConfigsAndUnreachableReplayAreNamed) {
  ReplayLoadConfig config;
  EXPECT_THAT(RunReplayLoad(config, nullptr).status().message(), HasSubstr("replay address"));
  config.address = "127.0.0.1:1";
  config.streams = 0;
  EXPECT_THAT(RunReplayLoad(config, nullptr).status().message(), HasSubstr("streams must be in [1, 4096], got 0"));
  config.streams = 2;
  auto unreachable = RunReplayLoad(config, nullptr);
  EXPECT_EQ(unreachable.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(unreachable.status().message(), HasSubstr("127.0.0.1:1"));
}

}  // namespace
}  // namespace meow
