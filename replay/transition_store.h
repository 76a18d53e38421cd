// Columnar storage for transitions with a fixed capacity: FIFO eviction (a ring), uniform sampling
// with replacement. Each column is one contiguous float array (obs, action, reward, next_obs,
// terminated), so memory is the raw payload and a sampled batch is a gather per column.
// Not thread-safe: the caller (the replay table, or a single-threaded trainer) serialises access.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "absl/types/span.h"

namespace meow {

class TransitionStore {
 public:
  TransitionStore(int obs_dim, int action_dim, int64_t capacity);

  // Appends one transition, evicting the oldest when full. Sizes must match (checked by callers
  // at the boundary; here they are an invariant).
  void Add(absl::Span<const float> obs, absl::Span<const float> action, float reward,
           absl::Span<const float> next_obs, bool terminated);

  // Fills the caller's row-major buffers with `batch` rows drawn uniformly with replacement.
  // Buffers must hold batch*obs_dim, batch*action_dim, batch, batch*obs_dim and batch floats.
  void Sample(int64_t batch, std::mt19937_64& rng, float* obs, float* action, float* reward,
              float* next_obs, float* terminated) const;

  int64_t size() const { return size_; }
  int64_t capacity() const { return capacity_; }
  int obs_dim() const { return obs_dim_; }
  int action_dim() const { return action_dim_; }
  int64_t total_added() const { return total_added_; }
  int64_t bytes() const;  // bytes held by the columns

 private:
  int obs_dim_;
  int action_dim_;
  int64_t capacity_;
  int64_t size_ = 0;
  int64_t next_ = 0;  // slot the next Add writes
  int64_t total_added_ = 0;
  std::vector<float> obs_, action_, reward_, next_obs_, terminated_;
};

}  // namespace meow
