// Distributed training in one process, as `meow train` runs it: an embedded replay server, the
// learner with its gRPC server, two actor threads and an evaluator, all over real gRPC on
// 127.0.0.1; then a restart from the same run directory, an interrupted run, and learner mode
// pointed at a replay that is not there. Label: integration.
#include "learner/training.h"
#include "learner/sync_trainer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "actor/parameter_client.h"
#include "common/file_util.h"
#include "common/runtime.h"
#include "common/safetensors.h"
#include "common/tensor_codec.h"
#include "common/tensorboard.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "learner/checkpoint.h"
#include "learner/report.h"
#include "learner/run_metrics.h"
#include "actor/env_registry.h"
#include "learner/dataset_rollouts.h"
#include "replay/dataset.h"
#include "replay/replay_client.h"
#include "replay/replay_server.h"

namespace meow {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

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

// A TCP port nothing listens on right now.
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  close(fd);
  return ntohs(addr.sin_port);
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

// A dataset of 40 InvertedPendulum-v4 episodes of random actions (about 8 steps each) at `path`.
void WriteRandomPendulumDataset(const std::string& path) {
  auto env = MakeEnv("InvertedPendulum-v4");
  ASSERT_TRUE(env.ok());
  RolloutConfig rollouts;
  rollouts.episodes = 40;
  absl::StatusOr<Dataset> dataset = CollectRollouts(nullptr, **env, rollouts);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  ASSERT_GE(dataset->rows, 128);
  ASSERT_TRUE(WriteDataset(path, *dataset).ok());
}

// --algo=sac through the same parts: the actors and the evaluator act with SAC's policy (its
// weights reach them with their algorithm), the run dir's policies and checkpoints are SAC's, a
// second run resumes them, and the run dir refuses MEow.
// Offline: the dataset file served by the embedded replay as a read-only table, the learner's
// updates as the clock, evaluations in the task, no actors; inserts into that replay are refused.
TEST(TrainingTest, OfflineModeTrainsOnADatasetAndCountsUpdates) {
  const std::string dir = FreshDir("offline");
  fs::create_directories(dir);
  ASSERT_NO_FATAL_FAILURE(WriteRandomPendulumDataset(dir + "/random.hdf5"));
  TrainConfig c = SmallConfig("InvertedPendulum-v4", dir + "/run");
  c.offline_dataset = dir + "/random.hdf5";
  c.total_env_steps = 300;  // updates
  c.eval_interval = 150;
  c.log_interval = 100;
  c.actors = 0;
  std::atomic<bool> stop{false};
  absl::Notification done;
  absl::StatusOr<TrainResult> result;
  std::thread run([&] {
    result = RunTraining(c, stop);
    done.Notify();
  });
  // While it trains, the replay it samples takes no inserts: find it through config.txt.
  std::string replay_address;
  for (absl::Time end = absl::Now() + absl::Seconds(120); replay_address.empty() && absl::Now() < end;) {
    if (auto config = ReadFile(c.run_dir + "/config.txt"); config.ok()) {
      for (absl::string_view line : absl::StrSplit(*config, '\n')) {
        if (absl::ConsumePrefix(&line, "replay=")) replay_address = std::string(line);
      }
    }
    if (replay_address.empty()) absl::SleepFor(absl::Milliseconds(20));
  }
  if (!replay_address.empty() && !done.HasBeenNotified()) {
    ReplayInserterConfig inserter_config;
    inserter_config.addresses = {replay_address};
    inserter_config.actor_id = 9;
    auto inserter = ReplayInserter::Create(inserter_config);
    if (inserter.ok()) {
      proto::TransitionBatch batch = MakeTransitionBatch(4, 1, std::vector<float>(4, 0.0f), {0.5f}, {1.0f},
                                                         std::vector<float>(4, 0.0f), {0}, 0);
      const absl::Status inserted = (*inserter)->Insert(batch, absl::Seconds(5));
      const absl::Status flushed = inserted.ok() ? (*inserter)->Flush(absl::Seconds(5)) : inserted;
      if (!done.HasBeenNotified()) {
        EXPECT_FALSE(flushed.ok());
        EXPECT_THAT(flushed.message(), HasSubstr("serves the fixed dataset"));
      }
    }
  }
  run.join();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->updates, 300);  // exactly the budget: the loop ends itself there
  EXPECT_EQ(result->env_steps, 300);
  ASSERT_GE(result->evals.size(), 2u);  // at 150, 300 (and the final weights)
  EXPECT_TRUE(result->actor_versions.empty());
  const std::string config = ReadFile(c.run_dir + "/config.txt").value_or("");
  EXPECT_THAT(config, HasSubstr("mode=offline\n"));
  EXPECT_THAT(config, HasSubstr(absl::StrCat("offline_dataset=", c.offline_dataset, "\n")));
  EXPECT_THAT(config, HasSubstr("clock=updates"));
  auto metrics = ReadRunMetrics(c.run_dir);
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_DOUBLE_EQ(metrics->values["env_steps"].back(), 300);
  EXPECT_TRUE(fs::exists(c.run_dir + "/policy_best.safetensors"));
  EXPECT_FALSE(fs::exists(c.run_dir + "/replay"));  // the dataset file is the data; nothing is persisted

  // A dataset of another task is refused naming the file, before anything trains.
  TrainConfig other = SmallConfig("Hopper-v4", dir + "/hopper");
  other.offline_dataset = c.offline_dataset;
  other.actors = 0;
  absl::StatusOr<TrainResult> refused = RunTraining(other, stop);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("random.hdf5"));
  EXPECT_THAT(refused.status().message(), HasSubstr("not Hopper-v4"));
  EXPECT_FALSE(fs::exists(dir + "/hopper"));  // refused before a run dir was made
  fs::remove_all(dir);
}

// An offline CNF or BC run's config.txt states that algorithm's settings (the critics' tau and
// gamma, the advantage temperature, the flow's pre-training), not MEow's.
TEST(TrainingTest, OfflineCnfAndBcRunsStateTheirOwnSettings) {
  const std::string dir = FreshDir("offline_settings");
  fs::create_directories(dir);
  ASSERT_NO_FATAL_FAILURE(WriteRandomPendulumDataset(dir + "/random.hdf5"));
  std::atomic<bool> stop{false};
  for (const std::string algo : {"cnf", "bc"}) {
    TrainConfig c = SmallConfig("InvertedPendulum-v4", dir + "/" + algo);
    c.algo = algo;
    c.offline_dataset = dir + "/random.hdf5";
    c.total_env_steps = 40;  // updates
    c.eval_interval = 40;
    c.log_interval = 20;
    c.actors = 0;
    c.flow_epochs = 1;
    c.flow_batch_size = 64;
    c.cnf.tau = 0.01;
    c.cnf.awac_lambda = 2;
    absl::StatusOr<TrainResult> result = RunTraining(c, stop);
    ASSERT_TRUE(result.ok()) << algo << ": " << result.status();
    EXPECT_EQ(result->updates, 40) << algo;
    const std::string config = ReadFile(c.run_dir + "/config.txt").value_or("");
    EXPECT_THAT(config, HasSubstr("algo=" + algo + "\n"));
    EXPECT_THAT(config, Not(HasSubstr("\nalpha="))) << algo;  // MEow's, not theirs
    EXPECT_THAT(config, Not(HasSubstr("\nsigma_max="))) << algo;
    if (algo == "cnf") {
      for (const char* line :
           {"\ntau=0.01\n", "\ngamma=0.99\n", "\nlr=0.0003\n", "\nawac_lambda=2\n", "\nmax_weight=100\n",
            "\nflow_epochs=1\n", "\nflow_batch_size=64\n", "\ncritic_layers=4\n"}) {
        EXPECT_THAT(config, HasSubstr(line));
      }
    } else {
      EXPECT_THAT(config, HasSubstr("\nlr=0.0003\n"));
      EXPECT_THAT(config, Not(HasSubstr("\ntau=")));  // no critic
    }
  }
  fs::remove_all(dir);
}

TEST(TrainingTest, LocalModeTrainsSacAndResumesIt) {
  SetComputeThreads(1);
  const std::string dir = FreshDir("sac");
  std::atomic<bool> stop{false};
  TrainConfig config = SmallConfig("MultiGoal-v0", dir);
  config.algo = "sac";
  config.total_env_steps = 1500;
  auto first = RunTraining(config, stop);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_GE(first->env_steps, 1500);
  EXPECT_NEAR(static_cast<double>(first->updates), static_cast<double>(first->env_steps - config.learning_starts), 150.0);
  ASSERT_EQ(first->actor_versions.size(), 2u);
  for (int64_t v : first->actor_versions) EXPECT_GT(v, 1);  // SAC's weights loaded by both actors
  ASSERT_GE(first->evals.size(), 1u);
  for (const EvalPoint& e : first->evals) EXPECT_TRUE(std::isfinite(e.mean));
  for (const char* file : {"policy_latest.safetensors", "policy_best.safetensors"}) {
    auto policy = ReadSafetensors(absl::StrCat(dir, "/", file));
    ASSERT_TRUE(policy.ok()) << policy.status();
    EXPECT_EQ(policy->metadata["meow.algorithm"], "sac") << file;
    EXPECT_TRUE(policy->tensors.count("fc_logstd.weight")) << file;
  }
  std::ifstream config_txt(dir + "/config.txt");
  std::string text((std::istreambuf_iterator<char>(config_txt)), std::istreambuf_iterator<char>());
  EXPECT_THAT(text, HasSubstr("algo=sac\n"));
  EXPECT_THAT(text, HasSubstr("autotune=1\n"));
  // metrics.csv carries SAC's temperature (learned: it leaves its start of 1) and entropy estimate.
  {
    auto metrics = ReadRunMetrics(dir);
    ASSERT_TRUE(metrics.ok()) << metrics.status();
    std::vector<double> alphas, entropies;
    for (double v : metrics->values["alpha"]) if (std::isfinite(v)) alphas.push_back(v);
    for (double v : metrics->values["entropy"]) if (std::isfinite(v)) entropies.push_back(v);
    ASSERT_FALSE(alphas.empty());
    EXPECT_EQ(alphas.size(), entropies.size());
    EXPECT_GT(alphas.back(), 0);
    EXPECT_NE(alphas.back(), 1.0);
  }

  config.total_env_steps = 2000;
  auto second = RunTraining(config, stop);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_THAT(second->restored_from, HasSubstr("ckpt-"));
  EXPECT_GT(second->updates, first->updates + 300);
  EXPECT_GT(second->version, first->version);

  // MEow on SAC's run dir: the checkpoint names its algorithm.
  config.algo = "meow";
  config.total_env_steps = 2500;
  auto wrong = RunTraining(config, stop);
  ASSERT_FALSE(wrong.ok());
  EXPECT_THAT(wrong.status().message(), HasSubstr("sac"));
  fs::remove_all(dir);
}

TEST(TrainingTest, LocalModeTrainsSqlAndResumesIt) {
  SetComputeThreads(1);
  const std::string dir = FreshDir("sql");
  std::atomic<bool> stop{false};
  TrainConfig config = SmallConfig("MultiGoal-v0", dir);
  config.algo = "sql";
  config.sql.reward_scale = 0.1;
  config.total_env_steps = 1000;
  auto first = RunTraining(config, stop);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_GE(first->env_steps, 1000);
  EXPECT_NEAR(static_cast<double>(first->updates), static_cast<double>(first->env_steps - config.learning_starts), 150.0);
  EXPECT_EQ(first->skipped_updates, 0);
  ASSERT_EQ(first->actor_versions.size(), 2u);
  for (int64_t v : first->actor_versions) EXPECT_GT(v, 1);  // SQL's sampler loaded by both actors
  ASSERT_GE(first->evals.size(), 1u);
  for (const EvalPoint& e : first->evals) EXPECT_TRUE(std::isfinite(e.mean));
  for (const char* file : {"policy_latest.safetensors", "policy_best.safetensors"}) {
    auto policy = ReadSafetensors(absl::StrCat(dir, "/", file));
    ASSERT_TRUE(policy.ok()) << policy.status();
    EXPECT_EQ(policy->metadata["meow.algorithm"], "sql") << file;
    EXPECT_TRUE(policy->tensors.count("fc3.weight")) << file;
  }
  std::ifstream config_txt(dir + "/config.txt");
  std::string text((std::istreambuf_iterator<char>(config_txt)), std::istreambuf_iterator<char>());
  EXPECT_THAT(text, HasSubstr("algo=sql\n"));
  EXPECT_THAT(text, HasSubstr("reward_scale=0.1\n"));
  EXPECT_THAT(text, HasSubstr("kernel_bandwidth=log_batch\n"));
  {
    // SQL's temperature is 1 / reward_scale; it has no entropy estimate.
    auto metrics = ReadRunMetrics(dir);
    ASSERT_TRUE(metrics.ok()) << metrics.status();
    int alphas = 0;
    for (double v : metrics->values["alpha"]) {
      if (std::isfinite(v)) {
        EXPECT_DOUBLE_EQ(v, 10.0);
        ++alphas;
      }
    }
    EXPECT_GT(alphas, 0);
    for (double v : metrics->values["entropy"]) EXPECT_FALSE(std::isfinite(v));
  }

  config.total_env_steps = 1300;
  auto second = RunTraining(config, stop);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_THAT(second->restored_from, HasSubstr("ckpt-"));
  EXPECT_GT(second->updates, first->updates + 200);
  EXPECT_GT(second->version, first->version);

  // SAC on SQL's run dir: the checkpoint names its algorithm.
  config.algo = "sac";
  config.total_env_steps = 1600;
  auto wrong = RunTraining(config, stop);
  ASSERT_FALSE(wrong.ok());
  EXPECT_THAT(wrong.status().message(), HasSubstr("sql"));
  fs::remove_all(dir);
}

TEST(TrainingTest, LocalModeRunsHopper) {
  SetComputeThreads(1);
  const std::string dir = FreshDir("hopper");
  std::atomic<bool> stop{false};
  TrainConfig config = SmallConfig("Hopper-v4", dir);
  config.total_env_steps = 1500;
  config.eval_episodes = 1;
  config.video_every = 1;  // every evaluation's first episode as a video (small frames: quick)
  config.video_width = 64;
  config.video_height = 48;
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
  // One video per evaluation, the final one among them, each a real MP4 (an "ftyp" box first).
  auto run = ReadRunMetrics(dir);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->video_step, result->evals.back().env_steps);
  EXPECT_EQ(run->video, absl::StrCat(dir, "/videos/step-", result->evals.back().env_steps, ".mp4"));
  int videos = 0;
  for (const auto& entry : fs::directory_iterator(dir + "/videos")) {
    auto bytes = ReadFile(entry.path().string());
    ASSERT_TRUE(bytes.ok());
    EXPECT_EQ(bytes->substr(4, 4), "ftyp") << entry.path();
    ++videos;
  }
  EXPECT_EQ(videos, static_cast<int>(result->evals.size()));
  fs::remove_all(dir);
}

TEST(TrainingTest, AStopRequestEndsWithAFinalCheckpoint) {
  SetComputeThreads(1);
  const std::string dir = FreshDir("stop");
  std::atomic<bool> stop{false};
  TrainConfig config = SmallConfig("MultiGoal-v0", dir);
  config.total_env_steps = 1'000'000;
  config.checkpoint_interval = 1'000'000;  // only the final one
  // Stop once the learner has updated (metrics.csv shows it), however busy the machine is.
  std::thread stopper([&] {
    const absl::Time deadline = absl::Now() + absl::Minutes(5);
    while (absl::Now() < deadline) {
      auto metrics = ReadRunMetrics(dir);
      if (metrics.ok() && metrics->rows > 0 && metrics->values["updates"].back() > 0) break;
      absl::SleepFor(absl::Milliseconds(100));
    }
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

// A client that reports an evaluation whose weights do not fit the policy is refused at the RPC,
// naming the tensor, and training goes on to the end (it once stopped the whole learner).
TEST(TrainingTest, AReportWithWeightsThatDoNotFitIsRefusedAndTrainingGoesOn) {
  SetComputeThreads(1);
  const std::string dir = FreshDir("rogue");
  std::atomic<bool> stop{false};
  TrainConfig config = SmallConfig("MultiGoal-v0", dir);
  config.address = absl::StrCat("127.0.0.1:", FreePort());
  absl::StatusOr<TrainResult> result;
  std::thread trainer([&] { result = RunTraining(config, stop); });

  ParameterClient rogue(config.address);
  proto::ReportRequest report;
  report.set_source("rogue");
  proto::Evaluation* eval = report.mutable_evaluation();
  eval->set_env_steps(1);
  eval->set_policy_version(1);
  proto::Episode* episode = eval->add_episodes();
  episode->set_episode_return(1e6);  // better than anything MultiGoal gives
  episode->set_length(10);
  proto::NamedTensor* t = eval->add_tensors();
  t->set_name("flows.0.t.net.0.bias");
  *t->mutable_tensor() = EncodeFloat32({4}, std::vector<float>{1, 2, 3, 4});
  // Poll until the learner has published version 1.
  const absl::Time deadline = absl::Now() + absl::Minutes(5);
  while (absl::Now() < deadline) {
    auto progress = rogue.Report(proto::ReportRequest(), absl::Seconds(5));
    if (progress.ok() && progress->version() >= 1) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  auto answer = rogue.Report(report, absl::Seconds(60));
  EXPECT_EQ(answer.status().code(), absl::StatusCode::kInvalidArgument) << answer.status();
  EXPECT_THAT(std::string(answer.status().message()), HasSubstr("missing tensor"));
  trainer.join();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_GE(result->env_steps, config.total_env_steps);
  for (const EvalPoint& e : result->evals) EXPECT_LT(e.mean, 1e6);  // nothing of it was recorded
  fs::remove_all(dir);
}

TEST(TrainingTest, LearnerModeNamesAReplayItCannotReach) {
  const std::string dir = FreshDir("unreachable");
  std::atomic<bool> stop{false};
  TrainConfig config = SmallConfig("MultiGoal-v0", dir);
  config.replay_addresses = {"127.0.0.1:1"};
  config.connect_timeout = absl::Seconds(1);
  // It gives up (after connect_timeout; a hang would hit the test's timeout) naming the address.
  auto result = RunTraining(config, stop);
  ASSERT_FALSE(result.ok());
  EXPECT_TRUE(absl::IsUnavailable(result.status())) << result.status();
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("cannot reach replay at 127.0.0.1:1"));
  fs::remove_all(dir);
}

TEST(TrainingTest, BadConfigurationsAreRefusedUpFront) {
  std::atomic<bool> stop{false};
  TrainConfig config = SmallConfig("MultiGoal-v0", FreshDir("bad"));
  config.buffer_size = 100;
  auto small = RunTraining(config, stop);
  ASSERT_FALSE(small.ok());
  EXPECT_THAT(std::string(small.status().message()),
              HasSubstr("learning_starts (500) must not exceed buffer_size (100)"));
  config = SmallConfig("Hopper-v5", FreshDir("bad"));
  auto env = RunTraining(config, stop);
  ASSERT_FALSE(env.ok());
  EXPECT_THAT(std::string(env.status().message()), HasSubstr("Hopper-v5"));
  config = SmallConfig("MultiGoal-v0", FreshDir("bad"));
  config.replay_addresses = {"nohost"};
  auto address = RunTraining(config, stop);
  ASSERT_FALSE(address.ok());
  EXPECT_THAT(std::string(address.status().message()), HasSubstr("\"nohost\" is not host:port"));
  config = SmallConfig("MultiGoal-v0", FreshDir("bad"));
  config.video_every = 1;
  auto video = RunTraining(config, stop);
  ASSERT_FALSE(video.ok());
  EXPECT_THAT(std::string(video.status().message()), HasSubstr("videos are drawn for the MuJoCo tasks"));
}

// Local mode and --sync write metrics.csv with one schema: the same header, periodic rows with the
// eval columns empty and one row per evaluation with its eval columns, so tools read both alike.
TEST(TrainingTest, SyncAndLocalModeWriteOneMetricsSchema) {
  std::atomic<bool> stop{false};
  TrainSettings sync = SmallConfig("MultiGoal-v0", FreshDir("schema_sync"));
  sync.total_env_steps = 2000;
  auto sync_result = TrainSync(sync);
  ASSERT_TRUE(sync_result.ok()) << sync_result.status();
  TrainConfig local = SmallConfig("MultiGoal-v0", FreshDir("schema_local"));
  local.total_env_steps = 2000;
  auto local_result = RunTraining(local, stop);
  ASSERT_TRUE(local_result.ok()) << local_result.status();
  auto header = [](const std::string& dir) {
    std::ifstream file(dir + "/metrics.csv");
    std::string line;
    std::getline(file, line);
    return line;
  };
  EXPECT_EQ(header(sync.run_dir), header(local.run_dir));
  EXPECT_EQ(header(sync.run_dir), kRunMetricsColumns);
  for (const auto& [dir, evals] : {std::pair<std::string, size_t>{sync.run_dir, sync_result->evals.size()},
                                   {local.run_dir, local_result->evals.size()}}) {
    auto metrics = ReadRunMetrics(dir);
    ASSERT_TRUE(metrics.ok()) << metrics.status();
    const auto& eval = metrics->values["eval_return_mean"];
    const auto& loss = metrics->values["loss"];
    const auto& steps = metrics->values["env_steps"];
    size_t eval_rows = 0, update_rows = 0;
    for (size_t i = 0; i < metrics->rows; ++i) {
      EXPECT_FALSE(std::isfinite(eval[i]) && std::isfinite(loss[i])) << dir << " row " << i << " mixes both kinds";
      eval_rows += std::isfinite(eval[i]);
      update_rows += std::isfinite(loss[i]);
      if (i > 0) {
        EXPECT_GE(steps[i], steps[i - 1]) << dir << " row " << i;
      }
    }
    EXPECT_GE(evals, 1u) << dir;
    EXPECT_EQ(eval_rows, evals) << dir << ": one row per evaluation";
    EXPECT_GE(update_rows, 1u) << dir;
    EXPECT_TRUE(std::isfinite(metrics->values["updates_per_s"].front())) << dir;
  }
  // config.txt: the shared settings as the same lines in the same order (then each mode's own),
  // and the mode named; both modes wrote policy_latest and policy_best.
  auto config_lines = [](const std::string& dir) {
    std::ifstream file(dir + "/config.txt");
    std::vector<std::string> lines;
    for (std::string line; std::getline(file, line);) lines.push_back(line);
    return lines;
  };
  const std::vector<std::string> sync_lines = config_lines(sync.run_dir);
  const std::vector<std::string> local_lines = config_lines(local.run_dir);
  ASSERT_GE(sync_lines.size(), 18u);
  ASSERT_GT(local_lines.size(), sync_lines.size());
  EXPECT_EQ(sync_lines[1], "mode=sync");
  EXPECT_EQ(local_lines[1], "mode=local");
  for (size_t i = 0; i < sync_lines.size(); ++i) {
    if (i == 1) continue;  // mode
    // Same settings: same key and value (the device and the hyperparameters of SmallConfig).
    EXPECT_EQ(sync_lines[i], local_lines[i]) << "config.txt line " << i;
  }
  for (const std::string& dir : {sync.run_dir, local.run_dir}) {
    for (const char* file : {"policy_latest.safetensors", "policy_best.safetensors"}) {
      EXPECT_TRUE(std::filesystem::exists(dir + "/" + file)) << dir << "/" << file;
    }
  }
  fs::remove_all(sync.run_dir);
  fs::remove_all(local.run_dir);
}

// `meow train --sync` and local mode write different layouts into a run dir; neither may write
// over the other's run, and --sync (which cannot resume) not over its own earlier run either.
TEST(TrainingTest, ARunDirKeepsItsKindAndNothingOfAnEarlierRunIsOverwritten) {
  std::atomic<bool> stop{false};
  auto contents = [](const std::string& path) {
    std::ifstream file(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(file), {});
  };
  TrainSettings sync = SmallConfig("MultiGoal-v0", "");
  sync.total_env_steps = 600;
  sync.run_dir = FreshDir("kind_sync");
  ASSERT_TRUE(TrainSync(sync).ok());
  const std::string sync_metrics = contents(sync.run_dir + "/metrics.csv");
  ASSERT_FALSE(sync_metrics.empty());

  TrainConfig local = SmallConfig("MultiGoal-v0", sync.run_dir);
  local.total_env_steps = 600;
  auto refused = RunTraining(local, stop);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("holds a `meow train --sync` run"));
  auto again = TrainSync(sync);
  ASSERT_FALSE(again.ok());
  EXPECT_THAT(std::string(again.status().message()), HasSubstr("cannot be resumed"));
  EXPECT_EQ(contents(sync.run_dir + "/metrics.csv"), sync_metrics);

  local.run_dir = FreshDir("kind_local");
  ASSERT_TRUE(RunTraining(local, stop).ok());
  const std::string local_metrics = contents(local.run_dir + "/metrics.csv");
  const std::string local_best = contents(local.run_dir + "/policy_best.safetensors");
  sync.run_dir = local.run_dir;
  auto overwrite = TrainSync(sync);
  ASSERT_FALSE(overwrite.ok());
  EXPECT_THAT(std::string(overwrite.status().message()), HasSubstr("holds a local-mode or `meow learner` run"));
  EXPECT_EQ(contents(local.run_dir + "/metrics.csv"), local_metrics);
  EXPECT_EQ(contents(local.run_dir + "/policy_best.safetensors"), local_best);
  // The same kind resumes.
  local.total_env_steps = 800;
  EXPECT_TRUE(RunTraining(local, stop).ok());
  fs::remove_all(local.run_dir);
  fs::remove_all(FreshDir("kind_sync"));
}

}  // namespace
}  // namespace meow
