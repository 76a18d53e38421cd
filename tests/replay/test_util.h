// Helpers shared by the replay tests: batches whose rows identify themselves, so a test can check
// that each stored row is present exactly once.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "common/tensor_codec.h"
#include "proto/transition.pb.h"
#include "replay/table.h"
#include "tests/common/transition_batches.h"

namespace meow::testing {

// (actor, sequence, row) of a row made by MakeBatch, read from its observation.
using RowKey = std::tuple<uint64_t, uint64_t, int>;
inline RowKey KeyOf(const float* obs) {
  return RowKey{static_cast<uint64_t>(obs[0]), static_cast<uint64_t>(obs[1]), static_cast<int>(obs[2])};
}

// How often each row key occurs in a store.
inline std::map<RowKey, int> CountRows(const TransitionStore& store) {
  std::map<RowKey, int> counts;
  std::vector<float> obs(store.obs_dim()), action(store.action_dim()), reward(1), next_obs(store.obs_dim());
  std::vector<uint8_t> terminated(1);
  std::vector<int64_t> version(1);
  for (int64_t age = 0; age < store.size(); ++age) {
    const int64_t slot = store.SlotOfAge(age);
    store.Gather(absl::MakeConstSpan(&slot, 1), obs.data(), action.data(), reward.data(), next_obs.data(),
                 terminated.data(), /*truncated=*/nullptr, version.data());
    ++counts[KeyOf(obs.data())];
  }
  return counts;
}

inline TableConfig HopperTable(int64_t capacity) {
  TableConfig config;
  config.obs_dim = kObsDim;
  config.action_dim = kActionDim;
  config.capacity = capacity;
  config.max_batch_rows = std::min<int64_t>(capacity, 4096);
  return config;
}

}  // namespace meow::testing
