// Distributed training in one process, as `meow train` runs it: an embedded replay server, the
// learner with its gRPC server, two actor threads and an evaluator, all over real gRPC on
// 127.0.0.1; then a restart from the same run directory, an interrupted run, and learner mode
// pointed at a replay that is not there. Label: integration.
#include "learner/training.h"

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/runtime.h"
#include "common/safetensors.h"
#include "common/tensorboard.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "learner/checkpoint.h"
#include "learner/report.h"

namespace meow {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string FreshDir(const std::string& name) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "/training_", name, "_", getpid());
  fs::remove_all(dir);
  return dir;
}

TrainConfig SmallConfig(const std::string& env, const std::string& run_dir) {
  TrainConfig c;
  c.env = env;
  c.run_dir = run_dir;
  c.total_env_steps = 2500;
  c.learning_starts = 500;
  c.batch_size = 64;
  c.eval_interval = 1000;
  c.eval_episodes = 2;
  c.log_interval = 500;
  c.actors = 2;
  c.checkpoint_interval = 500;
  c.progress = false;
  return c;
}

std::string FindEventFile(const std::string& dir) {
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().filename().string().rfind("events.out.tfevents.", 0) == 0) return entry.path().string();
  }
  return "";
}

TEST(TrainingTest, LocalModeTrainsMultiGoalOverGrpcAndResumesFromItsRunDir) {
  SetComputeThreads(1);
  const std::string dir = FreshDir("multigoal");
  std::atomic<bool> stop{false};
  TrainConfig config = SmallConfig("MultiGoal-v0", dir);
  auto first = RunTraining(config, stop);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_FALSE(first->interrupted);
  EXPECT_GE(first->env_steps, 2500);
  EXPECT_LT(first->env_steps, 2500 + 200);
  // One update of 64 per environment step after learning_starts, within the rate limiter's band
  // (one transition), the actors' unacknowledged batches and the sampler's prefetch.
  const int64_t expected_updates = first->env_steps - config.learning_starts;
  EXPECT_NEAR(static_cast<double>(first->updates), static_cast<double>(expected_updates), 150.0);
  EXPECT_GT(first->version, 100);  // every 10 updates
  // The weights reached both actors: each acts with a published version.
  ASSERT_EQ(first->actor_versions.size(), 2u);
  for (int64_t v : first->actor_versions) {
    EXPECT_GT(v, 1);
    EXPECT_LE(v, first->version);
  }
  // Evaluations near 1000 and 2000 steps and one of the final weights.
  ASSERT_GE(first->evals.size(), 2u);
  for (const EvalPoint& e : first->evals) EXPECT_TRUE(std::isfinite(e.mean));
  EXPECT_GE(first->evals.back().env_steps, 2500);

  // The run directory.
  for (const char* file : {"config.txt", "metrics.csv", "policy_latest.safetensors", "policy_best.safetensors"}) {
    EXPECT_TRUE(fs::exists(absl::StrCat(dir, "/", file))) << file;
  }
  auto metrics = ReadRunMetrics(dir);
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  const size_t rows_first = metrics->rows;
  EXPECT_GE(rows_first, 5u);  // every 500 steps, plus one per evaluation
  for (const char* column : {"staleness", "acting_lag", "replay_size", "insert_waits", "sample_waits", "version",
                             "episode_return", "eval_return_mean", "steps_per_s", "updates_per_s"}) {
    ASSERT_TRUE(metrics->values.count(column)) << column;
  }
  int evals_in_csv = 0;
  for (double v : metrics->values["eval_return_mean"]) evals_in_csv += std::isfinite(v);
  EXPECT_EQ(evals_in_csv, static_cast<int>(first->evals.size()));
  EXPECT_GT(metrics->values["replay_size"].back(), 2000);
  EXPECT_GT(metrics->values["insert_waits"].back(), 0);  // the actors ran ahead and were held
  EXPECT_TRUE(std::isfinite(metrics->values["episode_return"].back()));
  // Each sampled row carries the version that chose its action: the learner's newest version
  // minus that, averaged over a uniformly sampled batch, is positive and below the newest version
  // (rows of version 0 are the random ones before learning started).
  const double staleness = metrics->values["staleness"].back();
  EXPECT_TRUE(std::isfinite(staleness));
  EXPECT_GT(staleness, 0);
  EXPECT_LT(staleness, first->version);
  // The newest data in replay was made with weights at most a few dozen updates old: the weights
  // go out every 10 updates, each actor fetches every 10 steps and may have one batch of 8 in
  // flight and one filling, and replay holds the actors to one transition ahead of the learner.
  // (With a queue of 64 batches per actor and 100 batches of slack it was hundreds of updates.)
  int lags = 0;
  for (double lag : metrics->values["acting_lag"]) {
    if (!std::isfinite(lag)) continue;
    ++lags;
    EXPECT_GE(lag, 0);
    EXPECT_LE(lag, 150);
  }
  EXPECT_GE(lags, 2);
  auto scalars = ReadTensorBoardScalars(FindEventFile(dir));
  ASSERT_TRUE(scalars.ok()) << scalars.status();
  bool eval_tag = false;
  for (const ScalarEvent& e : *scalars) eval_tag |= e.tag == "eval/return_mean";
  EXPECT_TRUE(eval_tag);
  auto policy = ReadSafetensors(dir + "/policy_latest.safetensors");
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_EQ(policy->metadata["meow.obs_dim"], "2");
  EXPECT_FALSE(CheckpointStore(dir).List().empty());

  // Run again with a larger budget: checkpoint, replay contents and metrics carry on.
  config.total_env_steps = 3500;
  auto second = RunTraining(config, stop);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_THAT(second->restored_from, HasSubstr("ckpt-"));
  EXPECT_GE(second->env_steps, 3500);
  EXPECT_LT(second->env_steps, 3500 + 200);
  EXPECT_GT(second->version, first->version + 50);  // versions keep increasing
  EXPECT_GT(second->updates, first->updates + 800);
  for (int64_t v : second->actor_versions) EXPECT_GT(v, first->version);
  auto resumed = ReadRunMetrics(dir);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_GT(resumed->rows, rows_first + 1);  // appended under the same header
  const auto& steps = resumed->values["env_steps"];
  EXPECT_GE(steps[rows_first], 2500);  // the replay's count continued
  const auto& wall = resumed->values["wall_time"];
  EXPECT_GE(wall[rows_first], wall[rows_first - 1]);
  fs::remove_all(dir);
}

TEST(TrainingTest, LocalModeRunsHopper) {
  SetComputeThreads(1);
  const std::string dir = FreshDir("hopper");
  std::atomic<bool> stop{false};
  TrainConfig config = SmallConfig("Hopper-v4", dir);
  config.total_env_steps = 1500;
  config.eval_episodes = 1;
  auto result = RunTraining(config, stop);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_GE(result->env_steps, 1500);
  EXPECT_GT(result->updates, 800);
  for (int64_t v : result->actor_versions) EXPECT_GT(v, 1);
  ASSERT_FALSE(result->evals.empty());
  auto policy = ReadSafetensors(dir + "/policy_best.safetensors");
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_EQ(policy->metadata["meow.obs_dim"], "11");
  EXPECT_EQ(policy->metadata["meow.action_dim"], "3");
  fs::remove_all(dir);
}

TEST(TrainingTest, AStopRequestEndsWithAFinalCheckpoint) {
  SetComputeThreads(1);
  const std::string dir = FreshDir("stop");
  std::atomic<bool> stop{false};
  TrainConfig config = SmallConfig("MultiGoal-v0", dir);
  config.total_env_steps = 1'000'000;
  config.checkpoint_interval = 1'000'000;  // only the final one
  std::thread stopper([&] {
    absl::SleepFor(absl::Seconds(4));
    stop.store(true);
  });
  auto result = RunTraining(config, stop);
  stopper.join();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->interrupted);
  EXPECT_LT(result->env_steps, 100000);
  EXPECT_GT(result->updates, 0);
  const auto checkpoints = CheckpointStore(dir).List();
  ASSERT_EQ(checkpoints.size(), 1u);
  EXPECT_THAT(checkpoints[0], ::testing::ContainsRegex(absl::StrCat("ckpt-0*", result->updates, "\\.safetensors")));
  fs::remove_all(dir);
}

TEST(TrainingTest, LearnerModeNamesAReplayItCannotReach) {
  const std::string dir = FreshDir("unreachable");
  std::atomic<bool> stop{false};
  TrainConfig config = SmallConfig("MultiGoal-v0", dir);
  config.replay_addresses = {"127.0.0.1:1"};
  config.connect_timeout = absl::Seconds(1);
  const absl::Time start = absl::Now();
  auto result = RunTraining(config, stop);
  ASSERT_FALSE(result.ok());
  EXPECT_TRUE(absl::IsUnavailable(result.status())) << result.status();
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("cannot reach replay at 127.0.0.1:1"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  fs::remove_all(dir);
}

TEST(TrainingTest, BadConfigurationsAreRefusedUpFront) {
  std::atomic<bool> stop{false};
  TrainConfig config = SmallConfig("MultiGoal-v0", FreshDir("bad"));
  config.buffer_size = 100;
  auto small = RunTraining(config, stop);
  ASSERT_FALSE(small.ok());
  EXPECT_THAT(std::string(small.status().message()), HasSubstr("learning_starts (500) must not exceed buffer_size (100)"));
  config = SmallConfig("Hopper-v5", FreshDir("bad"));
  auto env = RunTraining(config, stop);
  ASSERT_FALSE(env.ok());
  EXPECT_THAT(std::string(env.status().message()), HasSubstr("Hopper-v5"));
  config = SmallConfig("MultiGoal-v0", FreshDir("bad"));
  config.replay_addresses = {"nohost"};
  auto address = RunTraining(config, stop);
  ASSERT_FALSE(address.ok());
  EXPECT_THAT(std::string(address.status().message()), HasSubstr("\"nohost\" is not host:port"));
}

}  // namespace
}  // namespace meow
