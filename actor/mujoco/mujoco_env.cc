#include "actor/mujoco/mujoco_env.h"

#include <mutex>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace meow {
namespace {

constexpr int kErrorSize = 1024;

// mjVFS holds fixed-size name tables (about 2 MB): keep it on the heap, and free the file
// buffers MuJoCo allocated for it before the struct itself.
struct VfsDeleter {
  void operator()(mjVFS* vfs) const {
    mj_deleteVFS(vfs);
    delete vfs;
  }
};

// Turns mj_loadXML's result into a status: a null model is an error, and so is a model that
// compiled with a warning (MuJoCo writes it into the same buffer).
absl::StatusOr<MjModelPtr> CheckLoaded(mjModel* raw, const char* error, std::string_view name) {
  MjModelPtr model(raw);
  if (model == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("MuJoCo could not load model ", std::string(name), ": ", error));
  }
  if (error[0] != '\0') {
    return absl::InvalidArgumentError(
        absl::StrCat("MuJoCo loaded model ", std::string(name), " with a warning: ", error));
  }
  return model;
}

// MuJoCo's default warning handler prints the first warning of a kind and appends it to
// MUJOCO_LOG.TXT in the working directory. Every warning is already reported through the data's
// counters (StepResult::warning, warning_count()), so the process-wide handler is replaced, once,
// by one that does nothing.
void QuietMujocoWarnings() {
  static std::once_flag once;
  std::call_once(once, [] { mju_user_warning = [](const char*) {}; });
}

}  // namespace

absl::StatusOr<MjModelPtr> LoadModelFromXml(std::string_view filename, std::string_view xml) {
  const std::string name(filename);
  if (name.empty() || name.size() >= mjMAXVFSNAME) {
    return absl::InvalidArgumentError(
        absl::StrCat("model file name \"", name, "\" must have 1 to ", mjMAXVFSNAME - 1, " characters"));
  }
  std::unique_ptr<mjVFS, VfsDeleter> vfs(new mjVFS);
  mj_defaultVFS(vfs.get());
  if (mj_makeEmptyFileVFS(vfs.get(), name.c_str(), static_cast<int>(xml.size())) != 0) {
    return absl::InternalError(absl::StrCat("cannot add ", name, " to MuJoCo's virtual file system"));
  }
  const int index = mj_findFileVFS(vfs.get(), name.c_str());
  if (index < 0) {
    return absl::InternalError(absl::StrCat(name, " is missing from MuJoCo's virtual file system"));
  }
  std::memcpy(vfs->filedata[index], xml.data(), xml.size());
  char error[kErrorSize] = "";
  mjModel* model = mj_loadXML(name.c_str(), vfs.get(), error, kErrorSize);
  return CheckLoaded(model, error, name);
}

absl::StatusOr<MjModelPtr> LoadModelFromFile(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return absl::NotFoundError(absl::StrCat("model file ", path, " does not exist"));
  }
  char error[kErrorSize] = "";
  mjModel* model = mj_loadXML(path.c_str(), /*vfs=*/nullptr, error, kErrorSize);
  return CheckLoaded(model, error, path);
}

MujocoEnv::MujocoEnv(EnvSpec spec, TaskShape shape, MjModelPtr model)
    : spec_(std::move(spec)), shape_(shape), model_(std::move(model)) {
  QuietMujocoWarnings();
}

absl::Status MujocoEnv::Init() {
  const mjModel& m = *model_;
  // The task's observation and reward read fixed indices: the model must have its shape.
  if (m.nq != shape_.nq || m.nv != shape_.nv || m.nu != shape_.nu) {
    return absl::InvalidArgumentError(absl::StrCat(spec_.name, ": the model has nq=", m.nq, " nv=", m.nv, " nu=", m.nu,
                                                   ", expected nq=", shape_.nq, " nv=", shape_.nv, " nu=", shape_.nu));
  }
  if (spec_.action_dim != m.nu) {
    return absl::InternalError(
        absl::StrCat(spec_.name, ": action_dim ", spec_.action_dim, " differs from the model's nu=", m.nu));
  }
  ctrl_low_.resize(m.nu);
  ctrl_half_range_.resize(m.nu);
  for (int i = 0; i < m.nu; ++i) {
    const double low = m.actuator_ctrlrange[2 * i], high = m.actuator_ctrlrange[2 * i + 1];
    // The action space is the control range, so every actuator needs a finite one.
    if (!m.actuator_ctrllimited[i] || !(low < high)) {
      return absl::InvalidArgumentError(absl::StrCat(spec_.name, ": actuator ", i,
                                                     " needs ctrllimited=\"true\" and a ctrlrange "
                                                     "with low < high, got [",
                                                     low, ", ", high, "]"));
    }
    ctrl_low_[i] = low;
    ctrl_half_range_[i] = 0.5 * (high - low);
  }
  MEOW_RETURN_IF_ERROR(LookUpNames());
  data_.reset(mj_makeData(model_.get()));
  if (data_ == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat(spec_.name, ": mj_makeData failed"));
  }
  observation_.assign(spec_.obs_dim, 0.0);
  return absl::OkStatus();
}

absl::StatusOr<int> MujocoEnv::LookUpId(mjtObj type, const char* name) const {
  const int id = mj_name2id(model_.get(), type, name);
  if (id < 0) {
    return absl::NotFoundError(
        absl::StrCat(spec_.name, ": the model has no ", mju_type2Str(type), " named \"", name, "\""));
  }
  return id;
}

double MujocoEnv::SquaredControl() const {
  double sum = 0;
  for (int i = 0; i < model_->nu; ++i) sum += data_->ctrl[i] * data_->ctrl[i];
  return sum;
}

double MujocoEnv::Uniform(double low, double high) {
  // 53 random bits -> [0, 1), the same on every platform.
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
  return low + (high - low) * u;
}

double MujocoEnv::StandardNormal() {
  double x, y, s;
  do {
    x = Uniform(-1.0, 1.0);
    y = Uniform(-1.0, 1.0);
    s = x * x + y * y;
  } while (s >= 1.0 || s == 0.0);
  return x * std::sqrt(-2.0 * std::log(s) / s);
}

absl::Status MujocoEnv::Reset(std::optional<uint64_t> seed) {
  if (seed.has_value()) rng_.seed(*seed);
  mjModel* m = model_.get();
  mjData* d = data_.get();
  mj_resetData(m, d);
  // mj_resetData leaves qpos = qpos0 and qvel = 0: the task adds its noise in place.
  AddResetNoise(absl::Span<double>(d->qpos, m->nq), absl::Span<double>(d->qvel, m->nv));
  mj_forward(m, d);
  WriteObservation(absl::MakeSpan(observation_));
  elapsed_steps_ = 0;
  running_ = true;
  return absl::OkStatus();
}

absl::Status MujocoEnv::SetState(absl::Span<const double> qpos, absl::Span<const double> qvel) {
  const mjModel* m = model_.get();
  mjData* d = data_.get();
  if (static_cast<int>(qpos.size()) != m->nq || static_cast<int>(qvel.size()) != m->nv) {
    return absl::InvalidArgumentError(absl::StrCat(spec_.name, ": SetState got ", qpos.size(), " qpos and ",
                                                   qvel.size(), " qvel entries, expected nq=", m->nq,
                                                   " and nv=", m->nv));
  }
  std::copy(qpos.begin(), qpos.end(), d->qpos);
  std::copy(qvel.begin(), qvel.end(), d->qvel);
  mj_forward(m, d);
  WriteObservation(absl::MakeSpan(observation_));
  running_ = true;
  return absl::OkStatus();
}

absl::StatusOr<StepResult> MujocoEnv::Step(absl::Span<const float> action) {
  MEOW_RETURN_IF_ERROR(ValidateAction(spec_, action));
  if (!running_) {
    return absl::FailedPreconditionError(
        absl::StrCat(spec_.name, ": Step called before Reset or after the episode ended"));
  }
  mjModel* m = model_.get();
  mjData* d = data_.get();
  // RescaleAction from [-1, 1] to the control range; the clip keeps ctrl inside it.
  for (int i = 0; i < m->nu; ++i) {
    const double a = std::clamp(static_cast<double>(action[i]), -1.0, 1.0);
    d->ctrl[i] = ctrl_low_[i] + ctrl_half_range_[i] * (a + 1.0);
  }
  BeforePhysics();
  SnapshotWarnings();
  for (int k = 0; k < shape_.frame_skip; ++k) mj_step(m, d);
  // Fills cacc, cfrc_int and cfrc_ext, which mj_step leaves stale; Gymnasium calls it once here.
  mj_rnePostConstraint(m, d);
  ++elapsed_steps_;

  StepResult result;
  result.warning = CollectWarnings();
  result.reward = Reward();
  result.terminated = IsTerminal();
  // A terminal state ends the episode as terminated; only a live one can be truncated.
  result.truncated = !result.terminated && elapsed_steps_ >= spec_.max_episode_steps;
  WriteObservation(absl::MakeSpan(observation_));
  running_ = !(result.terminated || result.truncated);
  return result;
}

void MujocoEnv::SnapshotWarnings() {
  for (int i = 0; i < mjNWARNING; ++i) warnings_before_[i] = data_->warning[i].number;
}

std::string MujocoEnv::CollectWarnings() {
  std::string text;
  for (int i = 0; i < mjNWARNING; ++i) {
    const int now = data_->warning[i].number;
    // MuJoCo's auto-reset after bad numbers (mj_resetData inside mj_step) zeroes the counters
    // before counting its own warning, so a counter below its snapshot restarted from 0.
    const int raised = now >= warnings_before_[i] ? now - warnings_before_[i] : now;
    if (raised <= 0) continue;
    warning_count_ += raised;
    absl::StrAppend(&text, text.empty() ? "" : "; ", spec_.name, " episode step ", elapsed_steps_,
                    ": MuJoCo warning (x", raised, "): ", mju_warningText(i, data_->warning[i].lastinfo));
  }
  return text;
}

}  // namespace meow
