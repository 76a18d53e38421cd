// Tests of the MEow flow policy: names and initialisation as the reference, the exact identities
// (Q - V = alpha log pi, V without couplings), normalisation and sampling agreement, the
// deterministic rule, batching, and safetensors import/export.
#include "common/flow_policy.h"

#include <cmath>
#include <map>
#include <set>
#include <string>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/cuda.h>
#include <torch/nn/functional/normalization.h>
#include <torch/utils.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meow {
namespace {

using ::testing::HasSubstr;

FlowPolicyConfig Config(int64_t s, int64_t a) {
  FlowPolicyConfig c;
  c.obs_dim = s;
  c.action_dim = a;
  c.alpha = 0.25;
  return c;
}

// Gives every parameter random values so that no identity holds by accident of the zero init.
void Randomise(FlowPolicyImpl& policy, double scale, uint64_t seed) {
  torch::NoGradGuard no_grad;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (auto& p : policy.parameters()) {
    p.add_(at::randn(p.sizes(), gen, p.options()) * scale);
  }
}

TEST(FlowPolicyTest, ParameterNamesShapesAndCountMatchTheReference) {
  FlowPolicy policy(Config(11, 3));
  std::map<std::string, std::vector<int64_t>> expected;
  for (int k = 0; k < 4; ++k) {
    const std::string p = "flows." + std::to_string(k) + ".t.net.";
    expected[p + "0.weight"] = {64, 14};
    expected[p + "0.bias"] = {64};
    expected[p + "1.weight"] = {64};
    expected[p + "1.bias"] = {64};
    expected[p + "2.beta"] = {64};
    expected[p + "4.weight"] = {64, 64};
    expected[p + "4.bias"] = {64};
    expected[p + "5.weight"] = {64};
    expected[p + "5.bias"] = {64};
    expected[p + "6.beta"] = {64};
    expected[p + "8.weight"] = {3, 64};
    expected[p + "8.bias"] = {3};
  }
  for (const std::string head : {"scale1", "scale2"}) {
    const std::string p = "flows.4." + head + ".net.";
    expected[p + "0.weight"] = {256, 11};
    expected[p + "0.bias"] = {256};
    expected[p + "1.beta"] = {256};
    expected[p + "3.weight"] = {256, 256};
    expected[p + "3.bias"] = {256};
    expected[p + "4.beta"] = {256};
    expected[p + "6.weight"] = {1, 256};
    expected[p + "6.bias"] = {1};
  }
  const std::string p = "prior.log_scale.net.";
  expected[p + "0.weight"] = {64, 11};
  expected[p + "0.bias"] = {64};
  expected[p + "1.beta"] = {64};
  expected[p + "2.weight"] = {64, 64};
  expected[p + "2.bias"] = {64};
  expected[p + "3.beta"] = {64};
  expected[p + "4.weight"] = {3, 64};
  expected[p + "4.bias"] = {3};

  std::map<std::string, std::vector<int64_t>> actual;
  for (const auto& item : policy->named_parameters()) {
    actual[item.key()] = item.value().sizes().vec();
  }
  EXPECT_EQ(actual, expected);
  EXPECT_EQ(policy->NumParameters(), 167313);  // the reference count for Hopper

  std::map<std::string, std::vector<float>> buffers;
  for (const auto& item : policy->named_buffers()) {
    auto b = item.value().contiguous();
    buffers[item.key()] = std::vector<float>(b.data_ptr<float>(), b.data_ptr<float>() + b.numel());
  }
  const std::map<std::string, std::vector<float>> masks = {
      {"flows.0.b", {1, 0, 1}}, {"flows.1.b", {0, 1, 0}}, {"flows.2.b", {1, 0, 1}}, {"flows.3.b", {0, 1, 0}}};
  EXPECT_EQ(buffers, masks);
}

TEST(FlowPolicyTest, InitialisationFollowsTheReference) {
  torch::manual_seed(3);
  FlowPolicy policy(Config(11, 3));
  auto params = policy->named_parameters();
  for (const auto& item : params) {
    const std::string& name = item.key();
    const at::Tensor& t = item.value();
    if (name.find(".beta") != std::string::npos) {
      EXPECT_TRUE(at::equal(t, at::ones_like(t))) << name;
    } else if (name.rfind("flows.4", 0) == 0 || name.rfind("prior", 0) == 0) {
      if (name.find("weight") != std::string::npos) {
        EXPECT_EQ(t.abs().max().item<float>(), 0.0f) << name;  // zero weights
      } else {                                                 // default Linear bias U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        EXPECT_GT(t.abs().max().item<float>(), 0.0f) << name;
      }
    }
  }
  // Coupling nets: orthogonal Linear weights, LayerNorm weight 1 / bias 0, biases bounded by
  // 1/sqrt(fan_in).
  for (int k = 0; k < 4; ++k) {
    const std::string p = "flows." + std::to_string(k) + ".t.net.";
    const at::Tensor w0 = params[p + "0.weight"];  // (64, 14): orthonormal columns
    EXPECT_TRUE(at::allclose(w0.t().mm(w0), at::eye(14), 1e-5, 1e-5)) << p;
    const at::Tensor w4 = params[p + "4.weight"];  // (64, 64): orthogonal
    EXPECT_TRUE(at::allclose(w4.mm(w4.t()), at::eye(64), 1e-5, 1e-5)) << p;
    const at::Tensor w8 = params[p + "8.weight"];  // (3, 64): orthonormal rows
    EXPECT_TRUE(at::allclose(w8.mm(w8.t()), at::eye(3), 1e-5, 1e-5)) << p;
    EXPECT_TRUE(at::equal(params[p + "1.weight"], at::ones({64})));
    EXPECT_TRUE(at::equal(params[p + "1.bias"], at::zeros({64})));
    EXPECT_LE(params[p + "0.bias"].abs().max().item<float>(), 1 / std::sqrt(14.0f));
    EXPECT_LE(params[p + "4.bias"].abs().max().item<float>(), 1 / std::sqrt(64.0f));
  }
  // Initial sigma is exp of a value in [sigma_min, sigma_max]; the zero-weight sigma-net gives the
  // same sigma for every observation.
  const at::Tensor obs = at::randn({5, 11});
  const at::Tensor log_sigma = policy->prior->LogSigma(obs);
  EXPECT_TRUE(at::allclose(log_sigma, log_sigma[0].expand_as(log_sigma)));
  EXPECT_TRUE((log_sigma >= -5.0).all().item<bool>() && (log_sigma <= -0.3).all().item<bool>());
}

TEST(FlowPolicyTest, QMinusVEqualsAlphaLogPi) {
  torch::manual_seed(11);
  FlowPolicy policy(Config(11, 3));
  Randomise(*policy, 0.3, 1);
  policy->eval();
  torch::NoGradGuard no_grad;
  const at::Tensor obs = at::randn({512, 11});
  const at::Tensor action = at::rand({512, 3}) * 1.9 - 0.95;
  QVResult qv = policy->QV(obs, action);
  const at::Tensor alpha_log_pi = 0.25 * policy->LogProb(obs, action);
  for (const auto& [q, v] : {std::pair{qv.q1, qv.v1}, std::pair{qv.q2, qv.v2}}) {
    const at::Tensor rel = ((q - v) - alpha_log_pi).abs() / alpha_log_pi.abs().clamp_min(1.0);
    EXPECT_LT(rel.max().item<float>(), 1e-4);
  }
  // The two heads differ (their shifts are different nets), so the test compares two real values.
  EXPECT_GT((qv.q1 - qv.q2).abs().max().item<float>(), 1e-3);
}

TEST(FlowPolicyTest, ValueEqualsTheVOfAFullPassAndIgnoresTheCouplings) {
  torch::manual_seed(12);
  FlowPolicy policy(Config(11, 3));
  Randomise(*policy, 0.3, 2);
  policy->eval();
  torch::NoGradGuard no_grad;
  const at::Tensor obs = at::randn({64, 11});
  const at::Tensor action = at::rand({64, 3}) * 2 - 1;
  QVResult qv = policy->QV(obs, action);
  auto [v1, v2] = policy->Value(obs);
  EXPECT_TRUE(at::allclose(v1, qv.v1, 1e-6, 1e-6));
  EXPECT_TRUE(at::allclose(v2, qv.v2, 1e-6, 1e-6));
  // Changing every coupling weight leaves V unchanged but moves Q.
  for (auto& coupling : policy->couplings) {
    for (auto& p : coupling->parameters()) p.add_(at::randn_like(p));
  }
  auto [w1, w2] = policy->Value(obs);
  EXPECT_TRUE(at::equal(w1, v1));
  EXPECT_TRUE(at::equal(w2, v2));
  EXPECT_GT((policy->QV(obs, action).q1 - qv.q1).abs().max().item<float>(), 1e-3);
}

// The reference MLP computed from the named parameters alone (module indices as in nf/nets.py),
// independently of MlpImpl::forward.
at::Tensor NamedMlp(const torch::OrderedDict<std::string, at::Tensor>& p, const std::string& prefix, at::Tensor x,
                    const std::vector<int>& linear_indices, bool layer_norm) {
  namespace F = torch::nn::functional;
  for (size_t i = 0; i < linear_indices.size(); ++i) {
    const std::string l = prefix + std::to_string(linear_indices[i]);
    x = at::linear(x, p[l + ".weight"], p[l + ".bias"]);
    if (i + 1 == linear_indices.size()) break;
    int next = linear_indices[i] + 1;
    if (layer_norm) {
      const std::string n = prefix + std::to_string(next++);
      x = at::layer_norm(x, {x.size(1)}, p[n + ".weight"], p[n + ".bias"], 1e-5);
    }
    const at::Tensor beta = p[prefix + std::to_string(next) + ".beta"];
    x = x * at::sigmoid(beta * x);
  }
  return x;
}

TEST(FlowPolicyTest, DeterministicActionFollowsTheReferenceRule) {
  torch::manual_seed(13);
  FlowPolicy policy(Config(11, 3));
  Randomise(*policy, 0.3, 3);
  policy->eval();
  torch::NoGradGuard no_grad;
  const at::Tensor obs = at::randn({16, 11});
  // z = prior mean = 0, then flows 0..3 forward with masks b, 1-b, b, 1-b, then tanh.
  auto params = policy->named_parameters();
  at::Tensor z = at::zeros({16, 3});
  const at::Tensor b = at::tensor({1.0f, 0.0f, 1.0f}).unsqueeze(0);
  for (int k = 0; k < 4; ++k) {
    const at::Tensor m = k % 2 == 0 ? b : 1 - b;
    const at::Tensor t = NamedMlp(params, "flows." + std::to_string(k) + ".t.net.", at::cat({m * z, obs}, 1), {0, 4, 8},
                                  /*layer_norm=*/true);
    z = m * z + (1 - m) * (z + t);
  }
  const at::Tensor expected = at::tanh(z).clamp(-1, 1);
  SampleResult det = policy->Sample(obs, /*deterministic=*/true);
  EXPECT_TRUE(at::allclose(det.action, expected, 1e-6, 1e-6));
  // Its log-probability is the density at that action (where tanh has not saturated, since the
  // density side clips actions to 1 - 1e-5).
  const at::Tensor inside = (det.action.abs() < 1 - 1e-4).all(1);
  ASSERT_GT(inside.sum().item<int64_t>(), 4);
  EXPECT_TRUE(at::allclose(det.log_prob.index({inside}), policy->LogProb(obs, det.action).index({inside}), 1e-3, 1e-3));
  // The sigma-net and shift heads are the reference MLPs too.
  const at::Tensor h = NamedMlp(params, "prior.log_scale.net.", obs, {0, 2, 4}, false);
  EXPECT_TRUE(at::allclose(policy->prior->LogSigma(obs), -5.0 + 0.5 * 4.7 * (at::tanh(h) + 1), 1e-5, 1e-5));
  const at::Tensor b1 = NamedMlp(params, "flows.4.scale1.net.", obs, {0, 3, 6}, false);
  EXPECT_TRUE(at::allclose(policy->shift->forward(obs).select(1, 0), b1.squeeze(1), 1e-5, 1e-5));
}

TEST(FlowPolicyTest, SampledLogProbMatchesLogProbAndActionsAreInRange) {
  torch::manual_seed(14);
  FlowPolicy policy(Config(5, 4));
  Randomise(*policy, 0.2, 4);
  policy->eval();
  torch::NoGradGuard no_grad;
  const at::Tensor obs = at::randn({256, 5});
  SampleResult s = policy->Sample(obs, /*deterministic=*/false);
  EXPECT_TRUE((s.action.abs() <= 1).all().item<bool>());
  const at::Tensor inside = (s.action.abs() < 1 - 1e-4).all(1);
  ASSERT_GT(inside.sum().item<int64_t>(), 200);
  const at::Tensor lp = policy->LogProb(obs, s.action);
  EXPECT_TRUE(at::allclose(s.log_prob.index({inside}), lp.index({inside}), 1e-3, 1e-3));
}

// Density of a 2-D policy at one observation on an n x n midpoint grid over (-1, 1)^2.
at::Tensor DensityGrid(FlowPolicyImpl& policy, const at::Tensor& obs, int n) {
  const at::Tensor centers = (at::arange(n, at::kDouble) + 0.5) * (2.0 / n) - 1.0;
  const at::Tensor ax = centers.repeat_interleave(n), ay = centers.repeat({n});
  const at::Tensor actions = at::stack({ax, ay}, 1).to(at::kFloat);
  return policy.LogProb(obs.expand({n * n, obs.size(1)}), actions).to(at::kDouble).exp().view({n, n});
}

TEST(FlowPolicyTest, DensityIntegratesToOneAndMatchesTheSampleHistogram) {
  torch::manual_seed(15);
  FlowPolicyConfig config = Config(3, 2);
  config.sigma_max = 0.0;  // broad enough to spread mass over the square
  config.sigma_min = -1.0;
  FlowPolicy policy(config);
  Randomise(*policy, 0.05, 5);
  policy->eval();
  torch::NoGradGuard no_grad;
  const at::Tensor obs = at::randn({1, 3});

  const int n = 500;
  const at::Tensor density = DensityGrid(*policy, obs, n);
  const double cell = (2.0 / n) * (2.0 / n);
  const double integral = density.sum().item<double>() * cell;
  EXPECT_NEAR(integral, 1.0, 1e-2);

  // Chi-square goodness of fit of 1e5 samples over 10 x 10 bins against the integrated density.
  const int bins = 10, per = n / bins, samples = 100000;
  const at::Tensor expected_p = density.view({bins, per, bins, per}).sum({1, 3}) * cell / integral;  // (bins, bins)
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(2024);
  const at::Tensor a = policy->Sample(obs.expand({samples, 3}), false, gen).action.to(at::kDouble);
  const at::Tensor ix = ((a.select(1, 0) + 1) / 2 * bins).floor().clamp(0, bins - 1).to(at::kLong);
  const at::Tensor iy = ((a.select(1, 1) + 1) / 2 * bins).floor().clamp(0, bins - 1).to(at::kLong);
  const at::Tensor counts = at::bincount(ix * bins + iy, {}, bins * bins).to(at::kDouble);
  const at::Tensor expected = expected_p.reshape({-1}) * samples;
  const at::Tensor used = expected >= 5;
  const double chi2 = ((counts - expected).square() / expected).index({used}).sum().item<double>();
  const int64_t dof = used.sum().item<int64_t>() - 1;
  ASSERT_GT(dof, 20) << "the density is too concentrated for a meaningful test";
  // 0.999 quantile of chi-square: dof + 3.09 * sqrt(2 dof) is a close, slightly loose bound.
  std::printf("integral %.5f, chi2 %.1f with %d dof\n", integral, chi2, static_cast<int>(dof));
  EXPECT_LT(chi2, dof + 3.5 * std::sqrt(2.0 * dof)) << "dof " << dof;
}

TEST(FlowPolicyTest, BatchedRowsEqualSingleRows) {
  torch::manual_seed(16);
  FlowPolicy policy(Config(7, 3));
  Randomise(*policy, 0.3, 6);
  policy->eval();
  torch::NoGradGuard no_grad;
  for (int64_t rows : {1, 7, 300}) {
    const at::Tensor obs = at::randn({rows, 7});
    const at::Tensor action = at::rand({rows, 3}) * 2 - 1;
    QVResult all = policy->QV(obs, action);
    ASSERT_EQ(all.q1.sizes(), at::IntArrayRef({rows}));
    for (int64_t i : {int64_t{0}, rows - 1}) {
      QVResult one = policy->QV(obs.narrow(0, i, 1), action.narrow(0, i, 1));
      // float32: equal to a few ulps of values of a few hundred
      const float q = all.q1[i].item<float>(), v = all.v2[i].item<float>();
      EXPECT_NEAR(one.q1.item<float>(), q, 1e-5 * std::max(1.0f, std::abs(q)));
      EXPECT_NEAR(one.v2.item<float>(), v, 1e-5 * std::max(1.0f, std::abs(v)));
    }
    EXPECT_EQ(policy->Sample(obs, true).action.sizes(), at::IntArrayRef({rows, 3}));
  }
}

TEST(FlowPolicyTest, RunsOnCudaWhenPresent) {
  if (!torch::cuda::is_available()) {
    GTEST_SKIP() << "LibTorch has no CUDA or no CUDA device is present";
  }
  torch::manual_seed(17);
  FlowPolicy policy(Config(11, 3));
  Randomise(*policy, 0.3, 7);
  policy->eval();
  torch::NoGradGuard no_grad;
  const at::Tensor obs = at::randn({32, 11}), action = at::rand({32, 3}) * 2 - 1;
  QVResult cpu = policy->QV(obs, action);
  policy->to(at::kCUDA);
  QVResult gpu = policy->QV(obs.cuda(), action.cuda());
  EXPECT_TRUE(at::allclose(gpu.q1.cpu(), cpu.q1, 1e-4, 1e-4));
}

TEST(FlowPolicyTest, SafetensorsRoundTripIsBitExact) {
  torch::manual_seed(18);
  FlowPolicy a(Config(11, 3));
  Randomise(*a, 0.3, 8);
  auto bytes = SerializeSafetensors(a->ExportWeights());
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  auto file = ParseSafetensors(*bytes);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->tensors.size(), 72u + 4u);  // 72 parameters plus the four mask buffers
  FlowPolicy b(Config(11, 3));
  ASSERT_TRUE(b->ImportWeights(*file).ok());
  auto pa = a->named_parameters(), pb = b->named_parameters();
  for (const auto& item : pa) EXPECT_TRUE(at::equal(item.value(), pb[item.key()])) << item.key();
  auto config = ConfigFromWeights(*file, FlowPolicyConfig());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->obs_dim, 11);
  EXPECT_EQ(config->action_dim, 3);
  EXPECT_EQ(config->alpha, 0.25);
}

TEST(FlowPolicyTest, ImportRefusesMismatchedFilesNamingTheKeyAndChangesNothing) {
  torch::manual_seed(19);
  FlowPolicy policy(Config(11, 3));
  const SafetensorsFile good = policy->ExportWeights();
  FlowPolicy other(Config(11, 3));
  Randomise(*other, 0.3, 9);
  const at::Tensor before = other->named_parameters()["flows.2.t.net.4.weight"].clone();

  auto expect_refused = [&](SafetensorsFile file, const std::string& message) {
    absl::Status s = other->ImportWeights(file);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << message;
    EXPECT_THAT(std::string(s.message()), HasSubstr(message));
    EXPECT_TRUE(at::equal(other->named_parameters()["flows.2.t.net.4.weight"], before));
  };
  SafetensorsFile missing = good;
  missing.tensors.erase("prior.log_scale.net.2.bias");
  expect_refused(missing, "missing tensor \"prior.log_scale.net.2.bias\"");
  SafetensorsFile extra = good;
  extra.tensors["flows.9.t.net.0.weight"] = good.tensors.at("flows.0.b");
  expect_refused(extra, "unexpected tensor \"flows.9.t.net.0.weight\"");
  SafetensorsFile misshaped = good;
  misshaped.tensors["flows.3.t.net.8.weight"].shape = {64, 3};
  expect_refused(misshaped, "tensor \"flows.3.t.net.8.weight\" has shape [64,3], expected [3,64]");
  SafetensorsFile wrong_dtype = good;
  auto& t = wrong_dtype.tensors["flows.4.scale2.net.6.bias"];
  t.dtype = "I32";
  expect_refused(wrong_dtype, "tensor \"flows.4.scale2.net.6.bias\" has dtype I32, expected F32");
  SafetensorsFile nan = good;
  float nan_value = NAN;
  std::memcpy(nan.tensors["prior.log_scale.net.0.bias"].data.data(), &nan_value, 4);
  expect_refused(nan, "tensor \"prior.log_scale.net.0.bias\" holds NaN or inf");
  // A policy of another size is refused too.
  FlowPolicy small(Config(4, 1));
  expect_refused(small->ExportWeights(), "has shape");
}

TEST(FlowPolicyTest, LoadsAFileWrittenInTheReferenceLayout) {
  // The reference code's safetensors.torch.save_file writes only the state_dict keys, metadata
  // {"format": "pt"}, and a space-padded header; build such a file byte by byte.
  torch::manual_seed(20);
  FlowPolicy source(Config(11, 3));
  Randomise(*source, 0.3, 10);
  SafetensorsFile file = source->ExportWeights();
  file.metadata = {{"format", "pt"}};
  auto bytes = SerializeSafetensors(file);
  ASSERT_TRUE(bytes.ok());
  ASSERT_EQ((bytes->size() - file.tensors.size()) % 1, 0u);
  auto parsed = ParseSafetensors(*bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  FlowPolicyConfig defaults;
  defaults.alpha = 0.25;
  auto config = ConfigFromWeights(*parsed, defaults);
  ASSERT_TRUE(config.ok()) << config.status();
  FlowPolicy loaded(*config);
  ASSERT_TRUE(loaded->ImportWeights(*parsed).ok());
  torch::NoGradGuard no_grad;
  source->eval();
  loaded->eval();
  const at::Tensor obs = at::randn({8, 11});
  EXPECT_TRUE(at::equal(source->Sample(obs, true).action, loaded->Sample(obs, true).action));
}

}  // namespace
}  // namespace meow
