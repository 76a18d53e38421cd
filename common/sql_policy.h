// Soft Q-learning's sampler, as the MEow authors' PyTorch SQL builds it ([SQP] modules/
// stochastic_policy.py; reference/baselines-sql-sac-offline.md §1.3): an action is
//   a = tanh(f(s, xi)),   xi ~ N(0, I_A),   f: cat(s, xi) -> Linear(S + A, 128) -> ReLU
//                                               -> Linear(128, 128) -> ReLU -> Linear(128, A)
// with no density of its own (SQL's policy is the energy exp(Q) that amortised SVGD trains the
// sampler toward). Both SQL codes act stochastically, for exploration and evaluation alike; the
// deterministic action here is the sampler at xi = 0. Parameters "fc1", "fc2", "fc3"; the weights
// file carries "meow.algorithm" = "sql".
// Not thread-safe: one thread uses a sampler at a time.
#pragma once

#include <cstdint>
#include <optional>

#include <ATen/core/Generator.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/safetensors.h"

namespace meow {

struct SqlPolicyConfig {
  int64_t obs_dim = 0;
  int64_t action_dim = 0;
  int64_t hidden = 128;

  absl::Status Validate() const;
};

class SqlSamplerImpl : public torch::nn::Module {
 public:
  explicit SqlSamplerImpl(const SqlPolicyConfig& config);

  // tanh(f(s, xi)) (N, A) for observations (N, S) and noise (N, A); gradients reach the parameters.
  torch::Tensor forward(const torch::Tensor& obs, const torch::Tensor& noise);
  // K actions per state, (B, K, A) for obs (B, S) and noise (B, K, A): the same function with the
  // state's part of the first layer computed once per state.
  torch::Tensor ForwardParticles(const torch::Tensor& obs, const torch::Tensor& noise);
  // Actions for observations (N, S): fresh noise drawn with `generator` (nullopt: LibTorch's
  // default generator), or with `deterministic` xi = 0.
  torch::Tensor Sample(const torch::Tensor& obs, bool deterministic, std::optional<at::Generator> generator = std::nullopt);

  // Weights "fc1.weight", ... as F32, with the sizes and "meow.algorithm" = "sql" in the metadata.
  SafetensorsFile ExportWeights();
  // Loads weights of ExportWeights: an SQL file whose key set and shapes match exactly, all finite
  // (InvalidArgument naming the problem otherwise; nothing is changed then); another algorithm's
  // file is refused by name.
  absl::Status ImportWeights(const SafetensorsFile& file);

  const SqlPolicyConfig& config() const { return config_; }

  torch::nn::Linear fc1{nullptr}, fc2{nullptr}, fc3{nullptr};

 private:
  SqlPolicyConfig config_;
};
TORCH_MODULE(SqlSampler);

// The SqlPolicyConfig of an SQL weights file (its metadata, checked against the tensor shapes);
// InvalidArgument naming the key for anything missing, malformed or another algorithm's file.
absl::StatusOr<SqlPolicyConfig> SqlConfigFromWeights(const SafetensorsFile& file);

}  // namespace meow
