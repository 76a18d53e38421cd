// Learning (label `learning-long`, on demand: ctest -L long): the paper's MuJoCo tasks through
// `meow train`'s local mode with the task's preset (one actor, one update per environment step),
// seed 1, to the step count of the README's suite runs ("The MuJoCo suite"); the final return (mean
// of the last three evaluations, 10 deterministic episodes each) must reach the bar, which is the
// suite run's final return less a margin for the run-to-run spread of threads and the rate
// limiter. Each case takes 20-90 minutes on 2 cores: run one with
//   ctest --test-dir build -R 'MujocoSuiteLearningTest.*Walker2d' --output-on-failure
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <ostream>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/presets.h"
#include "common/runtime.h"
#include "gtest/gtest.h"
#include "learner/training.h"

namespace meow {
namespace {

struct SuiteCase {
  const char* env;
  int64_t steps;
  double suite_final;  // the README's suite run (seed 1) at `steps`
  double bar;          // what this test asks: suite_final less the margin
};

// Margins: half the suite run's final return. The evaluation return swings by up to a half between
// evaluations (Ant-v4: 1,071 at 120k, 387 at 160k, 948 at 190k), so a tighter bar would fail runs
// that learned as well. Walker2d's seed 1 is clearly behind the MEow curve while its seed 2 ends
// inside the curve's band (README): its bar pins seed 1's level, not the paper's.
const SuiteCase kCases[] = {
    {"Walker2d-v4", 200'000, 267, 130},
    {"Ant-v4", 200'000, 768, 380},
    {"HalfCheetah-v4", 200'000, 7'681, 3'800},
    {"Humanoid-v4", 150'000, 445, 220},
    {"InvertedDoublePendulum-v4", 100'000, 9'326, 4'650},
};

void PrintTo(const SuiteCase& c, std::ostream* os) { *os << c.env << " to " << c.steps << " steps, bar " << c.bar; }

class MujocoSuiteLearningTest : public ::testing::TestWithParam<SuiteCase> {};

TEST_P(MujocoSuiteLearningTest, LocalModeReachesTheSuiteRunsFinalReturnLessAMargin) {
  const SuiteCase& task = GetParam();
  TuneAllocator();
  SetComputeThreads(1);
  TrainConfig c;
  static_cast<TrainSettings&>(c) = ConfigFromPreset(*GetPreset(task.env));
  c.total_env_steps = task.steps;
  c.seed = 1;
  c.actors = GetPreset(task.env)->local_actors;
  c.run_dir = absl::StrCat(::testing::TempDir(), "/suite_", task.env, "_", getpid());
  std::filesystem::remove_all(c.run_dir);
  std::atomic<bool> stop{false};
  auto result = RunTraining(c, stop);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_GE(result->evals.size(), 3u);
  double final_return = 0;
  for (size_t i = result->evals.size() - 3; i < result->evals.size(); ++i) final_return += result->evals[i].mean / 3;
  for (const EvalPoint& e : result->evals) {
    std::printf("%s eval at %lld env steps: %.1f +- %.1f\n", task.env, static_cast<long long>(e.env_steps), e.mean,
                e.std);
  }
  std::printf("%s final (mean of the last 3) %.1f; suite run %.1f; bar %.1f; %lld updates in %.0f s\n", task.env,
              final_return, task.suite_final, task.bar, static_cast<long long>(result->updates), result->seconds);
  EXPECT_GE(final_return, task.bar);
  std::filesystem::remove_all(c.run_dir);
}

std::string CaseName(const ::testing::TestParamInfo<SuiteCase>& info) {
  std::string name = info.param.env;
  std::string out;
  for (char ch : name) {
    if (std::isalnum(static_cast<unsigned char>(ch))) out += ch;
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Tasks, MujocoSuiteLearningTest, ::testing::ValuesIn(kCases), CaseName);

}  // namespace
}  // namespace meow
