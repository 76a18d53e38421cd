// Learning (label `learning-long`, on demand): soft Q-learning on MultiGoal-v0, the experiment of
// its paper's Figure 1, through `meow train --algo=sql`'s local mode with its defaults (the MEow
// authors' SQL: reward scale 0.1, 16 particles, batch 256; 6000 steps, the first 1000 uniform).
// The bar and the measurement are MEow's MultiGoal tests' (multigoal_check.h): the run
// directory's final sampler, rolled out stochastically from the origin, reaches all four goals in
// at least 2 of 3 seeds. Runs through threads are not repeatable, and each takes about 4-5
// minutes on 2 cores, so the test is not in the default suite.
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/presets.h"
#include "common/runtime.h"
#include "gtest/gtest.h"
#include "learner/training.h"
#include "tests/learning/multigoal_check.h"

namespace meow {
namespace {

using multigoal::AllFourGoals;
using multigoal::CountGoalsOfRun;
using multigoal::Print;

TEST(SqlMultiGoalLearningTest, StochasticRolloutsReachAllFourGoals) {
  TuneAllocator();
  SetComputeThreads(1);
  const TaskPreset preset = *GetPreset("MultiGoal-v0");
  int seeds_with_all_goals = 0;
  for (uint64_t seed : {1, 2, 3}) {
    TrainConfig config;
    static_cast<TrainSettings&>(config) = SqlConfigFromPreset(preset);  // as `meow train --algo=sql`
    config.seed = seed;
    config.device = "cpu";
    config.progress = false;
    config.actors = preset.local_actors;
    config.run_dir = absl::StrCat(::testing::TempDir(), "/sql_multigoal_", getpid(), "_", seed);
    std::filesystem::remove_all(config.run_dir);
    ASSERT_EQ(config.sql.reward_scale, 0.1);
    ASSERT_EQ(config.total_env_steps, 6000);
    std::atomic<bool> stop{false};
    auto result = RunTraining(config, stop);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->skipped_updates, 0);
    EXPECT_GT(result->updates, 4900);
    auto counts = CountGoalsOfRun(config.run_dir);
    ASSERT_TRUE(counts.ok()) << counts.status();
    seeds_with_all_goals += AllFourGoals(*counts);
    Print("sql", seed, *counts, result->evals.empty() ? NAN : result->evals.back().mean, result->seconds);
    RecordProperty("sql_seed" + std::to_string(seed) + "_all_goals", AllFourGoals(*counts) ? "yes" : "no");
    std::filesystem::remove_all(config.run_dir);
  }
  EXPECT_GE(seeds_with_all_goals, 2);
}

}  // namespace
}  // namespace meow
