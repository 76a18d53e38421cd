// Tests of CNF's flow pre-training: it learns a known state-conditioned 2-D mixture down to close
// to the mixture's true NLL (below what an unconditional density could reach), initialises
// ActNorm from the first batch only when needed, clamps dataset actions as the reference, clips
// the gradient, steps as torch.optim.AdamW, skips non-finite steps, refuses bad batches by name, and
// its optimiser state round-trips.
#include "learner/cnf_pretrain.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/modules/linear.h>
#include <torch/utils.h>

#include "common/cnf_policy.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meow {
namespace {

using ::testing::HasSubstr;

at::Generator Gen(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

CnfFlowConfig FlowConfig(int64_t s, int64_t a, int64_t layers = 4, int64_t hidden = 32) {
  CnfFlowConfig c;
  c.obs_dim = s;
  c.action_dim = a;
  c.layers = layers;
  c.hidden = hidden;
  return c;
}

// A state-conditioned mixture squashed into (-1, 1)^2: s = +-1 with equal odds; given s, u is an
// equal mixture of N(+m(s), sigma^2 I) and N(-m(s), sigma^2 I) with m(+1) = (c, c), m(-1) = (c, -c),
// and a = tanh(u). Four well-separated modes overall, two per state.
struct Mixture {
  static constexpr double kCentre = 0.9;
  static constexpr double kSigma = 0.3;

  at::Tensor obs, action;  // (N, 1), (N, 2)

  static Mixture Draw(int64_t n, uint64_t seed) {
    at::Generator gen = Gen(seed);
    Mixture m;
    m.obs = at::bernoulli(at::full({n, 1}, 0.5), gen) * 2 - 1;
    const at::Tensor sign = at::bernoulli(at::full({n, 1}, 0.5), gen) * 2 - 1;
    const at::Tensor centre = at::cat({at::ones({n, 1}), m.obs}, 1) * kCentre * sign;
    m.action = at::tanh(centre + at::randn({n, 2}, gen) * kSigma);
    return m;
  }

  // The exact -log p(a|s) per row, through the change of variables u = atanh(a).
  at::Tensor TrueNll() const {
    const at::Tensor a = action.to(at::kDouble);
    const at::Tensor u = at::atanh(a);
    const at::Tensor m = at::cat({at::ones_like(obs), obs}, 1).to(at::kDouble) * kCentre;
    auto log_normal = [&](const at::Tensor& mean) {
      return (-0.5 * ((u - mean) / kSigma).pow(2) - std::log(kSigma) - 0.5 * std::log(2 * M_PI)).sum(1);
    };
    const at::Tensor log_pu = at::logsumexp(at::stack({log_normal(m), log_normal(-m)}, 1), 1) - std::log(2.0);
    return -(log_pu - at::log(1 - a * a).sum(1));
  }
};

TEST(CnfPretrainTest, LearnsAConditionalMixtureCloseToItsTrueNll) {
  torch::manual_seed(1);
  at::set_num_threads(1);
  CnfFlow flow(FlowConfig(/*s=*/1, /*a=*/2, /*layers=*/6, /*hidden=*/64));
  const Mixture train = Mixture::Draw(20000, 2);
  const Mixture valid = Mixture::Draw(4000, 3);
  // The dataset's state statistics, as the reference computes them.
  ASSERT_TRUE(flow->SetStateNormalizer(train.obs.mean(0), train.obs.std(0)).ok());
  CnfPretrainConfig config;
  config.lr = 2e-3;  // a small model and a short run; the rest as the reference (clip 0.1, wd 1e-4)
  CnfFlowPretrainer pretrainer(flow, config);

  const double initial = pretrainer.ValidationNll(valid.obs, valid.action);
  const double true_nll = valid.TrueNll().mean().item<double>();
  at::Generator gen = Gen(4);
  const int64_t steps = 1000, batch = 256;
  for (int64_t i = 0; i < steps; ++i) {
    const at::Tensor rows = at::randint(train.obs.size(0), {batch}, gen);
    auto loss = pretrainer.Step(train.obs.index_select(0, rows), train.action.index_select(0, rows));
    ASSERT_TRUE(loss.ok()) << loss.status();
    ASSERT_TRUE(std::isfinite(*loss)) << "step " << i;
  }
  const double trained = pretrainer.ValidationNll(valid.obs, valid.action);
  EXPECT_EQ(pretrainer.steps(), steps);
  EXPECT_EQ(pretrainer.skipped_steps(), 0);
  // An unconditional density cannot beat H(a) ~ H(a|s) + log 2 here (the two states' modes do not
  // overlap); the trained flow must be well inside that gap, so it uses the state.
  EXPECT_LT(trained, true_nll + 0.25) << "initial " << initial << ", true " << true_nll;
  EXPECT_LT(trained, initial - 1.0) << "true " << true_nll;
  EXPECT_GT(trained, true_nll - 0.1) << "below the true NLL: the density is not normalised";

  // The reference's sample metrics: decoded samples land near the data's modes.
  auto metrics = pretrainer.ValidationMetrics(valid.obs.narrow(0, 0, 500), valid.action.narrow(0, 0, 500));
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_EQ(metrics->rows, 500);
  EXPECT_LT(metrics->min_mae, 0.1);
  EXPECT_GT(metrics->sample_std, 0.2);  // two modes per state
  EXPECT_LT(metrics->sample_std, 0.9);
}

TEST(CnfPretrainTest, FirstStepInitialisesActNormOnlyWhenNeeded) {
  torch::manual_seed(11);
  CnfFlow flow(FlowConfig(/*s=*/2, /*a=*/2));
  CnfFlowPretrainer pretrainer(flow, CnfPretrainConfig());
  const at::Tensor obs = at::randn({512, 2}, Gen(12));
  const at::Tensor action = at::tanh(at::randn({512, 2}, Gen(13)) * 0.5 + 0.3);
  EXPECT_FALSE(flow->actnorm_initialized());
  ASSERT_TRUE(pretrainer.Step(obs, action).ok());
  EXPECT_TRUE(flow->actnorm_initialized());
  // The first ActNorm holds the first batch's statistics, moved by at most one AdamW step (~lr).
  const at::Tensor x = at::atanh(action);
  const at::Tensor log_std = at::log(x.std(0) + kCnfActNormEps);
  const at::Tensor log_scale = flow->typed_blocks[0]->act_norm->log_scale.detach().squeeze(0);
  EXPECT_LT((log_scale + log_std).abs().max().item<double>(), 2e-3);

  // A flow that was initialised (here: loaded) is not re-initialised by another first batch.
  CnfFlow loaded(FlowConfig(2, 2));
  ASSERT_TRUE(ImportFlowWeights(*loaded, ExportFlowWeights(*flow)).ok());
  const at::Tensor before = loaded->typed_blocks[0]->act_norm->log_scale.detach().clone();
  CnfFlowPretrainer resumed(loaded, CnfPretrainConfig());
  ASSERT_TRUE(resumed.Step(obs, at::tanh(at::randn({512, 2}, Gen(14)) * 2)).ok());
  EXPECT_LT((loaded->typed_blocks[0]->act_norm->log_scale - before).abs().max().item<double>(), 2e-3);
}

TEST(CnfPretrainTest, ClampsDatasetActionsToTheReferenceBound) {
  torch::manual_seed(21);
  CnfFlow flow(FlowConfig(/*s=*/1, /*a=*/2));
  flow->InitializeActNorm(at::tanh(at::randn({64, 2}, Gen(22))), at::randn({64, 1}, Gen(23)));
  CnfFlowPretrainer pretrainer(flow, CnfPretrainConfig());
  const at::Tensor obs = at::randn({4, 1}, Gen(24));
  const at::Tensor edge = at::tensor({1.0f, -1.0f, 1.0f, 0.5f, -1.0f, 0.0f, 0.3f, 1.0f}).view({4, 2});
  const float b = static_cast<float>(kCnfDatasetActionBound);
  const at::Tensor clamped = at::tensor({b, -b, b, 0.5f, -b, 0.0f, 0.3f, b}).view({4, 2});
  const double nll = pretrainer.ValidationNll(obs, edge);
  EXPECT_TRUE(std::isfinite(nll));
  EXPECT_DOUBLE_EQ(nll, -flow->LogProb(clamped, obs).mean().item<double>());
  // Not the flow's own clamp at 1 - 1e-5.
  EXPECT_GT(std::abs(nll + flow->LogProb(edge, obs).mean().item<double>()), 1e-3);
}

TEST(CnfPretrainTest, ClipsTheGradientNormAndStepsAsAdamW) {
  torch::manual_seed(31);
  CnfFlow flow(FlowConfig(/*s=*/2, /*a=*/2));
  CnfPretrainConfig config;
  config.weight_decay = 0.5;  // large enough to see the decoupled decay
  CnfFlowPretrainer pretrainer(flow, config);
  const at::Tensor obs = at::randn({256, 2}, Gen(32));
  const at::Tensor action = at::tanh(at::randn({256, 2}, Gen(33)));
  flow->InitializeActNorm(ClampDatasetActions(action), obs);
  std::vector<at::Tensor> before;
  for (const at::Tensor& p : flow->parameters()) before.push_back(p.detach().clone());
  ASSERT_TRUE(pretrainer.Step(obs, action).ok());
  EXPECT_GT(pretrainer.last_grad_norm(), config.grad_clip);  // so the clip acts
  // The gradients the step used stay in .grad(): clipped to norm 0.1.
  double sq = 0;
  for (const at::Tensor& p : flow->parameters()) sq += p.grad().to(at::kDouble).pow(2).sum().item<double>();
  EXPECT_NEAR(std::sqrt(sq), config.grad_clip, 1e-5);
  // AdamW's first step: p (1 - lr wd) - lr g / (|g| + eps) (the bias corrections cancel).
  std::vector<at::Tensor> params = flow->parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    const at::Tensor g = params[i].grad();
    const at::Tensor expected =
        before[i] * (1 - config.lr * config.weight_decay) - config.lr * g / (g.abs() + config.adam_eps);
    EXPECT_TRUE(at::allclose(params[i].detach(), expected, 1e-6, 1e-7)) << i;
  }
}

TEST(CnfPretrainTest, NonFiniteLossSkipsTheStepAndSaysSo) {
  torch::manual_seed(41);
  CnfFlow flow(FlowConfig(/*s=*/2, /*a=*/2));
  const at::Tensor obs = at::randn({64, 2}, Gen(42));
  const at::Tensor action = at::tanh(at::randn({64, 2}, Gen(43)));
  flow->InitializeActNorm(action, obs);
  CnfFlowPretrainer pretrainer(flow, CnfPretrainConfig());
  {
    torch::NoGradGuard no_grad;
    flow->typed_blocks[1]->act_norm->log_scale.fill_(1e4);  // finite, but exp overflows
  }
  std::vector<at::Tensor> before;
  for (const at::Tensor& p : flow->parameters()) before.push_back(p.detach().clone());
  auto loss = pretrainer.Step(obs, action);
  ASSERT_TRUE(loss.ok()) << loss.status();
  EXPECT_FALSE(std::isfinite(*loss));
  EXPECT_EQ(pretrainer.skipped_steps(), 1);
  EXPECT_EQ(pretrainer.steps(), 0);
  std::vector<at::Tensor> after = flow->parameters();
  for (size_t i = 0; i < after.size(); ++i) EXPECT_TRUE(at::equal(after[i], before[i])) << i;
}

TEST(CnfPretrainTest, RefusesBadBatchesNamingTheProblem) {
  torch::manual_seed(51);
  CnfFlow flow(FlowConfig(/*s=*/3, /*a=*/2));
  CnfFlowPretrainer pretrainer(flow, CnfPretrainConfig());
  const at::Tensor obs = at::randn({8, 3}, Gen(52));
  const at::Tensor action = at::rand({8, 2}, Gen(53)) * 2 - 1;
  auto refused = [&](const at::Tensor& o, const at::Tensor& a) {
    auto loss = pretrainer.Step(o, a);
    EXPECT_EQ(loss.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(loss.status().message());
  };
  EXPECT_THAT(refused(obs.narrow(1, 0, 2), action), HasSubstr("obs has shape [8,2], expected [B,3]"));
  EXPECT_THAT(refused(obs, at::rand({8, 3})), HasSubstr("action has shape [8,3], expected [B,2]"));
  EXPECT_THAT(refused(obs, action.narrow(0, 0, 7)), HasSubstr("obs has 8 rows but action has 7"));
  at::Tensor nan_obs = obs.clone();
  nan_obs[5][1] = NAN;
  EXPECT_THAT(refused(nan_obs, action), HasSubstr("obs row 5 holds NaN or inf"));
  at::Tensor wide = action.clone();
  wide[3][0] = 1.5;
  EXPECT_THAT(refused(obs, wide), HasSubstr("action row 3 lies outside [-1, 1]"));
  EXPECT_THAT(refused(obs, action.to(at::kLong)), HasSubstr("expected floating point"));
  EXPECT_THAT(refused(obs.narrow(0, 0, 1), action.narrow(0, 0, 1)), HasSubstr("needs at least 2 rows"));
  EXPECT_EQ(pretrainer.steps(), 0);
  EXPECT_FALSE(flow->actnorm_initialized());

  CnfPretrainConfig bad;
  bad.grad_clip = 0;
  EXPECT_THAT(std::string(CnfFlowPretrainer::Create(flow, bad).status().message()), HasSubstr("grad_clip"));
  bad = CnfPretrainConfig();
  bad.lr = -1;
  EXPECT_THAT(std::string(bad.Validate().message()), HasSubstr("lr must be > 0"));
}

TEST(CnfPretrainTest, ValidationNllAveragesEveryRowAcrossChunks) {
  torch::manual_seed(61);
  CnfFlow flow(FlowConfig(/*s=*/2, /*a=*/3));
  const at::Tensor obs = at::randn({20, 2}, Gen(62));
  const at::Tensor action = at::tanh(at::randn({20, 3}, Gen(63)));
  flow->InitializeActNorm(action, obs);
  CnfPretrainConfig config;
  config.batch = 7;  // 7 + 7 + 6 rows
  CnfFlowPretrainer pretrainer(flow, config);
  // Make the rows' log-densities differ, so a wrongly weighted mean shows.
  ASSERT_TRUE(pretrainer.Step(obs, action).ok());
  const double expected = -flow->LogProb(ClampDatasetActions(action), obs).mean().item<double>();
  EXPECT_NEAR(pretrainer.ValidationNll(obs, action), expected, 1e-5);
}

TEST(CnfPretrainTest, OptimiserStateRoundTripsThroughACheckpoint) {
  torch::manual_seed(71);
  const CnfFlowConfig config = FlowConfig(/*s=*/2, /*a=*/2);
  CnfFlow flow(config);
  CnfFlowPretrainer pretrainer(flow, CnfPretrainConfig());
  auto batch = [](uint64_t seed) {
    return std::pair{at::randn({128, 2}, Gen(seed)), at::tanh(at::randn({128, 2}, Gen(seed + 100)))};
  };
  for (uint64_t i = 0; i < 3; ++i) ASSERT_TRUE(pretrainer.Step(batch(i).first, batch(i).second).ok());
  const std::map<std::string, at::Tensor> state = pretrainer.State();
  EXPECT_EQ(state.size(), 2 * flow->parameters().size() + 1);
  EXPECT_TRUE(state.count("flow_opt.m.0") && state.count("flow_opt.v.0") && state.count("flow_opt.steps"));

  const SafetensorsFile checkpoint = ExportFlowWeights(*flow);
  CnfFlow copy(config);
  ASSERT_TRUE(ImportFlowWeights(*copy, checkpoint).ok());
  CnfFlowPretrainer resumed(copy, CnfPretrainConfig());
  ASSERT_TRUE(resumed.RestoreState(state).ok());
  EXPECT_EQ(resumed.steps(), 3);
  // Without the optimiser state, the same weights take another step: the restored moments matter.
  CnfFlow fresh(config);
  ASSERT_TRUE(ImportFlowWeights(*fresh, checkpoint).ok());
  CnfFlowPretrainer restarted(fresh, CnfPretrainConfig());

  for (CnfFlowPretrainer* p : {&pretrainer, &resumed, &restarted}) {
    ASSERT_TRUE(p->Step(batch(9).first, batch(9).second).ok());
  }
  auto a = flow->named_parameters(), b = copy->named_parameters(), c = fresh->named_parameters();
  double restarted_gap = 0;
  for (const auto& item : a) {
    EXPECT_TRUE(at::equal(item.value(), b[item.key()])) << item.key();
    restarted_gap = std::max(restarted_gap, (item.value() - c[item.key()]).abs().max().item<double>());
  }
  EXPECT_GT(restarted_gap, 1e-5);

  CnfFlowPretrainer other{CnfFlow(config), CnfPretrainConfig()};
  std::map<std::string, at::Tensor> missing = state;
  missing.erase("flow_opt.v.3");
  EXPECT_THAT(std::string(other.RestoreState(missing).message()), HasSubstr("missing tensor \"flow_opt.v.3\""));
  std::map<std::string, at::Tensor> misshaped = state;
  misshaped["flow_opt.m.1"] = at::zeros({3});
  EXPECT_THAT(std::string(other.RestoreState(misshaped).message()), HasSubstr("tensor \"flow_opt.m.1\" has shape [3]"));
  std::map<std::string, at::Tensor> no_steps = state;
  no_steps.erase("flow_opt.steps");
  EXPECT_THAT(std::string(other.RestoreState(no_steps).message()), HasSubstr("\"flow_opt.steps\""));
  EXPECT_EQ(other.steps(), 0);
}

}  // namespace
}  // namespace meow
