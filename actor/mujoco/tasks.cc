#include "actor/mujoco/tasks.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "actor/mujoco/embedded_models.h"
#include "common/status.h"

namespace meow {
namespace {

using TaskFactory = absl::StatusOr<std::unique_ptr<MujocoEnv>> (*)(MjModelPtr, const MujocoTaskOptions&);

struct TaskEntry {
  std::string_view name;        // the Gymnasium id
  std::string_view model_file;  // the embedded model, under actor/mujoco/models/
  TaskFactory make;
};

constexpr TaskEntry kTasks[] = {
    {"Hopper-v4", "hopper.xml", &MakeHopper},
    {"HalfCheetah-v4", "half_cheetah.xml", &MakeHalfCheetah},
    {"Walker2d-v4", "walker2d.xml", &MakeWalker2d},
    {"Ant-v4", "ant.xml", &MakeAnt},
    {"Humanoid-v4", "humanoid.xml", &MakeHumanoid},
    {"InvertedPendulum-v4", "inverted_pendulum.xml", &MakeInvertedPendulum},
    {"InvertedDoublePendulum-v4", "inverted_double_pendulum.xml", &MakeInvertedDoublePendulum},
};

absl::StatusOr<const TaskEntry*> FindTask(std::string_view name) {
  for (const TaskEntry& task : kTasks) {
    if (task.name == name) return &task;
  }
  return absl::NotFoundError(absl::StrCat("unknown MuJoCo task \"", std::string(name),
                                          "\"; known MuJoCo tasks: ", absl::StrJoin(MujocoTaskNames(), ", ")));
}

}  // namespace

std::vector<std::string> MujocoTaskNames() {
  std::vector<std::string> names;
  for (const TaskEntry& task : kTasks) names.emplace_back(task.name);
  return names;
}

absl::StatusOr<std::string_view> EmbeddedTaskModel(std::string_view name) {
  MEOW_ASSIGN_OR_RETURN(const TaskEntry* task, FindTask(name));
  for (const EmbeddedFile& file : EmbeddedModelFiles()) {
    if (file.name == task->model_file) return file.contents;
  }
  // The build embeds every file the table names; a miss is a broken build, said plainly.
  return absl::InternalError(absl::StrCat("model ", std::string(task->model_file), " for ", std::string(name),
                                          " is not embedded in this binary"));
}

absl::StatusOr<std::unique_ptr<MujocoEnv>> MakeMujocoEnv(std::string_view name, const MujocoTaskOptions& options) {
  MEOW_ASSIGN_OR_RETURN(const TaskEntry* task, FindTask(name));
  MjModelPtr model;
  if (options.model_file.empty()) {
    MEOW_ASSIGN_OR_RETURN(std::string_view xml, EmbeddedTaskModel(name));
    MEOW_ASSIGN_OR_RETURN(model, LoadModelFromXml(task->model_file, xml));
  } else {
    MEOW_ASSIGN_OR_RETURN(model, LoadModelFromFile(options.model_file));
  }
  return task->make(std::move(model), options);
}

}  // namespace meow
