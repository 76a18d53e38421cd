// The networks of the offline method CNF, "Let Offline RL Flow" (Akimov et al. 2022; official code
// tinkoff-ai/cnf, reference/baselines-sql-sac-offline.md §3): a conditional normalizing flow that is
// pre-trained by maximum likelihood on the dataset's actions and then frozen, and a latent actor
// whose bounded latent the flow decodes into a task action.
//
// The flow f maps a task action a in [-1,1]^A, conditioned on the state s, to a latent
// z in (-1,1)^D with a uniform prior. From the data side (cnf/make_flow.py):
//   InvertibleATanh:  x = atanh(clamp(a, +-(1 - 1e-5)))                log-det -sum log(1 - a_c^2)
//   layers x [ActNorm:          x = exp(log_scale) * x + translate     log-det sum log_scale
//             InvertibleLinear: x = x W^T (D x D, random orthogonal)   log-det log|det W|
//             CouplingLayer:    affine RealNVP on one half             log-det sum log_scale(x0, s~)]
//   InvertibleTanh:   z = clamp(tanh(x), +-(1 - 1e-5))                 log-det sum log(1 - z^2)
//   prior Uniform(-1, 1)^D:                                            log p(z) = -D log 2
// so log p(a|s) = log|det dz/da| - D log 2. The decoder g = f^-1 runs the stack backwards
// (InvertibleLinear through its matrix inverse). Only the coupling nets see the state, as
// s~ = (s - mean) / std with the dataset's mean and std (CnfStateNormalizer).
//
// Odd action dimensions. D = A rounded up to even, because the couplings split x into halves. The
// reference zero-pads Hopper's 3-D actions to 4 (cnf/offline_dataset.py, cnf/train_rl.py: one
// zero column appended to every dataset action after the clamp) and drops the decoded 4th coordinate
// before env.step (cnf/flow_env.py). We do the same inside the flow: Encode and LogProb take the
// task's (B, A) actions and append the zero column themselves, Decode drops it (DecodePadded keeps
// it). So for odd A, LogProb is the D-dimensional density at (a, 0), not a density over [-1,1]^A:
// the pad column has zero spread in the data, the first ActNorm's data-dependent init gives it
// log_scale = -log(0 + 1e-6) ~ 13.8, training concentrates the pad direction further, and the NLL of
// an odd-A task is not comparable with an even one's. This is exactly what the reference optimises.
//
// Parameter and buffer names (ours; the reference's state_dict keys in brackets, layer k = 3i + 1..3):
//   blocks.<i>.act_norm.{log_scale (1,D), translate (1,D), initialized (1)}
//                                                    [_flow._layers.<3i+1>._log_scale, ...]
//   blocks.<i>.linear.weight (D,D)                   [_flow._layers.<3i+2>._weight]
//   blocks.<i>.coupling.rescale (D/2)                [_flow._layers.<3i+3>._rescale]
//   blocks.<i>.coupling.net.{0,2,4}.{weight,bias}, net.{1,3}.weight (PReLU)
//                                                    [... ._scale_translate_net._mlp.<k>.*]
//   state_norm.{mean, std} (S)                       [_state_embedding_norm_layer._state_embedding_*]
// The reference keeps `_initialized` as a bool; we keep it as a float32 0/1 so that it travels in our
// float32 weights files.
//
// Not thread-safe: one thread uses a flow or a policy at a time.
#pragma once

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/pimpl.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/safetensors.h"

namespace meow {

// The reference's clamp of the atanh input and the tanh output (cnf/flow/invertible_tanh.py).
inline constexpr double kCnfFlowEps = 1e-5;
// The reference clamps dataset actions to +-(1 - 2 * eps) before the flow sees them
// (cnf/offline_dataset.py); the pre-trainer applies it (CnfFlowPretrainer).
inline constexpr double kCnfDatasetActionBound = 1.0 - 2.0 * kCnfFlowEps;
// ActNorm's data-dependent init: log_std = log(std + 1e-6) (cnf/flow/act_norm.py).
inline constexpr double kCnfActNormEps = 1e-6;
// Our floor on the dataset's state std. The reference divides by the raw std, so a constant state
// column (std 0) gives 0/0; 1e-3 is what the same lab's CORL adds to its std, so such a column
// normalises to 0 and an unseen state does not get scaled by 1e6.
inline constexpr double kCnfStateStdFloor = 1e-3;
// The latent actor's clamp of log sigma (cnf/actor_critic.py, TanhActor).
inline constexpr double kCnfLogStdMin = -20.0;
inline constexpr double kCnfLogStdMax = 2.0;

struct CnfFlowConfig {
  int64_t obs_dim = 0;
  int64_t action_dim = 0;  // A, the task's action size
  int64_t layers = 12;     // blocks of ActNorm -> InvertibleLinear -> CouplingLayer
  int64_t hidden = 256;    // width of the coupling nets
  // A frozen flow's PReLUs as leaky_relu on the CPU (the same function, a faster backward); false:
  // LibTorch's prelu always (the straightforward formulation, which the benchmark measures beside).
  bool frozen_prelu_as_leaky_relu = true;

  // D: A rounded up to even (the reference's zero pad for odd A).
  int64_t latent_dim() const { return action_dim + action_dim % 2; }
  absl::Status Validate() const;
};

// s~ = (s - mean) / std with the dataset's statistics as buffers "mean", "std" (S), initially 0 and 1
// (the reference's NormLayer, cnf/flow/norm_state_layer.py).
class CnfStateNormalizerImpl : public torch::nn::Module {
 public:
  explicit CnfStateNormalizerImpl(int64_t obs_dim);
  // Sets the statistics: both (S) and finite, std >= 0 (InvalidArgument naming the problem
  // otherwise; nothing changes then). std is floored at kCnfStateStdFloor.
  absl::Status Set(const at::Tensor& mean, const at::Tensor& std);
  at::Tensor forward(const at::Tensor& obs);

  at::Tensor mean, std;
};
TORCH_MODULE(CnfStateNormalizer);

// y = exp(log_scale) * x + translate per dimension, both initially 0; `initialized` (1) is 0 or 1.
class CnfActNormImpl : public torch::nn::Module {
 public:
  explicit CnfActNormImpl(int64_t dim);
  // (y, log-det (B)).
  std::pair<at::Tensor, at::Tensor> Forward(const at::Tensor& x);
  at::Tensor Inverse(const at::Tensor& y);
  // The reference's forward-mode init from a batch x (B >= 2, D): log_std = log(std(x) + 1e-6)
  // (unbiased std per column), log_scale = -log_std, translate = -mean(x) * exp(-log_std), so that y
  // has zero mean and unit std on x; marks the layer initialised.
  void Initialize(const at::Tensor& x);
  bool initialized() const;

  at::Tensor log_scale, translate, initialized_flag;
};
TORCH_MODULE(CnfActNorm);

// y = x W^T with a full D x D matrix "weight", initialised to the Q of a QR decomposition of a
// standard normal matrix (random orthogonal; LibTorch's current RNG). No LU: det via slogdet.
class CnfInvertibleLinearImpl : public torch::nn::Module {
 public:
  explicit CnfInvertibleLinearImpl(int64_t dim);
  // (y, log|det W| broadcast to (B)).
  std::pair<at::Tensor, at::Tensor> Forward(const at::Tensor& x);
  at::Tensor Inverse(const at::Tensor& y);  // y W^-T

  at::Tensor weight;
};
TORCH_MODULE(CnfInvertibleLinear);

// Affine coupling (RealNVP): x = [x0, x1] (torch.chunk halves, swapped when `parity`); the net
// MLP(D/2 + S -> hidden -> PReLU -> hidden -> PReLU -> D) of [x_keep, s~] gives [raw, t] with a zero
// last layer, log_scale = rescale * tanh(raw) (rescale (D/2) learnable, init 1) and
// y_change = exp(log_scale) * x_change + t.
class CnfCouplingImpl : public torch::nn::Module {
 public:
  CnfCouplingImpl(int64_t dim, int64_t obs_dim, int64_t hidden, bool parity, bool frozen_prelu_as_leaky_relu = true);
  // (y, log-det (B)) for x (B, D) and the normalised state s~ (B, S).
  std::pair<at::Tensor, at::Tensor> Forward(const at::Tensor& x, const at::Tensor& state);
  at::Tensor Inverse(const at::Tensor& y, const at::Tensor& state);
  bool parity() const { return parity_; }

  at::Tensor rescale;
  torch::nn::Sequential net{nullptr};

 private:
  // (log_scale, t) of the kept half.
  std::pair<at::Tensor, at::Tensor> ScaleShift(const at::Tensor& keep, const at::Tensor& state);
  bool parity_;
  bool frozen_prelu_as_leaky_relu_;
};
TORCH_MODULE(CnfCoupling);

// One ActNorm -> InvertibleLinear -> CouplingLayer block; block i has parity (i % 2 == 0).
class CnfBlockImpl : public torch::nn::Module {
 public:
  CnfBlockImpl(const CnfFlowConfig& config, bool parity);

  CnfActNorm act_norm{nullptr};
  CnfInvertibleLinear linear{nullptr};
  CnfCoupling coupling{nullptr};
};
TORCH_MODULE(CnfBlock);

// The conditional flow. Inputs: obs (B, S) and actions (B, A) or latents (B, D) of the module's
// dtype and device; shapes are the caller's contract (TORCH_CHECK on a wrong one).
class CnfFlowImpl : public torch::nn::Module {
 public:
  explicit CnfFlowImpl(const CnfFlowConfig& config);

  // The latent z = f(a, s) (B, D) and log|det dz/da| (B) (the Jacobian w.r.t. the zero-padded
  // action for odd A). Actions beyond +-(1 - 1e-5) are clamped there, as the reference does.
  std::pair<at::Tensor, at::Tensor> Encode(const at::Tensor& action, const at::Tensor& obs);
  // The decoder a = g(z, s) (B, A) for latents z (B, D) (clamped to +-(1 - 1e-5) first); output in
  // [-(1 - 1e-5), 1 - 1e-5]. Differentiable w.r.t. z and obs (and the parameters, unless frozen).
  at::Tensor Decode(const at::Tensor& z, const at::Tensor& obs);
  // Decode with the pad coordinate kept, (B, D): what the reference's RL stage feeds its critics and
  // its L1 loss against the zero-padded dataset action. Equal to Decode for even A.
  at::Tensor DecodePadded(const at::Tensor& z, const at::Tensor& obs);
  // log p(a|s) (B) = Encode's log-det - D log 2.
  at::Tensor LogProb(const at::Tensor& action, const at::Tensor& obs);
  // Actions decoded from z ~ Uniform(-1, 1)^D, drawn with `generator` (nullopt: LibTorch's default
  // one; a CPU generator also serves a CUDA flow), (B, A).
  at::Tensor Sample(const at::Tensor& obs, std::optional<at::Generator> generator = std::nullopt);

  // The reference's data-dependent init (cnf/train_flow.py init_flow_act_norm): passes a batch
  // (B >= 2) through the flow without gradients and initialises every ActNorm from the values that
  // reach it, marking each one initialised. Re-initialises when called again.
  void InitializeActNorm(const at::Tensor& action, const at::Tensor& obs);
  // True when every ActNorm is marked initialised (also after loading weights that say so).
  bool actnorm_initialized() const;
  // Sets the state normaliser (CnfStateNormalizerImpl::Set).
  absl::Status SetStateNormalizer(const at::Tensor& mean, const at::Tensor& std);

  const CnfFlowConfig& config() const { return config_; }

  torch::nn::ModuleList blocks{nullptr};
  std::vector<CnfBlock> typed_blocks;  // typed handles to blocks[i]
  CnfStateNormalizer state_norm{nullptr};

 private:
  at::Tensor Pad(const at::Tensor& action) const;  // (B, A) -> (B, D) with a zero column for odd A
  // Encode's body; with `init_actnorm`, each ActNorm is initialised from its input first.
  std::pair<at::Tensor, at::Tensor> Forward(const at::Tensor& action, const at::Tensor& obs, bool init_actnorm);

  CnfFlowConfig config_;
};
TORCH_MODULE(CnfFlow);

struct CnfPolicyConfig {
  CnfFlowConfig flow;
  int64_t actor_hidden = 256;
  // Linear layers of the latent actor: the reference's run_rl.py uses 4 (its sweep 3 and 4).
  int64_t actor_layers = 4;

  absl::Status Validate() const;
};

// The latent actor (the reference's TanhActor): s~ -> actor_layers Linear (hidden, ReLU between) ->
// (mu, log sigma) (B, D) each, log sigma clamped to [-20, 2]; z = tanh(mu + sigma * eps)
// (reparameterised) or tanh(mu) when deterministic. PyTorch's default Linear init. Names:
// "net.<2k>.weight/bias" (the reference's "_mlp._mlp.<2k>.*") and "state_norm.{mean,std}".
class CnfActorImpl : public torch::nn::Module {
 public:
  explicit CnfActorImpl(const CnfPolicyConfig& config);

  std::pair<at::Tensor, at::Tensor> MeanLogStd(const at::Tensor& obs);
  // The latent (B, D) in [-1, 1]; eps drawn with `generator` (nullopt: LibTorch's default one).
  // Gradients reach the parameters (and obs).
  at::Tensor Latent(const at::Tensor& obs, bool deterministic, std::optional<at::Generator> generator = std::nullopt);
  absl::Status SetStateNormalizer(const at::Tensor& mean, const at::Tensor& std);

  torch::nn::Sequential net{nullptr};
  CnfStateNormalizer state_norm{nullptr};

 private:
  int64_t latent_dim_;
};
TORCH_MODULE(CnfActor);

// The acting policy: the (frozen, pre-trained) flow and the latent actor, "flow.*" and "actor.*".
class CnfPolicyImpl : public torch::nn::Module {
 public:
  explicit CnfPolicyImpl(const CnfPolicyConfig& config);

  // Task actions (B, A) = flow.Decode(actor latent, obs), without recording gradients.
  at::Tensor Act(const at::Tensor& obs, bool deterministic, std::optional<at::Generator> generator = std::nullopt);
  // Sets both modules' state normalisers (the same dataset statistics, as the reference does).
  absl::Status SetStateNormalizer(const at::Tensor& mean, const at::Tensor& std);

  // Every parameter and buffer ("flow.*", "actor.*"), F32, with "meow.algorithm" = "cnf" and the
  // config ("meow.obs_dim", "meow.action_dim", "meow.flow_layers", "meow.flow_hidden",
  // "meow.actor_hidden", "meow.actor_layers") in the metadata.
  SafetensorsFile ExportWeights();
  // Loads ExportWeights' file: the exact key set and shapes, every value finite and each state std
  // > 0 (InvalidArgument naming the tensor otherwise), and the sizes its metadata states equal to
  // this policy's (InvalidArgument naming the key); a file that says it is another algorithm's
  // ("cnf-flow", "sac", MEow's) is refused by name; bare tensors are judged by names and shapes.
  // Nothing is changed on error.
  absl::Status ImportWeights(const SafetensorsFile& file);

  const CnfPolicyConfig& config() const { return config_; }

  CnfFlow flow{nullptr};
  CnfActor actor{nullptr};

 private:
  CnfPolicyConfig config_;
};
TORCH_MODULE(CnfPolicy);

// The flow alone (pre-training checkpoints): its parameters and buffers, F32, with
// "meow.algorithm" = "cnf-flow" and "meow.obs_dim", "meow.action_dim", "meow.flow_layers",
// "meow.flow_hidden".
SafetensorsFile ExportFlowWeights(CnfFlowImpl& flow);
// Loads ExportFlowWeights' file into `flow`, with ImportWeights' checks ("cnf-flow" files; a
// whole policy's "cnf" file is refused by name).
absl::Status ImportFlowWeights(CnfFlowImpl& flow, const SafetensorsFile& file);

// The configs in a weights file's metadata, checked against the tensor shapes; InvalidArgument
// naming the key for anything missing or malformed, or for another algorithm's file.
absl::StatusOr<CnfPolicyConfig> CnfConfigFromWeights(const SafetensorsFile& file);
absl::StatusOr<CnfFlowConfig> CnfFlowConfigFromWeights(const SafetensorsFile& file);

}  // namespace meow
