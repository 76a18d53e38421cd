// Columnar storage for transitions with a fixed capacity: FIFO eviction (a ring), uniform sampling
// with replacement. Each column is one contiguous array (obs, action, reward, next_obs, terminated
// as floats, the int64 policy version that produced each row and a truncation byte), so memory is
// the raw payload plus 9 bytes a row, and a sampled batch is a gather per column. Slots fill 0..capacity-1 in
// order, then wrap and overwrite the oldest row.
// Not thread-safe: the caller (the replay table, or a single-threaded trainer) serialises access.
// Copyable: a copy owns its own columns.
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
  void Add(absl::Span<const float> obs, absl::Span<const float> action, float reward, absl::Span<const float> next_obs,
           bool terminated, bool truncated = false);

  // Appends `rows` rows from row-major columns, which may be unaligned (e.g. bytes of a decoded
  // message): obs/next_obs rows*obs_dim floats, action rows*action_dim floats, reward rows floats,
  // terminated rows bytes of 0 or 1, truncated rows bytes of 0 or 1 or null (none truncated).
  // `policy_versions` holds one int64 per row, or is null to give every row `policy_version`.
  // Requires rows <= capacity. Returns the slot of the first row; the others follow, wrapping at
  // capacity.
  int64_t AddRows(int64_t rows, const void* obs, const void* action, const void* reward, const void* next_obs,
                  const uint8_t* terminated, const uint8_t* truncated, const void* policy_versions,
                  int64_t policy_version);

  // Fills the caller's row-major buffers with `batch` rows drawn uniformly with replacement.
  // Buffers must hold batch*obs_dim, batch*action_dim, batch, batch*obs_dim and batch floats.
  void Sample(int64_t batch, std::mt19937_64& rng, float* obs, float* action, float* reward, float* next_obs,
              float* terminated) const;

  // Copies the rows in `slots` (each < size()) into row-major buffers, which may be unaligned:
  // obs/next_obs slots*obs_dim floats, action slots*action_dim floats, reward slots floats,
  // terminated slots bytes (0 or 1), truncated slots bytes (0 or 1; null: not wanted),
  // policy_versions slots int64s.
  void Gather(absl::Span<const int64_t> slots, void* obs, void* action, void* reward, void* next_obs,
              uint8_t* terminated, uint8_t* truncated, void* policy_versions) const;

  // A copy holding just the stored rows, oldest first, with capacity max(size(), 1).
  TransitionStore CompactCopy() const;
  // Replaces the rows of `dst` (same dims, capacity >= size()) with this store's rows, oldest
  // first. Only copies: a snapshot allocates `dst` before it takes the table's lock.
  void CopyOldestFirstTo(TransitionStore& dst) const;

  // Slot of the `age`-th oldest row (0 = oldest), age < size().
  int64_t SlotOfAge(int64_t age) const {
    const int64_t oldest = size_ < capacity_ ? 0 : next_;
    const int64_t slot = oldest + age;
    return slot < capacity_ ? slot : slot - capacity_;
  }

  // Drops every row (capacity and total_added stay).
  void Clear() {
    size_ = 0;
    next_ = 0;
  }

  int64_t size() const { return size_; }
  int64_t capacity() const { return capacity_; }
  int obs_dim() const { return obs_dim_; }
  int action_dim() const { return action_dim_; }
  int64_t total_added() const { return total_added_; }
  int64_t bytes() const;  // bytes held by the columns

 private:
  TransitionStore(int obs_dim, int action_dim, int64_t capacity, bool allocate);

  int obs_dim_;
  int action_dim_;
  int64_t capacity_;
  int64_t size_ = 0;
  int64_t next_ = 0;  // slot the next Add writes
  int64_t total_added_ = 0;
  std::vector<float> obs_, action_, reward_, next_obs_, terminated_;
  std::vector<int64_t> policy_version_;
  std::vector<uint8_t> truncated_;
};

}  // namespace meow
