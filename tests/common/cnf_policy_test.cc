// Tests of CNF's networks: the flow is an exact bijection with the right log-determinant and a
// normalised density, follows the reference's ActNorm init and odd-dimension zero pad, conditions
// through its couplings only; the latent actor and the policy act as the reference's TanhActor and
// FlowEnv do; weights files round-trip and bad ones are refused by name.
#include "common/cnf_policy.h"

#include <cmath>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/autograd.h>
#include <torch/cuda.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/linear.h>
#include <torch/utils.h>

#include "common/flow_policy.h"
#include "common/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meow {
namespace {

using ::testing::HasSubstr;

CnfFlowConfig FlowConfig(int64_t s, int64_t a, int64_t layers = 4, int64_t hidden = 32) {
  CnfFlowConfig c;
  c.obs_dim = s;
  c.action_dim = a;
  c.layers = layers;
  c.hidden = hidden;
  return c;
}

CnfPolicyConfig PolicyConfig(int64_t s, int64_t a) {
  CnfPolicyConfig c;
  c.flow = FlowConfig(s, a);
  c.actor_hidden = 32;
  return c;
}

at::Generator Gen(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

// Squashed-Gaussian actions (B, A) strictly inside (-1, 1), the shape of a dataset's actions.
at::Tensor Actions(int64_t b, int64_t a, uint64_t seed, double spread = 0.8) {
  return at::tanh(at::randn({b, a}, Gen(seed)) * spread).clamp(-0.99, 0.99);
}

// Gives the zero-initialised last layer of every coupling net random values, the rescales a spread
// and the orthogonal matrices a non-zero log-determinant, so that no identity holds by accident of
// the init.
void PerturbCouplings(CnfFlowImpl& flow, double scale, uint64_t seed) {
  torch::NoGradGuard no_grad;
  at::Generator gen = Gen(seed);
  for (CnfBlock& block : flow.typed_blocks) {
    at::Tensor& w = block->linear->weight;
    w.add_(at::randn(w.sizes(), gen, w.options()) * 0.2);
    auto* last = block->coupling->net[4]->as<torch::nn::Linear>();
    last->weight.add_(at::randn(last->weight.sizes(), gen, last->weight.options()) * scale);
    last->bias.add_(at::randn(last->bias.sizes(), gen, last->bias.options()) * scale);
    block->coupling->rescale.add_(at::randn(block->coupling->rescale.sizes(), gen) * 0.3);
  }
}

// A flow with a state normaliser, perturbed couplings and ActNorms initialised on data after the
// perturbation on actions spread over (-0.99, 0.99) (so that, as in a trained flow, every block sees
// standardised values and the final tanh does not saturate on such actions).
CnfFlow ReadyFlow(const CnfFlowConfig& config, uint64_t seed, double scale = 0.1) {
  torch::manual_seed(seed);
  CnfFlow flow(config);
  EXPECT_TRUE(flow->SetStateNormalizer(at::randn({config.obs_dim}, Gen(seed + 1)),
                                       at::rand({config.obs_dim}, Gen(seed + 2)) + 0.5)
                  .ok());
  PerturbCouplings(*flow, scale, seed + 5);
  const at::Tensor a = at::rand({256, config.action_dim}, Gen(seed + 3)) * 1.98 - 0.99;
  flow->InitializeActNorm(a, at::randn({256, config.obs_dim}, Gen(seed + 4)));
  return flow;
}

TEST(CnfPolicyTest, ConfigsRefuseBadSizesNamingTheField) {
  EXPECT_TRUE(FlowConfig(3, 2).Validate().ok());
  EXPECT_THAT(std::string(FlowConfig(0, 2).Validate().message()), HasSubstr("obs_dim 0"));
  EXPECT_THAT(std::string(FlowConfig(3, -1).Validate().message()), HasSubstr("action_dim -1"));
  EXPECT_THAT(std::string(FlowConfig(3, 2, /*layers=*/0).Validate().message()), HasSubstr("layers must be > 0"));
  EXPECT_THAT(std::string(FlowConfig(3, 2, 4, /*hidden=*/0).Validate().message()), HasSubstr("hidden width"));
  CnfPolicyConfig p = PolicyConfig(3, 2);
  p.actor_layers = 1;
  EXPECT_THAT(std::string(p.Validate().message()), HasSubstr("actor layers must be >= 2"));
  EXPECT_EQ(FlowConfig(3, 3).latent_dim(), 4);
  EXPECT_EQ(FlowConfig(3, 6).latent_dim(), 6);
}

TEST(CnfPolicyTest, ParameterNamesAndShapesFollowTheReferenceLayout) {
  CnfFlow flow(FlowConfig(/*s=*/5, /*a=*/3, /*layers=*/2, /*hidden=*/16));
  auto params = flow->named_parameters();
  auto buffers = flow->named_buffers();
  EXPECT_EQ(params.size(), 2u * 12u);  // per block: ActNorm 2, linear 1, rescale 1, 3 Linear x 2, 2 PReLU
  EXPECT_EQ(buffers.size(), 2u * 1u + 2u);
  EXPECT_EQ(params["blocks.1.act_norm.log_scale"].sizes(), (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(params["blocks.1.linear.weight"].sizes(), (std::vector<int64_t>{4, 4}));
  EXPECT_EQ(params["blocks.0.coupling.rescale"].sizes(), (std::vector<int64_t>{2}));
  EXPECT_EQ(params["blocks.0.coupling.net.0.weight"].sizes(), (std::vector<int64_t>{16, 2 + 5}));
  EXPECT_EQ(params["blocks.0.coupling.net.1.weight"].sizes(), (std::vector<int64_t>{1}));  // PReLU
  EXPECT_EQ(params["blocks.0.coupling.net.4.weight"].sizes(), (std::vector<int64_t>{4, 16}));
  EXPECT_EQ(buffers["state_norm.std"].sizes(), (std::vector<int64_t>{5}));
  EXPECT_EQ(buffers["blocks.0.act_norm.initialized"].item<float>(), 0.0f);
  // The reference's init: zero last layers, unit rescale, orthogonal W, PReLU slopes 0.25, parity
  // alternating from True.
  EXPECT_EQ(params["blocks.1.coupling.net.4.weight"].abs().max().item<float>(), 0.0f);
  EXPECT_EQ(params["blocks.1.coupling.net.4.bias"].abs().max().item<float>(), 0.0f);
  EXPECT_TRUE(at::equal(params["blocks.1.coupling.rescale"], at::ones({2})));
  EXPECT_EQ(params["blocks.0.coupling.net.3.weight"].item<float>(), 0.25f);
  const at::Tensor w = params["blocks.0.linear.weight"];
  EXPECT_TRUE(at::allclose(at::matmul(w, w.t()), at::eye(4), 1e-5, 1e-5));
  EXPECT_TRUE(flow->typed_blocks[0]->coupling->parity());
  EXPECT_FALSE(flow->typed_blocks[1]->coupling->parity());

  CnfActor actor(PolicyConfig(5, 3));
  auto actor_params = actor->named_parameters();
  EXPECT_EQ(actor_params.size(), 8u);  // 4 Linear layers
  EXPECT_EQ(actor_params["net.0.weight"].sizes(), (std::vector<int64_t>{32, 5}));
  EXPECT_EQ(actor_params["net.6.weight"].sizes(), (std::vector<int64_t>{8, 32}));  // (mu, log sigma) of D = 4
}

TEST(CnfPolicyTest, EncodeAndDecodeAreExactInverses) {
  // The reference's size (12 blocks). Random couplings much stronger than these push some of
  // (-0.99, 0.99)^4 into the end caps' clamp at 1 - 1e-5, where no flow is invertible; a trained
  // flow keeps its data away from there, and so does this one (checked below).
  const CnfFlowConfig config = FlowConfig(/*s=*/3, /*a=*/4, /*layers=*/12, /*hidden=*/64);
  CnfFlow flow = ReadyFlow(config, 7, /*scale=*/0.05);
  torch::NoGradGuard no_grad;
  const at::Tensor a = at::rand({512, 4}, Gen(8)) * 1.98 - 0.99;
  const at::Tensor s = at::randn({512, 3}, Gen(9));
  auto [z, log_det] = flow->Encode(a, s);
  ASSERT_EQ(z.sizes(), (std::vector<int64_t>{512, 4}));
  ASSERT_EQ(log_det.sizes(), (std::vector<int64_t>{512}));
  ASSERT_LT(z.abs().max().item<double>(), 1 - 1e-4);
  EXPECT_LT((flow->Decode(z, s) - a).abs().max().item<double>(), 1e-4);

  const at::Tensor z2 = at::rand({512, 4}, Gen(10)) * 1.8 - 0.9;
  const at::Tensor a2 = flow->Decode(z2, s);
  EXPECT_LT((flow->Encode(a2, s).first - z2).abs().max().item<double>(), 1e-4);

  // Not trivially so: the couplings move the latent (compare with their last layers zeroed).
  for (CnfBlock& block : flow->typed_blocks) {
    auto* last = block->coupling->net[4]->as<torch::nn::Linear>();
    last->weight.zero_();
    last->bias.zero_();
  }
  EXPECT_GT((flow->Encode(a, s).first - z).abs().mean().item<double>(), 0.05);
}

TEST(CnfPolicyTest, LogDetEqualsTheAutogradJacobian) {
  CnfFlow flow = ReadyFlow(FlowConfig(/*s=*/2, /*a=*/4, /*layers=*/3, /*hidden=*/16), 11, /*scale=*/0.5);
  flow->to(torch::kDouble);
  const at::Tensor a = (at::rand({6, 4}, Gen(12)) * 1.8 - 0.9).to(torch::kDouble).requires_grad_(true);
  const at::Tensor s = at::randn({6, 2}, Gen(13)).to(torch::kDouble);
  auto [z, log_det] = flow->Encode(a, s);
  // Rows are independent, so the gradient of sum_rows z[:, i] is row i of each row's Jacobian.
  std::vector<at::Tensor> rows;
  for (int64_t i = 0; i < 4; ++i) {
    rows.push_back(torch::autograd::grad({z.select(1, i).sum()}, {a}, {}, /*retain_graph=*/true)[0]);
  }
  const at::Tensor jacobian = at::stack(rows, 1);  // (B, D, D): d z_i / d a_j
  const at::Tensor expected = std::get<1>(at::linalg_slogdet(jacobian));
  EXPECT_GT((expected - expected.mean()).abs().max().item<double>(), 0.1);  // the points differ
  EXPECT_TRUE(at::allclose(log_det.detach(), expected, 1e-8, 1e-8)) << log_det << expected;
}

TEST(CnfPolicyTest, DensityIntegratesToOneOverTheActionSquare) {
  CnfFlow flow = ReadyFlow(FlowConfig(/*s=*/1, /*a=*/2), 17, /*scale=*/0.5);
  flow->to(torch::kDouble);
  torch::NoGradGuard no_grad;
  // Midpoint rule on an n x n grid over (-1, 1)^2 at one fixed state.
  const int64_t n = 800;
  const at::Tensor mid = (at::arange(n, torch::kDouble) + 0.5) * (2.0 / n) - 1;
  std::vector<at::Tensor> grid = at::meshgrid({mid, mid}, "ij");
  const at::Tensor a = at::stack({grid[0].reshape(-1), grid[1].reshape(-1)}, 1);
  const at::Tensor s = at::full({a.size(0), 1}, 0.4, torch::kDouble);
  const at::Tensor density = at::exp(flow->LogProb(a, s));
  const double integral = density.sum().item<double>() * (2.0 / n) * (2.0 / n);
  EXPECT_NEAR(integral, 1.0, 0.03);
  // Far from the prior's uniform 1/4 somewhere: the flow is not a near-identity map.
  EXPECT_GT(density.max().item<double>() / density.min().item<double>(), 10.0);
}

TEST(CnfPolicyTest, ActNormInitialisesLayerByLayerAsTheReference) {
  const CnfFlowConfig config = FlowConfig(/*s=*/2, /*a=*/4, /*layers=*/3);
  torch::manual_seed(21);
  CnfFlow flow(config);
  PerturbCouplings(*flow, 0.3, 22);
  EXPECT_FALSE(flow->actnorm_initialized());
  const at::Tensor a = Actions(300, 4, 23);
  const at::Tensor s = at::randn({300, 2}, Gen(24));
  flow->InitializeActNorm(a, s);
  EXPECT_TRUE(flow->actnorm_initialized());
  // Replaying the stack, each ActNorm's output has zero mean and unit (unbiased) std on the batch.
  torch::NoGradGuard no_grad;
  const at::Tensor state = flow->state_norm(s);
  at::Tensor x = at::atanh(a);
  for (CnfBlock& block : flow->typed_blocks) {
    at::Tensor y = block->act_norm->Forward(x).first;
    EXPECT_LT(y.mean(0).abs().max().item<double>(), 1e-4);
    EXPECT_LT((y.std(0) - 1).abs().max().item<double>(), 1e-4);
    x = block->coupling->Forward(block->linear->Forward(y).first, state).first;
  }
}

TEST(CnfPolicyTest, OddActionDimIsZeroPaddedAsTheReference) {
  // A = 3 is the A = 4 flow evaluated at (a, 0), with the decoded 4th coordinate dropped.
  CnfFlow odd = ReadyFlow(FlowConfig(/*s=*/3, /*a=*/3), 31);
  CnfFlow even(FlowConfig(3, 4));
  {
    torch::NoGradGuard no_grad;
    auto from = odd->named_parameters();
    for (auto& item : even->named_parameters()) item.value().copy_(from[item.key()]);
    auto from_buffers = odd->named_buffers();
    for (auto& item : even->named_buffers()) item.value().copy_(from_buffers[item.key()]);
  }
  torch::NoGradGuard no_grad;
  const at::Tensor a = at::rand({64, 3}, Gen(32)) * 1.9 - 0.95;
  const at::Tensor s = at::randn({64, 3}, Gen(33));
  const at::Tensor padded = at::cat({a, at::zeros({64, 1})}, 1);
  auto [z, log_det] = odd->Encode(a, s);
  auto [z4, log_det4] = even->Encode(padded, s);
  ASSERT_EQ(z.sizes(), (std::vector<int64_t>{64, 4}));
  EXPECT_TRUE(at::allclose(z, z4));
  EXPECT_TRUE(at::allclose(log_det, log_det4));
  const at::Tensor log_prob = odd->LogProb(a, s);
  EXPECT_TRUE(at::isfinite(log_prob).all().item<bool>());
  EXPECT_TRUE(at::allclose(log_prob, even->LogProb(padded, s)));

  const at::Tensor decoded = odd->Decode(z, s);
  ASSERT_EQ(decoded.sizes(), (std::vector<int64_t>{64, 3}));
  EXPECT_LT((decoded - a).abs().max().item<double>(), 1e-4);
  EXPECT_LT(odd->DecodePadded(z, s).select(1, 3).abs().max().item<double>(), 1e-4);
  const at::Tensor latents = at::rand({64, 4}, Gen(34)) * 2 - 1;
  EXPECT_TRUE(at::allclose(odd->Decode(latents, s), even->Decode(latents, s).narrow(1, 0, 3)));
  // The pad column has zero spread in the data: the first ActNorm scales it by 1 / 1e-6.
  const at::Tensor log_scale = odd->typed_blocks[0]->act_norm->log_scale;
  EXPECT_NEAR(log_scale[0][3].item<double>(), -std::log(kCnfActNormEps), 1e-3);
  EXPECT_LT(log_scale.narrow(1, 0, 3).abs().max().item<double>(), 2.0);
}

TEST(CnfPolicyTest, OnlyTheCouplingsSeeTheNormalisedState) {
  torch::manual_seed(41);
  CnfFlow flow(FlowConfig(/*s=*/2, /*a=*/2));
  flow->InitializeActNorm(Actions(128, 2, 42), at::randn({128, 2}, Gen(43)));
  torch::NoGradGuard no_grad;
  const at::Tensor z = at::rand({16, 2}, Gen(44)) * 2 - 1;
  const at::Tensor s1 = at::randn({16, 2}, Gen(45));
  const at::Tensor s2 = at::randn({16, 2}, Gen(46)) * 3;
  // Identity couplings (zero last layers): the state has no effect at all.
  EXPECT_TRUE(at::equal(flow->Decode(z, s1), flow->Decode(z, s2)));
  PerturbCouplings(*flow, 0.3, 47);
  EXPECT_GT((flow->Decode(z, s1) - flow->Decode(z, s2)).abs().max().item<double>(), 1e-3);

  // The normaliser: Decode at s with (mean, std) equals Decode at (s - mean) / std with (0, 1).
  const at::Tensor reference = flow->Decode(z, (s1 - at::tensor({1.0f, -2.0f})) / at::tensor({2.0f, 0.5f}));
  ASSERT_TRUE(flow->SetStateNormalizer(at::tensor({1.0f, -2.0f}), at::tensor({2.0f, 0.5f})).ok());
  EXPECT_TRUE(at::allclose(flow->Decode(z, s1), reference, 1e-5, 1e-6));
}

TEST(CnfPolicyTest, StateNormalizerRefusesBadStatisticsAndFloorsTheStd) {
  CnfFlow flow(FlowConfig(/*s=*/3, /*a=*/2));
  const at::Tensor mean = at::zeros({3});
  EXPECT_THAT(std::string(flow->SetStateNormalizer(at::zeros({4}), at::ones({3})).message()),
              HasSubstr("state mean has shape [4], expected [3]"));
  EXPECT_THAT(std::string(flow->SetStateNormalizer(mean, at::tensor({1.0f, NAN, 1.0f})).message()),
              HasSubstr("state std holds NaN or inf"));
  EXPECT_THAT(std::string(flow->SetStateNormalizer(mean, at::tensor({1.0f, -1.0f, 1.0f})).message()),
              HasSubstr("negative"));
  EXPECT_TRUE(at::equal(flow->state_norm->std, at::ones({3})));  // unchanged by the refusals
  ASSERT_TRUE(flow->SetStateNormalizer(at::tensor({1.0f, 2.0f, 3.0f}), at::tensor({0.0f, 1e-5f, 2.0f})).ok());
  EXPECT_TRUE(at::allclose(flow->state_norm->std, at::tensor({1e-3f, 1e-3f, 2.0f})));
  EXPECT_TRUE(at::equal(flow->state_norm->mean, at::tensor({1.0f, 2.0f, 3.0f})));
}

TEST(CnfPolicyTest, DecodeIsDifferentiableInLatentAndStateWithTheFlowFrozen) {
  CnfFlow flow = ReadyFlow(FlowConfig(/*s=*/3, /*a=*/3), 51);
  for (at::Tensor& p : flow->parameters()) p.requires_grad_(false);
  const at::Tensor z = (at::rand({8, 4}, Gen(52)) * 1.6 - 0.8).requires_grad_(true);
  const at::Tensor s = at::randn({8, 3}, Gen(53)).requires_grad_(true);
  flow->Decode(z, s).sum().backward();
  ASSERT_TRUE(z.grad().defined());
  ASSERT_TRUE(s.grad().defined());
  EXPECT_GT(z.grad().abs().min().item<double>(), 0.0);
  EXPECT_GT(s.grad().abs().max().item<double>(), 0.0);
  for (const at::Tensor& p : flow->parameters()) EXPECT_FALSE(p.grad().defined());
}

// A frozen flow's PReLUs run as leaky_relu on the CPU (a faster backward): the same decode and the
// same gradient in the latent as the trainable flow's, with slopes other than the init's.
TEST(CnfPolicyTest, FrozenAndTrainableFlowsDecodeAndDifferentiateAlike) {
  CnfFlow flow = ReadyFlow(FlowConfig(/*s=*/3, /*a=*/3), 61, /*scale=*/0.3);
  {
    torch::NoGradGuard no_grad;
    double slope = 0.05;
    for (CnfBlock& block : flow->typed_blocks) {
      for (int k : {1, 3}) block->coupling->net[k]->as<torch::nn::PReLU>()->weight.fill_(slope += 0.07);
    }
  }
  const at::Tensor z0 = at::rand({64, 4}, Gen(62)) * 1.9 - 0.95;
  const at::Tensor s = at::randn({64, 3}, Gen(63));
  auto decode = [&](at::Tensor* grad) {
    at::Tensor z = z0.clone().requires_grad_(true);
    at::Tensor a = flow->DecodePadded(z, s);
    (a * a).sum().backward();
    *grad = z.grad().clone();
    return a.detach();
  };
  at::Tensor grad_trainable, grad_frozen;
  const at::Tensor trainable = decode(&grad_trainable);
  for (at::Tensor& p : flow->parameters()) p.requires_grad_(false);
  const at::Tensor frozen = decode(&grad_frozen);
  EXPECT_TRUE(at::allclose(frozen, trainable, /*rtol=*/0, /*atol=*/1e-6)) << (frozen - trainable).abs().max();
  EXPECT_TRUE(at::allclose(grad_frozen, grad_trainable, /*rtol=*/1e-5, /*atol=*/1e-6))
      << (grad_frozen - grad_trainable).abs().max();
  EXPECT_GT(grad_frozen.abs().max().item<double>(), 0.0);
}

TEST(CnfPolicyTest, SampleDecodesUniformLatentsReproducibly) {
  CnfFlow flow = ReadyFlow(FlowConfig(/*s=*/2, /*a=*/3), 61);
  torch::NoGradGuard no_grad;
  const at::Tensor s = at::randn({1000, 2}, Gen(62)) * 5;
  const at::Tensor a = flow->Sample(s, Gen(63));
  ASSERT_EQ(a.sizes(), (std::vector<int64_t>{1000, 3}));
  EXPECT_LE(a.abs().max().item<double>(), 1.0);
  EXPECT_TRUE(at::equal(a, flow->Sample(s, Gen(63))));
  const at::Tensor z = at::rand({1000, 4}, Gen(63)) * 2 - 1;
  EXPECT_TRUE(at::equal(a, flow->Decode(z, s)));
  EXPECT_FALSE(at::equal(a, flow->Sample(s, Gen(64))));
}

TEST(CnfPolicyTest, ActorClampsLogSigmaAndDrawsTanhLatents) {
  torch::manual_seed(71);
  CnfActor actor(PolicyConfig(/*s=*/3, /*a=*/2));
  const at::Tensor s = at::randn({5, 3}, Gen(72));
  auto* last = actor->net[6]->as<torch::nn::Linear>();
  {
    torch::NoGradGuard no_grad;
    last->bias.narrow(0, 2, 2).fill_(100);  // raw log sigma far above 2
  }
  EXPECT_EQ(actor->MeanLogStd(s).second.max().item<double>(), kCnfLogStdMax);
  {
    torch::NoGradGuard no_grad;
    last->bias.narrow(0, 2, 2).fill_(-100);
  }
  EXPECT_EQ(actor->MeanLogStd(s).second.min().item<double>(), kCnfLogStdMin);
  {
    torch::NoGradGuard no_grad;
    last->bias.narrow(0, 2, 2).fill_(-1);
  }
  auto [mu, log_std] = actor->MeanLogStd(s);
  ASSERT_EQ(mu.sizes(), (std::vector<int64_t>{5, 2}));
  EXPECT_TRUE(at::allclose(actor->Latent(s, /*deterministic=*/true), at::tanh(mu)));
  // The reparameterised draw: tanh(mu + sigma * eps) with eps from the generator.
  const at::Tensor eps = at::randn({5, 2}, Gen(73));
  const at::Tensor z = actor->Latent(s, /*deterministic=*/false, Gen(73));
  EXPECT_TRUE(at::allclose(z, at::tanh(mu + at::exp(log_std) * eps)));
  EXPECT_FALSE(at::allclose(z, at::tanh(mu)));
  z.sum().backward();
  EXPECT_TRUE(actor->net[0]->as<torch::nn::Linear>()->weight.grad().defined());
}

TEST(CnfPolicyTest, ActDecodesTheActorsLatentWithoutGradients) {
  torch::manual_seed(81);
  CnfPolicy policy(PolicyConfig(/*s=*/4, /*a=*/3));
  ASSERT_TRUE(policy->SetStateNormalizer(at::randn({4}, Gen(82)), at::rand({4}, Gen(83)) + 0.5).ok());
  policy->flow->InitializeActNorm(Actions(128, 3, 84), at::randn({128, 4}, Gen(85)));
  PerturbCouplings(*policy->flow, 0.3, 86);
  EXPECT_TRUE(at::equal(policy->actor->state_norm->mean, policy->flow->state_norm->mean));
  const at::Tensor s = at::randn({32, 4}, Gen(87)) * 4;
  const at::Tensor a = policy->Act(s, /*deterministic=*/true);
  ASSERT_EQ(a.sizes(), (std::vector<int64_t>{32, 3}));
  EXPECT_FALSE(a.requires_grad());
  const at::Tensor mu = policy->actor->MeanLogStd(s).first;
  EXPECT_TRUE(at::allclose(a, policy->flow->Decode(at::tanh(mu), s)));
  const at::Tensor stochastic = policy->Act(s, /*deterministic=*/false, Gen(88));
  EXPECT_LE(stochastic.abs().max().item<double>(), 1.0);
  EXPECT_TRUE(at::equal(stochastic, policy->flow->Decode(policy->actor->Latent(s, false, Gen(88)), s)));
  EXPECT_FALSE(at::allclose(stochastic, a));
}

TEST(CnfPolicyTest, RunsOnCudaWhenPresent) {
  if (!torch::cuda::is_available()) {
    GTEST_SKIP() << "LibTorch has no CUDA or no CUDA device is present";
  }
  torch::manual_seed(89);
  CnfPolicy policy(PolicyConfig(/*s=*/4, /*a=*/3));
  policy->flow->InitializeActNorm(Actions(128, 3, 90), at::randn({128, 4}, Gen(91)));
  PerturbCouplings(*policy->flow, 0.1, 92);
  const at::Tensor s = at::randn({32, 4}, Gen(93));
  const at::Tensor cpu = policy->Act(s, /*deterministic=*/false, Gen(94));
  const at::Tensor cpu_sample = policy->flow->Sample(s, Gen(95));
  policy->to(at::kCUDA);
  // A CPU generator also serves the CUDA modules: the same draws, the same actions.
  EXPECT_TRUE(at::allclose(policy->Act(s.cuda(), false, Gen(94)).cpu(), cpu, 1e-4, 1e-4));
  EXPECT_TRUE(at::allclose(policy->flow->Sample(s.cuda(), Gen(95)).cpu(), cpu_sample, 1e-4, 1e-4));
}

// A trained-looking policy: normaliser, ActNorm init and every parameter moved off its init.
CnfPolicy ReadyPolicy(const CnfPolicyConfig& config, uint64_t seed) {
  torch::manual_seed(seed);
  CnfPolicy policy(config);
  EXPECT_TRUE(policy
                  ->SetStateNormalizer(at::randn({config.flow.obs_dim}, Gen(seed + 1)),
                                       at::rand({config.flow.obs_dim}, Gen(seed + 2)) + 0.5)
                  .ok());
  policy->flow->InitializeActNorm(Actions(128, config.flow.action_dim, seed + 3),
                                  at::randn({128, config.flow.obs_dim}, Gen(seed + 4)));
  PerturbCouplings(*policy->flow, 0.3, seed + 5);
  return policy;
}

TEST(CnfPolicyTest, WeightsRoundTripGivesIdenticalActions) {
  const CnfPolicyConfig config = PolicyConfig(/*s=*/4, /*a=*/3);
  CnfPolicy source = ReadyPolicy(config, 91);
  SafetensorsFile exported = source->ExportWeights();
  EXPECT_EQ(exported.metadata.at("meow.algorithm"), "cnf");
  EXPECT_EQ(exported.metadata.at("meow.flow_layers"), "4");
  EXPECT_TRUE(exported.tensors.count("flow.blocks.3.act_norm.initialized"));
  EXPECT_TRUE(exported.tensors.count("actor.state_norm.std"));
  auto bytes = SerializeSafetensors(exported);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  auto parsed = ParseSafetensors(*bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  auto loaded_config = CnfConfigFromWeights(*parsed);
  ASSERT_TRUE(loaded_config.ok()) << loaded_config.status();
  EXPECT_EQ(loaded_config->flow.action_dim, 3);
  EXPECT_EQ(loaded_config->flow.hidden, 32);
  EXPECT_EQ(loaded_config->actor_layers, 4);
  torch::manual_seed(999);
  CnfPolicy loaded(*loaded_config);
  EXPECT_FALSE(loaded->flow->actnorm_initialized());
  ASSERT_TRUE(loaded->ImportWeights(*parsed).ok());
  EXPECT_TRUE(loaded->flow->actnorm_initialized());  // the init travels: a loaded flow is not re-initialised
  const at::Tensor s = at::randn({16, 4}, Gen(92));
  EXPECT_TRUE(at::equal(source->Act(s, true), loaded->Act(s, true)));
  EXPECT_TRUE(at::equal(source->Act(s, false, Gen(93)), loaded->Act(s, false, Gen(93))));
  // Bare tensors (no metadata) load by names and shapes.
  SafetensorsFile bare = exported;
  bare.metadata.clear();
  EXPECT_TRUE(loaded->ImportWeights(bare).ok());

  // The flow alone.
  SafetensorsFile flow_file = ExportFlowWeights(*source->flow);
  EXPECT_EQ(flow_file.metadata.at("meow.algorithm"), "cnf-flow");
  EXPECT_TRUE(flow_file.tensors.count("state_norm.mean"));
  auto flow_config = CnfFlowConfigFromWeights(flow_file);
  ASSERT_TRUE(flow_config.ok()) << flow_config.status();
  EXPECT_EQ(flow_config->layers, 4);
  CnfFlow flow(*flow_config);
  ASSERT_TRUE(ImportFlowWeights(*flow, flow_file).ok());
  torch::NoGradGuard no_grad;
  const at::Tensor z = at::rand({16, 4}, Gen(94)) * 2 - 1;
  EXPECT_TRUE(at::equal(flow->Decode(z, s), source->flow->Decode(z, s)));
}

TEST(CnfPolicyTest, ImportRefusesBadFilesNamingTheProblemAndChangesNothing) {
  const CnfPolicyConfig config = PolicyConfig(/*s=*/4, /*a=*/3);
  const SafetensorsFile good = ReadyPolicy(config, 101)->ExportWeights();
  CnfPolicy target = ReadyPolicy(config, 102);
  const SafetensorsFile before = target->ExportWeights();
  auto expect_refused = [&](const SafetensorsFile& file, const std::string& message) {
    absl::Status s = target->ImportWeights(file);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << message;
    EXPECT_THAT(std::string(s.message()), HasSubstr(message));
    for (const auto& [name, raw] : target->ExportWeights().tensors) {
      EXPECT_EQ(raw.data, before.tensors.at(name).data) << name << " changed by a refused file";
    }
  };
  SafetensorsFile missing = good;
  missing.tensors.erase("flow.blocks.2.linear.weight");
  expect_refused(missing, "missing tensor \"flow.blocks.2.linear.weight\"");
  SafetensorsFile extra = good;
  extra.tensors["flow.blocks.9.linear.weight"] = good.tensors.at("flow.blocks.0.linear.weight");
  expect_refused(extra, "unexpected tensor \"flow.blocks.9.linear.weight\"");
  SafetensorsFile misshaped = good;
  misshaped.tensors["actor.net.6.weight"].shape = {4, 64};
  expect_refused(misshaped, "tensor \"actor.net.6.weight\" has shape [4,64], expected [8,32]");
  SafetensorsFile nan = good;
  float* w = reinterpret_cast<float*>(nan.tensors["flow.blocks.1.coupling.net.2.weight"].data.data());
  w[5] = NAN;
  expect_refused(nan, "tensor \"flow.blocks.1.coupling.net.2.weight\" holds NaN or inf");
  SafetensorsFile zero_std = good;
  reinterpret_cast<float*>(zero_std.tensors["actor.state_norm.std"].data.data())[2] = 0;
  expect_refused(zero_std, "tensor \"actor.state_norm.std\" holds 0 at 2");
  SafetensorsFile wrong_size = good;
  wrong_size.metadata["meow.action_dim"] = "4";  // same shapes (D = 4), another task
  expect_refused(wrong_size, "metadata \"meow.action_dim\" is 4, but the loading module has 3");

  SafetensorsFile sac = good;
  sac.metadata["meow.algorithm"] = "sac";
  expect_refused(sac, "the weights are for the algorithm \"sac\", not CNF's policy");
  SafetensorsFile meow = good;
  meow.metadata.erase("meow.algorithm");  // MEow's own export: sizes, no algorithm
  expect_refused(meow, "the weights are for the algorithm \"meow\", not CNF's policy");
  expect_refused(ExportFlowWeights(*ReadyPolicy(config, 103)->flow),
                 "the weights are for the algorithm \"cnf-flow\", not CNF's policy");

  // The flow alone refuses a whole policy's file and a flow of another size.
  CnfFlow flow(config.flow);
  absl::Status s = ImportFlowWeights(*flow, good);
  EXPECT_THAT(std::string(s.message()), HasSubstr("the weights are for the algorithm \"cnf\", not CNF's flow"));
  SafetensorsFile other_flow = ExportFlowWeights(*CnfFlow(FlowConfig(4, 3, /*layers=*/4, /*hidden=*/16)));
  s = ImportFlowWeights(*flow, other_flow);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("metadata \"meow.flow_hidden\" is 16, but the loading module has 32"));
}

TEST(CnfPolicyTest, ConfigFromWeightsNamesWhatIsMissing) {
  const SafetensorsFile good = CnfPolicy(PolicyConfig(4, 3))->ExportWeights();
  SafetensorsFile no_key = good;
  no_key.metadata.erase("meow.actor_layers");
  EXPECT_THAT(std::string(CnfConfigFromWeights(no_key).status().message()),
              HasSubstr("missing metadata \"meow.actor_layers\""));
  SafetensorsFile bad_number = good;
  bad_number.metadata["meow.flow_layers"] = "twelve";
  EXPECT_THAT(std::string(CnfConfigFromWeights(bad_number).status().message()),
              HasSubstr("\"meow.flow_layers\" = \"twelve\" is not a number"));
  SafetensorsFile more_layers = good;
  more_layers.metadata["meow.flow_layers"] = "3";
  EXPECT_THAT(std::string(CnfConfigFromWeights(more_layers).status().message()),
              HasSubstr("more flow blocks than \"meow.flow_layers\" = 3"));
  SafetensorsFile wrong_hidden = good;
  wrong_hidden.metadata["meow.flow_hidden"] = "64";
  EXPECT_THAT(std::string(CnfConfigFromWeights(wrong_hidden).status().message()),
              HasSubstr("\"flow.blocks.3.coupling.net.0.weight\" is missing or not [64,6]"));
  SafetensorsFile sac = good;
  sac.metadata["meow.algorithm"] = "sac";
  EXPECT_THAT(std::string(CnfConfigFromWeights(sac).status().message()), HasSubstr("is \"sac\", not \"cnf\""));
  EXPECT_THAT(std::string(CnfFlowConfigFromWeights(good).status().message()),
              HasSubstr("is \"cnf\", not \"cnf-flow\""));
}

}  // namespace
}  // namespace meow
