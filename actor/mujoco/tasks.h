// The Gymnasium v4 MuJoCo tasks by name: Hopper-v4, HalfCheetah-v4, Walker2d-v4, Ant-v4,
// Humanoid-v4, InvertedPendulum-v4 and InvertedDoublePendulum-v4, each on the project's own
// model file compiled into the binary (actor/mujoco/models/), nothing read from disk at run time.
// Each task lives in its own file over MujocoEnv (actor/mujoco/mujoco_env.h); adding one is a new
// file, a model, a line in the table in tasks.cc and one in actor/CMakeLists.txt.
// Thread-safe: the functions here keep no state; the environments they return are not.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "actor/mujoco/mujoco_env.h"

namespace meow {

struct MujocoTaskOptions {
  // An MJCF file to load instead of the embedded model (the conformance tests pass Gymnasium's
  // reference models). Empty: the embedded model.
  std::string model_file;
  // Ant-v4's use_contact_forces (default false, as in v4): appends clip(cfrc_ext, -1, 1) of all 14
  // bodies (84 values) to the observation and subtracts 5e-4 x their squared sum from the reward.
  bool use_contact_forces = false;
};

// A MuJoCo task by its Gymnasium id. NotFound listing the MuJoCo tasks for an unknown name;
// the errors of LoadModelFromXml / LoadModelFromFile when the model does not load;
// InvalidArgument when a model file does not have the task's shape or names.
absl::StatusOr<std::unique_ptr<MujocoEnv>> MakeMujocoEnv(std::string_view name, const MujocoTaskOptions& options = {});

// The task ids MakeMujocoEnv knows, in a fixed order.
std::vector<std::string> MujocoTaskNames();

// The MJCF text of a task's embedded model (what MakeMujocoEnv compiles), or NotFound.
absl::StatusOr<std::string_view> EmbeddedTaskModel(std::string_view name);

// --- One factory per task file: builds the task on an already compiled model. -------------------
absl::StatusOr<std::unique_ptr<MujocoEnv>> MakeHopper(MjModelPtr model, const MujocoTaskOptions& options);
absl::StatusOr<std::unique_ptr<MujocoEnv>> MakeHalfCheetah(MjModelPtr model, const MujocoTaskOptions& options);
absl::StatusOr<std::unique_ptr<MujocoEnv>> MakeWalker2d(MjModelPtr model, const MujocoTaskOptions& options);
absl::StatusOr<std::unique_ptr<MujocoEnv>> MakeAnt(MjModelPtr model, const MujocoTaskOptions& options);
absl::StatusOr<std::unique_ptr<MujocoEnv>> MakeHumanoid(MjModelPtr model, const MujocoTaskOptions& options);
absl::StatusOr<std::unique_ptr<MujocoEnv>> MakeInvertedPendulum(MjModelPtr model, const MujocoTaskOptions& options);
absl::StatusOr<std::unique_ptr<MujocoEnv>> MakeInvertedDoublePendulum(MjModelPtr model,
                                                                      const MujocoTaskOptions& options);

}  // namespace meow
