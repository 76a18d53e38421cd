// MultiGoal-v0 against the reference definition, and the environment registry.
#include "actor/multi_goal.h"

#include <cmath>
#include <vector>

#include "actor/env_registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meow {
namespace {

using ::testing::HasSubstr;

TEST(MultiGoalTest, SpecMatchesTheReference) {
  MultiGoalEnv env;
  EXPECT_EQ(env.spec().name, "MultiGoal-v0");
  EXPECT_EQ(env.spec().obs_dim, 2);
  EXPECT_EQ(env.spec().action_dim, 2);
  EXPECT_EQ(env.spec().max_episode_steps, 1000);
}

TEST(MultiGoalTest, ResetIsNearTheOriginAndSeeded) {
  MultiGoalEnv a, b;
  ASSERT_TRUE(a.Reset(42).ok());
  ASSERT_TRUE(b.Reset(42).ok());
  EXPECT_EQ(a.Observation()[0], b.Observation()[0]);
  EXPECT_EQ(a.Observation()[1], b.Observation()[1]);
  EXPECT_LT(std::abs(a.Observation()[0]), 0.6);  // 0.1 * N(0,1): 6 sigma
  ASSERT_TRUE(b.Reset(43).ok());
  EXPECT_NE(a.Observation()[0], b.Observation()[0]);
  // A reset without a seed continues the stream: different from the seeded start.
  ASSERT_TRUE(a.Reset(std::nullopt).ok());
  ASSERT_TRUE(b.Reset(42).ok());
  EXPECT_NE(a.Observation()[0], b.Observation()[0]);
}

TEST(MultiGoalTest, StepFollowsTheDynamicsAndReward) {
  MultiGoalEnv env;
  ASSERT_TRUE(env.Reset(0).ok());
  env.SetState({1.0, 2.0});
  // The action is clipped to [-1, 1] for both the move and the action cost.
  auto r = env.Step(std::vector<float>{0.5f, -3.0f});
  ASSERT_TRUE(r.ok());
  EXPECT_DOUBLE_EQ(env.Observation()[0], 1.5);
  EXPECT_DOUBLE_EQ(env.Observation()[1], 1.0);
  // Nearest goal to (1.5, 1) is (0, 5)? |(1.5,-4)|^2 = 18.25; (5,0): 12.25 + 1 = 13.25.
  EXPECT_NEAR(r->reward, -30 * (0.25 + 1.0) - 13.25, 1e-9);
  EXPECT_FALSE(r->terminated);
  EXPECT_FALSE(r->truncated);
}

TEST(MultiGoalTest, ReachingAGoalTerminatesWithTheBonus) {
  MultiGoalEnv env;
  ASSERT_TRUE(env.Reset(0).ok());
  env.SetState({3.5, 0.0});
  auto r = env.Step(std::vector<float>{1.0f, 0.2f});  // to (4.5, 0.2): distance 0.5385 < 1
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->terminated);
  EXPECT_NEAR(r->reward, -30 * 1.04 - (0.25 + 0.04) + 10, 1e-6);
  // Stepping a finished episode is an error until the next reset.
  EXPECT_EQ(env.Step(std::vector<float>{0, 0}).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(MultiGoalTest, PositionsAreClippedToTheBox) {
  MultiGoalEnv env;
  ASSERT_TRUE(env.Reset(0).ok());
  env.SetState({6.8, -6.9});
  ASSERT_TRUE(env.Step(std::vector<float>{1.0f, -1.0f}).ok());
  EXPECT_DOUBLE_EQ(env.Observation()[0], 7.0);
  EXPECT_DOUBLE_EQ(env.Observation()[1], -7.0);
}

TEST(MultiGoalTest, TheThousandthStepTruncatesWithoutTerminating) {
  MultiGoalEnv env;
  ASSERT_TRUE(env.Reset(0).ok());
  for (int t = 1; t <= 1000; ++t) {
    env.SetState({0.0, 0.0});  // stay away from the goals
    auto r = env.Step(std::vector<float>{0, 0});
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(r->terminated);
    EXPECT_EQ(r->truncated, t == 1000) << t;
  }
}

TEST(MultiGoalTest, BadActionsAreRefusedAndNoStepIsTaken) {
  MultiGoalEnv env;
  ASSERT_TRUE(env.Reset(0).ok());
  env.SetState({1.0, 1.0});
  absl::Status wrong_size = env.Step(std::vector<float>{0.1f}).status();
  EXPECT_EQ(wrong_size.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(wrong_size.message()), HasSubstr("action has 1 entries, expected 2"));
  absl::Status nan = env.Step(std::vector<float>{0.1f, NAN}).status();
  EXPECT_EQ(nan.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(nan.message()), HasSubstr("action[1]"));
  absl::Status inf = env.Step(std::vector<float>{INFINITY, 0.0f}).status();
  EXPECT_THAT(std::string(inf.message()), HasSubstr("action[0]"));
  EXPECT_DOUBLE_EQ(env.Observation()[0], 1.0);
  EXPECT_DOUBLE_EQ(env.Observation()[1], 1.0);
}

TEST(EnvRegistryTest, UnknownTaskIsNotFoundAndListsTheKnownOnes) {
  auto env = MakeEnv("Hoper-v4");
  EXPECT_EQ(env.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(env.status().message()), HasSubstr("unknown task \"Hoper-v4\""));
  EXPECT_THAT(std::string(env.status().message()), HasSubstr("MultiGoal-v0"));
  auto multi_goal = MakeEnv("MultiGoal-v0");
  ASSERT_TRUE(multi_goal.ok());
  EXPECT_EQ((*multi_goal)->spec().obs_dim, 2);
}

}  // namespace
}  // namespace meow
