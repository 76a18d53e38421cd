#include "common/sac_policy.h"

#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include <ATen/ATen.h>
#include <torch/utils.h>

#include "absl/strings/numbers.h"
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
  // Refused by name: a file that says it is another algorithm's, or MEow's own export (its sizes but
  // no algorithm). Bare tensors (an evaluation's report) are judged by their names and shapes alone.
  const bool declared = file.metadata.count("meow.algorithm") > 0;
  if (std::string algorithm = WeightsAlgorithm(file);
      algorithm != "sac" && (declared || file.metadata.count("meow.obs_dim") > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the weights are for the algorithm \"", algorithm, "\", not SAC's policy"));
  }
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
  auto number = [&](const std::string& key, auto* out) -> absl::Status {
    auto it = file.metadata.find(key);
    if (it == file.metadata.end()) return absl::InvalidArgumentError(absl::StrCat("missing metadata \"", key, "\""));
    bool parsed = false;
    if constexpr (std::is_same_v<std::remove_pointer_t<decltype(out)>, double>) {
      parsed = absl::SimpleAtod(it->second, out);
    } else {
      parsed = absl::SimpleAtoi(it->second, out);
    }
    if (!parsed) {
      return absl::InvalidArgumentError(absl::StrCat("metadata \"", key, "\" = \"", it->second, "\" is not a number"));
    }
    return absl::OkStatus();
  };
  for (absl::Status s : {number("meow.obs_dim", &config.obs_dim), number("meow.action_dim", &config.action_dim),
                         number("meow.hidden", &config.hidden), number("meow.log_std_min", &config.log_std_min),
                         number("meow.log_std_max", &config.log_std_max)}) {
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
