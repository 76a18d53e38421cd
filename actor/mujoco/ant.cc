// Ant-v4: Gymnasium v0.29.1 ant_v4.py with its default arguments, on models/ant.xml.
//   observation (27) = qpos[2:15] | qvel; with use_contact_forces (111) also
//                      | clip(cfrc_ext, -1, 1) of all 14 bodies, world included.
//   reward           = (x' - x) / dt + 1 - 0.5 * |a|^2 [- 5e-4 * |clip(cfrc_ext, -1, 1)|^2],
//                      x = data.xpos of the torso (which lags qpos by one substep after mj_step,
//                      as in v4), a = the env-scale action. The healthy bonus 1 is paid on every
//                      step, the terminating one included.
//   terminal         unless qpos and qvel are all finite and z = qpos[2] in [0.2, 1.0] (inclusive).
//   reset            qpos0 + U(-0.1, 0.1) per entry (quaternion included, not renormalised),
//                    qvel 0.1 * N(0, 1); frame_skip 5 (dt 50 ms).
#include <algorithm>
#include <cmath>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "actor/mujoco/mujoco_env.h"
#include "actor/mujoco/tasks.h"
#include "common/status.h"

namespace meow {
namespace {

constexpr double kCtrlCostWeight = 0.5;
constexpr double kContactCostWeight = 5e-4;
constexpr double kHealthyReward = 1.0;
constexpr double kHealthyZMin = 0.2;
constexpr double kHealthyZMax = 1.0;
constexpr double kContactForceClip = 1.0;
constexpr double kResetNoise = 0.1;
constexpr int kNq = 15, kNv = 14;
constexpr int kNumBodies = 14;  // the world and 13 bodies, each with a 6-D cfrc_ext row
constexpr int kBaseObsDim = (kNq - 2) + kNv;
constexpr int kContactObsDim = 6 * kNumBodies;

EnvSpec AntSpec(bool use_contact_forces) {
  EnvSpec spec;
  spec.name = "Ant-v4";
  spec.obs_dim = kBaseObsDim + (use_contact_forces ? kContactObsDim : 0);
  spec.action_dim = 8;
  spec.max_episode_steps = 1000;
  return spec;
}

class AntEnv final : public MujocoEnv {
 public:
  AntEnv(MjModelPtr model, bool use_contact_forces)
      : MujocoEnv(AntSpec(use_contact_forces), TaskShape{/*nq=*/kNq, /*nv=*/kNv, /*nu=*/8, /*frame_skip=*/5},
                  std::move(model)),
        use_contact_forces_(use_contact_forces) {}

  using MujocoEnv::Init;

  bool IsTerminal() const override {
    const mjData& d = data();
    auto finite = [](double v) { return std::isfinite(v); };
    const bool all_finite = std::all_of(d.qpos, d.qpos + kNq, finite) && std::all_of(d.qvel, d.qvel + kNv, finite);
    const double z = d.qpos[2];
    return !(all_finite && kHealthyZMin <= z && z <= kHealthyZMax);
  }

 private:
  absl::Status LookUpNames() override {
    if (model().nbody != kNumBodies) {
      return absl::InvalidArgumentError(
          absl::StrCat("Ant-v4: the model has ", model().nbody, " bodies, expected ", kNumBodies));
    }
    MEOW_ASSIGN_OR_RETURN(torso_, LookUpId(mjOBJ_BODY, "torso"));
    return absl::OkStatus();
  }

  void AddResetNoise(absl::Span<double> qpos, absl::Span<double> qvel) override {
    for (double& q : qpos) q += Uniform(-kResetNoise, kResetNoise);
    for (double& v : qvel) v += kResetNoise * StandardNormal();
  }

  void BeforePhysics() override { x_before_ = data().xpos[3 * torso_]; }

  double Reward() override {
    const double x_velocity = (data().xpos[3 * torso_] - x_before_) / dt();
    double reward = x_velocity + kHealthyReward - kCtrlCostWeight * SquaredControl();
    if (use_contact_forces_) {
      double contact_sq = 0;
      for (int i = 0; i < kContactObsDim; ++i) {
        const double f = ClippedContactForce(i);
        contact_sq += f * f;
      }
      reward -= kContactCostWeight * contact_sq;
    }
    return reward;
  }

  void WriteObservation(absl::Span<double> obs) const override {
    const mjData& d = data();
    std::copy(d.qpos + 2, d.qpos + kNq, obs.begin());
    std::copy(d.qvel, d.qvel + kNv, obs.begin() + (kNq - 2));
    if (use_contact_forces_) {
      for (int i = 0; i < kContactObsDim; ++i) obs[kBaseObsDim + i] = ClippedContactForce(i);
    }
  }

  double ClippedContactForce(int i) const {
    return std::clamp(data().cfrc_ext[i], -kContactForceClip, kContactForceClip);
  }

  const bool use_contact_forces_;
  int torso_ = -1;
  double x_before_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<MujocoEnv>> MakeAnt(MjModelPtr model, const MujocoTaskOptions& options) {
  auto env = std::make_unique<AntEnv>(std::move(model), options.use_contact_forces);
  MEOW_RETURN_IF_ERROR(env->Init());
  return env;
}

}  // namespace meow
