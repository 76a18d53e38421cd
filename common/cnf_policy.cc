#include "common/cnf_policy.h"

#include <cmath>
#include <cstring>
#include <string>
#include <tuple>

#include <ATen/ATen.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/linear.h>
#include <torch/utils.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/flow_policy.h"

namespace meow {
namespace {

const double kLog2 = std::log(2.0);

std::string Shape(const at::Tensor& t) { return absl::StrCat("[", absl::StrJoin(t.sizes(), ","), "]"); }

// 0.5 * log((1 + x) / (1 - x)) after the reference's clamp, and its log-derivative -log(1 - x_c^2).
at::Tensor ClampedAtanh(const at::Tensor& x) {
  at::Tensor c = x.clamp(-1 + kCnfFlowEps, 1 - kCnfFlowEps);
  return 0.5 * at::log((1 + c) / (1 - c));
}

// A uniform or normal draw of `sizes` like `like`: from `generator` on its own device, then moved,
// so that a CPU generator also serves a CUDA module.
at::Tensor Draw(bool uniform, at::IntArrayRef sizes, const at::Tensor& like,
                const std::optional<at::Generator>& generator) {
  if (!generator.has_value()) return uniform ? at::rand(sizes, like.options()) : at::randn(sizes, like.options());
  at::TensorOptions options = like.options().device(generator->device());
  at::Tensor t = uniform ? at::rand(sizes, *generator, options) : at::randn(sizes, *generator, options);
  return t.to(like.device());
}

// Every value of the F32 tensor `key` of `file` must be > 0 (a state std: we divide by it). Absent or
// malformed tensors are left to ImportModuleWeights, which names them.
absl::Status CheckPositive(const SafetensorsFile& file, const std::string& key) {
  auto it = file.tensors.find(key);
  if (it == file.tensors.end() || it->second.dtype != "F32" || it->second.data.size() % sizeof(float) != 0) {
    return absl::OkStatus();
  }
  std::vector<float> values(it->second.data.size() / sizeof(float));
  std::memcpy(values.data(), it->second.data.data(), it->second.data.size());
  for (size_t i = 0; i < values.size(); ++i) {
    if (!(values[i] > 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor \"", key, "\" holds ", values[i], " at ", i, "; a state std must be > 0"));
    }
  }
  return absl::OkStatus();
}

void AddFlowMetadata(const CnfFlowConfig& config, SafetensorsFile* file) {
  file->metadata["meow.obs_dim"] = absl::StrCat(config.obs_dim);
  file->metadata["meow.action_dim"] = absl::StrCat(config.action_dim);
  file->metadata["meow.flow_layers"] = absl::StrCat(config.layers);
  file->metadata["meow.flow_hidden"] = absl::StrCat(config.hidden);
}

absl::Status ReadFlowMetadata(const SafetensorsFile& file, CnfFlowConfig* config) {
  for (absl::Status s : {MetadataNumber(file, "meow.obs_dim", &config->obs_dim),
                         MetadataNumber(file, "meow.action_dim", &config->action_dim),
                         MetadataNumber(file, "meow.flow_layers", &config->layers),
                         MetadataNumber(file, "meow.flow_hidden", &config->hidden)}) {
    if (!s.ok()) return s;
  }
  return config->Validate();
}

// The sizes a file's metadata states, where it states them, must be the loading module's: tensors of
// equal shapes can still belong to another config (A = 3 and A = 4 share D = 4).
absl::Status CheckMetadataMatches(const SafetensorsFile& file,
                                  const std::vector<std::pair<std::string, int64_t>>& sizes) {
  for (const auto& [key, expected] : sizes) {
    if (file.metadata.count(key) == 0) continue;
    int64_t value = 0;
    if (absl::Status s = MetadataNumber(file, key, &value); !s.ok()) return s;
    if (value != expected) {
      return absl::InvalidArgumentError(
          absl::StrCat("metadata \"", key, "\" is ", value, ", but the loading module has ", expected));
    }
  }
  return absl::OkStatus();
}

std::vector<std::pair<std::string, int64_t>> FlowSizes(const CnfFlowConfig& config) {
  return {{"meow.obs_dim", config.obs_dim},
          {"meow.action_dim", config.action_dim},
          {"meow.flow_layers", config.layers},
          {"meow.flow_hidden", config.hidden}};
}

// The tensor `key` must exist with `shape`, as the metadata implies.
absl::Status CheckShape(const SafetensorsFile& file, const std::string& key, const std::vector<int64_t>& shape) {
  auto it = file.tensors.find(key);
  if (it == file.tensors.end() || it->second.shape != shape) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor \"", key, "\" is missing or not [", absl::StrJoin(shape, ","), "] as the metadata says"));
  }
  return absl::OkStatus();
}

// The flow's tensors that the metadata fixes, under `prefix` ("" or "flow.").
absl::Status CheckFlowShapes(const SafetensorsFile& file, const CnfFlowConfig& config, const std::string& prefix) {
  const int64_t d = config.latent_dim();
  const std::string last = absl::StrCat(prefix, "blocks.", config.layers - 1, ".");
  if (absl::Status s = CheckShape(file, last + "linear.weight", {d, d}); !s.ok()) return s;
  if (absl::Status s = CheckShape(file, last + "coupling.net.0.weight", {config.hidden, d / 2 + config.obs_dim});
      !s.ok()) {
    return s;
  }
  if (file.tensors.count(absl::StrCat(prefix, "blocks.", config.layers, ".linear.weight")) > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("the file has more flow blocks than \"meow.flow_layers\" = ", config.layers));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CnfFlowConfig::Validate() const {
  if (obs_dim <= 0 || action_dim <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("CNF flow sizes must be positive: obs_dim ", obs_dim, ", action_dim ", action_dim));
  }
  if (layers <= 0) return absl::InvalidArgumentError(absl::StrCat("CNF flow layers must be > 0, got ", layers));
  if (hidden <= 0) return absl::InvalidArgumentError(absl::StrCat("CNF flow hidden width must be > 0, got ", hidden));
  return absl::OkStatus();
}

absl::Status CnfPolicyConfig::Validate() const {
  if (absl::Status s = flow.Validate(); !s.ok()) return s;
  if (actor_hidden <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("CNF actor hidden width must be > 0, got ", actor_hidden));
  }
  if (actor_layers < 2) {
    return absl::InvalidArgumentError(absl::StrCat("CNF actor layers must be >= 2, got ", actor_layers));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------------
// State normaliser.

CnfStateNormalizerImpl::CnfStateNormalizerImpl(int64_t obs_dim) {
  mean = register_buffer("mean", torch::zeros({obs_dim}));
  std = register_buffer("std", torch::ones({obs_dim}));
}

absl::Status CnfStateNormalizerImpl::Set(const at::Tensor& new_mean, const at::Tensor& new_std) {
  for (const auto& [name, t] : {std::pair{"mean", new_mean}, std::pair{"std", new_std}}) {
    if (!t.defined() || !t.sizes().equals(mean.sizes())) {
      return absl::InvalidArgumentError(
          absl::StrCat("state ", name, " has shape ", t.defined() ? Shape(t) : "(none)", ", expected ", Shape(mean)));
    }
    if (!at::isfinite(t).all().item<bool>()) {
      return absl::InvalidArgumentError(absl::StrCat("state ", name, " holds NaN or inf"));
    }
  }
  if ((new_std < 0).any().item<bool>()) return absl::InvalidArgumentError("state std holds a negative value");
  torch::NoGradGuard no_grad;
  mean.copy_(new_mean);
  std.copy_(new_std.clamp_min(kCnfStateStdFloor));
  return absl::OkStatus();
}

at::Tensor CnfStateNormalizerImpl::forward(const at::Tensor& obs) { return (obs - mean) / std; }

// ---------------------------------------------------------------------------------------------------
// Layers.

CnfActNormImpl::CnfActNormImpl(int64_t dim) {
  log_scale = register_parameter("log_scale", torch::zeros({1, dim}));
  translate = register_parameter("translate", torch::zeros({1, dim}));
  initialized_flag = register_buffer("initialized", torch::zeros({1}));
}

std::pair<at::Tensor, at::Tensor> CnfActNormImpl::Forward(const at::Tensor& x) {
  return {at::exp(log_scale) * x + translate, log_scale.sum().expand({x.size(0)})};
}

at::Tensor CnfActNormImpl::Inverse(const at::Tensor& y) { return (y - translate) * at::exp(-log_scale); }

void CnfActNormImpl::Initialize(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 2 && x.size(0) >= 2 && x.size(1) == log_scale.size(1),
              "ActNorm init needs a (B >= 2, D) batch, got ", x.sizes());
  torch::NoGradGuard no_grad;
  at::Tensor log_std = at::log(x.std(/*dim=*/{0}, /*unbiased=*/true, /*keepdim=*/true) + kCnfActNormEps);
  log_scale.copy_(-log_std);
  translate.copy_(-x.mean({0}, /*keepdim=*/true) * at::exp(-log_std));
  initialized_flag.fill_(1);
}

bool CnfActNormImpl::initialized() const { return initialized_flag.item<double>() > 0.5; }

CnfInvertibleLinearImpl::CnfInvertibleLinearImpl(int64_t dim) {
  weight = register_parameter("weight", std::get<0>(at::linalg_qr(at::randn({dim, dim}))).contiguous());
}

std::pair<at::Tensor, at::Tensor> CnfInvertibleLinearImpl::Forward(const at::Tensor& x) {
  at::Tensor log_abs_det = std::get<1>(at::linalg_slogdet(weight));
  return {at::matmul(x, weight.t()), log_abs_det.expand({x.size(0)})};
}

at::Tensor CnfInvertibleLinearImpl::Inverse(const at::Tensor& y) {
  // D is small (the action size), so one D x D inverse serves the whole batch.
  return at::matmul(y, at::linalg_inv(weight).t());
}

CnfCouplingImpl::CnfCouplingImpl(int64_t dim, int64_t obs_dim, int64_t hidden, bool parity,
                                 bool frozen_prelu_as_leaky_relu)
    : parity_(parity), frozen_prelu_as_leaky_relu_(frozen_prelu_as_leaky_relu) {
  const int64_t half = dim / 2;
  rescale = register_parameter("rescale", torch::ones({half}));
  net = register_module("net", torch::nn::Sequential(torch::nn::Linear(half + obs_dim, hidden), torch::nn::PReLU(),
                                                     torch::nn::Linear(hidden, hidden), torch::nn::PReLU(),
                                                     torch::nn::Linear(hidden, dim)));
  // The reference zeroes the last layer, so every coupling starts as the identity.
  torch::NoGradGuard no_grad;
  auto* last = net[4]->as<torch::nn::Linear>();
  last->weight.zero_();
  last->bias.zero_();
}

namespace {

// PReLU with one slope. A frozen slope on the CPU (the latent controller's decoder) goes through
// leaky_relu, the same function (x > 0 ? x : a x) with a vectorised backward: LibTorch's
// prelu_backward also reduces the slope's gradient, about a tenth of a CNF update's time.
at::Tensor ApplyPrelu(torch::nn::PReLUImpl& prelu, const at::Tensor& x, bool frozen_as_leaky_relu) {
  const at::Tensor& slope = prelu.weight;
  if (frozen_as_leaky_relu && !slope.requires_grad() && slope.numel() == 1 && slope.device().is_cpu()) {
    return at::leaky_relu(x, slope.item<double>());
  }
  return prelu.forward(x);
}

}  // namespace

std::pair<at::Tensor, at::Tensor> CnfCouplingImpl::ScaleShift(const at::Tensor& keep, const at::Tensor& state) {
  // net: Linear, PReLU, Linear, PReLU, Linear.
  at::Tensor h = net[0]->as<torch::nn::Linear>()->forward(at::cat({keep, state}, -1));
  h = ApplyPrelu(*net[1]->as<torch::nn::PReLU>(), h, frozen_prelu_as_leaky_relu_);
  h = net[2]->as<torch::nn::Linear>()->forward(h);
  h = ApplyPrelu(*net[3]->as<torch::nn::PReLU>(), h, frozen_prelu_as_leaky_relu_);
  std::vector<at::Tensor> out = net[4]->as<torch::nn::Linear>()->forward(h).chunk(2, -1);
  return {rescale * at::tanh(out[0]), out[1]};
}

std::pair<at::Tensor, at::Tensor> CnfCouplingImpl::Forward(const at::Tensor& x, const at::Tensor& state) {
  std::vector<at::Tensor> halves = x.chunk(2, -1);
  // Without parity the first half conditions and the second changes; parity swaps the roles.
  const at::Tensor& keep = parity_ ? halves[1] : halves[0];
  const at::Tensor& change = parity_ ? halves[0] : halves[1];
  auto [log_scale, shift] = ScaleShift(keep, state);
  at::Tensor changed = at::exp(log_scale) * change + shift;
  at::Tensor y = parity_ ? at::cat({changed, keep}, -1) : at::cat({keep, changed}, -1);
  return {y, log_scale.sum(-1)};
}

at::Tensor CnfCouplingImpl::Inverse(const at::Tensor& y, const at::Tensor& state) {
  std::vector<at::Tensor> halves = y.chunk(2, -1);
  const at::Tensor& keep = parity_ ? halves[1] : halves[0];
  const at::Tensor& changed = parity_ ? halves[0] : halves[1];
  auto [log_scale, shift] = ScaleShift(keep, state);
  at::Tensor change = (changed - shift) * at::exp(-log_scale);
  return parity_ ? at::cat({change, keep}, -1) : at::cat({keep, change}, -1);
}

CnfBlockImpl::CnfBlockImpl(const CnfFlowConfig& config, bool parity) {
  const int64_t d = config.latent_dim();
  act_norm = register_module("act_norm", CnfActNorm(d));
  linear = register_module("linear", CnfInvertibleLinear(d));
  coupling = register_module("coupling",
                             CnfCoupling(d, config.obs_dim, config.hidden, parity, config.frozen_prelu_as_leaky_relu));
}

// ---------------------------------------------------------------------------------------------------
// The flow.

CnfFlowImpl::CnfFlowImpl(const CnfFlowConfig& config) : config_(config) {
  TORCH_CHECK(config.Validate().ok(), config.Validate().ToString());
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.layers; ++i) {
    typed_blocks.push_back(CnfBlock(config, /*parity=*/i % 2 == 0));
    blocks->push_back(typed_blocks.back());
  }
  state_norm = register_module("state_norm", CnfStateNormalizer(config.obs_dim));
}

at::Tensor CnfFlowImpl::Pad(const at::Tensor& action) const {
  TORCH_CHECK(action.dim() == 2 && action.size(1) == config_.action_dim, "CNF flow: action has shape ", action.sizes(),
              ", expected [B,", config_.action_dim, "]");
  if (config_.latent_dim() == config_.action_dim) return action;
  return at::cat({action, at::zeros({action.size(0), 1}, action.options())}, -1);
}

std::pair<at::Tensor, at::Tensor> CnfFlowImpl::Forward(const at::Tensor& action, const at::Tensor& obs,
                                                       bool init_actnorm) {
  TORCH_CHECK(obs.dim() == 2 && obs.size(1) == config_.obs_dim && obs.size(0) == action.size(0),
              "CNF flow: obs has shape ", obs.sizes(), ", expected [", action.size(0), ",", config_.obs_dim, "]");
  const at::Tensor state = state_norm(obs);
  at::Tensor x = Pad(action);
  // InvertibleATanh: d atanh(c)/dc = 1 / (1 - c^2) at the clamped c, as the reference writes it.
  at::Tensor c = x.clamp(-1 + kCnfFlowEps, 1 - kCnfFlowEps);
  at::Tensor log_det = -at::log(1 - c * c).sum(-1);
  x = ClampedAtanh(x);
  for (CnfBlock& block : typed_blocks) {
    if (init_actnorm) block->act_norm->Initialize(x);
    auto [a, ld_a] = block->act_norm->Forward(x);
    auto [l, ld_l] = block->linear->Forward(a);
    auto [y, ld_c] = block->coupling->Forward(l, state);
    x = y;
    log_det = log_det + ld_a + ld_l + ld_c;
  }
  // InvertibleTanh: log-det log(1 - z^2) at the clamped z, as the reference writes it.
  at::Tensor z = at::tanh(x).clamp(-1 + kCnfFlowEps, 1 - kCnfFlowEps);
  log_det = log_det + at::log(1 - z * z).sum(-1);
  return {z, log_det};
}

std::pair<at::Tensor, at::Tensor> CnfFlowImpl::Encode(const at::Tensor& action, const at::Tensor& obs) {
  return Forward(action, obs, /*init_actnorm=*/false);
}

at::Tensor CnfFlowImpl::DecodePadded(const at::Tensor& z, const at::Tensor& obs) {
  TORCH_CHECK(z.dim() == 2 && z.size(1) == config_.latent_dim(), "CNF flow: latent has shape ", z.sizes(),
              ", expected [B,", config_.latent_dim(), "]");
  TORCH_CHECK(obs.dim() == 2 && obs.size(1) == config_.obs_dim && obs.size(0) == z.size(0), "CNF flow: obs has shape ",
              obs.sizes(), ", expected [", z.size(0), ",", config_.obs_dim, "]");
  const at::Tensor state = state_norm(obs);
  at::Tensor x = ClampedAtanh(z);  // InvertibleTanh's inverse
  for (auto it = typed_blocks.rbegin(); it != typed_blocks.rend(); ++it) {
    x = (*it)->coupling->Inverse(x, state);
    x = (*it)->linear->Inverse(x);
    x = (*it)->act_norm->Inverse(x);
  }
  return at::tanh(x).clamp(-1 + kCnfFlowEps, 1 - kCnfFlowEps);  // InvertibleATanh's inverse
}

at::Tensor CnfFlowImpl::Decode(const at::Tensor& z, const at::Tensor& obs) {
  at::Tensor padded = DecodePadded(z, obs);
  if (config_.latent_dim() == config_.action_dim) return padded;
  return padded.narrow(-1, 0, config_.action_dim);  // the reference's FlowEnv drops the pad
}

at::Tensor CnfFlowImpl::LogProb(const at::Tensor& action, const at::Tensor& obs) {
  return Encode(action, obs).second - static_cast<double>(config_.latent_dim()) * kLog2;
}

at::Tensor CnfFlowImpl::Sample(const at::Tensor& obs, std::optional<at::Generator> generator) {
  at::Tensor z = Draw(/*uniform=*/true, {obs.size(0), config_.latent_dim()}, obs, generator) * 2 - 1;
  return Decode(z, obs);
}

void CnfFlowImpl::InitializeActNorm(const at::Tensor& action, const at::Tensor& obs) {
  torch::NoGradGuard no_grad;
  Forward(action, obs, /*init_actnorm=*/true);
}

bool CnfFlowImpl::actnorm_initialized() const {
  for (const CnfBlock& block : typed_blocks) {
    if (!block->act_norm->initialized()) return false;
  }
  return true;
}

absl::Status CnfFlowImpl::SetStateNormalizer(const at::Tensor& mean, const at::Tensor& std) {
  return state_norm->Set(mean, std);
}

// ---------------------------------------------------------------------------------------------------
// The latent actor and the policy.

CnfActorImpl::CnfActorImpl(const CnfPolicyConfig& config) : latent_dim_(config.flow.latent_dim()) {
  TORCH_CHECK(config.Validate().ok(), config.Validate().ToString());
  net = register_module("net", torch::nn::Sequential());
  int64_t in = config.flow.obs_dim;
  for (int64_t k = 0; k + 1 < config.actor_layers; ++k) {
    net->push_back(torch::nn::Linear(in, config.actor_hidden));
    net->push_back(torch::nn::ReLU());
    in = config.actor_hidden;
  }
  net->push_back(torch::nn::Linear(in, 2 * latent_dim_));
  state_norm = register_module("state_norm", CnfStateNormalizer(config.flow.obs_dim));
}

std::pair<at::Tensor, at::Tensor> CnfActorImpl::MeanLogStd(const at::Tensor& obs) {
  std::vector<at::Tensor> out = net->forward(state_norm(obs)).chunk(2, -1);
  return {out[0], out[1].clamp(kCnfLogStdMin, kCnfLogStdMax)};
}

at::Tensor CnfActorImpl::Latent(const at::Tensor& obs, bool deterministic, std::optional<at::Generator> generator) {
  auto [mu, log_std] = MeanLogStd(obs);
  if (deterministic) return at::tanh(mu);
  return at::tanh(mu + at::exp(log_std) * Draw(/*uniform=*/false, mu.sizes(), mu, generator));
}

absl::Status CnfActorImpl::SetStateNormalizer(const at::Tensor& mean, const at::Tensor& std) {
  return state_norm->Set(mean, std);
}

CnfPolicyImpl::CnfPolicyImpl(const CnfPolicyConfig& config) : config_(config) {
  TORCH_CHECK(config.Validate().ok(), config.Validate().ToString());
  flow = register_module("flow", CnfFlow(config.flow));
  actor = register_module("actor", CnfActor(config));
}

at::Tensor CnfPolicyImpl::Act(const at::Tensor& obs, bool deterministic, std::optional<at::Generator> generator) {
  torch::NoGradGuard no_grad;
  return flow->Decode(actor->Latent(obs, deterministic, generator), obs);
}

absl::Status CnfPolicyImpl::SetStateNormalizer(const at::Tensor& mean, const at::Tensor& std) {
  // Validated by the first; the second then cannot fail, so both or neither change.
  if (absl::Status s = flow->SetStateNormalizer(mean, std); !s.ok()) return s;
  return actor->SetStateNormalizer(mean, std);
}

SafetensorsFile CnfPolicyImpl::ExportWeights() {
  SafetensorsFile file = ExportModuleWeights(*this);
  file.metadata["meow.algorithm"] = "cnf";
  AddFlowMetadata(config_.flow, &file);
  file.metadata["meow.actor_hidden"] = absl::StrCat(config_.actor_hidden);
  file.metadata["meow.actor_layers"] = absl::StrCat(config_.actor_layers);
  return file;
}

absl::Status CnfPolicyImpl::ImportWeights(const SafetensorsFile& file) {
  if (absl::Status s = CheckWeightsAlgorithm(file, "cnf", "CNF's policy"); !s.ok()) return s;
  std::vector<std::pair<std::string, int64_t>> sizes = FlowSizes(config_.flow);
  sizes.emplace_back("meow.actor_hidden", config_.actor_hidden);
  sizes.emplace_back("meow.actor_layers", config_.actor_layers);
  if (absl::Status s = CheckMetadataMatches(file, sizes); !s.ok()) return s;
  for (const std::string key : {"flow.state_norm.std", "actor.state_norm.std"}) {
    if (absl::Status s = CheckPositive(file, key); !s.ok()) return s;
  }
  return ImportModuleWeights(*this, file);
}

SafetensorsFile ExportFlowWeights(CnfFlowImpl& flow) {
  SafetensorsFile file = ExportModuleWeights(flow);
  file.metadata["meow.algorithm"] = "cnf-flow";
  AddFlowMetadata(flow.config(), &file);
  return file;
}

absl::Status ImportFlowWeights(CnfFlowImpl& flow, const SafetensorsFile& file) {
  if (absl::Status s = CheckWeightsAlgorithm(file, "cnf-flow", "CNF's flow"); !s.ok()) return s;
  if (absl::Status s = CheckMetadataMatches(file, FlowSizes(flow.config())); !s.ok()) return s;
  if (absl::Status s = CheckPositive(file, "state_norm.std"); !s.ok()) return s;
  return ImportModuleWeights(flow, file);
}

absl::StatusOr<CnfPolicyConfig> CnfConfigFromWeights(const SafetensorsFile& file) {
  if (std::string algorithm = WeightsAlgorithm(file); algorithm != "cnf") {
    return absl::InvalidArgumentError(absl::StrCat("metadata \"meow.algorithm\" is \"", algorithm, "\", not \"cnf\""));
  }
  CnfPolicyConfig config;
  if (absl::Status s = ReadFlowMetadata(file, &config.flow); !s.ok()) return s;
  for (absl::Status s : {MetadataNumber(file, "meow.actor_hidden", &config.actor_hidden),
                         MetadataNumber(file, "meow.actor_layers", &config.actor_layers)}) {
    if (!s.ok()) return s;
  }
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  if (absl::Status s = CheckFlowShapes(file, config.flow, "flow."); !s.ok()) return s;
  if (absl::Status s = CheckShape(file, "actor.net.0.weight", {config.actor_hidden, config.flow.obs_dim}); !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckShape(file, absl::StrCat("actor.net.", 2 * (config.actor_layers - 1), ".weight"),
                                  {2 * config.flow.latent_dim(), config.actor_hidden});
      !s.ok()) {
    return s;
  }
  return config;
}

absl::StatusOr<CnfFlowConfig> CnfFlowConfigFromWeights(const SafetensorsFile& file) {
  if (std::string algorithm = WeightsAlgorithm(file); algorithm != "cnf-flow") {
    return absl::InvalidArgumentError(
        absl::StrCat("metadata \"meow.algorithm\" is \"", algorithm, "\", not \"cnf-flow\""));
  }
  CnfFlowConfig config;
  if (absl::Status s = ReadFlowMetadata(file, &config); !s.ok()) return s;
  if (absl::Status s = CheckFlowShapes(file, config, ""); !s.ok()) return s;
  return config;
}

}  // namespace meow
