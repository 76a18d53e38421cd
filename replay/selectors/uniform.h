// Uniform sampling with replacement over the stored rows (as in the MEow reference). Since slots
// fill 0..capacity-1 before wrapping, the stored rows are exactly the slots below the row count.
// Not thread-safe (see ItemSelector).
#pragma once

#include <cstdint>

#include "replay/selectors/interface.h"

namespace meow {

class UniformSelector final : public ItemSelector {
 public:
  explicit UniformSelector(int64_t capacity) : capacity_(capacity) {}

  void Insert(int64_t slot) override;
  void Clear() override { size_ = 0; }
  void Sample(absl::Span<int64_t> slots, std::mt19937_64& rng) override;
  std::string name() const override { return "uniform"; }

 private:
  int64_t capacity_;
  int64_t size_ = 0;  // stored rows; they occupy slots [0, size_)
};

}  // namespace meow
