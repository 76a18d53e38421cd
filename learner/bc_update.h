// Plain behaviour cloning, the offline baseline: the policy's deterministic action regressed onto
// the dataset's actions, loss = mean |tanh(mean(s)) - a|^2 (the mean-squared BC of CORL's
// any_percent_bc and TD3+BC's actor term), one Adam step (lr 3e-4) per batch. The network is
// SAC's actor (common/sac_policy.h: 256 x 256, ReLU, tanh-squashed), so its weights are a SAC
// policy file that `meow eval` and the evaluator act with (deterministically: tanh(mean)); the
// file's metadata adds "meow.trained_by" = "bc". Rewards and next states are not used.
// Not thread-safe: the learner loop drives it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/sac_policy.h"
#include "learner/algorithm.h"
#include "learner/q_network.h"

namespace meow {

struct BcUpdateConfig {
  double lr = 3e-4;

  absl::Status Validate() const;
};

class BcUpdater : public Algorithm {
 public:
  static absl::StatusOr<std::unique_ptr<BcUpdater>> Create(const SacPolicyConfig& policy, const BcUpdateConfig& config,
                                                           const c10::Device& device);

  std::string name() const override { return "bc"; }
  const c10::Device& device() const override { return device_; }
  absl::StatusOr<UpdateStats> Update(const Batch& batch) override;
  int64_t updates() const override { return updates_; }
  int64_t skipped_updates() const override { return skipped_; }
  SafetensorsFile ActingWeights() override;
  std::map<std::string, at::Tensor> State() const override;
  std::map<std::string, std::string> StateMetadata() const override;
  absl::Status RestoreState(const std::map<std::string, at::Tensor>& state, int64_t updates,
                            int64_t skipped_updates) override;

 private:
  BcUpdater(const SacPolicyConfig& policy, const BcUpdateConfig& config, const c10::Device& device);
  NamedTensorList NamedTensors() const;

  SacPolicyConfig policy_config_;
  BcUpdateConfig config_;
  c10::Device device_;
  SacActor actor_{nullptr};
  std::vector<at::Tensor> params_;
  std::unique_ptr<AdamState> opt_;
  int64_t updates_ = 0;
  int64_t skipped_ = 0;
};

}  // namespace meow
