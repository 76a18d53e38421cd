// Chooses which stored rows a sample draws. The table owns one selector and tells it about every
// row it stores; slots are the TransitionStore's (they fill 0..capacity-1 in order, then wrap and
// replace the oldest row). A prioritized selector would keep a sum-tree over the slots.
// Not thread-safe: the table calls it under its mutex.
#pragma once

#include <cstdint>
#include <random>
#include <string>

#include "absl/types/span.h"

namespace meow {

class ItemSelector {
 public:
  virtual ~ItemSelector() = default;

  // `slot` now holds a newly stored row (replacing the row that was there, if any).
  virtual void Insert(int64_t slot) = 0;

  // Forgets every row.
  virtual void Clear() = 0;

  // Fills `slots` with draws among the stored rows. Requires at least one stored row.
  virtual void Sample(absl::Span<int64_t> slots, std::mt19937_64& rng) = 0;

  // Short name for Info, e.g. "uniform".
  virtual std::string name() const = 0;
};

}  // namespace meow
