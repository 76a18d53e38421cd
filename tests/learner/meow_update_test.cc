// The MEow update: its gradient against finite differences, agreement with the straightforward
// formulation (stacked batch, torch Adam, per-tensor clip and polyak), learning on a fixed batch,
// the polyak step, skipping of non-finite steps, and batch validation.
#include "learner/meow_update.h"

#include <atomic>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/utils.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "learner/meow_backward.h"
#include "learner/straightforward_update.h"

namespace meow {
namespace {

using ::testing::HasSubstr;

FlowPolicyConfig PolicyConfig(int64_t s, int64_t a, double dropout = 0.1) {
  FlowPolicyConfig c;
  c.obs_dim = s;
  c.action_dim = a;
  c.alpha = 0.25;
  c.dropout = dropout;
  return c;
}

Batch RandomBatch(int64_t rows, int64_t s, int64_t a, at::ScalarType dtype = at::kFloat) {
  auto o = at::TensorOptions().dtype(dtype);
  return Batch{at::randn({rows, s}, o), at::rand({rows, a}, o) * 1.8 - 0.9, at::randn({rows}, o),
               at::randn({rows, s}, o), (at::rand({rows}, o) < 0.2).to(dtype)};
}

void Randomise(FlowPolicyImpl& policy, double scale) {
  torch::NoGradGuard no_grad;
  for (auto& p : policy.parameters()) p.add_(at::randn_like(p) * scale);
}

TEST(MeowUpdateTest, LossGradientMatchesFiniteDifferencesInDouble) {
  torch::manual_seed(1);
  FlowPolicy policy(PolicyConfig(5, 3)), target(PolicyConfig(5, 3));
  Randomise(*policy, 0.2);
  Randomise(*target, 0.2);
  policy->to(at::kDouble);
  target->to(at::kDouble);
  policy->eval();  // dropout off: the loss is a deterministic function of the weights
  target->eval();
  const Batch batch = RandomBatch(32, 5, 3, at::kDouble);

  for (auto& p : policy->parameters()) p.mutable_grad() = at::Tensor();
  MeowLoss(*policy, *target, batch, 0.99).loss.backward();

  std::mt19937 rng(3);
  int checked = 0;
  for (const auto& item : policy->named_parameters()) {
    at::Tensor p = item.value();
    const at::Tensor grad = p.grad().reshape({-1});
    at::Tensor flat = p.detach().view({-1});
    for (int k = 0; k < 3; ++k) {  // three random coordinates of every tensor
      const int64_t i = rng() % flat.numel();
      const double h = 1e-4, original = flat[i].item<double>();
      double f[2];
      for (int side = 0; side < 2; ++side) {
        torch::NoGradGuard no_grad;
        flat[i] = original + (side == 0 ? h : -h);
        f[side] = MeowLoss(*policy, *target, batch, 0.99).loss.item<double>();
      }
      {
        torch::NoGradGuard no_grad;
        flat[i] = original;
      }
      const double numeric = (f[0] - f[1]) / (2 * h);
      const double analytic = grad[i].item<double>();
      EXPECT_NEAR(analytic, numeric, 1e-6 + 1e-5 * std::abs(numeric)) << item.key() << "[" << i << "]";
      ++checked;
    }
  }
  EXPECT_EQ(checked, 72 * 3);  // 72 parameter tensors
  // The target network gets no gradient.
  for (const auto& p : target->parameters()) EXPECT_FALSE(p.grad().defined());
}

// An MLP forward through autograd with given dropout masks (one per hidden layer): the oracle the
// hand-written backward is checked against with dropout on.
at::Tensor MlpWithMasks(MlpImpl& mlp, at::Tensor x, const at::Tensor* masks) {
  for (size_t i = 0; i < mlp.swishes.size(); ++i) {
    x = mlp.linears[i]->forward(x);
    if (!mlp.norms.empty()) x = mlp.norms[i]->forward(x);
    x = mlp.swishes[i]->forward(x) * masks[i];
  }
  return mlp.linears.back()->forward(x);
}

// The MEow loss through autograd with the coupling nets' dropout given by `masks` (8 masks of B
// rows, shared by the heads, or of 2B rows: the couplings see [s; s], Q_1 the first half).
at::Tensor AutogradLossWithMasks(FlowPolicyImpl& policy, FlowPolicyImpl& target, const Batch& batch, double gamma,
                                 const std::vector<at::Tensor>& masks) {
  const int64_t rows = batch.obs.size(0);
  const bool stacked = masks[0].size(0) == 2 * rows;
  at::Tensor y;
  {
    torch::NoGradGuard no_grad;
    auto [v1, v2] = target.Value(batch.next_obs);
    y = batch.reward + gamma * (1 - batch.terminated) * at::minimum(v1, v2);
  }
  const at::Tensor obs = stacked ? at::cat({batch.obs, batch.obs}) : batch.obs;
  const at::Tensor action = stacked ? at::cat({batch.action, batch.action}) : batch.action;
  const at::Tensor clipped = action.clamp(-1 + 1e-5, 1 - 1e-5);
  const at::Tensor tanh_log_det = at::log(1 - clipped.square() + 1.1920929e-7).sum(1);
  at::Tensor z = at::atanh(clipped);
  for (int k = 3; k >= 0; --k) {
    CouplingImpl& c = *policy.couplings[k];
    z = z - (1 - c.b) * MlpWithMasks(*c.t, at::cat({z * c.b, obs}, 1), &masks[2 * k]);
  }
  at::Tensor log_sigma = policy.prior->LogSigma(batch.obs);
  if (stacked) log_sigma = at::cat({log_sigma, log_sigma});
  const at::Tensor common = -tanh_log_det - 0.5 * (z * at::exp(-log_sigma)).square().sum(1);
  const at::Tensor shifts = policy.shift->forward(batch.obs);
  const double alpha = policy.config().alpha;
  const at::Tensor q1 = alpha * (shifts.select(1, 0) + common.narrow(0, 0, rows));
  const at::Tensor q2 = alpha * (shifts.select(1, 1) + common.narrow(0, stacked ? rows : 0, rows));
  return 0.5 * ((q1 - y).square().mean() + (q2 - y).square().mean());
}

// The hand-written gradient with dropout on, replaying its masks through autograd: masks shared by
// the heads and independent per head (the production default), in float on the fused CPU loops
// and in double on the plain ATen ops that CUDA uses.
void ExpectManualGradientMatchesAutogradWithMasks(at::ScalarType dtype, bool independent_heads) {
  torch::manual_seed(11);
  FlowPolicy policy(PolicyConfig(5, 3, /*dropout=*/0.3)), target(PolicyConfig(5, 3, 0.3));
  Randomise(*policy, 0.2);
  Randomise(*target, 0.2);
  policy->to(dtype);
  target->to(dtype);
  target->eval();
  const int64_t rows = 48;
  const Batch batch = RandomBatch(rows, 5, 3, dtype);
  const std::vector<at::Tensor> masks =
      DrawDropoutMasks(policy->config(), (independent_heads ? 2 : 1) * rows, at::TensorOptions().dtype(dtype));
  ASSERT_EQ(masks.size(), 8u);
  ASSERT_GT((masks[0] == 0).sum().item<int64_t>(), 0) << "no unit dropped; the masks check nothing";

  for (auto& p : policy->parameters()) p.mutable_grad() = at::zeros_like(p);
  const ManualLoss manual = MeowLossAndGrad(*policy, *target, batch, 0.99, masks);
  std::map<std::string, at::Tensor> manual_grads;
  for (const auto& item : policy->named_parameters()) manual_grads[item.key()] = item.value().grad().clone();

  for (auto& p : policy->parameters()) p.mutable_grad().zero_();
  const at::Tensor loss = AutogradLossWithMasks(*policy, *target, batch, 0.99, masks);
  loss.backward();
  const double tol = dtype == at::kDouble ? 1e-10 : 2e-5;
  EXPECT_NEAR(manual.loss.item<double>(), loss.item<double>(), tol * std::max(1.0, std::abs(loss.item<double>())));
  for (const auto& item : policy->named_parameters()) {
    const at::Tensor& expected = item.value().grad();
    const double scale = std::max(1.0, expected.abs().max().item<double>());
    EXPECT_TRUE(at::allclose(manual_grads[item.key()], expected, tol, tol * scale))
        << item.key() << ": max difference " << (manual_grads[item.key()] - expected).abs().max().item<double>();
  }
}

TEST(MeowUpdateTest, ManualGradientWithSharedMasksMatchesAutogradInFloat) {
  ExpectManualGradientMatchesAutogradWithMasks(at::kFloat, /*independent_heads=*/false);
}
TEST(MeowUpdateTest, ManualGradientWithPerHeadMasksMatchesAutogradInFloat) {
  ExpectManualGradientMatchesAutogradWithMasks(at::kFloat, /*independent_heads=*/true);
}
TEST(MeowUpdateTest, ManualGradientWithMasksMatchesAutogradOnThePlainAtenPath) {
  ExpectManualGradientMatchesAutogradWithMasks(at::kDouble, /*independent_heads=*/false);
  ExpectManualGradientMatchesAutogradWithMasks(at::kDouble, /*independent_heads=*/true);
}

// The update draws 2B-row masks by default (each head its own, as the reference), and B-row masks
// when independent_head_dropout is off; the two give different losses on the same seed.
TEST(MeowUpdateTest, IndependentHeadDropoutIsTheDefaultAndChangesTheMasks) {
  EXPECT_TRUE(MeowUpdateConfig().independent_head_dropout);
  auto loss = [](bool independent) {
    torch::manual_seed(12);
    MeowUpdateConfig config;
    config.independent_head_dropout = independent;
    auto updater = MeowUpdater::Create(PolicyConfig(6, 2, 0.5), config, at::kCPU);
    const Batch batch = RandomBatch(64, 6, 2);
    torch::manual_seed(13);
    return (*updater)->Step(batch)->loss;
  };
  EXPECT_NE(loss(true), loss(false));
}

// With dropout off, MeowUpdater and the straightforward formulation follow the same trajectory.
void ExpectSameTrajectory(double grad_clip, bool manual_backward = true) {
  torch::manual_seed(2);
  MeowUpdateConfig config;
  config.grad_clip = grad_clip;
  config.manual_backward = manual_backward;
  config.tau = 0.01;
  auto fast = MeowUpdater::Create(PolicyConfig(11, 3, /*dropout=*/0.0), config, at::kCPU);
  ASSERT_TRUE(fast.ok());
  Randomise(*(*fast)->policy(), 0.05);
  // Re-sync the target after randomising (Create copied the fresh init).
  (*fast)->target()->CopyWeightsFrom(*(*fast)->policy());
  StraightforwardUpdater plain(*(*fast)->policy(), config);
  bool clipped = false;
  for (int step = 0; step < 5; ++step) {
    const Batch batch = RandomBatch(64, 11, 3);
    const double plain_loss = plain.Step(batch);
    auto stats = (*fast)->Step(batch);
    ASSERT_TRUE(stats.ok()) << stats.status();
    ASSERT_FALSE(stats->skipped);
    clipped = clipped || stats->grad_norm > grad_clip;
    EXPECT_NEAR(stats->loss, plain_loss, 1e-5 * std::max(1.0, std::abs(plain_loss))) << "step " << step;
  }
  if (grad_clip < 1) {
    EXPECT_TRUE(clipped) << "the clip never engaged; the test would not check it";
  }
  auto a = (*fast)->policy()->named_parameters();
  auto b = plain.policy()->named_parameters();
  auto ta = (*fast)->target()->named_parameters();
  auto tb = plain.target()->named_parameters();
  for (const auto& item : b) {
    EXPECT_TRUE(at::allclose(a[item.key()], item.value(), 1e-4, 1e-6)) << item.key();
    EXPECT_TRUE(at::allclose(ta[item.key()], tb[item.key()], 1e-4, 1e-6)) << item.key();
  }
}

TEST(MeowUpdateTest, MatchesTheStraightforwardFormulation) { ExpectSameTrajectory(30.0); }
TEST(MeowUpdateTest, MatchesTheStraightforwardFormulationWhenClipping) { ExpectSameTrajectory(0.05); }
// The autograd path (manual_backward = false) through MeowLoss, kept as an option, is held to the
// same oracle.
TEST(MeowUpdateTest, TheAutogradPathMatchesTheStraightforwardFormulation) {
  ExpectSameTrajectory(30.0, /*manual_backward=*/false);
  ExpectSameTrajectory(0.05, /*manual_backward=*/false);
}

TEST(MeowUpdateTest, RepeatedUpdatesOnAFixedBatchDriveTheLossDown) {
  torch::manual_seed(4);
  auto updater = MeowUpdater::Create(PolicyConfig(11, 3), MeowUpdateConfig(), at::kCPU);
  ASSERT_TRUE(updater.ok());
  const Batch batch = RandomBatch(256, 11, 3);
  double first = 0, last = 0;
  for (int step = 0; step < 300; ++step) {
    auto stats = (*updater)->Step(batch);
    ASSERT_TRUE(stats.ok());
    if (step == 0) first = stats->loss;
    last = stats->loss;
  }
  EXPECT_LT(last, 0.25 * first) << "first " << first << " last " << last;
  EXPECT_EQ((*updater)->steps(), 300);
}

TEST(MeowUpdateTest, PolyakMovesTheTargetByTau) {
  torch::manual_seed(5);
  MeowUpdateConfig config;
  config.tau = 0.1;
  auto updater = MeowUpdater::Create(PolicyConfig(4, 2), config, at::kCPU);
  ASSERT_TRUE(updater.ok());
  MeowUpdater& u = **updater;
  ASSERT_TRUE(u.Step(RandomBatch(32, 4, 2)).ok());  // target and online now differ
  const at::Tensor target_before = u.flat_target().clone();
  ASSERT_TRUE(u.Step(RandomBatch(32, 4, 2)).ok());
  const at::Tensor expected = 0.9 * target_before + 0.1 * u.flat_params();
  EXPECT_TRUE(at::allclose(u.flat_target(), expected, 1e-6, 1e-7));
  EXPECT_GT((u.flat_target() - target_before).abs().max().item<float>(), 0);
  // The named parameters of both networks are views into their flat buffers.
  for (auto [net, flat] : {std::pair{&u.policy(), &u.flat_params()}, std::pair{&u.target(), &u.flat_target()}}) {
    const char* begin = static_cast<const char*>(flat->data_ptr());
    for (const auto& p : (*net)->parameters()) {
      const char* ptr = static_cast<const char*>(p.data_ptr());
      EXPECT_TRUE(ptr >= begin && ptr < begin + flat->nbytes());
    }
  }
}

TEST(MeowUpdateTest, NonFiniteStepsAreSkippedCountedAndChangeNothing) {
  torch::manual_seed(6);
  auto updater = MeowUpdater::Create(PolicyConfig(4, 2), MeowUpdateConfig(), at::kCPU);
  ASSERT_TRUE(updater.ok());
  MeowUpdater& u = **updater;
  ASSERT_TRUE(u.Step(RandomBatch(32, 4, 2)).ok());
  const at::Tensor params = u.flat_params().clone(), target = u.flat_target().clone();
  const at::Tensor m = u.adam_m().clone(), v = u.adam_v().clone();
  Batch nan_reward = RandomBatch(32, 4, 2);
  nan_reward.reward[3] = NAN;
  Batch inf_obs = RandomBatch(32, 4, 2);
  inf_obs.obs[0][1] = INFINITY;
  for (const Batch& bad : {nan_reward, inf_obs}) {
    auto stats = u.Step(bad);
    ASSERT_TRUE(stats.ok());
    EXPECT_TRUE(stats->skipped);
  }
  EXPECT_EQ(u.skipped_steps(), 2);
  EXPECT_EQ(u.steps(), 1);
  EXPECT_TRUE(at::equal(u.flat_params(), params));
  EXPECT_TRUE(at::equal(u.flat_target(), target));
  EXPECT_TRUE(at::equal(u.adam_m(), m));
  EXPECT_TRUE(at::equal(u.adam_v(), v));
  // Training goes on afterwards.
  auto stats = u.Step(RandomBatch(32, 4, 2));
  ASSERT_TRUE(stats.ok());
  EXPECT_FALSE(stats->skipped);
  EXPECT_EQ(u.steps(), 2);
}

// Two updaters from the same initialisation on the same batch: with dropout their losses depend on
// the random masks (train mode in the update); without dropout they are identical.
double LossWithMaskSeed(double dropout, uint64_t mask_seed, bool manual_backward) {
  torch::manual_seed(7);
  MeowUpdateConfig config;
  config.manual_backward = manual_backward;
  auto updater = MeowUpdater::Create(PolicyConfig(6, 2, dropout), config, at::kCPU);
  const Batch batch = RandomBatch(64, 6, 2);
  torch::manual_seed(mask_seed);
  return (*updater)->Step(batch)->loss;
}

TEST(MeowUpdateTest, DropoutIsOnInTheUpdateAndOffWhenActing) {
  for (bool manual : {true, false}) {
    SCOPED_TRACE(manual ? "hand-written backward" : "autograd");
    // In the update: the loss depends on the masks drawn, and only with dropout on.
    EXPECT_NE(LossWithMaskSeed(0.5, 1, manual), LossWithMaskSeed(0.5, 2, manual));
    EXPECT_EQ(LossWithMaskSeed(0.0, 1, manual), LossWithMaskSeed(0.0, 2, manual));

    torch::manual_seed(9);
    MeowUpdateConfig config;
    config.manual_backward = manual;
    auto updater = MeowUpdater::Create(PolicyConfig(6, 2, 0.5), config, at::kCPU);
    ASSERT_TRUE((*updater)->Step(RandomBatch(64, 6, 2)).ok());
    FlowPolicyImpl& policy = *(*updater)->policy();
    torch::NoGradGuard no_grad;
    const at::Tensor obs = at::randn({16, 6});
    // The deterministic action goes through the coupling nets: equal twice only without dropout.
    // That this can tell: in training mode the same call differs.
    EXPECT_FALSE(policy.is_training());
    EXPECT_TRUE(at::equal(policy.Sample(obs, true).action, policy.Sample(obs, true).action));
    policy.train();
    EXPECT_FALSE(at::equal(policy.Sample(obs, true).action, policy.Sample(obs, true).action));
    policy.eval();
  }
}

// Local mode runs actor threads that sample actions from their own policies while the learner
// updates. Nothing they share (the global RNG that draws the learner's dropout masks, LibTorch's
// thread pools, BLAS) may change the learner's numbers: the parameters after 40 updates with two
// threads sampling meanwhile equal, bit for bit, those of the same updates with nobody else there.
at::Tensor ParamsAfterUpdates(int sampling_threads) {
  const FlowPolicyConfig config = PolicyConfig(11, 3);
  torch::manual_seed(7);
  auto updater = MeowUpdater::Create(config, MeowUpdateConfig(), at::kCPU);
  EXPECT_TRUE(updater.ok());
  std::vector<Batch> batches;
  for (int i = 0; i < 4; ++i) batches.push_back(RandomBatch(64, 11, 3));
  // Built either way: a policy's initialisation draws from the global RNG.
  std::vector<FlowPolicy> acting;
  for (int i = 0; i < 2; ++i) {
    acting.emplace_back(config);
    acting.back()->eval();
  }
  std::atomic<bool> stop{false};
  std::atomic<int64_t> samples{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < sampling_threads; ++i) {
    threads.emplace_back([&, i] {
      at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(100 + i);
      at::Tensor obs = at::randn({1, 11}, gen);
      while (!stop.load()) {
        torch::NoGradGuard no_grad;
        obs = obs * 0.9 + 0.1 * acting[i]->Sample(obs, /*deterministic=*/false, gen).action.sum();
        ++samples;
      }
    });
  }
  // The samplers are under way before the first update and still running after the last.
  while (samples.load() < 2 * sampling_threads) std::this_thread::yield();
  for (int i = 0; i < 40; ++i) EXPECT_TRUE((*updater)->Step(batches[i % batches.size()]).ok());
  const int64_t during = samples.load();
  while (samples.load() < during + 2 * sampling_threads) std::this_thread::yield();
  stop = true;
  for (auto& t : threads) t.join();
  return (*updater)->flat_params().clone();
}

TEST(MeowUpdateTest, ActingInOtherThreadsDoesNotChangeTheUpdates) {
  const at::Tensor alone = ParamsAfterUpdates(0);
  const at::Tensor with_actors = ParamsAfterUpdates(2);
  EXPECT_TRUE(at::equal(alone, with_actors))
      << "largest difference " << (alone - with_actors).abs().max().item<float>();
}

TEST(MeowUpdateTest, MalformedBatchesAreRefusedNamingTheField) {
  auto updater = MeowUpdater::Create(PolicyConfig(4, 2), MeowUpdateConfig(), at::kCPU);
  ASSERT_TRUE(updater.ok());
  MeowUpdater& u = **updater;
  const at::Tensor before = u.flat_params().clone();
  auto expect = [&](Batch b, const std::string& message) {
    absl::Status s = u.Step(b).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << message;
    EXPECT_THAT(std::string(s.message()), HasSubstr(message));
  };
  Batch b = RandomBatch(8, 4, 2);
  b.action = at::rand({8, 3});
  expect(b, "batch field action has shape [8,3], expected [8,2]");
  b = RandomBatch(8, 4, 2);
  b.reward = at::rand({7});
  expect(b, "batch field reward has shape [7], expected [8]");
  b = RandomBatch(8, 4, 2);
  b.next_obs = b.next_obs.to(at::kDouble);
  expect(b, "batch field next_obs has dtype Double, expected float32");
  b = RandomBatch(8, 4, 2);
  b.terminated = at::Tensor();
  expect(b, "batch field terminated is missing");
  b = RandomBatch(8, 4, 2);
  b.obs = at::rand({0, 4});
  expect(b, "batch field obs has no rows");
  EXPECT_TRUE(at::equal(u.flat_params(), before));
  EXPECT_EQ(u.steps(), 0);
}

TEST(MeowUpdateTest, InvalidConfigsAreRefused) {
  MeowUpdateConfig config;
  config.gamma = 1.5;
  EXPECT_THAT(std::string(MeowUpdater::Create(PolicyConfig(4, 2), config, at::kCPU).status().message()),
              HasSubstr("gamma must be in [0, 1], got 1.5"));
  FlowPolicyConfig policy = PolicyConfig(4, 2);
  policy.sigma_min = 1.0;
  policy.sigma_max = 0.0;
  EXPECT_THAT(std::string(MeowUpdater::Create(policy, MeowUpdateConfig(), at::kCPU).status().message()),
              HasSubstr("sigma_min must be < sigma_max"));
}

}  // namespace
}  // namespace meow
