// The MEow update for a GPU learner: the whole update (forward, hand-written backward, clip, Adam,
// polyak, the finite check and the statistics) issued without a single host synchronisation,
// captured once as a CUDA graph over static device buffers and replayed.
//
// The update is MeowUpdater's (meow_update.h) with every decision the host used to make moved to
// the device: the Adam step count, its bias corrections and the clip factor are device scalars,
// and a non-finite loss or gradient leaves the weights, the target and the Adam moments as they
// were by a zero step (the gradient is replaced by zeros and the moments' and target's rates by
// 0), not by an early return. The statistics of each launch's last update land in a device
// vector that the host copies back without waiting, every `stats_interval` updates.
//
// Batches come from the host (TakesHostBatches): K = `updates_per_launch` batches are written into
// pinned host memory, sent to the device on a copy stream while the previous launch computes
// (two staging buffers in turn), and one graph launch runs K updates one after another. Weights
// for publishing are copied to pinned host memory on the copy stream.
//
// Without CUDA (a CPU device, or a LibTorch without CUDA) the same device-resident update runs
// eagerly, op for op what the graph records; `capture = false` does the same on a GPU. The tests
// hold that formulation to MeowUpdater on the CPU, and graph replay to it on a GPU.
//
// What callers see: Update returns the statistics of the newest update read back (up to
// stats_interval updates old; zeros before the first readback); updates() counts a skipped update
// once it has been read back; Synchronize waits for every launched update and makes both exact.
// With K > 1, a batch handed to Update is applied when the K-th batch of its launch arrives. The
// checkpoint state is MeowUpdater's ("meow"), so checkpoints move between the two updaters.
// Not thread-safe: one thread (the learner loop) drives it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/flow_policy.h"
#include "learner/algorithm.h"
#include "learner/meow_update.h"

namespace meow {

// True when this build's LibTorch has CUDA, so that a CUDA device can record the update as a graph.
bool CudaGraphsCompiled();

class MeowGraphUpdater : public Algorithm {
 public:
  // The networks and optimiser state are MeowUpdater's, built with `update_config` (which must use
  // the hand-written gradient on one thread; its `graph` says how the updates run) on `device`
  // ("cuda" means the current CUDA device).
  static absl::StatusOr<std::unique_ptr<MeowGraphUpdater>> Create(const FlowPolicyConfig& policy_config,
                                                                  const MeowUpdateConfig& update_config,
                                                                  const c10::Device& device);
  ~MeowGraphUpdater() override;

  // Stages one CPU batch. The first batch fixes the row count (and on a GPU triggers the capture);
  // InvalidArgument for a batch on another device, of another row count or malformed (nothing
  // changes). Internal for a capture that fails (the update is not usable then).
  absl::StatusOr<UpdateStats> Update(const Batch& batch) override;
  void Synchronize() override;
  bool TakesHostBatches() const override { return true; }

  std::string name() const override { return "meow"; }
  const c10::Device& device() const override { return updater_->device(); }
  int64_t updates() const override { return launched_ - read_skipped_; }
  int64_t skipped_updates() const override { return read_skipped_; }
  SafetensorsFile ActingWeights() override;
  std::map<std::string, at::Tensor> State() const override;
  std::map<std::string, std::string> StateMetadata() const override { return updater_->StateMetadata(); }
  absl::Status RestoreState(const std::map<std::string, at::Tensor>& state, int64_t updates,
                            int64_t skipped_updates) override;

  // Whether updates replay a CUDA graph (known after the first launch).
  bool captured() const;
  // The statistics of the newest update read back (what Update returns).
  const UpdateStats& last_stats() const { return stats_; }
  // The networks and flat buffers (read them after Synchronize).
  MeowUpdater& updater() { return *updater_; }

 private:
  struct Cuda;  // streams, events, pinned staging and the graph (CUDA builds only)
  MeowGraphUpdater(std::unique_ptr<MeowUpdater> updater, const GraphUpdateConfig& graph_config);

  // Allocates the static input and staging buffers for batches of `rows`.
  void Allocate(int64_t rows);
  // Writes `batch` into slot `slot` of the host staging buffer of the next launch.
  void Stage(const Batch& batch, int slot);
  // Sends the staged batches to the device and runs K updates on them.
  absl::Status Launch();
  // K device-resident updates on the static input, without host synchronisation: what the graph
  // records.
  void RunUpdates();
  void DeviceUpdate(const Batch& batch, bool last);
  // The static input's batch for update `k` of a launch (views).
  Batch InputBatch(int k) const;
  // Reads the statistics vector (on the CPU) into stats_ and the counters.
  void ParseReadback(const at::Tensor& host);
  // Queues the copy of the statistics vector to the host (CUDA) or reads it (CPU).
  void Readback();
  absl::Status Capture();
  // Runs `f` with the update stream as the current stream (CUDA), so that every op it issues is
  // ordered with the updates; on the CPU it just runs it.
  template <class F>
  void OnUpdateStream(F&& f);

  std::unique_ptr<MeowUpdater> updater_;
  GraphUpdateConfig graph_config_;
  std::unique_ptr<Cuda> cuda_;  // null on the CPU
  int64_t rows_ = 0;            // batch rows, fixed by the first batch
  int64_t row_floats_ = 0;      // floats of one update's batch in the staging layout
  at::Tensor input_;            // (K x row_floats_) on the device: what the updates read
  // Device scalars and the statistics vector, all float64: applied updates (the Adam step count),
  // skipped updates, and [loss, q_mean, v_mean, target_mean, grad_norm, skipped, skipped total]
  // of the last update of a launch.
  at::Tensor applied_, skipped_, readback_;
  int staged_ = 0;              // batches staged for the next launch
  int64_t launches_ = 0;
  int64_t launched_ = 0;        // updates launched in all (applied + skipped), restored ones included
  int64_t since_readback_ = 0;  // updates launched since the last readback was queued
  int64_t read_skipped_ = 0;    // skipped updates as of the newest readback
  UpdateStats stats_;           // of the newest update read back
};

}  // namespace meow
