#include "actor/env.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace meow {

absl::Status ValidateAction(const EnvSpec& spec, absl::Span<const float> action) {
  if (static_cast<int>(action.size()) != spec.action_dim) {
    return absl::InvalidArgumentError(
        absl::StrCat(spec.name, ": action has ", action.size(), " entries, expected ", spec.action_dim));
  }
  for (size_t i = 0; i < action.size(); ++i) {
    if (!std::isfinite(action[i])) {
      return absl::InvalidArgumentError(absl::StrCat(spec.name, ": action[", i, "] = ", action[i], " is not finite"));
    }
  }
  return absl::OkStatus();
}

}  // namespace meow
