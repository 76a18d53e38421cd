// The straightforward formulation of the MEow update, as the reference Python code computes it:
// the batch stacked twice ([s; s], [a; a]) through the whole flow, the target's V from a full pass
// over [s'; s'] with a = 0 through all couplings, torch::optim::Adam over the parameter list,
// per-tensor clip_grad_norm_ and per-tensor polyak. It is slower by design and is kept as the
// oracle that MeowUpdater is tested against and the baseline it is benchmarked beside.
// Not thread-safe.
#pragma once

#include <memory>

#include <torch/optim/adam.h>

#include "common/flow_policy.h"
#include "learner/meow_update.h"

namespace meow {

// get_qv of the reference on a stacked batch of 2B rows: head b_1 on the first half, b_2 on the
// second, both evaluated on obs[:B]. Returns (q, v), each (2B).
std::pair<at::Tensor, at::Tensor> StackedQV(FlowPolicyImpl& policy, const at::Tensor& obs2, const at::Tensor& action2);

class StraightforwardUpdater {
 public:
  // Starts from a copy of `init` (online and target).
  StraightforwardUpdater(FlowPolicyImpl& init, const MeowUpdateConfig& config);
  // One update; returns the loss (before the step). No validation, no skipping.
  double Step(const Batch& batch);
  FlowPolicy& policy() { return policy_; }
  FlowPolicy& target() { return target_; }

 private:
  MeowUpdateConfig config_;
  FlowPolicy policy_;
  FlowPolicy target_;
  std::unique_ptr<torch::optim::Adam> adam_;
};

}  // namespace meow
