// Walker2d-v4: Gymnasium v0.29.1 walker2d_v4.py with its default arguments, on models/walker2d.xml.
//   observation (17) = qpos[1:9] | clip(qvel, -10, 10)
//   reward           = (x' - x) / dt + 1 - 1e-3 * |a|^2, x = qpos[0], a = the env-scale action.
//                      The healthy bonus 1 is paid on every step, the terminating one included.
//   terminal         unless z = qpos[1] in (0.8, 2.0) and angle = qpos[2] in (-1, 1), strict.
//   reset            qpos0 + U(-5e-3, 5e-3) per entry, qvel U(-5e-3, 5e-3); frame_skip 4 (dt 8 ms).
#include <algorithm>
#include <memory>
#include <utility>

#include "actor/mujoco/mujoco_env.h"
#include "actor/mujoco/tasks.h"
#include "common/status.h"

namespace meow {
namespace {

constexpr double kForwardRewardWeight = 1.0;
constexpr double kCtrlCostWeight = 1e-3;
constexpr double kHealthyReward = 1.0;
constexpr double kHealthyZMin = 0.8;
constexpr double kHealthyZMax = 2.0;
constexpr double kHealthyAngleLimit = 1.0;
constexpr double kVelocityClip = 10.0;
constexpr double kResetNoise = 5e-3;

EnvSpec Walker2dSpec() {
  EnvSpec spec;
  spec.name = "Walker2d-v4";
  spec.obs_dim = 17;
  spec.action_dim = 6;
  spec.max_episode_steps = 1000;
  return spec;
}

class Walker2dEnv final : public MujocoEnv {
 public:
  explicit Walker2dEnv(MjModelPtr model)
      : MujocoEnv(Walker2dSpec(), TaskShape{/*nq=*/9, /*nv=*/9, /*nu=*/6, /*frame_skip=*/4}, std::move(model)) {}

  using MujocoEnv::Init;

  bool IsTerminal() const override {
    const double z = data().qpos[1], angle = data().qpos[2];
    const bool healthy_z = kHealthyZMin < z && z < kHealthyZMax;
    const bool healthy_angle = -kHealthyAngleLimit < angle && angle < kHealthyAngleLimit;
    return !(healthy_z && healthy_angle);
  }

 private:
  void AddResetNoise(absl::Span<double> qpos, absl::Span<double> qvel) override {
    for (double& q : qpos) q += Uniform(-kResetNoise, kResetNoise);
    for (double& v : qvel) v += Uniform(-kResetNoise, kResetNoise);
  }

  void BeforePhysics() override { x_before_ = data().qpos[0]; }

  double Reward() override {
    const double x_velocity = (data().qpos[0] - x_before_) / dt();
    return kForwardRewardWeight * x_velocity + kHealthyReward - kCtrlCostWeight * SquaredControl();
  }

  void WriteObservation(absl::Span<double> obs) const override {
    const mjData& d = data();
    std::copy(d.qpos + 1, d.qpos + 9, obs.begin());
    for (int i = 0; i < 9; ++i) obs[8 + i] = std::clamp(d.qvel[i], -kVelocityClip, kVelocityClip);
  }

  double x_before_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<MujocoEnv>> MakeWalker2d(MjModelPtr model, const MujocoTaskOptions& options) {
  auto env = std::make_unique<Walker2dEnv>(std::move(model));
  MEOW_RETURN_IF_ERROR(env->Init());
  return env;
}

}  // namespace meow
