#include "common/flow_policy.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>

#include <ATen/ATen.h>
#include <torch/nn/init.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace meow {
namespace {

// The tanh preprocessing of the reference: actions are clipped to +-(1 - kActionClip) before atanh,
// and kLogDetEps (float32 machine epsilon) keeps log(1 - a^2) finite.
constexpr double kActionClip = 1e-5;
constexpr double kLogDetEps = std::numeric_limits<float>::epsilon();
const double kHalfLog2Pi = 0.5 * std::log(2.0 * M_PI);

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors stores little-endian bytes; a big-endian host needs byte swaps");

std::string ShapeString(at::IntArrayRef shape) { return absl::StrCat("[", absl::StrJoin(shape, ","), "]"); }

}  // namespace

absl::Status FlowPolicyConfig::Validate() const {
  if (obs_dim <= 0) return absl::InvalidArgumentError(absl::StrCat("obs_dim must be > 0, got ", obs_dim));
  if (action_dim <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("action_dim must be > 0, got ", action_dim));
  }
  if (!(alpha > 0) || !std::isfinite(alpha)) {
    return absl::InvalidArgumentError(absl::StrCat("alpha must be a finite value > 0, got ", alpha));
  }
  if (!std::isfinite(sigma_min) || !std::isfinite(sigma_max) || !(sigma_min < sigma_max)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sigma_min must be < sigma_max (both finite), got ", sigma_min, " and ", sigma_max));
  }
  if (flow_hidden <= 0 || shift_hidden <= 0) {
    return absl::InvalidArgumentError("flow_hidden and shift_hidden must be > 0");
  }
  if (!(dropout >= 0 && dropout < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("dropout must be in [0, 1), got ", dropout));
  }
  return absl::OkStatus();
}

SwishImpl::SwishImpl(int64_t width) { beta = register_parameter("beta", torch::ones({width})); }

torch::Tensor SwishImpl::forward(const torch::Tensor& x) { return x * torch::sigmoid(beta * x); }

MlpImpl::MlpImpl(const MlpOptions& options) {
  net_ = register_module("net", torch::nn::Sequential());
  int64_t in = options.in;
  auto add_linear = [&](int64_t out) {
    torch::nn::Linear linear(torch::nn::LinearOptions(in, out));
    torch::NoGradGuard no_grad;
    if (options.init == WeightInit::kZeros) {
      linear->weight.zero_();
    } else {
      torch::nn::init::orthogonal_(linear->weight, /*gain=*/1.0);
    }
    linears.push_back(linear);
    net_->push_back(linear);
    in = out;
  };
  for (int64_t layer = 0; layer < options.hidden_layers; ++layer) {
    add_linear(options.hidden);
    if (options.layer_norm) {
      torch::nn::LayerNorm norm(torch::nn::LayerNormOptions({options.hidden}).eps(1e-5));
      norms.push_back(norm);
      net_->push_back(norm);
    }
    Swish swish(options.hidden);
    swishes.push_back(swish);
    net_->push_back(swish);
    if (options.dropout.has_value()) {
      torch::nn::Dropout dropout(torch::nn::DropoutOptions(*options.dropout));
      dropouts.push_back(dropout);
      net_->push_back(dropout);
    }
  }
  add_linear(options.out);
}

torch::Tensor MlpImpl::forward(torch::Tensor x) {
  const size_t hidden = swishes.size();
  for (size_t i = 0; i < hidden; ++i) {
    x = linears[i]->forward(x);
    if (!norms.empty()) x = norms[i]->forward(x);
    x = swishes[i]->forward(x);
    // Dropout with p = 0 (the shift heads) is the identity; skip the call.
    if (!dropouts.empty() && dropouts[i]->options.p() > 0) x = dropouts[i]->forward(x);
  }
  return linears.back()->forward(x);
}

CouplingImpl::CouplingImpl(const FlowPolicyConfig& config, torch::Tensor mask) {
  MlpOptions options;
  options.in = config.action_dim + config.obs_dim;
  options.hidden = config.flow_hidden;
  options.out = config.action_dim;
  options.layer_norm = true;
  options.dropout = config.dropout;
  options.init = WeightInit::kOrthogonal;
  t = register_module("t", Mlp(options));
  b = register_buffer("b", std::move(mask));
}

torch::Tensor CouplingImpl::Shift(const torch::Tensor& z, const torch::Tensor& obs) {
  return (1 - b) * t->forward(torch::cat({b * z, obs}, /*dim=*/1));
}

torch::Tensor CouplingImpl::Forward(const torch::Tensor& z, const torch::Tensor& obs) { return z + Shift(z, obs); }

torch::Tensor CouplingImpl::Inverse(const torch::Tensor& z, const torch::Tensor& obs) { return z - Shift(z, obs); }

ShiftHeadsImpl::ShiftHeadsImpl(const FlowPolicyConfig& config) {
  MlpOptions options;
  options.in = config.obs_dim;
  options.hidden = config.shift_hidden;
  options.out = 1;
  options.dropout = 0.0;  // present in the reference (it shifts the indices), no effect
  options.init = WeightInit::kZeros;
  scale1 = register_module("scale1", Mlp(options));
  scale2 = register_module("scale2", Mlp(options));
}

torch::Tensor ShiftHeadsImpl::forward(const torch::Tensor& obs) {
  return torch::cat({scale1->forward(obs), scale2->forward(obs)}, /*dim=*/1);
}

PriorImpl::PriorImpl(const FlowPolicyConfig& config) : sigma_max_(config.sigma_max), sigma_min_(config.sigma_min) {
  MlpOptions options;
  options.in = config.obs_dim;
  options.hidden = config.flow_hidden;
  options.out = config.action_dim;
  options.init = WeightInit::kZeros;
  log_scale = register_module("log_scale", Mlp(options));
}

torch::Tensor PriorImpl::LogSigma(const torch::Tensor& obs) {
  const double half_range = 0.5 * (sigma_max_ - sigma_min_);
  return torch::tanh(log_scale->forward(obs)) * half_range + (sigma_min_ + half_range);
}

FlowPolicyImpl::FlowPolicyImpl(const FlowPolicyConfig& config) : config_(config) {
  const int64_t a = config.action_dim;
  // b_j = 1 for even j (0-based): couplings 0 and 2 use b, 1 and 3 use 1 - b.
  auto even = torch::zeros({1, a});
  for (int64_t j = 0; j < a; j += 2) even[0][j] = 1.0f;
  flows = register_module("flows", torch::nn::ModuleList());
  for (int k = 0; k < 4; ++k) {
    Coupling coupling(config, k % 2 == 0 ? even.clone() : 1 - even);
    couplings.push_back(coupling);
    flows->push_back(coupling);
  }
  shift = ShiftHeads(config);
  flows->push_back(shift);
  prior = register_module("prior", Prior(config));
}

SampleResult FlowPolicyImpl::Sample(const torch::Tensor& obs, bool deterministic,
                                    std::optional<at::Generator> generator) {
  const torch::Tensor log_sigma = prior->LogSigma(obs);
  torch::Tensor z;
  torch::Tensor log_q = -log_sigma.sum(1) - config_.action_dim * kHalfLog2Pi;
  if (deterministic) {
    z = torch::zeros_like(log_sigma);  // the prior mean
  } else {
    const torch::Tensor noise = generator.has_value() ? at::randn(log_sigma.sizes(), *generator, log_sigma.options())
                                                      : at::randn(log_sigma.sizes(), log_sigma.options());
    z = noise * log_sigma.exp();
    log_q = log_q - 0.5 * noise.square().sum(1);
  }
  for (auto& coupling : couplings) z = coupling->Forward(z, obs);
  const torch::Tensor tanh_z = torch::tanh(z);
  SampleResult result;
  result.action = tanh_z.clamp(-1.0, 1.0);
  result.log_prob = log_q - torch::log(1 - tanh_z.square() + kLogDetEps).sum(1);
  return result;
}

std::pair<torch::Tensor, torch::Tensor> FlowPolicyImpl::InverseToLatent(const torch::Tensor& obs,
                                                                        const torch::Tensor& action) {
  const torch::Tensor clipped = action.clamp(-1.0 + kActionClip, 1.0 - kActionClip);
  torch::Tensor z = torch::atanh(clipped);
  const torch::Tensor tanh_log_det = torch::log(1 - clipped.square() + kLogDetEps).sum(1);
  for (auto it = couplings.rbegin(); it != couplings.rend(); ++it) z = (*it)->Inverse(z, obs);
  return {z, tanh_log_det};
}

torch::Tensor FlowPolicyImpl::LogProb(const torch::Tensor& obs, const torch::Tensor& action) {
  auto [z, tanh_log_det] = InverseToLatent(obs, action);
  const torch::Tensor log_sigma = prior->LogSigma(obs);
  const torch::Tensor log_q =
      -0.5 * (z * torch::exp(-log_sigma)).square().sum(1) - log_sigma.sum(1) - config_.action_dim * kHalfLog2Pi;
  return log_q - tanh_log_det;
}

QVResult FlowPolicyImpl::QV(const torch::Tensor& obs, const torch::Tensor& action) {
  auto [z, tanh_log_det] = InverseToLatent(obs, action);
  const torch::Tensor log_sigma = prior->LogSigma(obs);
  const torch::Tensor common = -tanh_log_det - 0.5 * (z * torch::exp(-log_sigma)).square().sum(1);
  const torch::Tensor v_base = log_sigma.sum(1) + config_.action_dim * kHalfLog2Pi;
  const torch::Tensor shifts = shift->forward(obs);
  const torch::Tensor b1 = shifts.select(1, 0);
  const torch::Tensor b2 = shifts.select(1, 1);
  QVResult r;
  r.q1 = config_.alpha * (b1 + common);
  r.q2 = config_.alpha * (b2 + common);
  r.v1 = config_.alpha * (b1 + v_base);
  r.v2 = config_.alpha * (b2 + v_base);
  return r;
}

std::pair<torch::Tensor, torch::Tensor> FlowPolicyImpl::Value(const torch::Tensor& obs) {
  const torch::Tensor v_base = prior->LogSigma(obs).sum(1) + config_.action_dim * kHalfLog2Pi;
  const torch::Tensor shifts = shift->forward(obs);
  return {config_.alpha * (shifts.select(1, 0) + v_base), config_.alpha * (shifts.select(1, 1) + v_base)};
}

void FlowPolicyImpl::CopyWeightsFrom(FlowPolicyImpl& other) {
  torch::NoGradGuard no_grad;
  auto mine = named_parameters();
  auto theirs = other.named_parameters();
  for (const auto& item : theirs) mine[item.key()].copy_(item.value());
  auto my_buffers = named_buffers();
  for (const auto& item : other.named_buffers()) my_buffers[item.key()].copy_(item.value());
}

int64_t FlowPolicyImpl::NumParameters() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

absl::StatusOr<at::Tensor> FromRawFloat32(const RawTensor& raw, const std::string& name) {
  if (raw.dtype != "F32") return absl::DataLossError(absl::StrCat("\"", name, "\" is not float32"));
  at::Tensor t = at::empty(raw.shape, at::kFloat);
  if (static_cast<size_t>(t.nbytes()) != raw.data.size()) {
    return absl::DataLossError(absl::StrCat("\"", name, "\" has the wrong size for its shape"));
  }
  std::memcpy(t.data_ptr(), raw.data.data(), raw.data.size());
  return t;
}

RawTensor ToRawTensor(const at::Tensor& tensor) {
  const at::Tensor cpu = tensor.detach().to(at::kCPU).contiguous();
  RawTensor raw;
  switch (cpu.scalar_type()) {
    case at::kFloat:
      raw.dtype = "F32";
      break;
    case at::kDouble:
      raw.dtype = "F64";
      break;
    case at::kLong:
      raw.dtype = "I64";
      break;
    case at::kInt:
      raw.dtype = "I32";
      break;
    case at::kByte:
      raw.dtype = "U8";
      break;
    default:
      TORCH_CHECK(false, "ToRawTensor: unsupported dtype ", cpu.scalar_type());
  }
  raw.shape.assign(cpu.sizes().begin(), cpu.sizes().end());
  raw.data.assign(static_cast<const char*>(cpu.data_ptr()), cpu.nbytes());
  return raw;
}

SafetensorsFile ExportModuleWeights(torch::nn::Module& module) {
  SafetensorsFile file;
  auto add = [&](const std::string& name, const torch::Tensor& tensor) {
    file.tensors.emplace(name, ToRawTensor(tensor.to(torch::kFloat32)));
  };
  for (const auto& item : module.named_parameters()) add(item.key(), item.value());
  for (const auto& item : module.named_buffers()) add(item.key(), item.value());
  file.metadata["format"] = "pt";
  return file;
}

absl::Status ImportModuleWeights(torch::nn::Module& module, const SafetensorsFile& file) {
  std::vector<std::pair<std::string, torch::Tensor>> targets;
  for (const auto& item : module.named_parameters()) targets.emplace_back(item.key(), item.value());
  for (const auto& item : module.named_buffers()) targets.emplace_back(item.key(), item.value());
  // Validate everything first so that a bad file changes nothing.
  for (const auto& [name, target] : targets) {
    auto it = file.tensors.find(name);
    if (it == file.tensors.end()) {
      return absl::InvalidArgumentError(absl::StrCat("missing tensor \"", name, "\""));
    }
    if (it->second.dtype != "F32") {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor \"", name, "\" has dtype ", it->second.dtype, ", expected F32"));
    }
    if (!std::equal(it->second.shape.begin(), it->second.shape.end(), target.sizes().begin(), target.sizes().end())) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\" has shape [",
                                                     absl::StrJoin(it->second.shape, ","), "], expected ",
                                                     ShapeString(target.sizes())));
    }
  }
  if (file.tensors.size() != targets.size()) {
    for (const auto& [name, raw] : file.tensors) {
      bool known = false;
      for (const auto& target : targets) known = known || target.first == name;
      if (!known) return absl::InvalidArgumentError(absl::StrCat("unexpected tensor \"", name, "\""));
    }
  }
  // Decode and check every value before the first copy, so a bad tensor leaves the module as it was.
  std::vector<torch::Tensor> decoded;
  decoded.reserve(targets.size());
  for (const auto& [name, target] : targets) {
    const RawTensor& raw = file.tensors.at(name);
    torch::Tensor cpu = torch::empty(target.sizes(), torch::kFloat32);
    std::memcpy(cpu.data_ptr(), raw.data.data(), raw.data.size());
    if (!torch::isfinite(cpu).all().item<bool>()) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\" holds NaN or inf"));
    }
    decoded.push_back(std::move(cpu));
  }
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < targets.size(); ++i) targets[i].second.copy_(decoded[i]);
  return absl::OkStatus();
}

SafetensorsFile FlowPolicyImpl::ExportWeights() {
  SafetensorsFile file = ExportModuleWeights(*this);
  file.metadata["meow.obs_dim"] = absl::StrCat(config_.obs_dim);
  file.metadata["meow.action_dim"] = absl::StrCat(config_.action_dim);
  file.metadata["meow.alpha"] = absl::StrCat(config_.alpha);
  file.metadata["meow.sigma_max"] = absl::StrCat(config_.sigma_max);
  file.metadata["meow.sigma_min"] = absl::StrCat(config_.sigma_min);
  file.metadata["meow.flow_hidden"] = absl::StrCat(config_.flow_hidden);
  file.metadata["meow.shift_hidden"] = absl::StrCat(config_.shift_hidden);
  file.metadata["meow.dropout"] = absl::StrCat(config_.dropout);
  return file;
}

absl::Status FlowPolicyImpl::ImportWeights(const SafetensorsFile& file) {
  if (std::string algorithm = WeightsAlgorithm(file); algorithm != "meow") {  // declared by the file
    return absl::InvalidArgumentError(
        absl::StrCat("the weights are for the algorithm \"", algorithm, "\", not MEow's flow policy"));
  }
  return ImportModuleWeights(*this, file);
}

std::string WeightsAlgorithm(const SafetensorsFile& file) {
  auto it = file.metadata.find("meow.algorithm");
  return it == file.metadata.end() ? "meow" : it->second;
}

absl::Status CheckWeightsAlgorithm(const SafetensorsFile& file, const std::string& algorithm, const std::string& policy) {
  const bool declared = file.metadata.count("meow.algorithm") > 0;
  if (std::string theirs = WeightsAlgorithm(file);
      theirs != algorithm && (declared || file.metadata.count("meow.obs_dim") > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("the weights are for the algorithm \"", theirs, "\", not ", policy));
  }
  return absl::OkStatus();
}

namespace {

template <typename T>
absl::Status ParseMetadataNumber(const SafetensorsFile& file, const std::string& key, T* out) {
  auto it = file.metadata.find(key);
  if (it == file.metadata.end()) return absl::InvalidArgumentError(absl::StrCat("missing metadata \"", key, "\""));
  bool parsed = false;
  if constexpr (std::is_same_v<T, double>) {
    parsed = absl::SimpleAtod(it->second, out);
  } else {
    parsed = absl::SimpleAtoi(it->second, out);
  }
  if (!parsed) {
    return absl::InvalidArgumentError(absl::StrCat("metadata \"", key, "\" = \"", it->second, "\" is not a number"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status MetadataNumber(const SafetensorsFile& file, const std::string& key, int64_t* out) {
  return ParseMetadataNumber(file, key, out);
}
absl::Status MetadataNumber(const SafetensorsFile& file, const std::string& key, double* out) {
  return ParseMetadataNumber(file, key, out);
}

absl::Status FlowPolicyImpl::SaveSafetensors(const std::string& path) {
  return WriteSafetensors(path, ExportWeights());
}

absl::Status FlowPolicyImpl::LoadSafetensors(const std::string& path) {
  auto file = ReadSafetensors(path);
  if (!file.ok()) return file.status();
  absl::Status status = ImportWeights(*file);
  if (!status.ok()) return absl::Status(status.code(), absl::StrCat(path, ": ", status.message()));
  return absl::OkStatus();
}

absl::StatusOr<FlowPolicyConfig> ConfigFromWeights(const SafetensorsFile& file, const FlowPolicyConfig& defaults) {
  FlowPolicyConfig config = defaults;
  auto dim = [&](const std::string& key, int index) -> absl::StatusOr<int64_t> {
    auto it = file.tensors.find(key);
    if (it == file.tensors.end() || it->second.shape.size() != 2) {
      return absl::InvalidArgumentError(absl::StrCat("missing 2-D tensor \"", key, "\""));
    }
    return it->second.shape[index];
  };
  auto obs = dim("prior.log_scale.net.0.weight", 1);
  if (!obs.ok()) return obs.status();
  auto act = dim("prior.log_scale.net.4.weight", 0);
  if (!act.ok()) return act.status();
  auto flow_hidden = dim("prior.log_scale.net.0.weight", 0);
  if (!flow_hidden.ok()) return flow_hidden.status();
  auto shift_hidden = dim("flows.4.scale1.net.0.weight", 0);
  if (!shift_hidden.ok()) return shift_hidden.status();
  config.obs_dim = *obs;
  config.action_dim = *act;
  config.flow_hidden = *flow_hidden;
  config.shift_hidden = *shift_hidden;
  auto number = [&](const std::string& key, double* out) -> absl::Status {
    auto it = file.metadata.find(key);
    if (it == file.metadata.end()) return absl::OkStatus();
    if (!absl::SimpleAtod(it->second, out)) {
      return absl::InvalidArgumentError(absl::StrCat("metadata \"", key, "\" = \"", it->second, "\" is not a number"));
    }
    return absl::OkStatus();
  };
  for (auto [key, field] :
       {std::pair{"meow.alpha", &config.alpha}, std::pair{"meow.sigma_max", &config.sigma_max},
        std::pair{"meow.sigma_min", &config.sigma_min}, std::pair{"meow.dropout", &config.dropout}}) {
    absl::Status status = number(key, field);
    if (!status.ok()) return status;
  }
  absl::Status status = config.Validate();
  if (!status.ok()) return status;
  return config;
}

}  // namespace meow
