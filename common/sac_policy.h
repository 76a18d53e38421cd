// SAC's policy, as CleanRL's sac_continuous_action.py builds it (reference/baselines-sql-sac-offline.md
// §2.1): s -> Linear(S, 256) -> ReLU -> Linear(256, 256) -> ReLU -> {mean, log std} heads, with
//   log sigma = log_std_min + (log_std_max - log_std_min) * (tanh(raw) + 1) / 2   in [-5, 2],
//   u = mean + sigma * eps (eps ~ N(0, I), reparameterised), a = tanh(u) (actions in [-1, 1]),
//   log pi(a|s) = sum_j [log N(u_j; mean_j, sigma_j) - log(1 - tanh(u_j)^2 + 1e-6)],
// and the deterministic action tanh(mean). Parameter names are CleanRL's ("fc1.weight",
// "fc_mean.bias", "fc_logstd.weight", ...); the weights file carries "meow.algorithm" = "sac".
// Not thread-safe: one thread uses a policy at a time.
#pragma once

#include <cstdint>
#include <optional>
#include <utility>

#include <ATen/core/Generator.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/flow_policy.h"
#include "common/safetensors.h"

namespace meow {

struct SacPolicyConfig {
  int64_t obs_dim = 0;
  int64_t action_dim = 0;
  int64_t hidden = 256;
  double log_std_min = -5.0;
  double log_std_max = 2.0;

  absl::Status Validate() const;
};

// The tanh-Gaussian log-density of a = tanh(u) for u drawn from N(mean, exp(log_std)^2), per row
// (B): CleanRL's formula, with its 1e-6 inside the log of the tanh Jacobian.
torch::Tensor TanhGaussianLogProb(const torch::Tensor& u, const torch::Tensor& mean, const torch::Tensor& log_std);

class SacActorImpl : public torch::nn::Module {
 public:
  explicit SacActorImpl(const SacPolicyConfig& config);

  // The Gaussian's mean and log sigma (B, A) for observations (B, S).
  std::pair<torch::Tensor, torch::Tensor> MeanLogStd(const torch::Tensor& obs);
  // A reparameterised sample a = tanh(mean + sigma * eps) with its log pi(a|s) (gradients reach the
  // parameters through both), eps drawn with `generator` (nullopt: LibTorch's default generator);
  // with `deterministic`, tanh(mean) and the log-density at u = mean.
  SampleResult Sample(const torch::Tensor& obs, bool deterministic, std::optional<at::Generator> generator = std::nullopt);

  // Weights under CleanRL's names, F32, with the config and "meow.algorithm" = "sac" in the metadata.
  SafetensorsFile ExportWeights();
  // Loads weights of ExportWeights: a SAC file whose key set and shapes match exactly, all finite
  // (InvalidArgument naming the problem otherwise; nothing is changed then). A file that says it is
  // another algorithm's is refused by name; bare tensors (no metadata) by their names and shapes.
  absl::Status ImportWeights(const SafetensorsFile& file);
  // Copies every parameter from `other` (same config) without recording gradients.
  void CopyWeightsFrom(SacActorImpl& other);

  const SacPolicyConfig& config() const { return config_; }

  torch::nn::Linear fc1{nullptr}, fc2{nullptr}, fc_mean{nullptr}, fc_logstd{nullptr};

 private:
  SacPolicyConfig config_;
};
TORCH_MODULE(SacActor);

// The SacPolicyConfig of a SAC weights file (its metadata, checked against the tensor shapes);
// InvalidArgument naming the key for anything missing, malformed or another algorithm's file.
absl::StatusOr<SacPolicyConfig> SacConfigFromWeights(const SafetensorsFile& file);

}  // namespace meow
