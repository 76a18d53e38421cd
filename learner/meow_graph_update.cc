#include "learner/meow_graph_update.h"

#include <cmath>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <torch/cuda.h>
#include <torch/utils.h>

#include "absl/strings/str_cat.h"
#include "learner/build_config.h"
#include "learner/meow_backward.h"

#if MEOW_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace meow {
namespace {

// Eager launches on the capture stream before the capture (cuBLAS handles and workspaces, the
// caching allocator, lazily loaded kernels); their effect on the weights is undone.
constexpr int kWarmupLaunches = 3;
// The statistics vector: MeowUpdater's summary (UpdateSummary), then whether that update was
// skipped and the skipped updates in all.
constexpr int64_t kReadbackSize = kUpdateSummarySize + 2;
constexpr int64_t kSkippedAt = kUpdateSummarySize, kSkippedTotalAt = kUpdateSummarySize + 1;

}  // namespace

bool CudaGraphsCompiled() { return MEOW_WITH_CUDA != 0; }

#if MEOW_WITH_CUDA
struct MeowGraphUpdater::Cuda {
  explicit Cuda(c10::DeviceIndex index)
      : update_stream(c10::cuda::getStreamFromPool(/*isHighPriority=*/false, index)),
        copy_stream(c10::cuda::getStreamFromPool(/*isHighPriority=*/false, index)) {}

  c10::cuda::CUDAStream update_stream;  // the updates, the graph's capture and replays
  c10::cuda::CUDAStream copy_stream;    // host-to-device batches, device-to-host weights
  std::unique_ptr<at::cuda::CUDAGraph> graph;
  // Two staging buffers in turn: pinned host memory and its device copy. staged[i]: device_stage[i]
  // holds the host's batches; consumed[i]: the update stream has copied them into the input.
  at::Tensor host_stage[2], device_stage[2];
  at::cuda::CUDAEvent staged[2], consumed[2];
  at::Tensor readback_host;  // pinned
  at::cuda::CUDAEvent readback_done;
  bool readback_pending = false;
  // The published weights: a CPU network whose parameters are views of a pinned buffer that the
  // copy stream fills from the online parameters.
  FlowPolicy mirror{nullptr};
  at::Tensor weights_host;
  at::cuda::CUDAEvent weights_ready, weights_copied;
};
#else
struct MeowGraphUpdater::Cuda {};
#endif

template <class F>
void MeowGraphUpdater::OnUpdateStream(F&& f) {
#if MEOW_WITH_CUDA
  if (cuda_ != nullptr) {
    c10::cuda::CUDAStreamGuard guard(cuda_->update_stream);
    f();
    return;
  }
#endif
  f();
}

absl::StatusOr<std::unique_ptr<MeowGraphUpdater>> MeowGraphUpdater::Create(const FlowPolicyConfig& policy_config,
                                                                           const MeowUpdateConfig& update_config,
                                                                           const c10::Device& device) {
  if (absl::Status s = update_config.Validate(); !s.ok()) return s;
  if (!update_config.manual_backward) {
    return absl::InvalidArgumentError("the device-resident update needs the hand-written gradient (manual_backward)");
  }
  if (update_config.threads != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "learner threads > 1 split the batch across CPU threads; on cuda the update takes 1 (got ",
        update_config.threads, ")"));
  }
  c10::Device resolved = device;
  if (device.is_cuda()) {
#if MEOW_WITH_CUDA
    if (!torch::cuda::is_available()) return absl::FailedPreconditionError("no CUDA device is available");
    if (!device.has_index()) resolved = c10::Device(c10::kCUDA, c10::cuda::current_device());
#else
    return absl::FailedPreconditionError(
        "this build's LibTorch has no CUDA (build against a CUDA LibTorch for a GPU learner)");
#endif
  } else if (!device.is_cpu()) {
    return absl::InvalidArgumentError(absl::StrCat("the device-resident update runs on cpu or cuda, not ", device.str()));
  }
  auto updater = MeowUpdater::Create(policy_config, update_config, resolved);
  if (!updater.ok()) return updater.status();
  return std::unique_ptr<MeowGraphUpdater>(new MeowGraphUpdater(*std::move(updater), update_config.graph));
}

MeowGraphUpdater::MeowGraphUpdater(std::unique_ptr<MeowUpdater> updater, const GraphUpdateConfig& graph_config)
    : updater_(std::move(updater)), graph_config_(graph_config) {
  const auto doubles = at::TensorOptions().dtype(at::kDouble).device(device());
  applied_ = at::zeros({}, doubles);
  skipped_ = at::zeros({}, doubles);
  readback_ = at::zeros({kReadbackSize}, doubles);
  stats_.alpha = updater_->policy_config().alpha;
#if MEOW_WITH_CUDA
  if (device().is_cuda()) {
    cuda_ = std::make_unique<Cuda>(device().index());
    Cuda& cu = *cuda_;
    const auto pinned = at::TensorOptions().dtype(at::kFloat).pinned_memory(true);
    cu.readback_host = at::zeros({kReadbackSize}, at::TensorOptions().dtype(at::kDouble).pinned_memory(true));
    cu.mirror = FlowPolicy(updater_->policy_config());
    cu.mirror->CopyWeightsFrom(*updater_->policy());  // the coupling masks (buffers) too
    cu.mirror->eval();
    cu.weights_host = at::empty({updater_->flat_params().numel()}, pinned);
    MeowUpdater::Flatten(*cu.mirror, at::Tensor(), cu.weights_host);
    // Everything above ran on the default stream; the updates run on streams of their own.
    c10::cuda::getCurrentCUDAStream(device().index()).synchronize();
  }
#endif
}

MeowGraphUpdater::~MeowGraphUpdater() {
#if MEOW_WITH_CUDA
  if (cuda_ != nullptr) {
    cuda_->update_stream.synchronize();
    cuda_->copy_stream.synchronize();
  }
#endif
}

bool MeowGraphUpdater::captured() const {
#if MEOW_WITH_CUDA
  return cuda_ != nullptr && cuda_->graph != nullptr;
#else
  return false;
#endif
}

void MeowGraphUpdater::Allocate(int64_t rows) {
  const FlowPolicyConfig& pc = updater_->policy_config();
  rows_ = rows;
  row_floats_ = rows * (2 * pc.obs_dim + pc.action_dim + 2);
  const int64_t floats = graph_config_.updates_per_launch * row_floats_;
  // Empty, not zeros: nothing is issued on another stream before the first copy fills them.
  input_ = at::empty({floats}, at::TensorOptions().dtype(at::kFloat).device(device()));
#if MEOW_WITH_CUDA
  if (cuda_ != nullptr) {
    for (int i = 0; i < 2; ++i) {
      cuda_->host_stage[i] = at::empty({floats}, at::TensorOptions().dtype(at::kFloat).pinned_memory(true));
      cuda_->device_stage[i] = at::empty_like(input_);
    }
  }
#endif
}

Batch MeowGraphUpdater::InputBatch(int k) const {
  const FlowPolicyConfig& pc = updater_->policy_config();
  const at::Tensor base = input_.narrow(0, k * row_floats_, row_floats_);
  int64_t offset = 0;
  auto take = [&](std::vector<int64_t> shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    at::Tensor t = base.narrow(0, offset, n).view(shape);
    offset += n;
    return t;
  };
  Batch b;
  b.obs = take({rows_, pc.obs_dim});
  b.action = take({rows_, pc.action_dim});
  b.reward = take({rows_});
  b.next_obs = take({rows_, pc.obs_dim});
  b.terminated = take({rows_});
  return b;
}

void MeowGraphUpdater::Stage(const Batch& batch, int slot) {
  at::Tensor stage = input_;  // on the CPU the batches go straight into the input
#if MEOW_WITH_CUDA
  if (cuda_ != nullptr) {
    const int i = static_cast<int>(launches_ % 2);
    // The copy out of this pinned buffer, two launches ago, must be done before it is rewritten.
    if (slot == 0) cuda_->staged[i].synchronize();
    stage = cuda_->host_stage[i];
  }
#endif
  // The staging layout of one update: obs, action, reward, next_obs, terminated, each contiguous.
  int64_t offset = slot * row_floats_;
  for (const at::Tensor* column : {&batch.obs, &batch.action, &batch.reward, &batch.next_obs, &batch.terminated}) {
    const int64_t n = column->numel();
    stage.narrow(0, offset, n).view(column->sizes()).copy_(*column);
    offset += n;
  }
}

absl::StatusOr<UpdateStats> MeowGraphUpdater::Update(const Batch& batch) {
  const FlowPolicyConfig& pc = updater_->policy_config();
  if (absl::Status s = ValidateBatch(batch, pc.obs_dim, pc.action_dim, at::kCPU); !s.ok()) return s;
  const int64_t rows = batch.obs.size(0);
  if (rows_ == 0) {
    OnUpdateStream([&] { Allocate(rows); });
  } else if (rows != rows_) {
    return absl::InvalidArgumentError(absl::StrCat("batch has ", rows, " rows; this learner's update was set up for ",
                                                   rows_, " rows by its first batch"));
  }
#if MEOW_WITH_CUDA
  // A readback that has arrived is taken without waiting.
  if (cuda_ != nullptr && cuda_->readback_pending && cuda_->readback_done.query()) {
    cuda_->readback_pending = false;
    ParseReadback(cuda_->readback_host);
  }
#endif
  Stage(batch, staged_);
  if (++staged_ < graph_config_.updates_per_launch) return stats_;
  staged_ = 0;
  if (absl::Status s = Launch(); !s.ok()) return s;
  return stats_;
}

absl::Status MeowGraphUpdater::Launch() {
  const int k = graph_config_.updates_per_launch;
#if MEOW_WITH_CUDA
  if (cuda_ != nullptr) {
    Cuda& cu = *cuda_;
    const int i = static_cast<int>(launches_ % 2);
    {
      // The batches go to the device on the copy stream, while the update stream computes.
      c10::cuda::CUDAStreamGuard guard(cu.copy_stream);
      cu.consumed[i].block(cu.copy_stream);
      cu.device_stage[i].copy_(cu.host_stage[i], /*non_blocking=*/true);
      cu.staged[i].record(cu.copy_stream);
    }
    c10::cuda::CUDAStreamGuard guard(cu.update_stream);
    cu.staged[i].block(cu.update_stream);
    input_.copy_(cu.device_stage[i], /*non_blocking=*/true);
    cu.consumed[i].record(cu.update_stream);
    if (graph_config_.capture && cu.graph == nullptr) {
      if (absl::Status s = Capture(); !s.ok()) return s;
    }
    if (cu.graph != nullptr) {
      cu.graph->replay();
    } else {
      RunUpdates();
    }
  } else {
    RunUpdates();
  }
#else
  RunUpdates();
#endif
  ++launches_;
  launched_ += k;
  since_readback_ += k;
  if (since_readback_ >= graph_config_.stats_interval) {
    since_readback_ = 0;
    Readback();
  }
  return absl::OkStatus();
}

absl::Status MeowGraphUpdater::Capture() {
#if MEOW_WITH_CUDA
  Cuda& cu = *cuda_;
  c10::cuda::CUDAStreamGuard guard(cu.update_stream);
  MeowUpdater& u = *updater_;
  try {
    const std::vector<at::Tensor> live = {u.flat_params(), u.flat_target(), u.adam_m(), u.adam_v(),
                                          applied_,        skipped_,        readback_};
    std::vector<at::Tensor> saved;
    for (const at::Tensor& t : live) saved.push_back(t.clone());
    for (int i = 0; i < kWarmupLaunches; ++i) RunUpdates();
    for (size_t i = 0; i < live.size(); ++i) live[i].copy_(saved[i]);
    cu.graph = std::make_unique<at::cuda::CUDAGraph>();
    cu.graph->capture_begin();
    RunUpdates();  // recorded, not run
    cu.graph->capture_end();
  } catch (const c10::Error& e) {
    cu.graph.reset();
    return absl::InternalError(
        absl::StrCat("capturing the MEow update as a CUDA graph failed (--cuda_graph=false runs it without): ",
                     e.what_without_backtrace()));
  }
#endif
  return absl::OkStatus();
}

void MeowGraphUpdater::RunUpdates() {
  const int k = graph_config_.updates_per_launch;
  for (int i = 0; i < k; ++i) DeviceUpdate(InputBatch(i), /*last=*/i == k - 1);
}

void MeowGraphUpdater::DeviceUpdate(const Batch& batch, bool last) {
  MeowUpdater& u = *updater_;
  const MeowUpdateConfig& c = u.config();
  const int64_t mask_rows = (c.independent_head_dropout ? 2 : 1) * rows_;
  const std::vector<at::Tensor> masks = DrawDropoutMasks(u.policy_config(), mask_rows, batch.obs.options());
  const ManualLoss loss = MeowLossAndGrad(*u.policy(), *u.target(), batch, c.gamma, masks);
  torch::NoGradGuard no_grad;

  // The finite check, as a flag on the device: 1 applies the step, 0 makes it a zero step.
  const at::Tensor& grads = u.flat_grads();
  const at::Tensor norm = grads.norm();
  const at::Tensor finite = at::logical_and(at::isfinite(loss.loss), at::isfinite(norm));
  const at::Tensor applies = finite.to(at::kDouble);
  applied_.add_(applies);
  skipped_.add_(1.0).sub_(applies);

  // The step's scalars in double, as MeowUpdater computes them on the host, then one float vector:
  // the clip factor (clip_grad_norm_'s max_norm / (norm + 1e-6), at most 1), the moments' rates,
  // the step size lr / bias1, 1 / sqrt(bias2) and the target's rate. A skipped step has rates 0.
  const auto doubles = applied_.options();
  const at::Tensor clip = c.grad_clip > 0
                              ? at::full({}, c.grad_clip, doubles).div_(norm.to(at::kDouble).add_(1e-6)).clamp_max_(1.0)
                              : at::ones({}, doubles);
  const at::Tensor step = applied_.clamp_min(1.0);  // a skipped first step divides by nothing
  const at::Tensor bias1 = at::pow(c.adam_beta1, step).neg_().add_(1.0);
  const at::Tensor bias2 = at::pow(c.adam_beta2, step).neg_().add_(1.0);
  const at::Tensor coef = at::stack({clip, applies * (1 - c.adam_beta1), applies * (1 - c.adam_beta2),
                                     applies * c.lr / bias1, bias2.rsqrt(), applies * c.tau})
                              .to(at::kFloat);

  // Adam (PyTorch's formulation) and polyak as whole-buffer ops. lerp(x, y, w) = x + w (y - x):
  // m = b1 m + (1 - b1) g and likewise v; with rate 0 they stay as they are.
  const at::Tensor g = at::where(finite, grads * coef[0], 0.0);
  u.adam_m().lerp_(g, coef[1]);
  u.adam_v().lerp_(g.square(), coef[2]);
  const at::Tensor denom = u.adam_v().sqrt().mul_(coef[4]).add_(c.adam_eps);
  u.flat_params().sub_(u.adam_m().mul(coef[3]).div_(denom));
  u.flat_target().lerp_(u.flat_params(), coef[5]);

  if (last) {
    const QVResult qv{loss.q1, loss.q2, loss.v1, loss.v2};
    readback_.copy_(at::cat({UpdateSummary(loss.loss, qv, loss.y, norm), at::stack({1 - applies, skipped_})}));
  }
}

void MeowGraphUpdater::ParseReadback(const at::Tensor& host) {
  const at::Tensor values = host.contiguous();
  const double* v = values.data_ptr<double>();
  stats_ = UpdateStatsFromSummary(v, updater_->policy_config().alpha);
  stats_.skipped = v[kSkippedAt] > 0.5;
  read_skipped_ = std::llround(v[kSkippedTotalAt]);
}

void MeowGraphUpdater::Readback() {
#if MEOW_WITH_CUDA
  if (cuda_ != nullptr) {
    Cuda& cu = *cuda_;
    if (cu.readback_pending) {  // queued stats_interval updates ago: long done
      cu.readback_done.synchronize();
      ParseReadback(cu.readback_host);
    }
    c10::cuda::CUDAStreamGuard guard(cu.update_stream);
    cu.readback_host.copy_(readback_, /*non_blocking=*/true);
    cu.readback_done.record(cu.update_stream);
    cu.readback_pending = true;
    return;
  }
#endif
  ParseReadback(readback_);
}

void MeowGraphUpdater::Synchronize() {
#if MEOW_WITH_CUDA
  if (cuda_ != nullptr) {
    cuda_->update_stream.synchronize();
    cuda_->copy_stream.synchronize();
    cuda_->readback_pending = false;
    if (launches_ > 0) ParseReadback(readback_.cpu());
    return;
  }
#endif
  if (launches_ > 0) ParseReadback(readback_);
}

SafetensorsFile MeowGraphUpdater::ActingWeights() {
#if MEOW_WITH_CUDA
  if (cuda_ != nullptr) {
    // The online parameters after every launched update, copied to the host on the copy stream.
    Cuda& cu = *cuda_;
    cu.weights_ready.record(cu.update_stream);
    {
      c10::cuda::CUDAStreamGuard guard(cu.copy_stream);
      cu.weights_ready.block(cu.copy_stream);
      cu.weights_host.copy_(updater_->flat_params(), /*non_blocking=*/true);
      cu.weights_copied.record(cu.copy_stream);
    }
    cu.weights_copied.synchronize();
    return cu.mirror->ExportWeights();
  }
#endif
  return updater_->ActingWeights();
}

std::map<std::string, at::Tensor> MeowGraphUpdater::State() const {
#if MEOW_WITH_CUDA
  // The caller copies these on its own stream: every queued update must have landed.
  if (cuda_ != nullptr) cuda_->update_stream.synchronize();
#endif
  return updater_->State();
}

absl::Status MeowGraphUpdater::RestoreState(const std::map<std::string, at::Tensor>& state, int64_t updates,
                                            int64_t skipped_updates) {
  Synchronize();
  absl::Status status;
  OnUpdateStream([&] {
    status = updater_->RestoreState(state, updates, skipped_updates);
    if (!status.ok()) return;
    applied_.fill_(static_cast<double>(updates));
    skipped_.fill_(static_cast<double>(skipped_updates));
    readback_.zero_();
    readback_[kSkippedTotalAt].fill_(static_cast<double>(skipped_updates));
  });
  if (!status.ok()) return status;
  launched_ = updates + skipped_updates;
  read_skipped_ = skipped_updates;
  return absl::OkStatus();
}

}  // namespace meow
