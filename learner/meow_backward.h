// The MEow loss and its gradient written out by hand, for the learner's hot path.
//
// MeowUpdater could let autograd differentiate MeowLoss(); this computes the same loss and the
// same gradient with plain ATen calls and no autograd graph (a few hundred small ops whose
// bookkeeping cost more than their arithmetic at batch 256), and writes each parameter's gradient
// straight into its .grad() (the updater's flat gradient buffer). The coupling nets' dropout
// masks are inputs, so tests can replay them through autograd.
//
// Gradient of the loss L = 1/2 (mean (Q_1 - y)^2 + mean (Q_2 - y)^2), with
// Q_k = alpha (b_k(s) + c), c = -sum log(1 - a~^2 + eps) - 1/2 sum (z / sigma)^2:
//   dL/dQ_k = (Q_k - y) / B; dL/db_k = alpha dL/dQ_k; dL/dc = alpha (dL/dQ_1 + dL/dQ_2);
//   with e = z / sigma: dL/dz = -dL/dc e / sigma and dL/dlog(sigma) = dL/dc e^2;
//   through the inverse couplings z_k = z_{k+1} - (1 - m_k) t_k([m_k z_{k+1}, s]) from k = 0 up.
// Thread-safety: none; the caller owns the networks for the call.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include "common/flow_policy.h"
#include "learner/meow_update.h"

namespace meow {

// Dropout masks for the coupling nets in the update: for each of the 4 couplings, one
// (rows, hidden) mask per hidden layer, holding 0 or 1/(1-p). Empty when dropout is 0 (or for
// eval mode). rows = 2B gives the two Q heads independent masks (see MeowLossAndGrad).
std::vector<at::Tensor> DrawDropoutMasks(const FlowPolicyConfig& config, int64_t rows,
                                         const at::TensorOptions& options);

struct ManualLoss {
  at::Tensor loss;            // scalar
  at::Tensor q1, q2, v1, v2;  // (B), online net
  at::Tensor y;               // (B), the TD target
};

// Loss and gradient of `policy` (train-mode semantics given by `masks`) against `target`.
// Masks of B rows are shared by Q_1 and Q_2; masks of 2B rows run the couplings on [s; s] as the
// reference's get_qv does, Q_1 from the first B rows and Q_2 from the second.
// Every parameter of `policy` must have a defined .grad() of its shape; it is overwritten.
// `loss_rows` > 0: the batch is a shard of a batch of that many rows (the data-parallel update);
// the loss and gradient are this shard's part of the whole batch's (its sums over
// `loss_rows`), so that the shards' losses and gradients add up to the whole batch's.
ManualLoss MeowLossAndGrad(FlowPolicyImpl& policy, FlowPolicyImpl& target, const Batch& batch, double gamma,
                           const std::vector<at::Tensor>& masks, int64_t loss_rows = 0);

}  // namespace meow
