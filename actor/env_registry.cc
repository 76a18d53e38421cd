#include "actor/env_registry.h"

#include <functional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "actor/multi_goal.h"

namespace meow {
namespace {

using Factory = std::function<absl::StatusOr<std::unique_ptr<Env>>()>;

const std::vector<std::pair<std::string, Factory>>& Registry() {
  static const auto* registry = new std::vector<std::pair<std::string, Factory>>{
      {"MultiGoal-v0", []() -> absl::StatusOr<std::unique_ptr<Env>> {
         return std::unique_ptr<Env>(new MultiGoalEnv());
       }},
  };
  return *registry;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Env>> MakeEnv(std::string_view name) {
  for (const auto& [known, factory] : Registry()) {
    if (known == name) return factory();
  }
  return absl::NotFoundError(absl::StrCat("unknown task \"", std::string(name), "\"; known tasks: ",
                                          absl::StrJoin(KnownEnvs(), ", ")));
}

std::vector<std::string> KnownEnvs() {
  std::vector<std::string> names;
  for (const auto& entry : Registry()) names.push_back(entry.first);
  return names;
}

}  // namespace meow
