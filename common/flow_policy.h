// The MEow flow policy: one energy-based normalizing flow that is at once the stochastic policy
// (exact sampling and log-probabilities) and the soft Q-function, with an exact soft value V(s).
//
// Layers from the latent z (prior side) to the action a, as in the reference implementation:
//   prior N(0, diag sigma(s)^2) -> C0(mask b) -> C1(1-b) -> C2(b) -> C3(1-b) -> shift heads -> tanh
// The additive couplings have zero log-determinant, so with
//   common(s,a) = -sum_j log(1 - a~_j^2 + eps) - 1/2 sum_j (z_j / sigma_j(s))^2
//   Q_k(s,a) = alpha * (b_k(s) + common(s,a))
//   V_k(s)   = alpha * (b_k(s) + D/2 log(2 pi) + sum_j log sigma_j(s))
// and Q_k - V_k = alpha * log pi(a|s). V needs no coupling pass. See reference/meow-and-envs.md §1.
//
// Parameter and buffer names equal the reference state_dict keys (e.g. "flows.0.t.net.0.weight",
// "flows.4.scale1.net.6.bias", "prior.log_scale.net.4.weight", "flows.0.b"), so weights move both
// ways through safetensors files.
//
// Not thread-safe: a FlowPolicy is used by one thread at a time (each actor owns its own copy).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Generator.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/safetensors.h"

namespace meow {

struct FlowPolicyConfig {
  int64_t obs_dim = 0;
  int64_t action_dim = 0;
  double alpha = 0.2;       // temperature; scales Q and V
  double sigma_max = -0.3;  // log sigma of the prior lies in [sigma_min, sigma_max]
  double sigma_min = -5.0;
  int64_t flow_hidden = 64;    // width of the coupling nets and the sigma-net
  int64_t shift_hidden = 256;  // width of the two reward-shift heads
  double dropout = 0.1;        // dropout after each hidden Swish of the coupling nets

  absl::Status Validate() const;
};

// x * sigmoid(beta * x) with a learnable beta per unit, initialised to 1.
class SwishImpl : public torch::nn::Module {
 public:
  explicit SwishImpl(int64_t width);
  torch::Tensor forward(const torch::Tensor& x);

  torch::Tensor beta;
};
TORCH_MODULE(Swish);

enum class WeightInit { kZeros, kOrthogonal };

struct MlpOptions {
  int64_t in = 0;
  int64_t hidden = 64;
  int64_t out = 0;
  int64_t hidden_layers = 2;
  bool layer_norm = false;
  // nullopt: no Dropout module at all; a value (even 0): a Dropout module after each Swish, which
  // shifts the module indices exactly as in the reference.
  std::optional<double> dropout;
  WeightInit init = WeightInit::kZeros;
};

// The reference MLP: each hidden layer is Linear -> [LayerNorm] -> Swish -> [Dropout]; the output
// layer is a plain Linear. Modules live in the Sequential "net" so that names are "net.<index>.*".
// Weight init per `init`; biases keep the default U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
class MlpImpl : public torch::nn::Module {
 public:
  explicit MlpImpl(const MlpOptions& options);
  torch::Tensor forward(torch::Tensor x);

  // Typed handles to the modules inside `net`, in order (for fused forward passes).
  std::vector<torch::nn::Linear> linears;
  std::vector<torch::nn::LayerNorm> norms;  // empty without layer_norm
  std::vector<Swish> swishes;
  std::vector<torch::nn::Dropout> dropouts;  // empty without dropout

 private:
  torch::nn::Sequential net_;
};
TORCH_MODULE(Mlp);

// Additive coupling: z' = b*z + (1-b)*(z + t([b*z, s])). Names: "t.net.*" and buffer "b".
class CouplingImpl : public torch::nn::Module {
 public:
  CouplingImpl(const FlowPolicyConfig& config, torch::Tensor mask);
  // The shift t([b*z, s]) restricted to the unmasked dimensions, i.e. (1-b)*t(...).
  torch::Tensor Shift(const torch::Tensor& z, const torch::Tensor& obs);
  torch::Tensor Forward(const torch::Tensor& z, const torch::Tensor& obs);
  torch::Tensor Inverse(const torch::Tensor& z, const torch::Tensor& obs);

  Mlp t{nullptr};
  torch::Tensor b;  // (1, A) mask buffer
};
TORCH_MODULE(Coupling);

// The two reward-shift heads b_1, b_2 ("scale1", "scale2"), MLPs [S, 256, 256, 1].
class ShiftHeadsImpl : public torch::nn::Module {
 public:
  explicit ShiftHeadsImpl(const FlowPolicyConfig& config);
  // Returns (B, 2): column k is b_{k+1}(s).
  torch::Tensor forward(const torch::Tensor& obs);

  Mlp scale1{nullptr};
  Mlp scale2{nullptr};
};
TORCH_MODULE(ShiftHeads);

// The prior's sigma-net h: MLP [S, 64, 64, A] with zero weights ("log_scale").
class PriorImpl : public torch::nn::Module {
 public:
  explicit PriorImpl(const FlowPolicyConfig& config);
  // log sigma(s) = sigma_min + (sigma_max - sigma_min) * (tanh(h(s)) + 1) / 2, shape (B, A).
  torch::Tensor LogSigma(const torch::Tensor& obs);

  Mlp log_scale{nullptr};

 private:
  double sigma_max_;
  double sigma_min_;
};
TORCH_MODULE(Prior);

struct SampleResult {
  torch::Tensor action;    // (B, A) in [-1, 1]
  torch::Tensor log_prob;  // (B)
};

struct QVResult {
  torch::Tensor q1, q2;  // (B)
  torch::Tensor v1, v2;  // (B)
};

class FlowPolicyImpl : public torch::nn::Module {
 public:
  explicit FlowPolicyImpl(const FlowPolicyConfig& config);

  // Actions for a batch of observations (B, S): stochastic (z ~ prior) or deterministic (z = prior
  // mean = 0). `generator` selects the random stream (nullopt: LibTorch's default generator).
  SampleResult Sample(const torch::Tensor& obs, bool deterministic,
                      std::optional<at::Generator> generator = std::nullopt);
  // log pi(a|s) for (B, S) observations and (B, A) actions in [-1, 1].
  torch::Tensor LogProb(const torch::Tensor& obs, const torch::Tensor& action);
  // Q_1, Q_2, V_1, V_2 on B rows, with one coupling pass shared by both heads.
  QVResult QV(const torch::Tensor& obs, const torch::Tensor& action);
  // {V_1, V_2} on B rows, from the sigma-net and the shift heads alone (no coupling pass).
  std::pair<torch::Tensor, torch::Tensor> Value(const torch::Tensor& obs);

  // Copies every parameter and buffer from `other` (same config) without recording gradients.
  void CopyWeightsFrom(FlowPolicyImpl& other);

  // Weights under the reference names, F32, with the config in the metadata.
  SafetensorsFile ExportWeights();
  // Loads weights exported here or by the reference code. The key set and every shape must match
  // exactly (InvalidArgument naming the key otherwise), and the file must be a MEow policy's (not
  // another algorithm's, WeightsAlgorithm); nothing is changed unless all of that holds.
  absl::Status ImportWeights(const SafetensorsFile& file);
  absl::Status SaveSafetensors(const std::string& path);
  absl::Status LoadSafetensors(const std::string& path);

  const FlowPolicyConfig& config() const { return config_; }
  int64_t NumParameters() const;

  torch::nn::ModuleList flows{nullptr};  // 4 couplings, then the shift heads
  Prior prior{nullptr};
  std::vector<Coupling> couplings;  // typed handles to flows[0..3]
  ShiftHeads shift{nullptr};        // typed handle to flows[4]

 private:
  // z from the action: inverse tanh (with the clip) and inverse couplings 3..0. Returns z and
  // sum_j log(1 - a~_j^2 + eps) (the tanh log-determinant, forward direction).
  std::pair<torch::Tensor, torch::Tensor> InverseToLatent(const torch::Tensor& obs, const torch::Tensor& action);
  FlowPolicyConfig config_;
};
TORCH_MODULE(FlowPolicy);

// A CPU copy of `tensor` as safetensors bytes (float32, float64, int64, int32 or uint8; other
// dtypes are a programming error).
RawTensor ToRawTensor(const at::Tensor& tensor);
// The float32 tensor `raw` holds, as a CPU copy; DataLoss naming `name` for another dtype or a byte
// count that does not fit the shape (the way back from ToRawTensor for checkpoint state).
absl::StatusOr<at::Tensor> FromRawFloat32(const RawTensor& raw, const std::string& name);

// A module's parameters and buffers under their names, as F32 (metadata: "format" only; the
// caller adds its own).
SafetensorsFile ExportModuleWeights(torch::nn::Module& module);
// Loads `file` into `module`'s parameters and buffers. The key set and every shape must match
// exactly and every value be finite (InvalidArgument naming the key otherwise); nothing is
// changed unless all do.
absl::Status ImportModuleWeights(torch::nn::Module& module, const SafetensorsFile& file);

// The algorithm a weights file is for: its "meow.algorithm" metadata ("sac", ...); files without it
// (MEow's own and the reference code's) are "meow".
std::string WeightsAlgorithm(const SafetensorsFile& file);

// The check every other algorithm's policy (SAC's, SQL's) makes before loading `file`: refused,
// naming the algorithm, when the file says it is another algorithm's or is MEow's own export (its
// sizes but no algorithm); bare tensors (an evaluation's report) pass, to be judged by their names
// and shapes. `policy` names the loading policy in the message ("SAC's policy").
absl::Status CheckWeightsAlgorithm(const SafetensorsFile& file, const std::string& algorithm, const std::string& policy);

// A required number in a weights file's metadata: InvalidArgument naming the key when it is
// missing or not a number.
absl::Status MetadataNumber(const SafetensorsFile& file, const std::string& key, int64_t* out);
absl::Status MetadataNumber(const SafetensorsFile& file, const std::string& key, double* out);

// Reads the FlowPolicyConfig stored in a safetensors file's metadata by ExportWeights; for a file
// from the reference code (no such metadata) obs and action sizes come from the tensor shapes and
// the remaining fields from `defaults`.
absl::StatusOr<FlowPolicyConfig> ConfigFromWeights(const SafetensorsFile& file, const FlowPolicyConfig& defaults);

}  // namespace meow
