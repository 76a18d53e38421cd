#include "common/sql_policy.h"

#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "common/flow_policy.h"

namespace meow {

absl::Status SqlPolicyConfig::Validate() const {
  if (obs_dim <= 0 || action_dim <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("SQL policy sizes must be positive: obs_dim ", obs_dim, ", action_dim ", action_dim));
  }
  if (hidden <= 0) return absl::InvalidArgumentError(absl::StrCat("SQL hidden width must be > 0, got ", hidden));
  return absl::OkStatus();
}

SqlSamplerImpl::SqlSamplerImpl(const SqlPolicyConfig& config) : config_(config) {
  TORCH_CHECK(config.Validate().ok(), config.Validate().ToString());
  fc1 = register_module("fc1", torch::nn::Linear(config.obs_dim + config.action_dim, config.hidden));
  fc2 = register_module("fc2", torch::nn::Linear(config.hidden, config.hidden));
  fc3 = register_module("fc3", torch::nn::Linear(config.hidden, config.action_dim));
}

torch::Tensor SqlSamplerImpl::forward(const torch::Tensor& obs, const torch::Tensor& noise) {
  torch::Tensor x = torch::cat({obs, noise}, 1);
  return torch::tanh(fc3(torch::relu(fc2(torch::relu(fc1(x))))));
}

torch::Tensor SqlSamplerImpl::ForwardParticles(const torch::Tensor& obs, const torch::Tensor& noise) {
  const int64_t s = obs.size(1), a = noise.size(2);
  const torch::Tensor& w = fc1->weight;  // (H, S + A)
  torch::Tensor h = at::linear(obs, w.narrow(1, 0, s), fc1->bias).unsqueeze(1) + at::matmul(noise, w.narrow(1, s, a).t());
  return torch::tanh(fc3(torch::relu(fc2(torch::relu(h)))));
}

torch::Tensor SqlSamplerImpl::Sample(const torch::Tensor& obs, bool deterministic, std::optional<at::Generator> generator) {
  const std::vector<int64_t> shape = {obs.size(0), config_.action_dim};
  torch::Tensor noise;
  if (deterministic) {
    noise = at::zeros(shape, obs.options());
  } else {
    noise = generator.has_value() ? at::randn(shape, *generator, obs.options()) : at::randn(shape, obs.options());
  }
  return forward(obs, noise);
}

SafetensorsFile SqlSamplerImpl::ExportWeights() {
  SafetensorsFile file = ExportModuleWeights(*this);
  file.metadata["meow.algorithm"] = "sql";
  file.metadata["meow.obs_dim"] = absl::StrCat(config_.obs_dim);
  file.metadata["meow.action_dim"] = absl::StrCat(config_.action_dim);
  file.metadata["meow.hidden"] = absl::StrCat(config_.hidden);
  return file;
}

absl::Status SqlSamplerImpl::ImportWeights(const SafetensorsFile& file) {
  if (absl::Status s = CheckWeightsAlgorithm(file, "sql", "SQL's sampler"); !s.ok()) return s;
  return ImportModuleWeights(*this, file);
}

absl::StatusOr<SqlPolicyConfig> SqlConfigFromWeights(const SafetensorsFile& file) {
  if (std::string algorithm = WeightsAlgorithm(file); algorithm != "sql") {
    return absl::InvalidArgumentError(absl::StrCat("metadata \"meow.algorithm\" is \"", algorithm, "\", not \"sql\""));
  }
  SqlPolicyConfig config;
  for (absl::Status s : {MetadataNumber(file, "meow.obs_dim", &config.obs_dim),
                         MetadataNumber(file, "meow.action_dim", &config.action_dim),
                         MetadataNumber(file, "meow.hidden", &config.hidden)}) {
    if (!s.ok()) return s;
  }
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  auto fc1 = file.tensors.find("fc1.weight");
  const std::vector<int64_t> expected = {config.hidden, config.obs_dim + config.action_dim};
  if (fc1 == file.tensors.end() || fc1->second.shape != expected) {
    return absl::InvalidArgumentError(absl::StrCat("tensor \"fc1.weight\" is missing or not [", config.hidden, ",",
                                                   config.obs_dim + config.action_dim, "] as the metadata says"));
  }
  return config;
}

}  // namespace meow
