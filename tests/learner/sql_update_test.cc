// Soft Q-learning (common/sql_policy.h, learner/sql_update.h): the importance-sampled soft value
// against a dense numerical log-integral of exp(Q) over the 1-D and 2-D action box, through the
// updater's own critic path; the adaptive RBF kernel (both bandwidth rules against the medians
// written out here, its gradient against autograd); SVGD steps moving particles onto a known 2-D
// mixture's modes; the critic's and the sampler's gradients of one update against finite
// differences of losses written out here in double precision (the Stein direction recomputed here
// from the update's own draws); learning a one-step task; checkpoint state round trips; bad
// batches, non-finite data and bad state refused without changing anything; the acting policy
// from published weights and the refusal of other algorithms' files.
#include "learner/sql_update.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/utils.h>

#include "actor/acting_policy.h"
#include "common/sac_policy.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meow {
namespace {

using ::testing::HasSubstr;

SqlPolicyConfig Sizes(int64_t s, int64_t a, int64_t hidden = 16) {
  SqlPolicyConfig c;
  c.obs_dim = s;
  c.action_dim = a;
  c.hidden = hidden;
  return c;
}

Batch RandomBatch(int64_t rows, int64_t s, int64_t a) {
  return Batch{at::randn({rows, s}), at::rand({rows, a}) * 1.8 - 0.9, at::randn({rows}), at::randn({rows, s}),
               (at::rand({rows}) < 0.2).to(at::kFloat)};
}

const c10::Device kCpu(c10::kCPU);

// log of the integral of exp(q(a)) over [-1, 1]^dims by the midpoint rule on n points a side.
double DenseLogIntegral(const std::function<at::Tensor(const at::Tensor&)>& q, int dims, int n) {
  at::Tensor g = (at::arange(n, at::kDouble) + 0.5) * (2.0 / n) - 1.0;
  at::Tensor points = dims == 1 ? g.unsqueeze(1) : at::stack(at::meshgrid({g, g}, "ij"), -1).reshape({-1, 2});
  const double cell = std::pow(2.0 / n, dims);
  return (at::logsumexp(q(points), {0}) + std::log(cell)).item<double>();
}

TEST(SqlSoftValueTest, MatchesADenseLogIntegralIn1DAnd2D) {
  at::manual_seed(1);
  // A bumpy energy: the estimate must weigh exp(Q), not average Q.
  auto q1 = [](const at::Tensor& a) { return 3.0 * at::sin(4.0 * a.select(1, 0)) - 2.0 * a.select(1, 0).pow(2); };
  auto q2 = [](const at::Tensor& a) {
    return 2.5 * at::cos(3.0 * a.select(1, 0)) * at::sin(2.0 * a.select(1, 1)) + a.select(1, 1);
  };
  for (auto [dims, q] : {std::pair<int, std::function<at::Tensor(const at::Tensor&)>>{1, q1}, {2, q2}}) {
    const double exact = DenseLogIntegral(q, dims, dims == 1 ? 20000 : 1000);
    // Many draws: the estimate converges to the integral (log 2^A cancels the uniform density).
    at::Tensor a = at::rand({400000, dims}, at::kDouble) * 2 - 1;
    const double many = UniformImportanceSoftValue(q(a).unsqueeze(0), dims).item<double>();
    EXPECT_NEAR(many, exact, 0.01) << dims << "-D";
    // 16 draws, as the update makes them: exp(V) is unbiased for the integral (its mean over many
    // independent estimates), V itself below it (Jensen).
    at::Tensor a16 = at::rand({20000 * 16, dims}, at::kDouble) * 2 - 1;
    at::Tensor v16 = UniformImportanceSoftValue(q(a16).view({20000, 16}), dims);
    EXPECT_NEAR(std::log(v16.exp().mean().item<double>()), exact, 0.02) << dims << "-D";
    EXPECT_LT(v16.mean().item<double>(), exact - 0.05) << dims << "-D";
  }
}

TEST(SqlSoftValueTest, TheUpdatersTargetUsesTheIntegralOfTheTargetCritics) {
  // With many value particles the update's soft value of s' is log of the integral of
  // exp(min(Qbar_1, Qbar_2)(s', a)) over the box, computed here on a grid from the target networks.
  for (const char* draws : {"per_row", "shared"}) {
    at::manual_seed(3);
    SqlUpdateConfig config;
    config.value_particles = 4096;
    config.value_draws = draws;
    auto sql = *SqlUpdater::Create(Sizes(3, 2), config, kCpu);
    {
      torch::NoGradGuard no_grad;  // larger weights: an energy with some shape
      for (at::Tensor& p : sql->qf1_target()->parameters()) p.mul_(4);
      for (at::Tensor& p : sql->qf2_target()->parameters()) p.mul_(3);
    }
    Batch batch = RandomBatch(4, 3, 2);
    config.reward_scale = 1.0;
    double exact = 0, target = 0;
    {
      torch::NoGradGuard no_grad;
      for (int64_t row = 0; row < 4; ++row) {
        const double v = DenseLogIntegral(
            [&](const at::Tensor& a) {
              at::Tensor s = batch.next_obs[row].unsqueeze(0).expand({a.size(0), 3}).to(at::kFloat);
              at::Tensor af = a.to(at::kFloat);
              return at::min(sql->qf1_target()(s, af), sql->qf2_target()(s, af)).to(at::kDouble);
            },
            2, 300);
        exact += v / 4;
        // y = reward_scale r + gamma (1 - terminated) V(s').
        target += (batch.reward[row].item<double>() +
                   config.gamma * (1 - batch.terminated[row].item<double>()) * v) / 4;
      }
    }
    auto stats = sql->Update(batch);
    ASSERT_TRUE(stats.ok()) << stats.status();
    EXPECT_GT(std::abs(exact - 2 * std::log(2.0)), 0.5) << "the energy must not be flat";
    EXPECT_NEAR(stats->v_mean, exact, 0.03 * std::max(1.0, std::abs(exact))) << draws;
    EXPECT_NEAR(stats->target_mean, target, 0.03 * std::max(1.0, std::abs(target))) << draws;
  }
}

TEST(SqlKernelTest, BandwidthRulesAndGradient) {
  at::manual_seed(4);
  at::Tensor x = at::randn({3, 6, 2}, at::kDouble), y = at::randn({3, 5, 2}, at::kDouble);
  at::Tensor d2 = (x.unsqueeze(2) - y.unsqueeze(1)).pow(2).sum(-1).reshape({3, 30});
  at::Tensor sorted = std::get<0>(d2.sort(1));
  // log_batch: the interpolated median (30 values: the mean of the 15th and 16th) / log(B + 1).
  RbfKernel k = AdaptiveRbfKernel(x, y, "log_batch");
  for (int64_t b = 0; b < 3; ++b) {
    const double median = 0.5 * (sorted[b][14].item<double>() + sorted[b][15].item<double>());
    EXPECT_NEAR(k.h[b].item<double>(), median / std::log(4.0), 1e-7);
  }
  // log_particles: the 16th largest of 30 (the 15th smallest) / log(Kx = 6).
  RbfKernel kp = AdaptiveRbfKernel(x, y, "log_particles");
  for (int64_t b = 0; b < 3; ++b) {
    EXPECT_NEAR(kp.h[b].item<double>(), std::max(sorted[b][14].item<double>() / std::log(6.0), 1e-3), 1e-9);
  }
  // The gradient with respect to x against autograd, h held fixed.
  for (const RbfKernel& kernel : {k, kp}) {
    at::Tensor xr = x.clone().requires_grad_(true);
    at::Tensor kappa = at::exp(-(xr.unsqueeze(2) - y.unsqueeze(1)).pow(2).sum(-1) / kernel.h.view({3, 1, 1}));
    EXPECT_TRUE(at::allclose(kappa.detach(), kernel.kappa, 1e-10, 1e-12));
    at::Tensor w = at::randn({3, 6, 5}, at::kDouble);
    at::Tensor grad = torch::autograd::grad({(kappa * w).sum()}, {xr})[0];
    EXPECT_TRUE(at::allclose((kernel.grad_x * w.unsqueeze(-1)).sum(2), grad, 1e-9, 1e-12));
  }
}

// The score of an equal mixture of two isotropic Gaussians (sd 0.15) at (-0.5, 0.4), (0.5, -0.3).
at::Tensor MixtureScore(const at::Tensor& a) {
  at::Tensor x = a.detach().clone().requires_grad_(true);
  at::Tensor m1 = at::tensor({-0.5, 0.4}, at::kDouble), m2 = at::tensor({0.5, -0.3}, at::kDouble);
  const double var = 0.15 * 0.15;
  at::Tensor l1 = -(x - m1).pow(2).sum(-1) / (2 * var), l2 = -(x - m2).pow(2).sum(-1) / (2 * var);
  at::Tensor log_p = at::logsumexp(at::stack({l1, l2}, -1), {-1});
  return torch::autograd::grad({log_p.sum()}, {x})[0];
}

TEST(SqlSvgdTest, StepsMoveParticlesOntoTheModesOfA2DMixture) {
  for (const char* bandwidth : {"log_batch", "log_particles"}) {
    at::manual_seed(5);
    at::Tensor particles = at::rand({1, 60, 2}, at::kDouble) * 2 - 1;  // spread over the box
    at::Tensor m1 = at::tensor({-0.5, 0.4}, at::kDouble), m2 = at::tensor({0.5, -0.3}, at::kDouble);
    auto nearest = [&](const at::Tensor& p) {
      at::Tensor d1 = (p[0] - m1).norm(2, -1), d2 = (p[0] - m2).norm(2, -1);
      return std::pair{at::min(d1, d2), (d1 < d2).to(at::kDouble)};
    };
    const double before = nearest(particles).first.mean().item<double>();
    for (int step = 0; step < 400; ++step) {
      particles = particles + 0.01 * SvgdDirection(particles, MixtureScore(particles), particles, bandwidth);
    }
    auto [distance, at_first] = nearest(particles);
    EXPECT_GT(before, 0.4) << bandwidth;
    // Samples of the mixture itself lie 0.19 from their mode on average (Rayleigh, sd 0.15).
    EXPECT_LT(distance.mean().item<double>(), 0.25) << bandwidth;
    // Both modes hold particles (the repulsive term keeps them from collapsing onto one).
    const double share = at_first.mean().item<double>();
    std::printf("%s: mean distance to the nearest mode %.3f -> %.3f, share at the first %.2f\n", bandwidth, before,
                distance.mean().item<double>(), share);
    EXPECT_GT(share, 0.3) << bandwidth;
    EXPECT_LT(share, 0.7) << bandwidth;
    // Spread like the mixture, not collapsed onto its modes (the attraction alone would put every
    // particle within 0.01 of one).
    EXPECT_GT(distance.mean().item<double>(), 0.12) << bandwidth;
  }
}

// Finite differences (central, double precision) of `loss` with respect to entry `index` of `p`.
double FiniteDifference(at::Tensor p, int64_t index, const std::function<double()>& loss) {
  torch::NoGradGuard no_grad;
  at::Tensor flat = p.view(-1);
  const double h = 1e-6;
  const double x = flat[index].item<double>();
  flat[index] = x + h;
  const double up = loss();
  flat[index] = x - h;
  const double down = loss();
  flat[index] = x;
  return (up - down) / (2 * h);
}

template <typename M>
void CopyParams(M& to, M& from) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < to->parameters().size(); ++i) to->parameters()[i].copy_(from->parameters()[i]);
}
SqlSampler DoubleCopy(SqlSampler& m) {
  SqlSampler c(m->config());
  CopyParams(c, m);
  c->to(at::kDouble);
  return c;
}
QNetwork DoubleCopy(QNetwork& m) {
  QNetwork c(m->fc1->weight.size(1), 0, m->fc1->weight.size(0));
  CopyParams(c, m);
  c->to(at::kDouble);
  return c;
}

TEST(SqlUpdateTest, TheGradientsOfOneUpdateMatchFiniteDifferences) {
  for (const char* draws : {"independent", "split"}) {
    at::manual_seed(7);
    const int64_t S = 3, A = 2, B = 8, K = 6, KV = 5;
    SqlUpdateConfig config;
    config.reward_scale = 3.0;
    config.svgd_particles = K;
    config.value_particles = KV;
    config.particle_draws = draws;
    auto sql = *SqlUpdater::Create(Sizes(S, A), config, kCpu);
    Batch batch = RandomBatch(B, S, A);
    SqlSampler f0 = DoubleCopy(sql->sampler());
    QNetwork q1 = DoubleCopy(sql->qf1()), q2 = DoubleCopy(sql->qf2());
    QNetwork t1 = DoubleCopy(sql->qf1_target()), t2 = DoubleCopy(sql->qf2_target());

    at::manual_seed(123);
    auto stats = sql->Update(batch);
    ASSERT_TRUE(stats.ok()) << stats.status();
    ASSERT_FALSE(stats->skipped);
    // The draws of the update, in its order.
    at::manual_seed(123);
    at::Tensor value_actions = (at::rand({B, KV, A}) * 2 - 1).to(at::kDouble);
    const bool split = std::string(draws) == "split";
    at::Tensor xi_updated = at::randn({B * K, A}).to(at::kDouble);
    at::Tensor xi_fixed = split ? at::Tensor() : at::randn({B * K, A}).to(at::kDouble);
    auto d = [](const at::Tensor& t) { return t.to(at::kDouble); };

    // The critic loss: y from the targets at the uniform actions.
    auto critic_loss = [&] {
      at::Tensor s = d(batch.next_obs).unsqueeze(1).expand({B, KV, S}).reshape({B * KV, S});
      at::Tensor a = value_actions.reshape({B * KV, A});
      at::Tensor q = at::min(t1(s, a), t2(s, a)).view({B, KV});
      at::Tensor v = at::log(q.exp().mean(1)) + A * std::log(2.0);
      at::Tensor y = config.reward_scale * d(batch.reward) + config.gamma * (1 - d(batch.terminated)) * v;
      at::Tensor e1 = q1(d(batch.obs), d(batch.action)) - y, e2 = q2(d(batch.obs), d(batch.action)) - y;
      return ((e1 * e1).mean() + (e2 * e2).mean()).item<double>();
    };
    std::map<std::string, at::Tensor> state = sql->State();
    const double one_minus_beta1 = 1 - config.adam_beta1;
    int checked = 0;
    std::vector<at::Tensor> q_params = q1->parameters();
    for (const at::Tensor& p : q2->parameters()) q_params.push_back(p);
    for (size_t i = 0; i < q_params.size(); ++i) {
      at::Tensor grad = state.at("q_opt.m." + std::to_string(i)).to(at::kDouble).view(-1) / one_minus_beta1;
      for (int64_t k : {int64_t{0}, q_params[i].numel() - 1}) {
        const double fd = FiniteDifference(q_params[i], k, critic_loss);
        EXPECT_NEAR(grad[k].item<double>(), fd, 1e-3 * std::max(1.0, std::abs(fd))) << draws << " critic " << i;
        ++checked;
      }
    }

    // The sampler: the Stein direction written out here with the critics after their step (a plain
    // double loop over particle pairs and [SQP]'s interpolated median), then the surrogate
    // -sum_i D_i . f(s, xi_i) differentiated by finite differences with D held fixed.
    QNetwork q1a = DoubleCopy(sql->qf1()), q2a = DoubleCopy(sql->qf2());
    at::Tensor obs_k = d(batch.obs).unsqueeze(1).expand({B, K, S}).reshape({B * K, S});
    at::Tensor updated, fixed;
    {
      torch::NoGradGuard no_grad;
      at::Tensor all = f0(obs_k, xi_updated).view({B, K, A});
      if (split) {
        fixed = all.narrow(1, 0, K - K / 2).clone();
        updated = all.narrow(1, K - K / 2, K / 2).clone();
      } else {
        updated = all;
        fixed = f0(obs_k, xi_fixed).view({B, K, A});
      }
    }
    const int64_t kx = fixed.size(1), ky = updated.size(1);
    at::Tensor fx = fixed.clone().requires_grad_(true);
    at::Tensor obs_x = d(batch.obs).unsqueeze(1).expand({B, kx, S}).reshape({B * kx, S});
    at::Tensor log_p = at::min(q1a(obs_x, fx.reshape({-1, A})), q2a(obs_x, fx.reshape({-1, A}))).view({B, kx}) +
                       at::log(1 - fx.pow(2) + 1.1920928955078125e-07).sum(-1);
    at::Tensor score = torch::autograd::grad({log_p.sum()}, {fx})[0];
    at::Tensor direction = at::zeros({B, ky, A}, at::kDouble);
    for (int64_t b = 0; b < B; ++b) {
      std::vector<double> dist;
      for (int64_t j = 0; j < kx; ++j) {
        for (int64_t i = 0; i < ky; ++i) dist.push_back((fixed[b][j] - updated[b][i]).pow(2).sum().item<double>());
      }
      std::sort(dist.begin(), dist.end());
      const size_t n = dist.size();
      const double median = n % 2 ? dist[n / 2] : 0.5 * (dist[n / 2 - 1] + dist[n / 2]);
      const double h = median / std::log(static_cast<double>(B) + 1) + 1e-8;
      for (int64_t i = 0; i < ky; ++i) {
        at::Tensor sum = at::zeros({A}, at::kDouble);
        for (int64_t j = 0; j < kx; ++j) {
          at::Tensor diff = fixed[b][j] - updated[b][i];
          const double kappa = std::exp(-diff.pow(2).sum().item<double>() / h);
          sum += kappa * score[b][j] - 2.0 / h * kappa * diff;
        }
        direction[b][i] = sum / static_cast<double>(kx);
      }
    }
    auto sampler_loss = [&] {
      at::Tensor all = f0(obs_k, xi_updated).view({B, K, A});
      at::Tensor u = split ? all.narrow(1, K - K / 2, K / 2) : all;
      return -(direction * u).sum().item<double>();
    };
    std::vector<at::Tensor> f_params = f0->parameters();
    for (size_t i = 0; i < f_params.size(); ++i) {
      at::Tensor grad = state.at("policy_opt.m." + std::to_string(i)).to(at::kDouble).view(-1) / one_minus_beta1;
      for (int64_t k : {int64_t{0}, f_params[i].numel() / 2, f_params[i].numel() - 1}) {
        const double fd = FiniteDifference(f_params[i], k, sampler_loss);
        EXPECT_NEAR(grad[k].item<double>(), fd, 2e-3 * std::max(1.0, std::abs(fd))) << draws << " sampler " << i;
        ++checked;
      }
    }
    EXPECT_GT(checked, 20);
    // The targets moved by tau toward the critics after their step.
    QNetwork t1a = DoubleCopy(sql->qf1_target());
    for (size_t i = 0; i < t1->parameters().size(); ++i) {
      at::Tensor expected = (1 - config.tau) * t1->parameters()[i] + config.tau * q1a->parameters()[i];
      EXPECT_TRUE(at::allclose(t1a->parameters()[i], expected, 1e-5, 1e-6)) << "target parameter " << i;
    }
  }
}

TEST(SqlUpdateTest, TheFastPathsAreTheStraightforwardFormulation) {
  // The same weights, batches and draws through both formulations (the per-state first layer and
  // the hand-written critic gradients against repeated states and autograd): the same updates.
  for (const char* draws : {"independent", "split"}) {
    SqlUpdateConfig fast, plain;
    fast.particle_draws = plain.particle_draws = draws;
    plain.per_state_first_layer = false;
    plain.manual_critic_backward = false;
    at::manual_seed(8);
    auto a = *SqlUpdater::Create(Sizes(5, 3), fast, kCpu);
    at::manual_seed(8);
    auto b = *SqlUpdater::Create(Sizes(5, 3), plain, kCpu);
    for (int step = 0; step < 3; ++step) {
      Batch batch = RandomBatch(32, 5, 3);
      at::manual_seed(100 + step);
      auto sa = a->Update(batch);
      at::manual_seed(100 + step);
      auto sb = b->Update(batch);
      ASSERT_TRUE(sa.ok() && sb.ok());
      EXPECT_NEAR(sa->loss, sb->loss, 1e-4 * std::max(1.0, std::abs(sb->loss))) << draws;
      EXPECT_NEAR(sa->v_mean, sb->v_mean, 1e-4 * std::max(1.0, std::abs(sb->v_mean))) << draws;
    }
    for (const auto& [name, t] : a->State()) {
      EXPECT_TRUE(at::allclose(t, b->State().at(name), 1e-4, 1e-5)) << draws << " " << name;
    }
  }
}

TEST(SqlUpdateTest, LearnsAOneStepTask) {
  // Reward -(a - 0.5)^2, every transition terminal, reward scale 20: Q -> -20 (a - 0.5)^2 and the
  // energy exp(Q) is a bump of sd 0.16 at 0.5; the sampler's actions gather there.
  at::manual_seed(11);
  SqlUpdateConfig config;
  config.policy_lr = 3e-3;
  config.q_lr = 3e-3;
  config.reward_scale = 20;
  auto sql = *SqlUpdater::Create(Sizes(2, 1, 32), config, kCpu);
  {
    torch::NoGradGuard no_grad;
    at::Tensor a0 = sql->sampler()->Sample(at::randn({2000, 2}), /*deterministic=*/false);
    ASSERT_LT(std::abs(a0.mean().item<double>()), 0.25);
  }
  for (int i = 0; i < 800; ++i) {
    Batch b;
    b.obs = at::randn({64, 2});
    b.action = at::rand({64, 1}) * 2 - 1;
    b.reward = -(b.action.squeeze(1) - 0.5).pow(2);
    b.next_obs = at::randn({64, 2});
    b.terminated = at::ones({64});
    ASSERT_TRUE(sql->Update(b).ok());
  }
  torch::NoGradGuard no_grad;
  at::Tensor a = sql->sampler()->Sample(at::randn({4000, 2}), /*deterministic=*/false);
  EXPECT_NEAR(a.mean().item<double>(), 0.5, 0.1);
  // A distribution, not a point: SVGD's repulsion keeps the spread near the energy's (0.16).
  EXPECT_GT(a.std().item<double>(), 0.07);
  EXPECT_LT(a.std().item<double>(), 0.3);
  EXPECT_EQ(sql->updates(), 800);
  EXPECT_TRUE(std::isfinite(sql->last_direction_norm()));
}

TEST(SqlUpdateTest, StateRoundTripsAndContinuesTheSame) {
  at::manual_seed(5);
  auto a = *SqlUpdater::Create(Sizes(4, 2), SqlUpdateConfig(), kCpu);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(a->Update(RandomBatch(32, 4, 2)).ok());
  at::manual_seed(99);
  auto b = *SqlUpdater::Create(Sizes(4, 2), SqlUpdateConfig(), kCpu);
  std::map<std::string, at::Tensor> state;
  for (const auto& [k, v] : a->State()) state.emplace(k, v.clone());
  ASSERT_TRUE(b->RestoreState(state, a->updates(), a->skipped_updates()).ok());
  EXPECT_EQ(b->updates(), 5);
  Batch batch = RandomBatch(32, 4, 2);
  at::manual_seed(1234);
  ASSERT_TRUE(a->Update(batch).ok());
  at::manual_seed(1234);
  ASSERT_TRUE(b->Update(batch).ok());
  for (const auto& [name, t] : a->State()) EXPECT_TRUE(at::equal(t, b->State().at(name))) << name;
}

TEST(SqlUpdateTest, BadStateBatchesAndConfigAreRefusedAndChangeNothing) {
  at::manual_seed(5);
  auto sql = *SqlUpdater::Create(Sizes(4, 2), SqlUpdateConfig(), kCpu);
  std::map<std::string, at::Tensor> before;
  for (const auto& [k, v] : sql->State()) before.emplace(k, v.clone());
  auto state = before;
  state.erase("qf2.fc3.bias");
  EXPECT_THAT(sql->RestoreState(state, 3, 0).message(), HasSubstr("qf2.fc3.bias"));
  state = before;
  state["sampler.fc1.weight"] = at::zeros({5, 5});
  EXPECT_THAT(sql->RestoreState(state, 3, 0).message(), HasSubstr("sampler.fc1.weight"));
  state = before;
  state["policy_opt.m.0"] = at::full_like(before.at("policy_opt.m.0"), NAN);
  EXPECT_THAT(sql->RestoreState(state, 3, 0).message(), HasSubstr("NaN"));
  state = before;
  state.erase("policy_opt.steps");
  EXPECT_THAT(sql->RestoreState(state, 3, 0).message(), HasSubstr("policy_opt.steps"));

  Batch wrong = RandomBatch(8, 4, 2);
  wrong.action = at::zeros({8, 3});
  auto r = sql->Update(wrong);
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("action"));
  Batch nan = RandomBatch(8, 4, 2);
  nan.reward[3] = NAN;
  auto s = sql->Update(nan);
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(s->skipped);
  EXPECT_EQ(sql->skipped_updates(), 1);
  EXPECT_EQ(sql->updates(), 0);
  for (const auto& [k, v] : sql->State()) EXPECT_TRUE(at::equal(v, before.at(k))) << k;

  EXPECT_FALSE(SqlUpdater::Create(Sizes(0, 2), SqlUpdateConfig(), kCpu).ok());
  for (auto [field, message] : {std::pair{0, "reward_scale"}, std::pair{1, "svgd_particles"},
                                std::pair{2, "kernel_bandwidth"}, std::pair{3, "particle_draws"},
                                std::pair{4, "value_draws"}, std::pair{5, "value_particles"}}) {
    SqlUpdateConfig bad;
    if (field == 0) bad.reward_scale = -1;
    if (field == 1) bad.svgd_particles = 1;
    if (field == 2) bad.kernel_bandwidth = "median";
    if (field == 3) bad.particle_draws = "both";
    if (field == 4) bad.value_draws = "none";
    if (field == 5) bad.value_particles = 0;
    EXPECT_THAT(SqlUpdater::Create(Sizes(4, 2), bad, kCpu).status().message(), HasSubstr(message));
  }
}

TEST(SqlActingPolicyTest, ActsWithPublishedWeightsAndRefusesOtherAlgorithms) {
  at::manual_seed(5);
  auto sql = *SqlUpdater::Create(Sizes(4, 2), SqlUpdateConfig(), kCpu);
  SafetensorsFile weights = sql->ActingWeights();
  EXPECT_EQ(weights.metadata.at("meow.algorithm"), "sql");
  EnvSpec spec;
  spec.name = "Test-v0";
  spec.obs_dim = 4;
  spec.action_dim = 2;
  auto policy = MakeActingPolicy(weights, spec, "published weights");
  ASSERT_TRUE(policy.ok()) << policy.status();
  at::Tensor obs = at::randn({6, 4});
  torch::NoGradGuard no_grad;
  // Deterministic: the sampler at xi = 0; stochastic: in the box and different from it.
  EXPECT_TRUE(at::allclose((*policy)->Act(obs, true, std::nullopt), sql->sampler()(obs, at::zeros({6, 2}))));
  at::Tensor sampled = (*policy)->Act(obs, false, std::nullopt);
  EXPECT_LE(sampled.abs().max().item<double>(), 1.0);
  EXPECT_FALSE(at::allclose(sampled, sql->sampler()(obs, at::zeros({6, 2}))));
  spec.obs_dim = 5;
  EXPECT_THAT(MakeActingPolicy(weights, spec, "w.safetensors").status().message(), HasSubstr("w.safetensors"));
  // SAC's and MEow's policies refuse SQL's weights by name, and SQL's theirs.
  SacPolicyConfig sac_sizes;
  sac_sizes.obs_dim = 4;
  sac_sizes.action_dim = 2;
  SacActingPolicy sac(sac_sizes);
  EXPECT_THAT(sac.LoadWeights(weights).message(), HasSubstr("\"sql\""));
  FlowPolicyConfig flow_config;
  flow_config.obs_dim = 4;
  flow_config.action_dim = 2;
  FlowActingPolicy flow(flow_config);
  EXPECT_THAT(flow.LoadWeights(weights).message(), HasSubstr("\"sql\""));
  SqlActingPolicy mine(Sizes(4, 2, 128));
  EXPECT_THAT(mine.LoadWeights(sac.ExportWeights()).message(), HasSubstr("\"sac\""));
  FlowPolicy flow_net(flow_config);
  EXPECT_THAT(mine.LoadWeights(flow_net->ExportWeights()).message(), HasSubstr("\"meow\""));
  // The metadata is checked against the tensors.
  weights.metadata["meow.hidden"] = "64";
  EXPECT_THAT(SqlConfigFromWeights(weights).status().message(), HasSubstr("fc1.weight"));
  weights.metadata.erase("meow.hidden");
  EXPECT_THAT(SqlConfigFromWeights(weights).status().message(), HasSubstr("meow.hidden"));
}

}  // namespace
}  // namespace meow
