// Learning (label `learning-long`, on demand): offline training on a "medium" Hopper dataset made
// here. The dataset: 200 episodes of a partly trained MEow Hopper policy kept in
// tests/learning/offline_runs/ (110k steps, about 1,490 deterministic; README, "Offline"), its
// deterministic actions plus N(0, 0.3) noise, clipped, rollouts seeded, so the rows are the same on
// every run (55,148 rows, mean return 846). On it, with seed 1 and 6,000 updates each:
//   - CNF (flow pre-training, then the latent controller with the frozen decoder) must end above
//     the dataset's mean episode return and above plain behaviour cloning's final return, each by
//     a margin;
//   - behaviour cloning is run here, on the same rows and updates, for that comparison.
// "Final" is the mean of the evaluations of the run's second half (10 deterministic episodes each).
// About 20 minutes on 2 cores.
//
// The same settings through `meow train --offline` (README, "Offline", "medium, noise 0.3"): CNF
// 1,395 (lambda 3), behaviour cloning 820, the data 846. On the MEow-sampled medium dataset
// (`stochastic` rollouts, 70,906 rows, mean 1,118) CNF does not clear this bar: 1,199 against
// behaviour cloning's 1,243, and no longer run, faster target or five times the rows lifted it to
// the data's mean (README). Run it with
//   ctest --test-dir build -R OfflineLearningTest --output-on-failure
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "actor/acting_policy.h"
#include "actor/env_registry.h"
#include "common/presets.h"
#include "common/runtime.h"
#include "gtest/gtest.h"
#include "learner/dataset_rollouts.h"
#include "learner/training.h"
#include "replay/dataset.h"

#ifndef MEOW_OFFLINE_RUNS_DIR
#error "MEOW_OFFLINE_RUNS_DIR: tests/learning/offline_runs (set by tests/learning/CMakeLists.txt)"
#endif

namespace meow {
namespace {

constexpr char kPolicy[] = MEOW_OFFLINE_RUNS_DIR "/hopper-medium-policy.safetensors";
constexpr int64_t kEpisodes = 200;
constexpr int64_t kUpdates = 6'000;
constexpr int64_t kFlowEpochs = 30;
// The latent controller's batch: 256, within the reference's sweep (256, 512, 1024); its run_rl.py
// uses 512, which costs twice the time per update on a CPU.
constexpr int64_t kCnfBatch = 256;
// The advantage temperature: 3 (the reference's 1/3 also clears the bar on this dataset, 1,466, but
// with wider swings between evaluations: 1,026-1,911).
constexpr double kAwacLambda = 3;
// Margins: the evaluation return swings by 100-300 between evaluations of one run; "final" here is
// the mean of the second half of the run's 10 evaluations.
constexpr double kMargin = 100;

// The mean over the evaluations after the run's half-way point.
double FinalReturn(const TrainResult& result) {
  double sum = 0;
  int n = 0;
  for (const EvalPoint& e : result.evals) {
    if (2 * e.env_steps > kUpdates) {
      sum += e.mean;
      ++n;
    }
  }
  return n > 0 ? sum / n : 0;
}

TrainResult TrainOffline(const std::string& algo, const std::string& dataset, const std::string& run_dir) {
  TrainConfig c;
  static_cast<TrainSettings&>(c) = ConfigFromPreset(*GetPreset("Hopper-v4"));
  c.algo = algo;
  if (algo == "cnf") {
    c.batch_size = kCnfBatch;
    c.flow_epochs = kFlowEpochs;
    c.cnf.awac_lambda = kAwacLambda;
  }
  c.offline_dataset = dataset;
  c.total_env_steps = kUpdates;  // updates, offline
  c.eval_interval = kUpdates / 10;
  c.log_interval = 1000;
  c.actors = 0;
  c.seed = 1;
  c.run_dir = run_dir;
  std::filesystem::remove_all(run_dir);
  std::atomic<bool> stop{false};
  absl::StatusOr<TrainResult> result = RunTraining(c, stop);
  EXPECT_TRUE(result.ok()) << algo << ": " << result.status();
  if (!result.ok()) return {};
  for (const EvalPoint& e : result->evals) {
    std::printf("%s eval at %lld updates: %.1f +- %.1f\n", algo.c_str(), static_cast<long long>(e.env_steps), e.mean,
                e.std);
  }
  return *std::move(result);
}

TEST(OfflineLearningTest, CnfOnAMediumHopperDatasetEndsAboveTheDataAndAboveBehaviourCloning) {
  TuneAllocator();
  SetComputeThreads(1);
  const std::string dir = absl::StrCat(::testing::TempDir(), "/offline_learning_", getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string dataset_path = dir + "/hopper-medium.hdf5";
  double data_mean = 0;
  {
    auto env = MakeEnv("Hopper-v4");
    ASSERT_TRUE(env.ok()) << env.status();
    auto policy = LoadActingPolicy(kPolicy, (*env)->spec());
    ASSERT_TRUE(policy.ok()) << policy.status();
    RolloutConfig rollouts;
    rollouts.episodes = kEpisodes;
    rollouts.stochastic = false;
    rollouts.action_noise = 0.3;
    rollouts.seed = 1000;
    absl::StatusOr<Dataset> dataset = CollectRollouts(policy->get(), **env, rollouts);
    ASSERT_TRUE(dataset.ok()) << dataset.status();
    ASSERT_TRUE(WriteDataset(dataset_path, *dataset).ok());
    const DatasetSummary summary = SummarizeDataset(*dataset);
    data_mean = summary.return_mean;
    std::printf("dataset: %lld rows, %lld episodes, return mean %.1f\n", static_cast<long long>(dataset->rows),
                static_cast<long long>(summary.episodes), data_mean);
  }
  const TrainResult bc = TrainOffline("bc", dataset_path, dir + "/bc");
  const TrainResult cnf = TrainOffline("cnf", dataset_path, dir + "/cnf");
  ASSERT_GE(bc.evals.size(), 6u);
  ASSERT_GE(cnf.evals.size(), 6u);
  const double bc_final = FinalReturn(bc), cnf_final = FinalReturn(cnf);
  std::printf("final (mean of the second-half evaluations): CNF %.1f, BC %.1f; dataset mean %.1f; margin %.0f\n",
              cnf_final, bc_final, data_mean, kMargin);
  EXPECT_GE(cnf_final, data_mean + kMargin);
  EXPECT_GE(cnf_final, bc_final + kMargin);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace meow
