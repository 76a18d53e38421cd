// Learner checkpoints: exact round trip (weights, target, Adam, counters, RNG), retention, and
// fallback to the previous checkpoint when the newest is truncated, corrupted or does not fit.
#include "learner/checkpoint.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <ATen/ATen.h>
#include <torch/utils.h>

#include "common/file_util.h"
#include "learner/meow_update.h"
#include "common/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meow {
namespace {

using ::testing::HasSubstr;

FlowPolicyConfig Policy(int64_t s = 5, int64_t a = 2) {
  FlowPolicyConfig c;
  c.obs_dim = s;
  c.action_dim = a;
  return c;
}

Batch RandomBatch(int64_t s, int64_t a) {
  return Batch{at::randn({32, s}), at::rand({32, a}) * 2 - 1, at::randn({32}), at::randn({32, s}), at::zeros({32})};
}

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    run_dir_ = ::testing::TempDir() + "/ckpt_" + std::to_string(getpid()) + "_" +
               ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(run_dir_);
  }
  void TearDown() override { std::filesystem::remove_all(run_dir_); }

  std::unique_ptr<MeowUpdater> Trained(int steps) {
    auto u = *MeowUpdater::Create(Policy(), MeowUpdateConfig(), at::kCPU);
    for (int i = 0; i < steps; ++i) EXPECT_TRUE(u->Step(RandomBatch(5, 2)).ok());
    return u;
  }
  std::string run_dir_;
};

TEST_F(CheckpointTest, RoundTripRestoresEverythingExactly) {
  torch::manual_seed(1);
  auto a = Trained(4);
  CheckpointStore store(run_dir_);
  ASSERT_TRUE(store.Save(*a, {/*env_steps=*/5000, /*updates=*/4, /*skipped=*/1, /*version=*/9}).ok());
  const at::Tensor next_random = at::rand({4});  // the generator state was saved before this draw

  torch::manual_seed(2);
  auto b = *MeowUpdater::Create(Policy(), MeowUpdateConfig(), at::kCPU);
  auto restored = store.RestoreLatest(*b);
  ASSERT_TRUE(restored.ok()) << restored.status();
  ASSERT_TRUE(restored->counters.has_value());
  EXPECT_TRUE(restored->problems.empty());
  EXPECT_EQ(restored->counters->env_steps, 5000);
  EXPECT_EQ(restored->counters->version, 9);
  EXPECT_EQ(b->steps(), 4);
  EXPECT_EQ(b->skipped_steps(), 1);
  EXPECT_TRUE(at::equal(b->flat_params(), a->flat_params()));
  EXPECT_TRUE(at::equal(b->flat_target(), a->flat_target()));
  EXPECT_TRUE(at::equal(b->adam_m(), a->adam_m()));
  EXPECT_TRUE(at::equal(b->adam_v(), a->adam_v()));
  EXPECT_TRUE(at::equal(at::rand({4}), next_random));
  // The named parameters are views of the restored buffers.
  EXPECT_TRUE(at::equal(b->policy()->named_parameters()["prior.log_scale.net.0.bias"],
                        a->policy()->named_parameters()["prior.log_scale.net.0.bias"]));
  // Training continues identically from the restored state.
  torch::manual_seed(3);
  const Batch batch = RandomBatch(5, 2);
  torch::manual_seed(4);
  const double la = a->Step(batch)->loss;
  torch::manual_seed(4);
  EXPECT_EQ(b->Step(batch)->loss, la);
}

TEST_F(CheckpointTest, KeepsOnlyTheNewest) {
  auto a = Trained(1);
  CheckpointStore store(run_dir_, /*keep=*/2);
  for (int64_t updates : {10, 20, 30, 40}) ASSERT_TRUE(store.Save(*a, {0, updates, 0, updates}).ok());
  const auto files = store.List();
  ASSERT_EQ(files.size(), 2u);
  EXPECT_THAT(files[0], HasSubstr("ckpt-000000000040"));
  EXPECT_THAT(files[1], HasSubstr("ckpt-000000000030"));
  for (const auto& f : files) EXPECT_FALSE(std::filesystem::exists(f + ".tmp"));
}

TEST_F(CheckpointTest, ABadNewestCheckpointIsReportedByNameAndThePreviousIsUsed) {
  torch::manual_seed(5);
  auto a = Trained(2);
  CheckpointStore store(run_dir_, /*keep=*/5);
  ASSERT_TRUE(store.Save(*a, {100, 2, 0, 2}).ok());
  const at::Tensor good = a->flat_params().clone();
  ASSERT_TRUE(a->Step(RandomBatch(5, 2)).ok());
  ASSERT_TRUE(store.Save(*a, {200, 3, 0, 3}).ok());
  ASSERT_TRUE(store.Save(*a, {300, 4, 0, 4}).ok());
  const auto files = store.List();  // 4 (newest), 3, 2
  // Truncate the newest; flip one byte of the weights in the second.
  {
    auto bytes = ReadFile(files[0]);
    ASSERT_TRUE(WriteFileAtomically(files[0], bytes->substr(0, bytes->size() / 2)).ok());
    auto second = ReadFile(files[1]);
    std::string flipped = *second;
    flipped[flipped.size() - 100] ^= 0x40;
    ASSERT_TRUE(WriteFileAtomically(files[1], flipped).ok());
  }
  auto b = *MeowUpdater::Create(Policy(), MeowUpdateConfig(), at::kCPU);
  auto restored = store.RestoreLatest(*b);
  ASSERT_TRUE(restored.ok());
  ASSERT_TRUE(restored->counters.has_value());
  EXPECT_EQ(restored->counters->version, 2);
  EXPECT_EQ(restored->path, files[2]);
  ASSERT_EQ(restored->problems.size(), 2u);
  EXPECT_THAT(restored->problems[0], HasSubstr(files[0]));
  EXPECT_THAT(restored->problems[0], HasSubstr("truncated"));
  EXPECT_THAT(restored->problems[1], HasSubstr(files[1]));
  EXPECT_THAT(restored->problems[1], HasSubstr("checksum mismatch"));
  EXPECT_TRUE(at::equal(b->flat_params(), good));
}

// Checkpoints record the algorithm they belong to: one of another algorithm is refused by name and
// changes nothing; one from before the name was recorded is MEow's.
TEST_F(CheckpointTest, ACheckpointOfAnotherAlgorithmIsRefusedByName) {
  auto a = Trained(1);
  CheckpointStore store(run_dir_);
  ASSERT_TRUE(store.Save(*a, {1, 1, 0, 1}).ok());
  const std::string path = store.List().front();
  auto file = ReadSafetensors(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->metadata["meow.algorithm"], "meow");
  file->metadata["meow.algorithm"] = "sac";
  ASSERT_TRUE(WriteSafetensors(path, *file).ok());
  auto b = *MeowUpdater::Create(Policy(), MeowUpdateConfig(), at::kCPU);
  const at::Tensor before = b->flat_params().clone();
  // Every checkpoint another algorithm's: the run dir is not this run's to start afresh in.
  auto refused = store.RestoreLatest(*b);
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status()));
  EXPECT_THAT(refused.status().message(), HasSubstr("a checkpoint of algorithm \"sac\", and this run trains \"meow\""));
  EXPECT_THAT(refused.status().message(), HasSubstr("another --run_dir"));
  EXPECT_TRUE(at::equal(b->flat_params(), before));

  file->metadata.erase("meow.algorithm");
  ASSERT_TRUE(WriteSafetensors(path, *file).ok());
  auto restored = store.RestoreLatest(*b);
  ASSERT_TRUE(restored.ok());
  ASSERT_TRUE(restored->counters.has_value()) << (restored->problems.empty() ? "" : restored->problems[0]);
  EXPECT_TRUE(at::equal(b->flat_params(), a->flat_params()));
}

TEST_F(CheckpointTest, ACheckpointOfAnotherNetworkIsRefused) {
  auto a = Trained(1);
  CheckpointStore store(run_dir_);
  ASSERT_TRUE(store.Save(*a, {1, 1, 0, 1}).ok());
  auto other = *MeowUpdater::Create(Policy(/*s=*/7, /*a=*/2), MeowUpdateConfig(), at::kCPU);
  const at::Tensor before = other->flat_params().clone();
  auto restored = store.RestoreLatest(*other);
  ASSERT_TRUE(restored.ok());
  EXPECT_FALSE(restored->counters.has_value());
  ASSERT_EQ(restored->problems.size(), 1u);
  EXPECT_THAT(restored->problems[0], HasSubstr("does not fit this network"));
  EXPECT_TRUE(at::equal(other->flat_params(), before));
}

TEST_F(CheckpointTest, NoCheckpointIsAFreshStart) {
  auto a = Trained(0);
  auto restored = CheckpointStore(run_dir_).RestoreLatest(*a);
  ASSERT_TRUE(restored.ok());
  EXPECT_FALSE(restored->counters.has_value());
  EXPECT_TRUE(restored->problems.empty());
}

}  // namespace
}  // namespace meow
