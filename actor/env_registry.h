// Creates environments by task name ("MultiGoal-v0", "Hopper-v4", ...).
// Thread-safe: stateless.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "actor/env.h"

namespace meow {

// NotFound listing the known names for an unknown task.
absl::StatusOr<std::unique_ptr<Env>> MakeEnv(std::string_view name);
std::vector<std::string> KnownEnvs();

}  // namespace meow
