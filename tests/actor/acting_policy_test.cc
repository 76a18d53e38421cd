// The acting-policy seam: MEow's flow policy as actors and the evaluator use it, and loading a
// policy file for a task.
#include "actor/acting_policy.h"

#include <unistd.h>

#include <filesystem>
#include <string>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/utils.h>

#include "actor/env_registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meow {
namespace {

using ::testing::HasSubstr;

FlowPolicyConfig Sizes(int64_t obs, int64_t action) {
  FlowPolicyConfig config;
  config.obs_dim = obs;
  config.action_dim = action;
  return config;
}

TEST(ActingPolicyTest, ActsAsTheFlowPolicyWhoseWeightsItLoaded) {
  torch::manual_seed(7);
  FlowPolicy trained(Sizes(3, 2));
  trained->eval();
  FlowActingPolicy acting(Sizes(3, 2));
  ASSERT_TRUE(acting.LoadWeights(trained->ExportWeights()).ok());
  const at::Tensor obs = at::randn({5, 3});
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(at::allclose(acting.Act(obs, /*deterministic=*/true, std::nullopt),
                           trained->Sample(obs, /*deterministic=*/true, std::nullopt).action));
  at::Generator a = at::make_generator<at::CPUGeneratorImpl>(11), b = at::make_generator<at::CPUGeneratorImpl>(11);
  const at::Tensor sampled = acting.Act(obs, /*deterministic=*/false, a);
  EXPECT_TRUE(at::allclose(sampled, trained->Sample(obs, /*deterministic=*/false, b).action));
  EXPECT_EQ(sampled.sizes(), (std::vector<int64_t>{5, 2}));
  EXPECT_LE(sampled.abs().max().item<float>(), 1.0f);
  EXPECT_EQ(acting.device(), c10::Device(c10::kCPU));
}

// A shared network in train mode (dropout on) acts in eval mode and is left in train mode.
TEST(ActingPolicyTest, ASharedNetworkActsWithoutDropoutAndKeepsItsMode) {
  torch::manual_seed(8);
  FlowPolicy shared(Sizes(3, 2));
  shared->train();
  FlowActingPolicy acting(shared);
  const at::Tensor obs = at::randn({64, 3});
  const at::Tensor first = acting.Act(obs, /*deterministic=*/true, std::nullopt);
  EXPECT_TRUE(shared->is_training());
  EXPECT_TRUE(at::equal(first, acting.Act(obs, /*deterministic=*/true, std::nullopt)));
  shared->eval();
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(at::allclose(first, shared->Sample(obs, /*deterministic=*/true, std::nullopt).action));
}

TEST(ActingPolicyTest, WeightsThatDoNotFitAreRefusedByName) {
  FlowPolicy other(Sizes(4, 2));
  FlowActingPolicy acting(Sizes(3, 2));
  const at::Tensor obs = at::randn({2, 3});
  const at::Tensor before = acting.Act(obs, /*deterministic=*/true, std::nullopt);
  absl::Status s = acting.LoadWeights(other->ExportWeights());
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("has shape"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("tensor \""));
  EXPECT_TRUE(at::equal(acting.Act(obs, /*deterministic=*/true, std::nullopt), before));  // nothing changed
}

TEST(ActingPolicyTest, LoadActingPolicyNamesTheFileAndWhatDoesNotFit) {
  const std::string dir = ::testing::TempDir() + "/acting_policy_" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  auto hopper = MakeEnv("Hopper-v4");
  ASSERT_TRUE(hopper.ok()) << hopper.status();
  auto missing = LoadActingPolicy(dir + "/none.safetensors", (*hopper)->spec());
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr(dir + "/none.safetensors"));

  FlowPolicy multigoal(Sizes(2, 2));
  ASSERT_TRUE(multigoal->SaveSafetensors(dir + "/multigoal.safetensors").ok());
  auto wrong_task = LoadActingPolicy(dir + "/multigoal.safetensors", (*hopper)->spec());
  ASSERT_FALSE(wrong_task.ok());
  EXPECT_THAT(std::string(wrong_task.status().message()),
              HasSubstr("holds a policy for 2 observations and 2 actions; Hopper-v4 has 11 and 3"));

  auto multigoal_env = MakeEnv("MultiGoal-v0");
  ASSERT_TRUE(multigoal_env.ok());
  auto loaded = LoadActingPolicy(dir + "/multigoal.safetensors", (*multigoal_env)->spec());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  multigoal->eval();
  const at::Tensor obs = at::randn({3, 2});
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(at::allclose((*loaded)->Act(obs, /*deterministic=*/true, std::nullopt),
                           multigoal->Sample(obs, /*deterministic=*/true, std::nullopt).action));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace meow
