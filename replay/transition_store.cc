#include "replay/transition_store.h"

#include <algorithm>
#include <cstring>

namespace meow {

TransitionStore::TransitionStore(int obs_dim, int action_dim, int64_t capacity)
    : TransitionStore(obs_dim, action_dim, capacity, /*allocate=*/true) {}

TransitionStore::TransitionStore(int obs_dim, int action_dim, int64_t capacity, bool allocate)
    : obs_dim_(obs_dim), action_dim_(action_dim), capacity_(capacity) {
  if (!allocate) return;  // CompactCopy fills the columns itself
  obs_.resize(static_cast<size_t>(capacity * obs_dim));
  action_.resize(static_cast<size_t>(capacity * action_dim));
  reward_.resize(static_cast<size_t>(capacity));
  next_obs_.resize(static_cast<size_t>(capacity * obs_dim));
  terminated_.resize(static_cast<size_t>(capacity));
  policy_version_.resize(static_cast<size_t>(capacity));
  truncated_.resize(static_cast<size_t>(capacity));
}

void TransitionStore::Add(absl::Span<const float> obs, absl::Span<const float> action, float reward,
                          absl::Span<const float> next_obs, bool terminated, bool truncated) {
  std::memcpy(&obs_[next_ * obs_dim_], obs.data(), sizeof(float) * obs_dim_);
  std::memcpy(&action_[next_ * action_dim_], action.data(), sizeof(float) * action_dim_);
  reward_[next_] = reward;
  std::memcpy(&next_obs_[next_ * obs_dim_], next_obs.data(), sizeof(float) * obs_dim_);
  terminated_[next_] = terminated ? 1.0f : 0.0f;
  truncated_[next_] = truncated ? 1 : 0;
  policy_version_[next_] = 0;
  next_ = (next_ + 1) % capacity_;
  size_ = std::min(size_ + 1, capacity_);
  ++total_added_;
}

int64_t TransitionStore::AddRows(int64_t rows, const void* obs, const void* action, const void* reward,
                                 const void* next_obs, const uint8_t* terminated, const uint8_t* truncated,
                                 const void* policy_versions, int64_t policy_version) {
  const int64_t first = next_;
  const auto* obs_bytes = static_cast<const char*>(obs);
  const auto* action_bytes = static_cast<const char*>(action);
  const auto* reward_bytes = static_cast<const char*>(reward);
  const auto* next_obs_bytes = static_cast<const char*>(next_obs);
  const auto* version_bytes = static_cast<const char*>(policy_versions);
  // At most two contiguous runs: up to the end of the ring, then from slot 0.
  int64_t done = 0;
  while (done < rows) {
    const int64_t run = std::min(rows - done, capacity_ - next_);
    std::memcpy(&obs_[next_ * obs_dim_], obs_bytes + done * obs_dim_ * sizeof(float), sizeof(float) * obs_dim_ * run);
    std::memcpy(&action_[next_ * action_dim_], action_bytes + done * action_dim_ * sizeof(float),
                sizeof(float) * action_dim_ * run);
    std::memcpy(&reward_[next_], reward_bytes + done * sizeof(float), sizeof(float) * run);
    std::memcpy(&next_obs_[next_ * obs_dim_], next_obs_bytes + done * obs_dim_ * sizeof(float),
                sizeof(float) * obs_dim_ * run);
    for (int64_t i = 0; i < run; ++i) terminated_[next_ + i] = terminated[done + i] ? 1.0f : 0.0f;
    for (int64_t i = 0; i < run; ++i) truncated_[next_ + i] = truncated != nullptr && truncated[done + i] ? 1 : 0;
    if (version_bytes != nullptr) {
      std::memcpy(&policy_version_[next_], version_bytes + done * sizeof(int64_t), sizeof(int64_t) * run);
    } else {
      std::fill_n(&policy_version_[next_], run, policy_version);
    }
    done += run;
    next_ = (next_ + run) % capacity_;
  }
  size_ = std::min(size_ + rows, capacity_);
  total_added_ += rows;
  return first;
}

void TransitionStore::Sample(int64_t batch, std::mt19937_64& rng, float* obs, float* action, float* reward,
                             float* next_obs, float* terminated) const {
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

void TransitionStore::Gather(absl::Span<const int64_t> slots, void* obs, void* action, void* reward, void* next_obs,
                             uint8_t* terminated, uint8_t* truncated, void* policy_versions) const {
  auto* obs_out = static_cast<char*>(obs);
  auto* action_out = static_cast<char*>(action);
  auto* reward_out = static_cast<char*>(reward);
  auto* next_obs_out = static_cast<char*>(next_obs);
  auto* version_out = static_cast<char*>(policy_versions);
  const size_t obs_bytes = sizeof(float) * obs_dim_;
  const size_t action_bytes = sizeof(float) * action_dim_;
  for (size_t i = 0; i < slots.size(); ++i) {
    const int64_t j = slots[i];
    std::memcpy(obs_out + i * obs_bytes, &obs_[j * obs_dim_], obs_bytes);
    std::memcpy(action_out + i * action_bytes, &action_[j * action_dim_], action_bytes);
    std::memcpy(reward_out + i * sizeof(float), &reward_[j], sizeof(float));
    std::memcpy(next_obs_out + i * obs_bytes, &next_obs_[j * obs_dim_], obs_bytes);
    terminated[i] = terminated_[j] != 0.0f ? 1 : 0;
    if (truncated != nullptr) truncated[i] = truncated_[j];
    std::memcpy(version_out + i * sizeof(int64_t), &policy_version_[j], sizeof(int64_t));
  }
}

TransitionStore TransitionStore::CompactCopy() const {
  TransitionStore copy(obs_dim_, action_dim_, std::max<int64_t>(size_, 1), /*allocate=*/false);
  // The rows are one or two contiguous runs of the ring: [oldest, end) and [0, next_). Appending
  // them to empty vectors copies each byte once (no zero fill first).
  const int64_t oldest = size_ < capacity_ ? 0 : next_;
  const int64_t first_run = std::min(size_, capacity_ - oldest);
  auto copy_column = [&](const auto& src, auto& dst, int64_t width) {
    dst.reserve(static_cast<size_t>(copy.capacity_ * width));
    dst.insert(dst.end(), src.begin() + oldest * width, src.begin() + (oldest + first_run) * width);
    dst.insert(dst.end(), src.begin(), src.begin() + (size_ - first_run) * width);
    dst.resize(static_cast<size_t>(copy.capacity_ * width));
  };
  copy_column(obs_, copy.obs_, obs_dim_);
  copy_column(action_, copy.action_, action_dim_);
  copy_column(reward_, copy.reward_, 1);
  copy_column(next_obs_, copy.next_obs_, obs_dim_);
  copy_column(terminated_, copy.terminated_, 1);
  copy_column(policy_version_, copy.policy_version_, 1);
  copy_column(truncated_, copy.truncated_, 1);
  copy.size_ = size_;
  copy.next_ = size_ % copy.capacity_;
  copy.total_added_ = total_added_;
  return copy;
}

void TransitionStore::CopyOldestFirstTo(TransitionStore& dst) const {
  const int64_t oldest = size_ < capacity_ ? 0 : next_;
  const int64_t first_run = std::min(size_, capacity_ - oldest);
  auto copy_column = [&](const auto& src, auto& out, int64_t width) {
    std::copy_n(src.begin() + oldest * width, first_run * width, out.begin());
    std::copy_n(src.begin(), (size_ - first_run) * width, out.begin() + first_run * width);
  };
  copy_column(obs_, dst.obs_, obs_dim_);
  copy_column(action_, dst.action_, action_dim_);
  copy_column(reward_, dst.reward_, 1);
  copy_column(next_obs_, dst.next_obs_, obs_dim_);
  copy_column(terminated_, dst.terminated_, 1);
  copy_column(policy_version_, dst.policy_version_, 1);
  copy_column(truncated_, dst.truncated_, 1);
  dst.size_ = size_;
  dst.next_ = size_ % dst.capacity_;
  dst.total_added_ = total_added_;
}

int64_t TransitionStore::bytes() const {
  return static_cast<int64_t>(
      sizeof(float) * (obs_.size() + action_.size() + reward_.size() + next_obs_.size() + terminated_.size()) +
      sizeof(int64_t) * policy_version_.size() + truncated_.size());
}

}  // namespace meow
