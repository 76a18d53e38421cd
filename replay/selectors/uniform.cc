#include "replay/selectors/uniform.h"

#include <algorithm>

namespace meow {

void UniformSelector::Insert(int64_t slot) { size_ = std::min(capacity_, std::max(size_, slot + 1)); }

void UniformSelector::Sample(absl::Span<int64_t> slots, std::mt19937_64& rng) {
  std::uniform_int_distribution<int64_t> pick(0, size_ - 1);
  for (int64_t& slot : slots) slot = pick(rng);
}

}  // namespace meow
