// The shared base of the Gymnasium v4 MuJoCo tasks (reference/meow-and-envs.md §5), and RAII
// handles for MuJoCo's C objects.
//
// MujocoEnv owns one compiled model and its data and does everything the seven tasks share, the
// way Gymnasium's MujocoEnv + RescaleAction + TimeLimit(1000) do it:
//   Reset: mj_resetData, the task adds its noise to qpos0 / zero qvel, mj_forward.
//   Step:  the action in [-1, 1]^A is clipped and rescaled to each actuator's ctrlrange and
//          written to data.ctrl; mj_step runs frame_skip times; then one mj_rnePostConstraint
//          (and no mj_forward, so xpos/xipos/cinert/cvel lag the state by one substep, as in v4).
//          The task then computes reward, termination and observation from that state.
// Each task is one small subclass in its own file (hopper.cc, ...) that fills in the hooks.
//
// After every step the data's warning counters are compared with their values before the step:
// a MuJoCo warning (unstable simulation, bad numbers, full contact buffers) is named in
// StepResult::warning together with the episode step, and counted in warning_count().
//
// Not thread-safe: one thread uses an instance at a time. Different instances share nothing and
// may be stepped concurrently.
#pragma once

#include <mujoco/mujoco.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "actor/env.h"

namespace meow {

struct MjModelDeleter {
  void operator()(mjModel* model) const { mj_deleteModel(model); }
};
struct MjDataDeleter {
  void operator()(mjData* data) const { mj_deleteData(data); }
};
// Owning handles: the model or data is freed with MuJoCo's own deallocator.
using MjModelPtr = std::unique_ptr<mjModel, MjModelDeleter>;
using MjDataPtr = std::unique_ptr<mjData, MjDataDeleter>;

// Compiles MJCF text held in memory (no <include>, no mesh or texture files). `filename` is the
// name the text gets in MuJoCo's virtual file system and in error messages. InvalidArgument with
// MuJoCo's error text when the model does not compile, or compiles only with a warning.
absl::StatusOr<MjModelPtr> LoadModelFromXml(std::string_view filename, std::string_view xml);

// Compiles an MJCF file from disk. NotFound when the file does not exist; InvalidArgument with
// MuJoCo's error text otherwise, as above.
absl::StatusOr<MjModelPtr> LoadModelFromFile(const std::string& path);

class MujocoEnv : public Env {
 public:
  // What a task expects of its model; Init() checks the model against it.
  struct TaskShape {
    int nq = 0;
    int nv = 0;
    int nu = 0;
    int frame_skip = 1;
  };

  MujocoEnv(const MujocoEnv&) = delete;
  MujocoEnv& operator=(const MujocoEnv&) = delete;
  ~MujocoEnv() override = default;

  const EnvSpec& spec() const final { return spec_; }
  // Gymnasium's reset. Without a seed the task's random stream goes on; a new instance starts
  // the stream as if seeded with 0.
  absl::Status Reset(std::optional<uint64_t> seed) final;
  // Gymnasium's step (see the file comment). Entries outside [-1, 1] are clipped to it.
  absl::StatusOr<StepResult> Step(absl::Span<const float> action) final;
  absl::Span<const double> Observation() const final { return observation_; }

  // Gymnasium's set_state: puts the physics at (qpos, qvel), runs mj_forward and recomputes the
  // observation. The episode goes on from there with its step count kept (a state set before
  // the first Reset starts an episode). For tests and tools that need hand-made states.
  // InvalidArgument when the sizes are not nq / nv.
  absl::Status SetState(absl::Span<const double> qpos, absl::Span<const double> qvel);

  // Whether the current physics state ends the episode under the task's v4 rule (always false
  // for HalfCheetah). Step reports the same value for the state it reached.
  virtual bool IsTerminal() const = 0;

  const mjModel& model() const { return *model_; }
  const mjData& data() const { return *data_; }
  int frame_skip() const { return shape_.frame_skip; }
  // Seconds of simulated time per env step: timestep x frame_skip.
  double dt() const { return model_->opt.timestep * shape_.frame_skip; }
  // Steps taken in the current episode.
  int elapsed_steps() const { return elapsed_steps_; }
  // MuJoCo warnings raised while stepping, over this instance's lifetime.
  int64_t warning_count() const { return warning_count_; }

 protected:
  // Takes ownership of `model`. The object is usable only after Init() returned OK.
  MujocoEnv(EnvSpec spec, TaskShape shape, MjModelPtr model);

  // Checks the model against the task (sizes, control limits, the names the task reads) and
  // creates the data. Called once by each task's factory.
  absl::Status Init();

  // --- Task hooks -------------------------------------------------------------------------------
  // Looks up the ids of named bodies or sites the task reads. NotFound naming the missing one.
  virtual absl::Status LookUpNames() { return absl::OkStatus(); }
  // Adds the task's reset noise. On entry qpos = qpos0 and qvel = 0 (Gymnasium's init_qpos and
  // init_qvel); draw with Uniform() and StandardNormal(), qpos first, as Gymnasium does.
  virtual void AddResetNoise(absl::Span<double> qpos, absl::Span<double> qvel) = 0;
  // Called right before the physics steps: remember what the reward compares (e.g. x before).
  virtual void BeforePhysics() {}
  // The reward of the step just taken; data().ctrl holds the env-scale action.
  virtual double Reward() = 0;
  // Writes the observation of the current state into `observation` (obs_dim entries).
  virtual void WriteObservation(absl::Span<double> observation) const = 0;

  // Draws for the reset noise, from the instance's seeded stream. Uniform in [low, high).
  double Uniform(double low, double high);
  // N(0, 1) by the Marsaglia polar method (portable: no library distribution involved).
  double StandardNormal();

  // Sum of squares of data.ctrl, i.e. of the env-scale action (after rescaling): the control
  // cost of every task but InvertedPendulum.
  double SquaredControl() const;

  // Id of a named object or NotFound naming the task, the object type and name.
  absl::StatusOr<int> LookUpId(mjtObj type, const char* name) const;

  mjModel* model_ptr() const { return model_.get(); }
  mjData* data_ptr() const { return data_.get(); }

 private:
  // Copies the warning counters, to find the warnings a step raised.
  void SnapshotWarnings();
  // Returns the text for warnings raised since the snapshot (empty if none) and counts them.
  std::string CollectWarnings();

  EnvSpec spec_;
  TaskShape shape_;
  MjModelPtr model_;
  MjDataPtr data_;
  std::mt19937_64 rng_{0};
  std::vector<double> observation_;
  std::vector<double> ctrl_low_, ctrl_half_range_;  // ctrl = low + half_range * (a + 1)
  std::array<int, mjNWARNING> warnings_before_{};
  int elapsed_steps_ = 0;
  bool running_ = false;
  int64_t warning_count_ = 0;
};

}  // namespace meow
