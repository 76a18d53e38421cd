// SAC (common/sac_policy.h, learner/sac_update.h): the tanh-Gaussian log-density integrates to 1
// (quadrature in 1-D and 2-D); the critic's, the actor's and the temperature's gradients of one
// update against finite differences of losses written out here in double precision (read from the
// first Adam moments, m = (1 - beta1) g); the temperature moving toward the target entropy from
// both sides; learning a one-step task; checkpoint state round trips; bad batches, non-finite
// data and bad state refused without changing anything; the acting policy from published weights.
#include "learner/sac_update.h"

#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/utils.h>

#include "actor/acting_policy.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meow {
namespace {

using ::testing::HasSubstr;

SacPolicyConfig Sizes(int64_t s, int64_t a, int64_t hidden = 16) {
  SacPolicyConfig c;
  c.obs_dim = s;
  c.action_dim = a;
  c.hidden = hidden;
  return c;
}

Batch RandomBatch(int64_t rows, int64_t s, int64_t a) {
  return Batch{at::randn({rows, s}), at::rand({rows, a}) * 1.8 - 0.9, at::randn({rows}), at::randn({rows, s}),
               (at::rand({rows}) < 0.2).to(at::kFloat)};
}

TEST(TanhGaussianTest, LogDensityIntegratesToOneIn1D) {
  // Over a in (-1, 1), midpoint rule on a fine grid, in double precision.
  for (auto [mean, log_std] : {std::pair{0.0, -0.5}, std::pair{0.7, -1.0}, std::pair{-0.4, 0.3}}) {
    const int n = 400000;
    at::Tensor a = (at::arange(n, at::kDouble) + 0.5) * (2.0 / n) - 1.0;
    at::Tensor u = at::atanh(a).unsqueeze(1);
    at::Tensor lp = TanhGaussianLogProb(u, at::full_like(u, mean), at::full_like(u, log_std));
    const double integral = (lp.exp() * (2.0 / n)).sum().item<double>();
    EXPECT_NEAR(integral, 1.0, 2e-3) << "mean " << mean << ", log std " << log_std;
  }
}

TEST(TanhGaussianTest, LogDensityIntegratesToOneIn2D) {
  const int n = 1200;
  at::Tensor g = (at::arange(n, at::kDouble) + 0.5) * (2.0 / n) - 1.0;
  auto grid = at::meshgrid({g, g}, "ij");
  at::Tensor a = at::stack({grid[0].reshape(-1), grid[1].reshape(-1)}, 1);
  at::Tensor u = at::atanh(a);
  at::Tensor mean = at::tensor({0.3, -0.6}, at::kDouble).expand_as(u);
  at::Tensor log_std = at::tensor({-0.7, -0.2}, at::kDouble).expand_as(u);
  const double integral = (TanhGaussianLogProb(u, mean, log_std).exp() * (4.0 / (n * n))).sum().item<double>();
  EXPECT_NEAR(integral, 1.0, 5e-3);
}

TEST(SacPolicyTest, SamplesLieInTheBoxAndMatchTheirLogProb) {
  at::manual_seed(1);
  SacActor actor(Sizes(3, 2));
  at::Tensor obs = at::randn({500, 3});
  torch::NoGradGuard no_grad;
  SampleResult det = actor->Sample(obs, /*deterministic=*/true);
  auto [mean, log_std] = actor->MeanLogStd(obs);
  EXPECT_TRUE(at::allclose(det.action, at::tanh(mean)));
  EXPECT_TRUE((log_std >= -5).all().item<bool>() && (log_std <= 2).all().item<bool>());
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(5);
  SampleResult s = actor->Sample(obs, false, gen);
  EXPECT_TRUE((s.action.abs() < 1).all().item<bool>());
  at::Tensor u = at::atanh(s.action.to(at::kDouble).clamp(-1 + 1e-7, 1 - 1e-7));
  at::Tensor lp = TanhGaussianLogProb(u, mean.to(at::kDouble), log_std.to(at::kDouble));
  EXPECT_LT((lp - s.log_prob.to(at::kDouble)).abs().max().item<double>(), 1e-2);
  // The noise is standard normal: the standardised u has mean ~0 and std ~1 over 1,000 numbers.
  at::Tensor z = (u - mean.to(at::kDouble)) / log_std.to(at::kDouble).exp();
  EXPECT_NEAR(z.mean().item<double>(), 0.0, 0.15);
  EXPECT_NEAR(z.std().item<double>(), 1.0, 0.1);
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

// Deep copies of the networks in double precision.
void CopyParams(torch::nn::Module& to, torch::nn::Module& from) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < to.parameters().size(); ++i) to.parameters()[i].copy_(from.parameters()[i]);
}
SacActor DoubleCopy(SacActor& m) {
  SacActor c(m->config());
  CopyParams(*c, *m);
  c->to(at::kDouble);
  return c;
}
QNetwork DoubleCopy(QNetwork& m) {
  QNetwork c(m->fc1->weight.size(1), 0, m->fc1->weight.size(0));
  CopyParams(*c, *m);
  c->to(at::kDouble);
  return c;
}

TEST(SacUpdateTest, TheGradientsOfOneUpdateMatchFiniteDifferences) {
  at::manual_seed(7);
  const int64_t S = 3, A = 2, B = 32;
  SacUpdateConfig config;
  config.policy_frequency = 1;  // one actor step and one temperature step in this update
  auto made = SacUpdater::Create(Sizes(S, A), config, c10::Device(c10::kCPU));
  ASSERT_TRUE(made.ok()) << made.status();
  SacUpdater& sac = **made;
  Batch batch = RandomBatch(B, S, A);
  // Double copies of everything before the update.
  SacActor actor0 = DoubleCopy(sac.actor());
  QNetwork q1 = DoubleCopy(sac.qf1()), q2 = DoubleCopy(sac.qf2());
  QNetwork t1 = DoubleCopy(sac.qf1_target()), t2 = DoubleCopy(sac.qf2_target());

  at::manual_seed(123);
  auto stats = sac.Update(batch);
  ASSERT_TRUE(stats.ok()) << stats.status();
  ASSERT_FALSE(stats->skipped);
  // The noise the update drew, in order: the next actions, the actor's actions, the temperature's.
  at::manual_seed(123);
  at::Tensor eps_next = at::randn({B, A}).to(at::kDouble);
  at::Tensor eps_pi = at::randn({B, A}).to(at::kDouble);
  at::Tensor eps_alpha = at::randn({B, A}).to(at::kDouble);

  auto d = [](const at::Tensor& t) { return t.to(at::kDouble); };
  auto sample = [](SacActor& actor, const at::Tensor& obs, const at::Tensor& eps) {
    auto [mean, log_std] = actor->MeanLogStd(obs);
    at::Tensor u = mean + log_std.exp() * eps;
    return std::pair{at::tanh(u), TanhGaussianLogProb(u, mean, log_std)};
  };
  const double gamma = config.gamma, alpha0 = 1.0;  // log alpha starts at 0
  auto critic_loss = [&] {
    auto [a_next, lp_next] = sample(actor0, d(batch.next_obs), eps_next);
    at::Tensor soft = at::min(t1(d(batch.next_obs), a_next), t2(d(batch.next_obs), a_next)) - alpha0 * lp_next;
    at::Tensor y = d(batch.reward) + gamma * (1 - d(batch.terminated)) * soft;
    at::Tensor e1 = q1(d(batch.obs), d(batch.action)) - y, e2 = q2(d(batch.obs), d(batch.action)) - y;
    return ((e1 * e1).mean() + (e2 * e2).mean()).item<double>();
  };
  std::map<std::string, at::Tensor> state = sac.State();
  const double one_minus_beta1 = 1 - config.adam_beta1;
  int checked = 0;
  // The critics: q_opt's moments follow qf1's then qf2's parameters.
  std::vector<at::Tensor> q_params = q1->parameters();
  for (const at::Tensor& p : q2->parameters()) q_params.push_back(p);
  for (size_t i = 0; i < q_params.size(); ++i) {
    at::Tensor grad = state.at("q_opt.m." + std::to_string(i)).to(at::kDouble).view(-1) / one_minus_beta1;
    for (int64_t k : {int64_t{0}, q_params[i].numel() / 2, q_params[i].numel() - 1}) {
      const double fd = FiniteDifference(q_params[i], k, critic_loss);
      EXPECT_NEAR(grad[k].item<double>(), fd, 1e-3 * std::max(1.0, std::abs(fd))) << "critic parameter " << i << "[" << k << "]";
      ++checked;
    }
  }
  // The actor, against the critics as they were after their step (the update's own, unchanged by
  // the actor's step) in double precision.
  QNetwork q1_after = DoubleCopy(sac.qf1()), q2_after = DoubleCopy(sac.qf2());
  auto actor_loss = [&] {
    auto [a, lp] = sample(actor0, d(batch.obs), eps_pi);
    return (alpha0 * lp - at::min(q1_after(d(batch.obs), a), q2_after(d(batch.obs), a))).mean().item<double>();
  };
  std::vector<at::Tensor> actor_params = actor0->parameters();
  for (size_t i = 0; i < actor_params.size(); ++i) {
    at::Tensor grad = state.at("actor_opt.m." + std::to_string(i)).to(at::kDouble).view(-1) / one_minus_beta1;
    for (int64_t k : {int64_t{0}, actor_params[i].numel() - 1}) {
      const double fd = FiniteDifference(actor_params[i], k, actor_loss);
      EXPECT_NEAR(grad[k].item<double>(), fd, 1e-3 * std::max(1.0, std::abs(fd))) << "actor parameter " << i << "[" << k << "]";
      ++checked;
    }
  }
  // The temperature: d/dlog_alpha of -mean(alpha (log pi + target)) at alpha = 1, with the actor
  // after its step.
  SacActor actor1 = DoubleCopy(sac.actor());
  at::Tensor lp_alpha = sample(actor1, d(batch.obs), eps_alpha).second;
  const double expected = -(lp_alpha + sac.target_entropy()).mean().item<double>();
  EXPECT_NEAR(state.at("alpha_opt.m.0").item<double>() / one_minus_beta1, expected, 1e-4 * std::max(1.0, std::abs(expected)));
  EXPECT_EQ(sac.target_entropy(), -static_cast<double>(A));
  EXPECT_GT(checked, 20);
  // The targets moved by tau toward the critics after their step.
  QNetwork t1_after = DoubleCopy(sac.qf1_target());
  for (size_t i = 0; i < t1->parameters().size(); ++i) {
    at::Tensor expected_target = (1 - config.tau) * t1->parameters()[i] + config.tau * q1_after->parameters()[i];
    EXPECT_TRUE(at::allclose(t1_after->parameters()[i], expected_target, 1e-5, 1e-6)) << "target parameter " << i;
  }
}

// The hand-written gradients (the default) against autograd's (manual_backward = false): the same
// weights, batches and noise through both. After the first update the optimisers' first moments
// hold (1 - beta1) times each gradient, compared tightly; after more updates (the delayed actor
// steps and the temperature included) every tensor of the state.
TEST(SacUpdateTest, TheHandWrittenGradientsAreAutogradsGradients) {
  for (int policy_frequency : {1, 2}) {
    SacUpdateConfig manual, autograd;
    manual.policy_frequency = autograd.policy_frequency = policy_frequency;
    autograd.manual_backward = false;
    ASSERT_TRUE(manual.manual_backward);
    at::manual_seed(9);
    auto a = *SacUpdater::Create(Sizes(5, 3, 32), manual, c10::Device(c10::kCPU));
    at::manual_seed(9);
    auto b = *SacUpdater::Create(Sizes(5, 3, 32), autograd, c10::Device(c10::kCPU));
    for (int step = 0; step < 6; ++step) {
      Batch batch = RandomBatch(64, 5, 3);
      at::manual_seed(200 + step);
      auto sa = a->Update(batch);
      at::manual_seed(200 + step);
      auto sb = b->Update(batch);
      ASSERT_TRUE(sa.ok() && sb.ok());
      ASSERT_FALSE(sa->skipped || sb->skipped);
      EXPECT_NEAR(sa->loss, sb->loss, 1e-5 * std::max(1.0, std::abs(sb->loss)));
      EXPECT_NEAR(sa->grad_norm, sb->grad_norm, 1e-5 * std::max(1.0, sb->grad_norm));
      EXPECT_NEAR(a->last_log_prob(), b->last_log_prob(), 1e-5 * std::max(1.0, std::abs(b->last_log_prob())));
      if (step == 0) {
        int moments = 0;
        for (const auto& [name, t] : a->State()) {
          if (name.find(".m.") == std::string::npos) continue;
          const at::Tensor other = b->State().at(name);
          const double scale = std::max(other.abs().max().item<double>(), 1e-12);
          EXPECT_LT((t - other).abs().max().item<double>(), 1e-5 * scale) << policy_frequency << " " << name;
          ++moments;
        }
        EXPECT_EQ(moments, 12 + 8 + 1);  // two critics' 6 tensors each, the actor's 8, log_alpha
      }
    }
    for (const auto& [name, t] : a->State()) {
      EXPECT_TRUE(at::allclose(t, b->State().at(name), 1e-4, 1e-5)) << policy_frequency << " " << name;
    }
    EXPECT_EQ(a->updates(), 6);
  }
}

// Updates with the actor held still (tiny policy_lr) and its log sigma pinned by the bias of
// fc_logstd: the temperature falls when the policy is more random than the target entropy and
// rises when it is less.
double AlphaAfterUpdates(double logstd_bias) {
  at::manual_seed(3);
  SacUpdateConfig config;
  config.policy_lr = 1e-12;
  config.alpha_lr = 1e-2;
  auto sac = *SacUpdater::Create(Sizes(3, 2), config, c10::Device(c10::kCPU));
  {
    torch::NoGradGuard no_grad;
    sac->actor()->fc_logstd->weight.zero_();
    sac->actor()->fc_logstd->bias.fill_(logstd_bias);
  }
  for (int i = 0; i < 40; ++i) EXPECT_TRUE(sac->Update(RandomBatch(64, 3, 2)).ok());
  return sac->alpha();
}

TEST(SacUpdateTest, TheTemperatureMovesTowardTheTargetEntropy) {
  // log sigma = 0 (bias atanh(5/3.5 - 1)): tanh(N(mean, 1)) spreads over the box, an entropy of
  // about -0.5 a dimension, far above the target -2 for two -> alpha falls. (A much wider Gaussian
  // would pile the actions up at +-1 and have less entropy, not more.)
  EXPECT_LT(AlphaAfterUpdates(std::atanh(5.0 / 3.5 - 1.0)), 0.8);
  // log sigma = -5 (bias -5): near-deterministic, about -3.6 a dimension, below -2 -> alpha rises.
  EXPECT_GT(AlphaAfterUpdates(-5.0), 1.2);
}

TEST(SacUpdateTest, LearnsAOneStepTask) {
  // Reward -10 (a - 0.5)^2, every transition terminal: the policy's actions gather around 0.5 (the
  // maximum-entropy optimum is a bump centred there, a little below it where the box cuts it off).
  at::manual_seed(11);
  SacUpdateConfig config;
  config.policy_lr = 3e-3;
  config.policy_frequency = 1;
  auto sac = *SacUpdater::Create(Sizes(2, 1, 32), config, c10::Device(c10::kCPU));
  {
    // Untrained, the actions centre near 0: the bar below is something to learn.
    torch::NoGradGuard no_grad;
    at::Tensor a0 = sac->actor()->Sample(at::randn({2000, 2}), /*deterministic=*/false).action;
    ASSERT_LT(std::abs(a0.mean().item<double>()), 0.25);
  }
  for (int i = 0; i < 1000; ++i) {
    Batch b;
    b.obs = at::randn({64, 2});
    b.action = at::rand({64, 1}) * 2 - 1;
    b.reward = -(b.action.squeeze(1) - 0.5).pow(2) * 10;
    b.next_obs = at::randn({64, 2});
    b.terminated = at::ones({64});
    ASSERT_TRUE(sac->Update(b).ok());
  }
  torch::NoGradGuard no_grad;
  at::Tensor a = sac->actor()->Sample(at::randn({2000, 2}), /*deterministic=*/false).action;
  EXPECT_NEAR(a.mean().item<double>(), 0.5, 0.1);
  EXPECT_EQ(sac->updates(), 1000);
}

TEST(SacUpdateTest, StateRoundTripsAndContinuesTheSame) {
  at::manual_seed(5);
  auto a = *SacUpdater::Create(Sizes(4, 2), SacUpdateConfig(), c10::Device(c10::kCPU));
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(a->Update(RandomBatch(32, 4, 2)).ok());
  at::manual_seed(99);
  auto b = *SacUpdater::Create(Sizes(4, 2), SacUpdateConfig(), c10::Device(c10::kCPU));
  std::map<std::string, at::Tensor> state;
  for (const auto& [k, v] : a->State()) state.emplace(k, v.clone());
  ASSERT_TRUE(b->RestoreState(state, a->updates(), a->skipped_updates()).ok());
  EXPECT_EQ(b->updates(), 5);
  Batch batch = RandomBatch(32, 4, 2);
  at::manual_seed(1234);
  ASSERT_TRUE(a->Update(batch).ok());
  at::manual_seed(1234);
  ASSERT_TRUE(b->Update(batch).ok());
  for (const auto& [name, t] : a->State()) {
    EXPECT_TRUE(at::equal(t, b->State().at(name))) << name;
  }
  EXPECT_EQ(a->alpha(), b->alpha());
}

TEST(SacUpdateTest, BadStateIsRefusedAndChangesNothing) {
  at::manual_seed(5);
  auto sac = *SacUpdater::Create(Sizes(4, 2), SacUpdateConfig(), c10::Device(c10::kCPU));
  std::map<std::string, at::Tensor> before;
  for (const auto& [k, v] : sac->State()) before.emplace(k, v.clone());
  auto state = before;
  state.erase("qf2.fc3.bias");
  EXPECT_THAT(sac->RestoreState(state, 3, 0).message(), HasSubstr("qf2.fc3.bias"));
  state = before;
  state["actor.fc1.weight"] = at::zeros({5, 5});
  EXPECT_THAT(sac->RestoreState(state, 3, 0).message(), HasSubstr("actor.fc1.weight"));
  state = before;
  state["log_alpha"] = at::full({1}, NAN);
  EXPECT_THAT(sac->RestoreState(state, 3, 0).message(), HasSubstr("NaN"));
  for (const auto& [k, v] : sac->State()) EXPECT_TRUE(at::equal(v, before.at(k))) << k;
  EXPECT_EQ(sac->updates(), 0);
}

TEST(SacUpdateTest, BadBatchesAndNonFiniteDataChangeNothing) {
  at::manual_seed(5);
  auto sac = *SacUpdater::Create(Sizes(4, 2), SacUpdateConfig(), c10::Device(c10::kCPU));
  std::map<std::string, at::Tensor> before;
  for (const auto& [k, v] : sac->State()) before.emplace(k, v.clone());
  Batch wrong = RandomBatch(8, 4, 2);
  wrong.action = at::zeros({8, 3});
  auto r = sac->Update(wrong);
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("action"));
  Batch nan = RandomBatch(8, 4, 2);
  nan.reward[3] = NAN;
  auto s = sac->Update(nan);
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(s->skipped);
  EXPECT_EQ(sac->skipped_updates(), 1);
  EXPECT_EQ(sac->updates(), 0);
  for (const auto& [k, v] : sac->State()) EXPECT_TRUE(at::equal(v, before.at(k))) << k;
  EXPECT_FALSE(SacUpdater::Create(Sizes(0, 2), SacUpdateConfig(), c10::Device(c10::kCPU)).ok());
  SacUpdateConfig bad;
  bad.policy_frequency = 0;
  EXPECT_THAT(SacUpdater::Create(Sizes(4, 2), bad, c10::Device(c10::kCPU)).status().message(),
              HasSubstr("policy_frequency"));
}

TEST(SacActingPolicyTest, ActsWithPublishedWeightsAndRefusesOtherAlgorithms) {
  at::manual_seed(5);
  auto sac = *SacUpdater::Create(Sizes(4, 2), SacUpdateConfig(), c10::Device(c10::kCPU));
  SafetensorsFile weights = sac->ActingWeights();
  EXPECT_EQ(weights.metadata.at("meow.algorithm"), "sac");
  EnvSpec spec;
  spec.name = "Test-v0";
  spec.obs_dim = 4;
  spec.action_dim = 2;
  auto policy = MakeActingPolicy(weights, spec, "published weights");
  ASSERT_TRUE(policy.ok()) << policy.status();
  at::Tensor obs = at::randn({6, 4});
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(at::allclose((*policy)->Act(obs, true, std::nullopt), sac->actor()->Sample(obs, true).action));
  // The wrong task's sizes, and MEow's policy handed SAC's weights (and the other way round).
  spec.obs_dim = 5;
  EXPECT_THAT(MakeActingPolicy(weights, spec, "w.safetensors").status().message(), HasSubstr("w.safetensors"));
  FlowPolicyConfig flow_config;
  flow_config.obs_dim = 4;
  flow_config.action_dim = 2;
  FlowActingPolicy flow(flow_config);
  EXPECT_THAT(flow.LoadWeights(weights).message(), HasSubstr("\"sac\""));
  FlowPolicy flow_net(flow_config);
  SacActingPolicy sac_policy(Sizes(4, 2));
  EXPECT_THAT(sac_policy.LoadWeights(flow_net->ExportWeights()).message(), HasSubstr("\"meow\""));
  weights.metadata["meow.algorithm"] = "dqn";
  spec.obs_dim = 4;
  EXPECT_THAT(MakeActingPolicy(weights, spec, "x").status().message(), HasSubstr("dqn"));
}

}  // namespace
}  // namespace meow
