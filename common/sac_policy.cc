#include "common/sac_policy.h"

#include <cmath>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/utils.h>

#include "absl/strings/str_cat.h"

namespace meow {
namespace {

const double kHalfLog2Pi = 0.5 * std::log(2.0 * M_PI);
constexpr double kJacobianEps = 1e-6;  // CleanRL's

}  // namespace

absl::Status SacPolicyConfig::Validate() const {
  if (obs_dim <= 0 || action_dim <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("SAC policy sizes must be positive: obs_dim ", obs_dim, ", action_dim ", action_dim));
  }
  if (hidden <= 0) return absl::InvalidArgumentError(absl::StrCat("SAC hidden width must be > 0, got ", hidden));
  if (!(log_std_min < log_std_max)) {
    return absl::InvalidArgumentError(
        absl::StrCat("SAC log_std_min (", log_std_min, ") must be below log_std_max (", log_std_max, ")"));
  }
  return absl::OkStatus();
}

torch::Tensor TanhGaussianLogProb(const torch::Tensor& u, const torch::Tensor& mean, const torch::Tensor& log_std) {
  torch::Tensor z = (u - mean) * torch::exp(-log_std);
  torch::Tensor gaussian = -0.5 * z * z - log_std - kHalfLog2Pi;
  torch::Tensor t = torch::tanh(u);
  return (gaussian - torch::log(1 - t * t + kJacobianEps)).sum(-1);
}

SacActorImpl::SacActorImpl(const SacPolicyConfig& config) : config_(config) {
  TORCH_CHECK(config.Validate().ok(), config.Validate().ToString());
  fc1 = register_module("fc1", torch::nn::Linear(config.obs_dim, config.hidden));
  fc2 = register_module("fc2", torch::nn::Linear(config.hidden, config.hidden));
  fc_mean = register_module("fc_mean", torch::nn::Linear(config.hidden, config.action_dim));
  fc_logstd = register_module("fc_logstd", torch::nn::Linear(config.hidden, config.action_dim));
}

std::pair<torch::Tensor, torch::Tensor> SacActorImpl::MeanLogStd(const torch::Tensor& obs) {
  torch::Tensor h = torch::relu(fc2(torch::relu(fc1(obs))));
  torch::Tensor mean = fc_mean(h);
  torch::Tensor log_std =
      config_.log_std_min + 0.5 * (config_.log_std_max - config_.log_std_min) * (torch::tanh(fc_logstd(h)) + 1);
  return {mean, log_std};
}

SampleResult SacActorImpl::Sample(const torch::Tensor& obs, bool deterministic, std::optional<at::Generator> generator) {
  auto [mean, log_std] = MeanLogStd(obs);
  torch::Tensor u = mean;
  if (!deterministic) {
    torch::Tensor eps = generator.has_value() ? at::randn(mean.sizes(), *generator, mean.options())
                                              : at::randn(mean.sizes(), mean.options());
    u = mean + torch::exp(log_std) * eps;
  }
  return {torch::tanh(u), TanhGaussianLogProb(u, mean, log_std)};
}

SafetensorsFile SacActorImpl::ExportWeights() {
  SafetensorsFile file = ExportModuleWeights(*this);
  file.metadata["meow.algorithm"] = "sac";
  file.metadata["meow.obs_dim"] = absl::StrCat(config_.obs_dim);
  file.metadata["meow.action_dim"] = absl::StrCat(config_.action_dim);
  file.metadata["meow.hidden"] = absl::StrCat(config_.hidden);
  file.metadata["meow.log_std_min"] = absl::StrCat(config_.log_std_min);
  file.metadata["meow.log_std_max"] = absl::StrCat(config_.log_std_max);
  return file;
}

absl::Status SacActorImpl::ImportWeights(const SafetensorsFile& file) {
  if (absl::Status s = CheckWeightsAlgorithm(file, "sac", "SAC's policy"); !s.ok()) return s;
  return ImportModuleWeights(*this, file);
}

void SacActorImpl::CopyWeightsFrom(SacActorImpl& other) {
  torch::NoGradGuard no_grad;
  auto mine = parameters();
  auto theirs = other.parameters();
  TORCH_CHECK(mine.size() == theirs.size(), "CopyWeightsFrom: different networks");
  for (size_t i = 0; i < mine.size(); ++i) mine[i].copy_(theirs[i]);
}

absl::StatusOr<SacPolicyConfig> SacConfigFromWeights(const SafetensorsFile& file) {
  if (std::string algorithm = WeightsAlgorithm(file); algorithm != "sac") {
    return absl::InvalidArgumentError(absl::StrCat("metadata \"meow.algorithm\" is \"", algorithm, "\", not \"sac\""));
  }
  SacPolicyConfig config;
  for (absl::Status s : {MetadataNumber(file, "meow.obs_dim", &config.obs_dim),
                         MetadataNumber(file, "meow.action_dim", &config.action_dim),
                         MetadataNumber(file, "meow.hidden", &config.hidden),
                         MetadataNumber(file, "meow.log_std_min", &config.log_std_min),
                         MetadataNumber(file, "meow.log_std_max", &config.log_std_max)}) {
    if (!s.ok()) return s;
  }
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  auto fc1 = file.tensors.find("fc1.weight");
  if (fc1 == file.tensors.end() || fc1->second.shape != std::vector<int64_t>{config.hidden, config.obs_dim}) {
    return absl::InvalidArgumentError(absl::StrCat("tensor \"fc1.weight\" is missing or not [", config.hidden, ",",
                                                   config.obs_dim, "] as the metadata says"));
  }
  return config;
}

}  // namespace meow
