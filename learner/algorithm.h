// The seam between the learner and a training algorithm. The learner loop samples batches from
// replay, calls Update, publishes ActingWeights to actors and the evaluator (who load them into
// their acting policy), and saves State in checkpoints; it knows nothing else of the algorithm.
// MEow (MeowUpdater, meow_update.h) is the first implementation; SAC and SQL implement the same
// interface.
// Not thread-safe: one thread (the learner loop) drives an algorithm.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <string>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/safetensors.h"

namespace meow {

// A batch of B transitions as float32 tensors on the algorithm's device.
struct Batch {
  at::Tensor obs;         // (B, S)
  at::Tensor action;      // (B, A), in [-1, 1]
  at::Tensor reward;      // (B)
  at::Tensor next_obs;    // (B, S)
  at::Tensor terminated;  // (B), 1 for true termination, 0 otherwise (truncation is 0)
};

// What an update reports (metrics.csv's loss, q_mean, v_mean, grad_norm columns).
struct UpdateStats {
  double loss = 0;
  double q_mean = 0;       // mean of the Q heads over the batch
  double v_mean = 0;       // mean of the soft values of the online net on s
  double target_mean = 0;  // mean of the regression target y
  double grad_norm = 0;    // before clipping
  bool skipped = false;    // true when the loss or gradient was not finite
  // The temperature the update used (SAC's after its step, learned; MEow's alpha; SQL's
  // 1 / reward_scale) and, where the algorithm estimates it, the policy's entropy -mean log pi(a|s)
  // of its own samples (SAC). NaN where it does not apply (metrics.csv's alpha and entropy).
  double alpha = std::numeric_limits<double>::quiet_NaN();
  double entropy = std::numeric_limits<double>::quiet_NaN();
};

class Algorithm {
 public:
  virtual ~Algorithm() = default;

  // The algorithm's name, recorded in checkpoints ("meow"); a checkpoint of another is refused.
  virtual std::string name() const = 0;
  virtual const c10::Device& device() const = 0;

  // One update. InvalidArgument for a malformed batch (nothing changes); a non-finite loss or
  // gradient never reaches the weights (the update is skipped, counted and reported as skipped).
  virtual absl::StatusOr<UpdateStats> Update(const Batch& batch) = 0;
  virtual int64_t updates() const = 0;          // applied
  virtual int64_t skipped_updates() const = 0;  // non-finite, skipped

  // An algorithm may run its updates asynchronously (the CUDA-graph learner): Update then returns
  // the statistics of an earlier update, and the counters above learn of a skipped update late.
  // Synchronize waits until every update handed to Update has reached the weights and makes the
  // counters exact; State and ActingWeights always see every update handed in. Synchronous
  // algorithms have nothing to wait for.
  virtual void Synchronize() {}
  // Where Update wants its batches: on device() (false, the default), or on the CPU (true) when the
  // algorithm stages them onto its device itself.
  virtual bool TakesHostBatches() const { return false; }

  // The weights actors and the evaluator act with, as published (names, shapes and the metadata
  // their acting policy is built from).
  virtual SafetensorsFile ActingWeights() = 0;

  // Everything a checkpoint keeps to continue exactly where it stopped: named tensors (on any
  // device) and metadata describing them. RestoreState copies them back after checking each by
  // name (an error naming the tensor when one is missing or does not fit; nothing changes then).
  virtual std::map<std::string, at::Tensor> State() const = 0;
  virtual std::map<std::string, std::string> StateMetadata() const = 0;
  virtual absl::Status RestoreState(const std::map<std::string, at::Tensor>& state, int64_t updates,
                                    int64_t skipped_updates) = 0;
};

}  // namespace meow
