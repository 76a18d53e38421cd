#include "learner/meow_backward.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <mutex>
#include <tuple>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/utils.h>

namespace meow {
namespace {

constexpr double kActionClip = 1e-5;
constexpr double kLogDetEps = std::numeric_limits<float>::epsilon();

// What an MLP forward keeps for its backward: per hidden layer the layer input, the LayerNorm
// input/statistics, the Swish input and its sigmoid, and the dropout mask.
struct LayerCache {
  at::Tensor input;       // h_{l-1}
  at::Tensor pre_norm;    // W h + b (LayerNorm input), when there is a LayerNorm
  at::Tensor mean, rstd;  // LayerNorm statistics
  at::Tensor swish_in;    // n
  at::Tensor sig;         // sigmoid(beta * n)
  at::Tensor mask;        // dropout mask (scaled), undefined without dropout
};

struct MlpCache {
  std::vector<LayerCache> layers;
  at::Tensor last_input;  // input of the output Linear
};

// True when the fused float loops below may be used on these tensors.
bool FusableCpuFloat(const at::Tensor& t) {
  return t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous();
}

// Swish backward in one pass (float, CPU): with s = sigmoid(beta n) and the upstream gradient g
// (times the dropout mask when there is one),
//   grad_n = g s + beta g n s (1 - s),   grad_beta = sum_rows g n^2 s (1 - s).
// ATen would need about eight passes over the (B, H) operands for the same result.
at::Tensor SwishBackwardFused(const at::Tensor& g, const at::Tensor& mask, const at::Tensor& n, const at::Tensor& sig,
                              const at::Tensor& beta, at::Tensor& grad_beta) {
  const int64_t rows = g.size(0), cols = g.size(1);
  at::Tensor grad_n = at::empty_like(g);
  const at::Tensor gc = g.contiguous();
  const float* gp = gc.data_ptr<float>();
  const float* mp = mask.defined() ? mask.data_ptr<float>() : nullptr;
  const float* np = n.data_ptr<float>();
  const float* sp = sig.data_ptr<float>();
  const float* bp = beta.data_ptr<float>();
  float* out = grad_n.data_ptr<float>();
  std::vector<float> acc(cols, 0.0f);
  float* ap = acc.data();
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t o = i * cols;
    for (int64_t j = 0; j < cols; ++j) {
      const float gj = mp != nullptr ? gp[o + j] * mp[o + j] : gp[o + j];
      const float sj = sp[o + j], nj = np[o + j];
      const float r = gj * nj * sj * (1.0f - sj);
      out[o + j] = gj * sj + r * bp[j];
      ap[j] += r * nj;
    }
  }
  std::copy(acc.begin(), acc.end(), grad_beta.data_ptr<float>());
  return grad_n;
}

// Forward of the reference MLP, recording what the backward needs. `masks` are the dropout masks
// of this MLP's hidden layers (empty: none).
at::Tensor MlpForward(MlpImpl& mlp, const at::Tensor& x_in, const at::Tensor* masks, MlpCache* cache) {
  at::Tensor x = x_in;
  const size_t hidden = mlp.swishes.size();
  cache->layers.resize(hidden);
  for (size_t i = 0; i < hidden; ++i) {
    LayerCache& c = cache->layers[i];
    c.input = x;
    at::Tensor a = at::addmm(mlp.linears[i]->bias, x, mlp.linears[i]->weight.t());
    if (!mlp.norms.empty()) {
      c.pre_norm = a;
      auto& norm = mlp.norms[i];
      std::tie(a, c.mean, c.rstd) =
          at::native_layer_norm(a, {a.size(1)}, norm->weight, norm->bias, norm->options.eps());
    }
    c.swish_in = a;
    c.sig = at::sigmoid(a * mlp.swishes[i]->beta);
    x = a * c.sig;
    if (masks != nullptr) {
      c.mask = masks[i];
      x = x * c.mask;
    }
  }
  cache->last_input = x;
  return at::addmm(mlp.linears.back()->bias, x, mlp.linears.back()->weight.t());
}

// Backward of MlpForward: writes the parameter gradients into their .grad() and returns the
// gradient with respect to the MLP input when `input_grad` is set.
at::Tensor MlpBackward(MlpImpl& mlp, const MlpCache& cache, const at::Tensor& grad_out, bool input_grad) {
  auto& out = mlp.linears.back();
  at::mm_out(out->weight.mutable_grad(), grad_out.t(), cache.last_input);
  at::sum_out(out->bias.mutable_grad(), grad_out, {0});
  at::Tensor g = at::mm(grad_out, out->weight);
  for (size_t i = cache.layers.size(); i-- > 0;) {
    const LayerCache& c = cache.layers[i];
    const at::Tensor& beta = mlp.swishes[i]->beta;
    at::Tensor& grad_beta = mlp.swishes[i]->beta.mutable_grad();
    if (FusableCpuFloat(c.sig) && FusableCpuFloat(grad_beta)) {
      g = SwishBackwardFused(g, c.mask, c.swish_in, c.sig, beta, grad_beta);
    } else {
      if (c.mask.defined()) g = g * c.mask;
      // Swish y = n s, s = sigmoid(beta n): dy/dn = s + beta n s (1 - s); dy/dbeta = n^2 s (1 - s).
      const at::Tensor r = at::sigmoid_backward(g * c.swish_in, c.sig);  // g n s (1 - s)
      at::sum_out(grad_beta, r * c.swish_in, {0});
      g = at::addcmul(g * c.sig, r, beta);
    }
    if (!mlp.norms.empty()) {
      auto& norm = mlp.norms[i];
      at::Tensor gw, gb;
      std::tie(g, gw, gb) = at::native_layer_norm_backward(g, c.pre_norm, {g.size(1)}, c.mean, c.rstd, norm->weight,
                                                           norm->bias, {true, true, true});
      norm->weight.mutable_grad().copy_(gw);
      norm->bias.mutable_grad().copy_(gb);
    }
    auto& linear = mlp.linears[i];
    at::mm_out(linear->weight.mutable_grad(), g.t(), c.input);
    at::sum_out(linear->bias.mutable_grad(), g, {0});
    if (i > 0 || input_grad) g = at::mm(g, linear->weight);
  }
  return input_grad ? g : at::Tensor();
}

}  // namespace

std::vector<at::Tensor> DrawDropoutMasks(const FlowPolicyConfig& config, int64_t rows,
                                         const at::TensorOptions& options) {
  std::vector<at::Tensor> masks;
  if (config.dropout <= 0) return masks;
  const double keep = 1.0 - config.dropout;
  // One tensor for all 8 masks (4 couplings x 2 hidden layers).
  at::Tensor all = at::empty({8, rows, config.flow_hidden}, options);
  if (FusableCpuFloat(all)) {
    // Bernoulli(keep) from 16-bit slices of a SplitMix64 stream seeded by LibTorch's default
    // generator (so torch::manual_seed reproduces it): four draws per 64-bit number instead of
    // one 64-bit Mersenne Twister draw per element, which cost a tenth of an update. The keep
    // probability is quantised to 1/65536 (0.9 becomes 0.899994).
    uint64_t state;
    {
      auto* gen = at::check_generator<at::CPUGeneratorImpl>(at::detail::getDefaultCPUGenerator());
      std::lock_guard<std::mutex> lock(gen->mutex_);
      state = gen->random64();
    }
    const uint32_t threshold = static_cast<uint32_t>(std::lround(keep * 65536.0));
    const float scale = static_cast<float>(1.0 / keep);
    float* p = all.data_ptr<float>();
    const int64_t n = all.numel();
    for (int64_t i = 0; i < n; i += 4) {
      state += 0x9e3779b97f4a7c15ULL;
      uint64_t x = state;
      x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
      x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
      x ^= x >> 31;
      const int64_t count = std::min<int64_t>(4, n - i);
      for (int64_t k = 0; k < count; ++k) {
        p[i + k] = static_cast<float>(((x >> (16 * k)) & 0xffff) < threshold) * scale;
      }
    }
  } else {
    all.bernoulli_(keep).div_(keep);
  }
  for (int i = 0; i < 8; ++i) masks.push_back(all[i]);
  return masks;
}

ManualLoss MeowLossAndGrad(FlowPolicyImpl& policy, FlowPolicyImpl& target, const Batch& batch, double gamma,
                           const std::vector<at::Tensor>& masks, int64_t loss_rows) {
  torch::NoGradGuard no_grad;
  const FlowPolicyConfig& config = policy.config();
  const double alpha = config.alpha;
  const int64_t rows = batch.obs.size(0);
  const at::Tensor& obs = batch.obs;
  ManualLoss out;

  // Target from the target net's sigma-net and shift heads.
  {
    auto [v1, v2] = target.Value(batch.next_obs);
    out.y = batch.reward + gamma * (1 - batch.terminated) * at::minimum(v1, v2);
  }

  // Forward: inverse tanh, inverse couplings 3..0, prior, shift heads. With masks for 2B rows
  // the couplings see the batch twice, [s; s] as the reference stacks it, so that Q_1 (rows
  // 0..B-1) and Q_2 (rows B..2B-1) get independent dropout masks; the sigma-net (no dropout) and
  // the shift heads run once on B rows.
  const bool stacked = !masks.empty() && masks[0].size(0) == 2 * rows;
  const at::Tensor obs_c = stacked ? at::cat({obs, obs}, 0) : obs;
  const at::Tensor action_c = stacked ? at::cat({batch.action, batch.action}, 0) : batch.action;
  const at::Tensor clipped = action_c.clamp(-1.0 + kActionClip, 1.0 - kActionClip);
  const at::Tensor tanh_log_det = at::log(1 - clipped.square() + kLogDetEps).sum(1);
  at::Tensor z = at::atanh(clipped);
  MlpCache coupling_cache[4];
  at::Tensor keep[4], shift_mask[4];  // m_k and 1 - m_k
  for (int k = 3; k >= 0; --k) {
    Coupling& c = policy.couplings[k];
    keep[k] = c->b;
    shift_mask[k] = 1 - c->b;
    const at::Tensor x = at::cat({z * keep[k], obs_c}, 1);
    const at::Tensor t = MlpForward(*c->t, x, masks.empty() ? nullptr : &masks[2 * k], &coupling_cache[k]);
    z = at::addcmul(z, shift_mask[k], t, -1);
  }
  MlpCache sigma_cache;
  const at::Tensor h = MlpForward(*policy.prior->log_scale, obs, nullptr, &sigma_cache);
  const double half_range = 0.5 * (config.sigma_max - config.sigma_min);
  const at::Tensor tanh_h = at::tanh(h);
  const at::Tensor log_sigma = tanh_h * half_range + (config.sigma_min + half_range);
  const at::Tensor inv_sigma = at::exp(-log_sigma);
  const at::Tensor inv_sigma_c = stacked ? at::cat({inv_sigma, inv_sigma}, 0) : inv_sigma;
  const at::Tensor e = z * inv_sigma_c;
  const at::Tensor common = -tanh_log_det - 0.5 * e.square().sum(1);  // (B) or (2B)
  const at::Tensor common1 = stacked ? common.narrow(0, 0, rows) : common;
  const at::Tensor common2 = stacked ? common.narrow(0, rows, rows) : common;
  MlpCache head_cache[2];
  Mlp* heads[2] = {&policy.shift->scale1, &policy.shift->scale2};
  at::Tensor b[2];
  for (int k = 0; k < 2; ++k) b[k] = MlpForward(**heads[k], obs, nullptr, &head_cache[k]).squeeze(1);

  out.q1 = alpha * (b[0] + common1);
  out.q2 = alpha * (b[1] + common2);
  const at::Tensor v_base = log_sigma.sum(1) + config.action_dim * 0.5 * std::log(2 * M_PI);
  out.v1 = alpha * (b[0] + v_base);
  out.v2 = alpha * (b[1] + v_base);
  const at::Tensor d1 = out.q1 - out.y, d2 = out.q2 - out.y;
  // A shard's part of the whole batch's mean: its sum over the whole batch's rows.
  const int64_t denominator = loss_rows > 0 ? loss_rows : rows;
  out.loss = loss_rows > 0 ? 0.5 * (d1.square().sum() + d2.square().sum()) / static_cast<double>(loss_rows)
                           : 0.5 * (d1.square().mean() + d2.square().mean());

  // Backward.
  const at::Tensor g_q1 = d1 / denominator, g_q2 = d2 / denominator;
  MlpBackward(**heads[0], head_cache[0], (alpha * g_q1).unsqueeze(1), /*input_grad=*/false);
  MlpBackward(**heads[1], head_cache[1], (alpha * g_q2).unsqueeze(1), /*input_grad=*/false);
  // dL/dcommon per coupling row: alpha dL/dQ_k of the head the row feeds (both heads unstacked).
  const at::Tensor g_common = (stacked ? at::cat({alpha * g_q1, alpha * g_q2}, 0) : alpha * (g_q1 + g_q2)).unsqueeze(1);
  const at::Tensor g_e = -g_common * e;
  // log sigma -> h: d log_sigma / d h = half_range (1 - tanh(h)^2); stacked rows add up.
  at::Tensor g_log_sigma = -g_e * e;  // g_common e^2
  if (stacked) g_log_sigma = g_log_sigma.narrow(0, 0, rows) + g_log_sigma.narrow(0, rows, rows);
  const at::Tensor g_h = g_log_sigma * half_range * (1 - tanh_h.square());
  MlpBackward(*policy.prior->log_scale, sigma_cache, g_h, /*input_grad=*/false);
  at::Tensor g_z = g_e * inv_sigma_c;
  for (int k = 0; k < 4; ++k) {
    Coupling& c = policy.couplings[k];
    const bool need_input = k < 3;  // z_4 = atanh(a) has no parameters behind it
    const at::Tensor g_x = MlpBackward(*c->t, coupling_cache[k], -shift_mask[k] * g_z, need_input);
    if (need_input) g_z = at::addcmul(g_z, keep[k], g_x.narrow(1, 0, config.action_dim));
  }
  return out;
}

}  // namespace meow
