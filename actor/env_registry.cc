#include "actor/env_registry.h"

#include <functional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "actor/mujoco/tasks.h"
#include "actor/multi_goal.h"

namespace meow {
namespace {

using Factory = std::function<absl::StatusOr<std::unique_ptr<Env>>()>;

const std::vector<std::pair<std::string, Factory>>& Registry() {
  static const auto* registry = [] {
    auto* entries = new std::vector<std::pair<std::string, Factory>>{
        {"MultiGoal-v0",
         []() -> absl::StatusOr<std::unique_ptr<Env>> { return std::unique_ptr<Env>(new MultiGoalEnv()); }},
    };
    // The Gymnasium v4 MuJoCo tasks, on the embedded models.
    for (std::string& name : MujocoTaskNames()) {
      Factory make = [name]() -> absl::StatusOr<std::unique_ptr<Env>> {
        auto env = MakeMujocoEnv(name);
        if (!env.ok()) return env.status();
        return std::unique_ptr<Env>(*std::move(env));
      };
      entries->emplace_back(std::move(name), std::move(make));
    }
    return entries;
  }();
  return *registry;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Env>> MakeEnv(std::string_view name) {
  for (const auto& [known, factory] : Registry()) {
    if (known == name) return factory();
  }
  return absl::NotFoundError(
      absl::StrCat("unknown task \"", std::string(name), "\"; known tasks: ", absl::StrJoin(KnownEnvs(), ", ")));
}

std::vector<std::string> KnownEnvs() {
  std::vector<std::string> names;
  for (const auto& entry : Registry()) names.push_back(entry.first);
  return names;
}

}  // namespace meow
