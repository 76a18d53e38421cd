// The learner loop against a real replay server on 127.0.0.1: it waits for replay's minimum size,
// updates, publishes increasing weight versions, checkpoints, and a restarted learner resumes
// from its run directory with versions still increasing, even past its newest checkpoint.
#include "learner/learner_loop.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>

#include <torch/utils.h>

#include "common/tensor_codec.h"
#include "learner/meow_graph_update.h"
#include "gtest/gtest.h"
#include "replay/replay_server.h"

namespace meow {
namespace {

// 640 random rows (S = A = 2) in 10 batches, acknowledged.
absl::Status InsertRandomRows(const std::string& address) {
  ReplayInserterConfig inserter_config;
  inserter_config.addresses = {address};
  auto inserter = ReplayInserter::Create(inserter_config);
  if (!inserter.ok()) return inserter.status();
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  for (int b = 0; b < 10; ++b) {
    std::vector<float> obs(128), act(128), rew(64), next(128);
    std::vector<uint8_t> term(64, 0);
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    for (auto* v : {&obs, &rew, &next})
      for (float& x : *v) x = normal(rng);
    for (float& x : act) x = uniform(rng);  // actions live in [-1, 1]
    const absl::Status inserted =
        (*inserter)->Insert(MakeTransitionBatch(2, 2, obs, act, rew, next, term, 0), absl::Seconds(60));
    if (!inserted.ok()) return inserted;
  }
  return (*inserter)->Flush(absl::Seconds(60));
}

// A replay server for S = A = 2 that lets sampling start at 500 rows.
absl::StatusOr<std::unique_ptr<ReplayServer>> StartSmallReplay() {
  ReplayServerConfig replay_config;
  replay_config.table.obs_dim = 2;
  replay_config.table.action_dim = 2;
  replay_config.table.rate_limiter = RateLimiterConfig::MinSize(500);
  return StartReplayServer(replay_config);
}

// A learner of 30 updates of 64 rows on `replay`, checkpointing into `run_dir` every 20.
LearnerConfig SmallLearner(const std::string& replay, const std::string& run_dir) {
  LearnerConfig config;
  config.replay_addresses = {replay};
  config.policy.obs_dim = 2;
  config.policy.action_dim = 2;
  config.batch_size = 64;
  config.publish_interval = 10;
  config.checkpoint_interval = 20;
  config.max_updates = 30;
  config.run_dir = run_dir;
  config.sample_timeout = absl::Milliseconds(100);
  return config;
}

TEST(LearnerLoopTest, UpdatesPublishesCheckpointsAndResumes) {
  auto replay = StartSmallReplay();
  ASSERT_TRUE(replay.ok()) << replay.status();
  const std::string run_dir = ::testing::TempDir() + "/learner_loop_" + std::to_string(getpid());
  std::filesystem::remove_all(run_dir);

  LearnerConfig config = SmallLearner((*replay)->address(), run_dir);
  ParameterStore store;
  torch::manual_seed(1);
  auto learner = Learner::Create(config, &store);
  ASSERT_TRUE(learner.ok()) << learner.status();
  std::atomic<bool> stop{false};
  absl::Status result;
  std::thread thread([&] { result = (*learner)->Run(stop); });

  // Below replay's minimum size the learner waits (polled: its thread may start late on a busy
  // machine) and publishes nothing.
  const absl::Time waited = absl::Now() + absl::Seconds(60);
  while ((*learner)->stats().sample_waits == 0 && absl::Now() < waited) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_GT((*learner)->stats().sample_waits, 0);
  EXPECT_EQ(store.version(), 0);

  const absl::Status inserted = InsertRandomRows((*replay)->address());
  if (!inserted.ok()) stop = true;
  thread.join();
  ASSERT_TRUE(inserted.ok()) << inserted;
  ASSERT_TRUE(result.ok()) << result;

  const LearnerStats first = (*learner)->stats();
  EXPECT_EQ(first.updates, 30);
  // v1 after the first update, then every 10 updates, then a final one: versions 1..5.
  EXPECT_EQ(store.version(), first.version);
  EXPECT_GE(first.version, 4);
  EXPECT_TRUE(std::filesystem::exists(run_dir + "/checkpoints"));

  // A restarted learner resumes: same weights, counters go on, versions keep increasing.
  ParameterStore store2;
  config.max_updates = 40;
  auto resumed = Learner::Create(config, &store2);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_FALSE((*resumed)->stats().restored_from.empty());
  EXPECT_EQ((*resumed)->stats().updates, 30);
  EXPECT_TRUE(at::equal((*resumed)->algorithm().State().at("params"), (*learner)->algorithm().State().at("params")));
  // Restored weights go out at once, above every version the first learner may have published.
  EXPECT_GT(store2.version(), first.version);
  const int64_t resumed_first = store2.version();
  ASSERT_TRUE((*resumed)->Run(stop).ok());
  EXPECT_EQ((*resumed)->stats().updates, 40);
  EXPECT_GT(store2.version(), resumed_first);
  const int64_t newest = store2.version();

  // Killed after publishing but before checkpointing: only an older checkpoint is left. The next
  // learner still starts above every version published before (RUN_DIR/version_reserved).
  std::vector<std::filesystem::path> checkpoints;
  for (const auto& entry : std::filesystem::directory_iterator(run_dir + "/checkpoints")) {
    checkpoints.push_back(entry.path());
  }
  std::sort(checkpoints.begin(), checkpoints.end());
  ASSERT_GE(checkpoints.size(), 2u);
  for (size_t i = 1; i < checkpoints.size(); ++i) std::filesystem::remove(checkpoints[i]);
  ParameterStore store3;
  auto older = Learner::Create(config, &store3);
  ASSERT_TRUE(older.ok()) << older.status();
  EXPECT_LT((*older)->stats().updates, 40);  // really the older checkpoint
  EXPECT_GT(store3.version(), newest);

  // A damaged reservation is refused by name rather than risking versions going backwards.
  { std::ofstream(run_dir + "/version_reserved", std::ios::trunc) << "garbage"; }
  ParameterStore store4;
  auto refused = Learner::Create(config, &store4);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(refused.status().message().find("version_reserved"), std::string::npos) << refused.status();
  EXPECT_EQ(store4.version(), 0);
  std::filesystem::remove_all(run_dir);
}

// An asynchronous algorithm: the GPU learner's device-resident update (here on the CPU), 4 updates
// per launch, its statistics read back every 7. The loop feeds it until its count reaches the
// budget (in launches of 4), and its checkpoints hold exact counters and state that both it and
// the CPU learner's MeowUpdater resume from.
TEST(LearnerLoopTest, AnAsynchronousAlgorithmCheckpointsWhatEitherUpdaterResumes) {
  auto replay = StartSmallReplay();
  ASSERT_TRUE(replay.ok()) << replay.status();
  const std::string run_dir = ::testing::TempDir() + "/learner_loop_async_" + std::to_string(getpid());
  std::filesystem::remove_all(run_dir);

  LearnerConfig config = SmallLearner((*replay)->address(), run_dir);
  config.checkpoint_interval = 10;
  MeowUpdateConfig update;
  update.graph.updates_per_launch = 4;
  update.graph.stats_interval = 7;
  torch::manual_seed(1);
  auto algorithm = MeowGraphUpdater::Create(config.policy, update, at::kCPU);
  ASSERT_TRUE(algorithm.ok()) << algorithm.status();
  ParameterStore store;
  auto learner = Learner::Create(config, &store, *std::move(algorithm));
  ASSERT_TRUE(learner.ok()) << learner.status();
  std::atomic<bool> stop{false};
  absl::Status result;
  std::thread thread([&] { result = (*learner)->Run(stop); });
  const absl::Status inserted = InsertRandomRows((*replay)->address());
  if (!inserted.ok()) stop = true;
  thread.join();
  ASSERT_TRUE(inserted.ok()) << inserted;
  ASSERT_TRUE(result.ok()) << result;
  EXPECT_EQ((*learner)->stats().updates, 32);  // 8 launches of 4: the first count >= 30
  EXPECT_EQ((*learner)->algorithm().updates(), 32);
  EXPECT_EQ((*learner)->stats().skipped, 0);
  const at::Tensor params = (*learner)->algorithm().State().at("params").clone();

  // The same updater and the CPU learner's both resume at 32 with the same weights.
  for (bool graph_updater : {true, false}) {
    ParameterStore resumed_store;
    absl::StatusOr<std::unique_ptr<Learner>> resumed;
    if (graph_updater) {
      auto again = MeowGraphUpdater::Create(config.policy, update, at::kCPU);
      ASSERT_TRUE(again.ok());
      resumed = Learner::Create(config, &resumed_store, *std::move(again));
    } else {
      resumed = Learner::Create(config, &resumed_store);
    }
    ASSERT_TRUE(resumed.ok()) << resumed.status();
    EXPECT_EQ((*resumed)->stats().updates, 32) << (graph_updater ? "MeowGraphUpdater" : "MeowUpdater");
    EXPECT_EQ((*resumed)->algorithm().updates(), 32);
    EXPECT_TRUE(at::equal((*resumed)->algorithm().State().at("params"), params));
  }
  std::filesystem::remove_all(run_dir);
}

TEST(LearnerLoopTest, BadConfigsAreRefused) {
  ParameterStore store;
  LearnerConfig config;
  config.policy.obs_dim = 2;
  config.policy.action_dim = 2;
  EXPECT_EQ(Learner::Create(config, &store).status().code(), absl::StatusCode::kInvalidArgument);
  config.replay_addresses = {"127.0.0.1:1"};
  config.device = "tpu";
  EXPECT_EQ(Learner::Create(config, &store).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace meow
