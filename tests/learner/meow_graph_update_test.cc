// The device-resident MEow update (MeowGraphUpdater). On the CPU it runs eagerly, op for op what a
// GPU records as a CUDA graph: it is held to MeowUpdater's update (the same weights, moments,
// target and statistics up to float rounding), K updates per launch to K launches of one, a
// non-finite batch to a skipped step, its statistics readback and its checkpoint state. The Cuda
// tests run where LibTorch has CUDA and a GPU is present (skipped otherwise): graph replay
// against eager updates with dropout off, the loss statistics with dropout on, and the published
// weights.
#include "learner/meow_graph_update.h"

#include <cmath>
#include <memory>
#include <vector>

#include <ATen/ATen.h>
#include <torch/cuda.h>
#include <torch/utils.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "learner/meow_update.h"

namespace meow {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kObs = 11, kAct = 3, kRows = 64;

FlowPolicyConfig PolicyConfig(double dropout) {
  FlowPolicyConfig c;
  c.obs_dim = kObs;
  c.action_dim = kAct;
  c.alpha = 0.25;
  c.dropout = dropout;
  return c;
}

std::vector<Batch> RandomBatches(int n, int64_t rows = kRows) {
  std::vector<Batch> batches;
  for (int i = 0; i < n; ++i) {
    batches.push_back(Batch{at::randn({rows, kObs}), at::rand({rows, kAct}) * 1.8 - 0.9, at::randn({rows}) * 3,
                            at::randn({rows, kObs}), (at::rand({rows}) < 0.2).to(at::kFloat)});
  }
  return batches;
}

// ||a - b|| / ||b||.
double RelativeDiff(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor x = a.to(at::kCPU, at::kDouble), y = b.to(at::kCPU, at::kDouble);
  return (x - y).norm().item<double>() / std::max(1e-30, y.norm().item<double>());
}

void ExpectSameState(MeowUpdater& a, MeowUpdater& b, double tolerance) {
  EXPECT_LT(RelativeDiff(a.flat_params(), b.flat_params()), tolerance) << "params";
  EXPECT_LT(RelativeDiff(a.flat_target(), b.flat_target()), tolerance) << "target";
  EXPECT_LT(RelativeDiff(a.adam_m(), b.adam_m()), tolerance) << "adam_m";
  EXPECT_LT(RelativeDiff(a.adam_v(), b.adam_v()), tolerance) << "adam_v";
}

struct Pair {
  std::unique_ptr<MeowUpdater> eager;
  std::unique_ptr<MeowGraphUpdater> resident;
};

// Both updaters from the same initial weights (the same seed).
Pair MakePair(MeowUpdateConfig config, double dropout = 0.0, const c10::Device& device = at::kCPU) {
  Pair p;
  torch::manual_seed(3);
  auto eager = MeowUpdater::Create(PolicyConfig(dropout), config, device);
  EXPECT_TRUE(eager.ok()) << eager.status();
  torch::manual_seed(3);
  auto resident = MeowGraphUpdater::Create(PolicyConfig(dropout), config, device);
  EXPECT_TRUE(resident.ok()) << resident.status();
  p.eager = *std::move(eager);
  p.resident = *std::move(resident);
  return p;
}

Batch To(const Batch& b, const c10::Device& device) {
  return Batch{b.obs.to(device), b.action.to(device), b.reward.to(device), b.next_obs.to(device),
               b.terminated.to(device)};
}

void ExpectMatchesMeowUpdater(double grad_clip) {
  MeowUpdateConfig config;
  config.grad_clip = grad_clip;
  config.graph.stats_interval = 1;  // every update's statistics, to compare them
  Pair p = MakePair(config);
  for (const Batch& batch : RandomBatches(25)) {
    auto eager = p.eager->Step(batch);
    auto resident = p.resident->Update(batch);
    ASSERT_TRUE(eager.ok() && resident.ok());
    EXPECT_NEAR(resident->loss, eager->loss, 1e-4 * std::abs(eager->loss));
    EXPECT_NEAR(resident->grad_norm, eager->grad_norm, 1e-4 * eager->grad_norm);
    EXPECT_NEAR(resident->q_mean, eager->q_mean, 1e-4 * std::abs(eager->q_mean) + 1e-6);
    EXPECT_NEAR(resident->v_mean, eager->v_mean, 1e-4 * std::abs(eager->v_mean) + 1e-6);
    EXPECT_NEAR(resident->target_mean, eager->target_mean, 1e-4 * std::abs(eager->target_mean) + 1e-6);
    EXPECT_FALSE(resident->skipped);
  }
  ExpectSameState(p.resident->updater(), *p.eager, 1e-5);
  EXPECT_EQ(p.resident->updates(), 25);
  EXPECT_EQ(p.resident->skipped_updates(), 0);
}

TEST(MeowGraphUpdateTest, TheDeviceResidentUpdateIsMeowUpdatersUpdate) { ExpectMatchesMeowUpdater(30.0); }

TEST(MeowGraphUpdateTest, TheDeviceResidentUpdateIsMeowUpdatersUpdateWhenClipping) {
  ExpectMatchesMeowUpdater(0.05);
}

TEST(MeowGraphUpdateTest, KUpdatesPerLaunchAreKLaunchesOfOne) {
  MeowUpdateConfig one, four;
  four.graph.updates_per_launch = 4;
  torch::manual_seed(5);
  auto a = MeowGraphUpdater::Create(PolicyConfig(0.0), one, at::kCPU);
  torch::manual_seed(5);
  auto b = MeowGraphUpdater::Create(PolicyConfig(0.0), four, at::kCPU);
  ASSERT_TRUE(a.ok() && b.ok());
  const std::vector<Batch> batches = RandomBatches(8);
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE((*a)->Update(batches[i]).ok());
    ASSERT_TRUE((*b)->Update(batches[i]).ok());
    // A batch is applied when the fourth of its launch arrives.
    EXPECT_EQ((*b)->updates(), (i + 1) / 4 * 4) << "after batch " << i;
  }
  (*a)->Synchronize();
  (*b)->Synchronize();
  EXPECT_TRUE(at::equal((*a)->updater().flat_params(), (*b)->updater().flat_params()));
  EXPECT_TRUE(at::equal((*a)->updater().adam_v(), (*b)->updater().adam_v()));
  EXPECT_EQ((*b)->updates(), 8);
}

TEST(MeowGraphUpdateTest, ANonFiniteBatchIsASkippedStepThatChangesNothing) {
  MeowUpdateConfig config;
  config.graph.stats_interval = 1;
  Pair p = MakePair(config);
  std::vector<Batch> batches = RandomBatches(6);
  batches[0].reward[5] = std::nanf("");  // the very first step: no Adam step count yet
  batches[3].reward[0] = INFINITY;
  for (int i = 0; i < 6; ++i) {
    const at::Tensor before = p.resident->updater().flat_params().clone();
    const at::Tensor m_before = p.resident->updater().adam_m().clone();
    const at::Tensor target_before = p.resident->updater().flat_target().clone();
    auto eager = p.eager->Step(batches[i]);
    auto resident = p.resident->Update(batches[i]);
    ASSERT_TRUE(eager.ok() && resident.ok());
    EXPECT_EQ(resident->skipped, eager->skipped) << "batch " << i;
    if (i == 0 || i == 3) {
      EXPECT_TRUE(resident->skipped);
      EXPECT_TRUE(at::equal(p.resident->updater().flat_params(), before));
      EXPECT_TRUE(at::equal(p.resident->updater().adam_m(), m_before));
      EXPECT_TRUE(at::equal(p.resident->updater().flat_target(), target_before));
    }
  }
  EXPECT_EQ(p.resident->skipped_updates(), 2);
  EXPECT_EQ(p.resident->updates(), 4);
  EXPECT_EQ(p.eager->skipped_steps(), 2);
  // The skipped steps did not advance Adam's step count either: the same trajectory.
  ExpectSameState(p.resident->updater(), *p.eager, 1e-5);
  EXPECT_TRUE(at::all(at::isfinite(p.resident->updater().flat_params())).item<bool>());
}

TEST(MeowGraphUpdateTest, StatisticsAreReadBackEveryInterval) {
  MeowUpdateConfig config;
  config.graph.stats_interval = 5;
  Pair p = MakePair(config);
  const std::vector<Batch> batches = RandomBatches(10);
  std::vector<double> eager_losses;
  for (int i = 0; i < 10; ++i) {
    eager_losses.push_back(p.eager->Step(batches[i])->loss);
    auto stats = p.resident->Update(batches[i]);
    ASSERT_TRUE(stats.ok());
    // Updates 1-4 report nothing yet (zeros), 5-9 update 5's, 10 its own.
    const double expected = i < 4 ? 0.0 : i < 9 ? eager_losses[4] : eager_losses[9];
    EXPECT_NEAR(stats->loss, expected, 1e-4 * std::abs(expected)) << "update " << i + 1;
  }
}

TEST(MeowGraphUpdateTest, CheckpointStateContinuesTheSameTrajectory) {
  MeowUpdateConfig config;
  torch::manual_seed(9);
  auto a = MeowGraphUpdater::Create(PolicyConfig(0.0), config, at::kCPU);
  ASSERT_TRUE(a.ok());
  const std::vector<Batch> batches = RandomBatches(10);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE((*a)->Update(batches[i]).ok());
  (*a)->Synchronize();
  std::map<std::string, at::Tensor> state;
  for (const auto& [name, t] : (*a)->State()) state[name] = t.clone();

  torch::manual_seed(10);  // other initial weights, replaced by the state
  auto b = MeowGraphUpdater::Create(PolicyConfig(0.0), config, at::kCPU);
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE((*b)->RestoreState(state, (*a)->updates(), (*a)->skipped_updates()).ok());
  EXPECT_EQ((*b)->updates(), 5);
  // A MeowUpdater takes the same checkpoint and continues alike (bias corrections from step 6).
  torch::manual_seed(11);
  auto c = MeowUpdater::Create(PolicyConfig(0.0), config, at::kCPU);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE((*c)->RestoreState(state, 5, 0).ok());
  for (int i = 5; i < 10; ++i) {
    ASSERT_TRUE((*a)->Update(batches[i]).ok());
    ASSERT_TRUE((*b)->Update(batches[i]).ok());
    ASSERT_TRUE((*c)->Step(batches[i]).ok());
  }
  (*a)->Synchronize();
  (*b)->Synchronize();
  EXPECT_TRUE(at::equal((*a)->updater().flat_params(), (*b)->updater().flat_params()));
  EXPECT_TRUE(at::equal((*a)->updater().adam_m(), (*b)->updater().adam_m()));
  EXPECT_EQ((*b)->updates(), 10);
  ExpectSameState((*b)->updater(), **c, 1e-5);
}

TEST(MeowGraphUpdateTest, BadBatchesAndConfigsAreRefused) {
  MeowUpdateConfig config;
  auto u = MeowGraphUpdater::Create(PolicyConfig(0.1), config, at::kCPU);
  ASSERT_TRUE(u.ok());
  Batch wrong = RandomBatches(1)[0];
  wrong.action = at::zeros({kRows, kAct + 1});
  EXPECT_THAT((*u)->Update(wrong).status().message(), HasSubstr("batch field action has shape [64,4]"));
  ASSERT_TRUE((*u)->Update(RandomBatches(1)[0]).ok());
  EXPECT_THAT((*u)->Update(RandomBatches(1, 32)[0]).status().message(),
              HasSubstr("batch has 32 rows; this learner's update was set up for 64 rows"));
  EXPECT_EQ((*u)->updates(), 1);

  MeowUpdateConfig bad = config;
  bad.graph.updates_per_launch = 0;
  EXPECT_THAT(MeowGraphUpdater::Create(PolicyConfig(0.1), bad, at::kCPU).status().message(),
              HasSubstr("updates per graph launch must be in [1, 64], got 0"));
  bad = config;
  bad.graph.stats_interval = 0;
  EXPECT_THAT(MeowGraphUpdater::Create(PolicyConfig(0.1), bad, at::kCPU).status().message(),
              HasSubstr("statistics interval must be >= 1"));
  bad = config;
  bad.threads = 2;
  EXPECT_THAT(MeowGraphUpdater::Create(PolicyConfig(0.1), bad, at::kCPU).status().message(),
              HasSubstr("on cuda the update takes 1 (got 2)"));
  bad = config;
  bad.manual_backward = false;
  EXPECT_THAT(MeowGraphUpdater::Create(PolicyConfig(0.1), bad, at::kCPU).status().message(),
              HasSubstr("hand-written gradient"));
  if (!CudaGraphsCompiled()) {
    EXPECT_THAT(MeowGraphUpdater::Create(PolicyConfig(0.1), config, at::kCUDA).status().message(),
                HasSubstr("this build's LibTorch has no CUDA"));
  }
}

// --- On a GPU (skipped without one) ---

bool HaveCudaGraphs() { return CudaGraphsCompiled() && torch::cuda::is_available(); }

TEST(MeowGraphUpdateCudaTest, GraphReplayGivesTheEagerUpdatesParametersWithDropoutOff) {
  if (!HaveCudaGraphs()) GTEST_SKIP() << "needs a CUDA LibTorch and a GPU";
  MeowUpdateConfig graph, plain;
  plain.graph.capture = false;
  torch::manual_seed(3);
  auto eager = MeowUpdater::Create(PolicyConfig(0.0), graph, at::kCUDA);
  torch::manual_seed(3);
  auto replayed = MeowGraphUpdater::Create(PolicyConfig(0.0), graph, at::kCUDA);
  torch::manual_seed(3);
  auto resident = MeowGraphUpdater::Create(PolicyConfig(0.0), plain, at::kCUDA);
  ASSERT_TRUE(eager.ok() && replayed.ok() && resident.ok());
  const std::vector<Batch> batches = RandomBatches(50, 256);
  double eager_loss = 0;
  for (const Batch& batch : batches) {
    auto step = (*eager)->Step(To(batch, at::kCUDA));
    ASSERT_TRUE(step.ok());
    eager_loss = step->loss;
    ASSERT_TRUE((*replayed)->Update(batch).ok());
    ASSERT_TRUE((*resident)->Update(batch).ok());
  }
  (*replayed)->Synchronize();
  (*resident)->Synchronize();
  EXPECT_TRUE((*replayed)->captured());
  EXPECT_FALSE((*resident)->captured());
  EXPECT_EQ((*replayed)->updates(), 50);
  // Replay runs the recorded kernels: what the same ops give one by one.
  ExpectSameState((*replayed)->updater(), (*resident)->updater(), 1e-6);
  // And MeowUpdater's update, up to float rounding (its Adam is written with other ops).
  ExpectSameState((*replayed)->updater(), **eager, 1e-4);
  auto last = (*replayed)->Update(batches[0]);  // reports the readback of the 50th update
  ASSERT_TRUE(last.ok());
  EXPECT_NEAR(last->loss, eager_loss, 1e-3 * std::abs(eager_loss));
}

TEST(MeowGraphUpdateCudaTest, KUpdatesPerGraphLaunchAreKLaunchesOfOne) {
  if (!HaveCudaGraphs()) GTEST_SKIP() << "needs a CUDA LibTorch and a GPU";
  MeowUpdateConfig one, four;
  four.graph.updates_per_launch = 4;
  torch::manual_seed(5);
  auto a = MeowGraphUpdater::Create(PolicyConfig(0.0), one, at::kCUDA);
  torch::manual_seed(5);
  auto b = MeowGraphUpdater::Create(PolicyConfig(0.0), four, at::kCUDA);
  ASSERT_TRUE(a.ok() && b.ok());
  for (const Batch& batch : RandomBatches(40, 256)) {
    ASSERT_TRUE((*a)->Update(batch).ok());
    ASSERT_TRUE((*b)->Update(batch).ok());
  }
  (*a)->Synchronize();
  (*b)->Synchronize();
  EXPECT_EQ((*b)->updates(), 40);
  ExpectSameState((*a)->updater(), (*b)->updater(), 1e-6);
}

TEST(MeowGraphUpdateCudaTest, GraphReplayDrawsFreshDropoutWithTheEagerLossStatistics) {
  if (!HaveCudaGraphs()) GTEST_SKIP() << "needs a CUDA LibTorch and a GPU";
  // A learning rate of ~0 keeps the weights where they are, so that each update's loss is one
  // draw of the dropout masks on the same batch: graph replay and eager updates must draw from
  // the same distribution, and replays must not repeat the captured masks.
  MeowUpdateConfig config;
  config.lr = 1e-20;
  config.graph.stats_interval = 1;
  Pair p = MakePair(config, /*dropout=*/0.1, at::kCUDA);
  torch::manual_seed(4);
  const Batch batch = RandomBatches(1, 256)[0];
  const Batch on_gpu = To(batch, at::kCUDA);
  constexpr int kDraws = 400;
  std::vector<double> graph_losses, eager_losses;
  for (int i = 0; i < kDraws; ++i) eager_losses.push_back(p.eager->Step(on_gpu)->loss);
  for (int i = 0; i < kDraws; ++i) {
    ASSERT_TRUE(p.resident->Update(batch).ok());
    p.resident->Synchronize();  // makes this update's statistics the newest read back
    graph_losses.push_back(p.resident->last_stats().loss);
  }
  ASSERT_TRUE(p.resident->captured());
  auto mean_sd = [](const std::vector<double>& x) {
    double m = 0, s = 0;
    for (double v : x) m += v;
    m /= x.size();
    for (double v : x) s += (v - m) * (v - m);
    return std::pair<double, double>{m, std::sqrt(s / (x.size() - 1))};
  };
  const auto [gm, gs] = mean_sd(graph_losses);
  const auto [em, es] = mean_sd(eager_losses);
  EXPECT_GT(gs, 0.1 * es) << "replays repeat the captured dropout masks";
  EXPECT_NEAR(gm, em, 4 * std::sqrt(gs * gs / graph_losses.size() + es * es / eager_losses.size()));
  EXPECT_NEAR(gs, es, 0.3 * es);
}

TEST(MeowGraphUpdateCudaTest, PublishedWeightsAreThoseOfEveryLaunchedUpdate) {
  if (!HaveCudaGraphs()) GTEST_SKIP() << "needs a CUDA LibTorch and a GPU";
  MeowUpdateConfig config;
  torch::manual_seed(6);
  auto u = MeowGraphUpdater::Create(PolicyConfig(0.1), config, at::kCUDA);
  ASSERT_TRUE(u.ok());
  for (const Batch& batch : RandomBatches(30, 256)) ASSERT_TRUE((*u)->Update(batch).ok());
  const SafetensorsFile published = (*u)->ActingWeights();  // no Synchronize: it waits itself
  FlowPolicy loaded(PolicyConfig(0.1));
  ASSERT_TRUE(loaded->ImportWeights(published).ok());
  (*u)->Synchronize();
  const at::Tensor now = (*u)->updater().flat_params().cpu();
  std::vector<at::Tensor> flat;
  for (const auto& param : loaded->parameters()) flat.push_back(param.detach().reshape({-1}));
  EXPECT_TRUE(at::equal(at::cat(flat), now));
}

}  // namespace
}  // namespace meow
