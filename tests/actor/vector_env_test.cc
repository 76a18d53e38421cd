// VectorEnv against instances stepped one by one: seeding, auto-reset with the final observation,
// truncation, bad input refused before any instance moves, warnings, and the thread pool giving
// the same results as the calling thread alone.
#include "actor/vector_env.h"

#include <limits>
#include <random>
#include <string>
#include <vector>

#include "actor/env_registry.h"
#include "actor/mujoco/tasks.h"
#include "actor/multi_goal.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meow {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<VectorEnv> MakeVector(const std::string& task, int n, int threads = 0) {
  VectorEnvOptions options;
  options.num_threads = threads;
  auto env = VectorEnv::Create(task, n, options);
  EXPECT_TRUE(env.ok()) << env.status();
  return env.ok() ? *std::move(env) : nullptr;
}

std::vector<double> Row(absl::Span<const double> matrix, int row, int width) {
  return std::vector<double>(matrix.begin() + row * width, matrix.begin() + (row + 1) * width);
}

std::vector<double> ToVector(absl::Span<const double> x) { return {x.begin(), x.end()}; }

std::vector<float> RandomActions(std::mt19937_64& rng, int n) {
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> actions(n);
  for (float& a : actions) a = uniform(rng);
  return actions;
}

TEST(VectorEnvTest, CreateChecksItsArguments) {
  EXPECT_EQ(VectorEnv::Create("Hoper-v4", 2).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(VectorEnv::Create("Hopper-v4", 0).status().code(), absl::StatusCode::kInvalidArgument);
  VectorEnvOptions bad;
  bad.num_threads = -1;
  auto status = VectorEnv::Create("Hopper-v4", 2, bad).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("num_threads"));
  EXPECT_EQ(VectorEnv::Create(std::vector<std::unique_ptr<Env>>{}).status().code(), absl::StatusCode::kInvalidArgument);

  std::vector<std::unique_ptr<Env>> mixed;
  mixed.push_back(std::make_unique<MultiGoalEnv>());
  mixed.push_back(*MakeEnv("Hopper-v4"));
  status = VectorEnv::Create(std::move(mixed)).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("environment 1 is Hopper-v4"));
}

TEST(VectorEnvTest, StepBeforeResetFails) {
  auto vec = MakeVector("Hopper-v4", 2);
  ASSERT_NE(vec, nullptr);
  EXPECT_EQ(vec->Step(std::vector<float>(6, 0.0f)).code(), absl::StatusCode::kFailedPrecondition);
}

// Instance i behaves exactly like a lone environment reset with seed + i, and an instance whose
// episode ends hands back its final observation and starts the next episode in the same call.
TEST(VectorEnvTest, MatchesLoneEnvironmentsWithAutoReset) {
  constexpr int kEnvs = 3;
  auto vec = MakeVector("Hopper-v4", kEnvs);
  ASSERT_NE(vec, nullptr);
  std::vector<std::unique_ptr<Env>> lone;
  for (int i = 0; i < kEnvs; ++i) lone.push_back(*MakeEnv("Hopper-v4"));
  const int obs_dim = vec->spec().obs_dim, action_dim = vec->spec().action_dim;

  ASSERT_TRUE(vec->Reset(/*seed=*/40).ok());
  for (int i = 0; i < kEnvs; ++i) {
    ASSERT_TRUE(lone[i]->Reset(40 + i).ok());
    EXPECT_EQ(Row(vec->observations(), i, obs_dim), ToVector(lone[i]->Observation()));
  }
  std::mt19937_64 rng(/*seed=*/1);
  int episodes_ended = 0;
  for (int step = 0; step < 150; ++step) {
    const std::vector<float> actions = RandomActions(rng, kEnvs * action_dim);
    ASSERT_TRUE(vec->Step(actions).ok());
    for (int i = 0; i < kEnvs; ++i) {
      auto r = lone[i]->Step(absl::MakeConstSpan(actions).subspan(i * action_dim, action_dim));
      ASSERT_TRUE(r.ok());
      ASSERT_EQ(vec->rewards()[i], r->reward);
      ASSERT_EQ(vec->terminated()[i], r->terminated);
      ASSERT_EQ(vec->truncated()[i], r->truncated);
      if (r->terminated || r->truncated) {
        ++episodes_ended;
        ASSERT_EQ(Row(vec->final_observations(), i, obs_dim), ToVector(lone[i]->Observation()));
        ASSERT_TRUE(lone[i]->Reset(std::nullopt).ok());
        // The next observation is the new episode's first, not the final one.
        ASSERT_NE(Row(vec->observations(), i, obs_dim), Row(vec->final_observations(), i, obs_dim));
      }
      ASSERT_EQ(Row(vec->observations(), i, obs_dim), ToVector(lone[i]->Observation()))
          << "instance " << i << " at step " << step;
    }
  }
  EXPECT_GT(episodes_ended, 3) << "random actions end Hopper episodes quickly";
}

TEST(VectorEnvTest, TruncationAutoResetsToo) {
  auto vec = MakeVector("HalfCheetah-v4", 2);
  ASSERT_NE(vec, nullptr);
  ASSERT_TRUE(vec->Reset(/*seed=*/0).ok());
  const std::vector<float> actions(12, 0.0f);
  for (int step = 1; step <= 1000; ++step) {
    ASSERT_TRUE(vec->Step(actions).ok());
    for (int i = 0; i < 2; ++i) {
      ASSERT_EQ(vec->truncated()[i], step == 1000) << "at step " << step;
      ASSERT_FALSE(vec->terminated()[i]);
    }
  }
  // Both started new episodes: stepping goes on without a Reset.
  ASSERT_TRUE(vec->Step(actions).ok());
  EXPECT_FALSE(vec->truncated()[0]);
}

TEST(VectorEnvTest, BadActionsAreRefusedBeforeAnyInstanceSteps) {
  constexpr int kEnvs = 3;
  auto vec = MakeVector("Walker2d-v4", kEnvs);
  auto twin = MakeVector("Walker2d-v4", kEnvs);
  ASSERT_NE(vec, nullptr);
  ASSERT_NE(twin, nullptr);
  ASSERT_TRUE(vec->Reset(/*seed=*/8).ok());
  ASSERT_TRUE(twin->Reset(/*seed=*/8).ok());
  const int action_dim = vec->spec().action_dim;

  absl::Status status = vec->Step(std::vector<float>(kEnvs * action_dim - 1, 0.0f));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("expected num_envs x action_dim"));
  std::vector<float> bad(kEnvs * action_dim, 0.0f);
  bad[2 * action_dim + 4] = std::numeric_limits<float>::quiet_NaN();  // last instance only
  status = vec->Step(bad);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("instance 2"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("action[4]"));

  // Nothing moved: the next good step matches a twin that never saw the bad calls.
  EXPECT_EQ(ToVector(vec->observations()), ToVector(twin->observations()));
  std::mt19937_64 rng(/*seed=*/2);
  const std::vector<float> good = RandomActions(rng, kEnvs * action_dim);
  ASSERT_TRUE(vec->Step(good).ok());
  ASSERT_TRUE(twin->Step(good).ok());
  EXPECT_EQ(ToVector(vec->observations()), ToVector(twin->observations()));
  EXPECT_EQ(ToVector(vec->rewards()), ToVector(twin->rewards()));
}

TEST(VectorEnvTest, WarningsAreReportedPerInstanceAndCounted) {
  auto vec = MakeVector("Hopper-v4", 2);
  ASSERT_NE(vec, nullptr);
  ASSERT_TRUE(vec->Reset(/*seed=*/0).ok());
  auto& hopper = dynamic_cast<MujocoEnv&>(vec->env(1));
  std::vector<double> qpos(hopper.data().qpos, hopper.data().qpos + 6), qvel(6, 0.0);
  qvel[3] = 1e20;
  ASSERT_TRUE(hopper.SetState(qpos, qvel).ok());
  ASSERT_TRUE(vec->Step(std::vector<float>(6, 0.0f)).ok());
  EXPECT_TRUE(vec->warnings()[0].empty());
  EXPECT_THAT(vec->warnings()[1], HasSubstr("unstable"));
  EXPECT_EQ(vec->warning_count(), 1);
  ASSERT_TRUE(vec->Step(std::vector<float>(6, 0.0f)).ok());
  EXPECT_TRUE(vec->warnings()[1].empty());
  EXPECT_EQ(vec->warning_count(), 1);
}

// Workers share the instances with the calling thread; every instance is stepped by one thread
// per call, so the results equal those of the calling thread alone, bit for bit.
TEST(VectorEnvTest, TheThreadPoolGivesTheSameResults) {
  constexpr int kEnvs = 5;
  auto serial = MakeVector("Ant-v4", kEnvs, /*threads=*/0);
  auto one = MakeVector("Ant-v4", kEnvs, /*threads=*/1);
  auto three = MakeVector("Ant-v4", kEnvs, /*threads=*/3);
  ASSERT_TRUE(serial && one && three);
  for (VectorEnv* v : {serial.get(), one.get(), three.get()}) ASSERT_TRUE(v->Reset(5).ok());
  std::mt19937_64 rng(/*seed=*/4);
  for (int step = 0; step < 100; ++step) {
    const std::vector<float> actions = RandomActions(rng, kEnvs * serial->spec().action_dim);
    for (VectorEnv* v : {serial.get(), one.get(), three.get()}) ASSERT_TRUE(v->Step(actions).ok());
    for (VectorEnv* v : {one.get(), three.get()}) {
      ASSERT_EQ(ToVector(v->observations()), ToVector(serial->observations())) << "step " << step;
      ASSERT_EQ(ToVector(v->rewards()), ToVector(serial->rewards()));
      ASSERT_EQ(std::vector<uint8_t>(v->terminated().begin(), v->terminated().end()),
                std::vector<uint8_t>(serial->terminated().begin(), serial->terminated().end()));
    }
  }
}

TEST(VectorEnvTest, WorksWithMultiGoal) {
  auto vec = MakeVector("MultiGoal-v0", 4, /*threads=*/2);
  ASSERT_NE(vec, nullptr);
  ASSERT_TRUE(vec->Reset(/*seed=*/1).ok());
  EXPECT_EQ(vec->observations().size(), 8u);
  ASSERT_TRUE(vec->Step(std::vector<float>(8, 0.5f)).ok());
}

}  // namespace
}  // namespace meow
