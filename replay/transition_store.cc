#include "replay/transition_store.h"

#include <algorithm>
#include <cstring>

namespace meow {

TransitionStore::TransitionStore(int obs_dim, int action_dim, int64_t capacity)
    : obs_dim_(obs_dim),
      action_dim_(action_dim),
      capacity_(capacity),
      obs_(static_cast<size_t>(capacity * obs_dim)),
      action_(static_cast<size_t>(capacity * action_dim)),
      reward_(static_cast<size_t>(capacity)),
      next_obs_(static_cast<size_t>(capacity * obs_dim)),
      terminated_(static_cast<size_t>(capacity)) {}

void TransitionStore::Add(absl::Span<const float> obs, absl::Span<const float> action,
                          float reward, absl::Span<const float> next_obs, bool terminated) {
  std::memcpy(&obs_[next_ * obs_dim_], obs.data(), sizeof(float) * obs_dim_);
  std::memcpy(&action_[next_ * action_dim_], action.data(), sizeof(float) * action_dim_);
  reward_[next_] = reward;
  std::memcpy(&next_obs_[next_ * obs_dim_], next_obs.data(), sizeof(float) * obs_dim_);
  terminated_[next_] = terminated ? 1.0f : 0.0f;
  next_ = (next_ + 1) % capacity_;
  size_ = std::min(size_ + 1, capacity_);
  ++total_added_;
}

void TransitionStore::Sample(int64_t batch, std::mt19937_64& rng, float* obs, float* action,
                             float* reward, float* next_obs, float* terminated) const {
  std::uniform_int_distribution<int64_t> pick(0, size_ - 1);
  for (int64_t i = 0; i < batch; ++i) {
    const int64_t j = pick(rng);
    std::memcpy(obs + i * obs_dim_, &obs_[j * obs_dim_], sizeof(float) * obs_dim_);
    std::memcpy(action + i * action_dim_, &action_[j * action_dim_], sizeof(float) * action_dim_);
    reward[i] = reward_[j];
    std::memcpy(next_obs + i * obs_dim_, &next_obs_[j * obs_dim_], sizeof(float) * obs_dim_);
    terminated[i] = terminated_[j];
  }
}

int64_t TransitionStore::bytes() const {
  return static_cast<int64_t>(sizeof(float) *
                              (obs_.size() + action_.size() + reward_.size() + next_obs_.size() +
                               terminated_.size()));
}

}  // namespace meow
