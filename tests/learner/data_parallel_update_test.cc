// The data-parallel CPU update (MeowUpdateConfig::threads > 1): the same update as one thread up
// to float summation order, on the same batches with dropout on (the masks are drawn once for the
// whole batch) and off, at Hopper and Humanoid sizes, with shards of unequal and of single rows;
// a non-finite batch is skipped as with one thread; bad thread counts are refused by name.
#include <cmath>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/utils.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "learner/meow_update.h"

namespace meow {
namespace {

using ::testing::HasSubstr;

FlowPolicyConfig PolicyConfig(int64_t s, int64_t a, double dropout) {
  FlowPolicyConfig c;
  c.obs_dim = s;
  c.action_dim = a;
  c.alpha = 0.25;
  c.dropout = dropout;
  return c;
}

Batch RandomBatch(int64_t rows, int64_t s, int64_t a) {
  return Batch{at::randn({rows, s}), at::rand({rows, a}) * 1.8 - 0.9, at::randn({rows}), at::randn({rows, s}),
               (at::rand({rows}) < 0.2).to(at::kFloat)};
}

struct Trajectory {
  std::vector<UpdateStats> stats;
  at::Tensor params, target, adam_m, adam_v;
};

// `updates` updates from the weights seeded 11 on batches seeded 23, the masks seeded 37 + step.
Trajectory Train(int threads, int64_t s, int64_t a, double dropout, int64_t rows, int updates, double clip = 30) {
  torch::manual_seed(11);
  MeowUpdateConfig config;
  config.threads = threads;
  config.grad_clip = clip;
  auto updater = MeowUpdater::Create(PolicyConfig(s, a, dropout), config, at::kCPU);
  EXPECT_TRUE(updater.ok()) << updater.status();
  torch::manual_seed(23);
  std::vector<Batch> batches;
  for (int i = 0; i < updates; ++i) batches.push_back(RandomBatch(rows, s, a));
  Trajectory t;
  for (int i = 0; i < updates; ++i) {
    torch::manual_seed(37 + i);  // the dropout masks
    auto stats = (*updater)->Step(batches[i]);
    EXPECT_TRUE(stats.ok()) << stats.status();
    t.stats.push_back(*stats);
  }
  t.params = (*updater)->flat_params().clone();
  t.target = (*updater)->flat_target().clone();
  t.adam_m = (*updater)->adam_m().clone();
  t.adam_v = (*updater)->adam_v().clone();
  return t;
}

double RelDiff(double a, double b) { return std::abs(a - b) / std::max(1e-6, std::abs(b)); }

double MaxAbsDiff(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }

void ExpectSameUpdates(int threads, int64_t s, int64_t a, double dropout, int64_t rows, double clip = 30) {
  constexpr int kUpdates = 5;
  const Trajectory one = Train(1, s, a, dropout, rows, kUpdates, clip);
  const Trajectory many = Train(threads, s, a, dropout, rows, kUpdates, clip);
  for (int i = 0; i < kUpdates; ++i) {
    SCOPED_TRACE("update " + std::to_string(i));
    EXPECT_LT(RelDiff(many.stats[i].loss, one.stats[i].loss), 1e-4);
    EXPECT_LT(RelDiff(many.stats[i].q_mean, one.stats[i].q_mean), 1e-4);
    EXPECT_LT(RelDiff(many.stats[i].v_mean, one.stats[i].v_mean), 1e-4);
    EXPECT_LT(RelDiff(many.stats[i].target_mean, one.stats[i].target_mean), 1e-4);
    EXPECT_LT(RelDiff(many.stats[i].grad_norm, one.stats[i].grad_norm), 1e-4);
    EXPECT_FALSE(many.stats[i].skipped);
  }
  // The weights moved (lr 1e-3 per update), and both runs moved them alike: float summation
  // order is all that differs.
  const at::Tensor start = Train(1, s, a, dropout, rows, 0).params;
  const double moved = MaxAbsDiff(one.params, start);
  EXPECT_GT(moved, 1e-3);
  EXPECT_LT(MaxAbsDiff(many.params, one.params), 2e-5);
  EXPECT_LT(MaxAbsDiff(many.target, one.target), 2e-5);
  EXPECT_LT(MaxAbsDiff(many.adam_m, one.adam_m), 1e-4 * std::max(1.0, one.adam_m.abs().max().item<double>()));
  EXPECT_LT(MaxAbsDiff(many.adam_v, one.adam_v), 1e-4 * std::max(1e-6, one.adam_v.abs().max().item<double>()));
}

TEST(DataParallelUpdateTest, TwoThreadsMatchOneAtHopperSizeWithDropout) { ExpectSameUpdates(2, 11, 3, 0.1, 256); }
TEST(DataParallelUpdateTest, FourThreadsMatchOneAtHumanoidSizeWithDropout) { ExpectSameUpdates(4, 376, 17, 0.1, 256); }
TEST(DataParallelUpdateTest, ThreeThreadsOnUnequalShardsWithoutDropout) { ExpectSameUpdates(3, 11, 3, 0.0, 100); }
TEST(DataParallelUpdateTest, ClippingIsTheWholeBatchsNorm) { ExpectSameUpdates(2, 11, 3, 0.1, 256, /*clip=*/0.05); }
// More threads than rows: the extra threads have nothing to do.
TEST(DataParallelUpdateTest, MoreThreadsThanRows) { ExpectSameUpdates(8, 5, 2, 0.1, 3); }

TEST(DataParallelUpdateTest, ANonFiniteBatchIsSkippedAndChangesNothing) {
  torch::manual_seed(5);
  MeowUpdateConfig config;
  config.threads = 2;
  auto updater = MeowUpdater::Create(PolicyConfig(11, 3, 0.1), config, at::kCPU);
  ASSERT_TRUE(updater.ok()) << updater.status();
  Batch batch = RandomBatch(64, 11, 3);
  batch.reward[50] = std::nanf("");  // in the second shard
  const at::Tensor before = (*updater)->flat_params().clone();
  auto stats = (*updater)->Step(batch);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_TRUE(stats->skipped);
  EXPECT_EQ((*updater)->skipped_steps(), 1);
  EXPECT_TRUE(at::equal((*updater)->flat_params(), before));
  // The next good batch updates as usual.
  auto next = (*updater)->Step(RandomBatch(64, 11, 3));
  ASSERT_TRUE(next.ok());
  EXPECT_FALSE(next->skipped);
  EXPECT_FALSE(at::equal((*updater)->flat_params(), before));
}

TEST(DataParallelUpdateTest, BadThreadCountsAreRefused) {
  for (int threads : {0, -1, 257}) {
    MeowUpdateConfig config;
    config.threads = threads;
    auto made = MeowUpdater::Create(PolicyConfig(11, 3, 0.1), config, at::kCPU);
    EXPECT_EQ(made.status().code(), absl::StatusCode::kInvalidArgument) << threads;
    EXPECT_THAT(std::string(made.status().message()), HasSubstr("learner threads must be in [1, 256]"));
  }
  MeowUpdateConfig autograd;
  autograd.threads = 2;
  autograd.manual_backward = false;
  EXPECT_THAT(std::string(MeowUpdater::Create(PolicyConfig(11, 3, 0.1), autograd, at::kCPU).status().message()),
              HasSubstr("need the hand-written gradient"));
}

}  // namespace
}  // namespace meow
