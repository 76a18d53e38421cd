// The parts every way of training writes a run with: RunDirectory (lock, kind, config.txt,
// metrics, policy files) and the progress line's rates and durations.
#include "learner/run_directory.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "actor/acting_policy.h"
#include "common/flow_policy.h"
#include "common/run_dir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "learner/progress.h"
#include "learner/run_metrics.h"

namespace meow {
namespace {

using ::testing::HasSubstr;

std::string FreshDir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/run_directory_" + std::to_string(getpid()) + "_" + name;
  std::filesystem::remove_all(dir);
  return dir;
}

std::string Read(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

FlowPolicy SmallPolicy() {
  FlowPolicyConfig config;
  config.obs_dim = 2;
  config.action_dim = 2;
  return FlowPolicy(config);
}

TEST(RunDirectoryTest, WritesConfigMetricsAndPolicies) {
  const std::string dir = FreshDir("files");
  auto run = RunDirectory::Open(dir + "/nested", kDistributedRun, /*resumable=*/true);
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_TRUE((*run)->WriteConfig({{"env", "MultiGoal-v0"}, {"seed", "3"}}).ok());
  EXPECT_EQ(Read(dir + "/nested/config.txt"), "env=MultiGoal-v0\nseed=3\n");
  EXPECT_EQ(Read(dir + "/nested/run_kind"), "distributed\n");
  FlowActingPolicy policy(SmallPolicy());
  ASSERT_TRUE((*run)->SaveLatest(policy).ok());
  EXPECT_TRUE(std::filesystem::exists(dir + "/nested/policy_latest.safetensors"));
  EXPECT_TRUE((*run)->IsBest(-1e9));
  ASSERT_TRUE((*run)->SaveBest(-5, policy).ok());
  EXPECT_TRUE(std::filesystem::exists(dir + "/nested/policy_best.safetensors"));
  EXPECT_FALSE((*run)->IsBest(-6));
  EXPECT_TRUE((*run)->IsBest(-4));
  EXPECT_TRUE(std::filesystem::exists(dir + "/nested/metrics.csv"));
}

TEST(RunDirectoryTest, OneWriterAtATimeAndOneKind) {
  const std::string dir = FreshDir("lock");
  auto first = RunDirectory::Open(dir, kDistributedRun, /*resumable=*/true);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = RunDirectory::Open(dir, kDistributedRun, /*resumable=*/true);
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(std::string(second.status().message()), HasSubstr(dir));
  first->reset();  // released: the same kind resumes, another kind is refused
  auto resumed = RunDirectory::Open(dir, kDistributedRun, /*resumable=*/true);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  resumed->reset();
  auto sync = RunDirectory::Open(dir, kSyncRun, /*resumable=*/false);
  ASSERT_FALSE(sync.ok());
  EXPECT_EQ(sync.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(sync.status().message()), HasSubstr("pick another --run_dir"));
}

TEST(RunDirectoryTest, AResumedRunKnowsItsBestEvaluation) {
  const std::string dir = FreshDir("best");
  {
    auto run = RunDirectory::Open(dir, kDistributedRun, /*resumable=*/true);
    ASSERT_TRUE(run.ok()) << run.status();
    ASSERT_TRUE((*run)->metrics().Row({{"env_steps", 1000}, {"eval_return_mean", 250}}, 1000).ok());
  }
  auto run = RunDirectory::Open(dir, kDistributedRun, /*resumable=*/true);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_FALSE((*run)->IsBest(249));
  EXPECT_TRUE((*run)->IsBest(251));
}

// MultiGoal-v0's best evaluation is the one that reached the most goals (then the most rollouts at
// a goal), whatever its return; a resumed run reads that score back from the goal columns.
TEST(RunDirectoryTest, MultiGoalsBestEvaluationIsTheOneThatReachedMostGoals) {
  EvalPoint two_goals{1000, -5.0, 1.0, 100, MultiGoalCounts{{60, 30, 0, 0}, 10}};
  EvalPoint four_goals{2000, -30.0, 9.0, 100, MultiGoalCounts{{10, 10, 10, 10}, 60}};
  EvalPoint four_goals_more_at_goal{3000, -40.0, 9.0, 100, MultiGoalCounts{{20, 20, 20, 20}, 20}};
  EXPECT_GT(four_goals.score(), two_goals.score());
  EXPECT_GT(four_goals_more_at_goal.score(), four_goals.score());
  EXPECT_LT(four_goals_more_at_goal.score(), 5.0);
  EXPECT_EQ((EvalPoint{1000, 250.0, 1.0, 10, std::nullopt}.score()), 250.0);
  const auto columns = EvalColumns(four_goals, "MultiGoal-v0");
  EXPECT_EQ(columns.at("eval_goals"), 4);
  EXPECT_DOUBLE_EQ(columns.at("eval_at_goal"), 0.4);
  EXPECT_EQ(columns.at("eval_goal_s"), 10);
  EXPECT_EQ(EvalColumns(EvalPoint{1000, 250.0, 1.0, 10, std::nullopt}, "Hopper-v4").count("eval_goals"), 0u);
  EXPECT_EQ(columns.count("eval_score"), 0u);  // MultiGoal-v0 has no D4RL reference returns
  // Hopper's: D4RL's random -20.272305 and expert 3234.3 (d4rl/infos.py).
  EXPECT_NEAR(EvalColumns(EvalPoint{1000, 3234.3, 1.0, 10, std::nullopt}, "Hopper-v4").at("eval_score"), 100.0, 1e-9);
  EXPECT_NEAR(EvalColumns(EvalPoint{1000, 1607.0, 1.0, 10, std::nullopt}, "Hopper-v4").at("eval_score"),
              100.0 * (1607.0 + 20.272305) / (3234.3 + 20.272305), 1e-9);

  const std::string dir = FreshDir("best_goals");
  {
    auto run = RunDirectory::Open(dir, kDistributedRun, /*resumable=*/true);
    ASSERT_TRUE(run.ok()) << run.status();
    for (const EvalPoint& e : {two_goals, four_goals}) {
      auto row = EvalColumns(e, "MultiGoal-v0");
      row["env_steps"] = static_cast<double>(e.env_steps);
      ASSERT_TRUE((*run)->metrics().Row(row, e.env_steps).ok());
    }
  }
  auto run = RunDirectory::Open(dir, kDistributedRun, /*resumable=*/true);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_FALSE((*run)->IsBest(four_goals.score()));
  EXPECT_FALSE((*run)->IsBest(two_goals.score()));
  EXPECT_TRUE((*run)->IsBest(four_goals_more_at_goal.score()));
}

// A run directory of an earlier version (metrics.csv without the newest columns, alpha, entropy and
// eval_score) resumes: the file is rewritten with the new header, its rows kept with the new cells empty, and
// appends go on; a file with other columns is refused naming it, and left as it was.
TEST(RunDirectoryTest, MetricsOfAnEarlierVersionGainTheNewColumnsAndOthersAreRefused) {
  const std::string full = kRunMetricsColumns;
  const std::string old_header = full.substr(0, full.find(",alpha,entropy"));
  ASSERT_EQ(old_header + ",alpha,entropy,eval_score", full);
  const std::string dir = FreshDir("migrate");
  std::filesystem::create_directories(dir);
  const size_t old_columns = std::count(old_header.begin(), old_header.end(), ',') + 1;
  std::string old_row = "1.5,1000,2,3,-7.25";
  for (size_t i = 5; i < old_columns; ++i) old_row += ",";
  std::ofstream(dir + "/metrics.csv") << old_header << "\n" << old_row << "\n";
  std::ofstream(dir + "/run_kind") << "distributed\n";
  {
    auto run = RunDirectory::Open(dir, kDistributedRun, /*resumable=*/true);
    ASSERT_TRUE(run.ok()) << run.status();
    EXPECT_DOUBLE_EQ((*run)->metrics().wall_offset(), 1.5);
    ASSERT_TRUE((*run)->metrics().Row({{"wall_time", 2.5}, {"env_steps", 2000}, {"alpha", 0.125}, {"entropy", -2.5}}, 2000).ok());
  }
  const std::string text = Read(dir + "/metrics.csv");
  EXPECT_EQ(text,
            absl::StrCat(full, "\n", old_row, ",,,\n", "2.5,2000", std::string(old_columns - 2, ','), ",0.125,-2.5,\n"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/metrics.csv.tmp"));

  const std::string other = FreshDir("other_columns");
  std::filesystem::create_directories(other);
  std::ofstream(other + "/metrics.csv") << "step,reward\n1,2\n";
  std::ofstream(other + "/run_kind") << "distributed\n";
  auto refused = RunDirectory::Open(other, kDistributedRun, /*resumable=*/true);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr(other + "/metrics.csv has other columns"));
  EXPECT_EQ(Read(other + "/metrics.csv"), "step,reward\n1,2\n");
}

TEST(RunDirectoryTest, ClearErrorsForDirectoriesItCannotUse) {
  auto empty = RunDirectory::Open("", kSyncRun, /*resumable=*/false);
  ASSERT_FALSE(empty.ok());
  EXPECT_THAT(std::string(empty.status().message()), HasSubstr("run_dir must be set"));
  const std::string file = FreshDir("a_file");
  std::ofstream(file) << "not a directory";
  auto under_file = RunDirectory::Open(file + "/run", kSyncRun, /*resumable=*/false);
  ASSERT_FALSE(under_file.ok());
  EXPECT_THAT(std::string(under_file.status().message()), HasSubstr(file + "/run"));
}

TEST(ProgressTest, FormatDuration) {
  EXPECT_EQ(FormatDuration(42.9), "42s");
  EXPECT_EQ(FormatDuration(185), "3m05s");
  EXPECT_EQ(FormatDuration(3720), "1h02m");
  EXPECT_EQ(FormatDuration(-1), "?");
  EXPECT_EQ(FormatDuration(NAN), "?");
}

TEST(ProgressTest, RateMeterMeasuresTheWindowSinceTheLastMark) {
  RateMeter rates;
  EXPECT_TRUE(std::isnan(rates.steps_per_s()));
  rates.Start(10, 1000, 0);
  rates.Mark(12, 1400, 100);
  EXPECT_DOUBLE_EQ(rates.steps_per_s(), 200);
  EXPECT_DOUBLE_EQ(rates.updates_per_s(), 50);
  rates.Mark(14, 1600, 500);  // only the new window counts
  EXPECT_DOUBLE_EQ(rates.steps_per_s(), 100);
  EXPECT_DOUBLE_EQ(rates.updates_per_s(), 200);
  rates.Mark(14, 1700, 600);  // no time passed: the rates stay
  EXPECT_DOUBLE_EQ(rates.steps_per_s(), 100);
}

}  // namespace
}  // namespace meow
