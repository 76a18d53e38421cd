// Transition batches with recognisable rows, for tests of the wire codec and of replay.
#pragma once

#include <cstdint>
#include <vector>

#include "common/tensor_codec.h"
#include "proto/transition.pb.h"

namespace meow::testing {

inline constexpr int kObsDim = 11;  // Hopper
inline constexpr int kActionDim = 3;

// Row r of the batch has obs[0] = actor, obs[1] = sequence, obs[2] = r, next_obs = obs + 0.5,
// action[i] = (r % 5) / 5 - 0.5 + i / 10, reward = r, terminated = r % 7 == 0,
// policy_version = sequence.
inline proto::TransitionBatch MakeBatch(uint64_t actor, uint64_t sequence, int rows, int obs_dim = kObsDim,
                                        int action_dim = kActionDim) {
  std::vector<float> obs(rows * obs_dim), next_obs(rows * obs_dim), action(rows * action_dim), reward(rows);
  std::vector<uint8_t> terminated(rows);
  for (int r = 0; r < rows; ++r) {
    for (int i = 0; i < obs_dim; ++i) obs[r * obs_dim + i] = 0.25f * i;
    if (obs_dim > 0) obs[r * obs_dim] = static_cast<float>(actor);
    if (obs_dim > 1) obs[r * obs_dim + 1] = static_cast<float>(sequence);
    if (obs_dim > 2) obs[r * obs_dim + 2] = static_cast<float>(r);
    for (int i = 0; i < obs_dim; ++i) next_obs[r * obs_dim + i] = obs[r * obs_dim + i] + 0.5f;
    for (int i = 0; i < action_dim; ++i) {
      action[r * action_dim + i] = (r % 5) / 5.0f - 0.5f + i / 10.0f;
    }
    reward[r] = static_cast<float>(r);
    terminated[r] = r % 7 == 0;
  }
  proto::TransitionBatch batch = MakeTransitionBatch(obs_dim, action_dim, obs, action, reward, next_obs, terminated,
                                                     static_cast<int64_t>(sequence));
  batch.set_actor_id(actor);
  batch.set_sequence_number(sequence);
  return batch;
}

}  // namespace meow::testing
