// Hopper-v4: Gymnasium v0.29.1 hopper_v4.py with its default arguments, on models/hopper.xml.
//   observation (11) = qpos[1:6] | clip(qvel, -10, 10)
//   reward           = (x' - x) / dt + 1 - 1e-3 * |a|^2, x = qpos[0], a = the env-scale action.
//                      The healthy bonus 1 is paid on every step, the terminating one included
//                      (v4's healthy_reward with terminate_when_unhealthy).
//   terminal         unless all of: every entry of qpos[2:] | qvel (unclipped) in (-100, 100),
//                    z = qpos[1] > 0.7, angle = qpos[2] in (-0.2, 0.2); strict, so NaN is terminal.
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
constexpr double kHealthyStateLimit = 100.0;  // |entry| < 100
constexpr double kHealthyZMin = 0.7;          // no upper bound
constexpr double kHealthyAngleLimit = 0.2;
constexpr double kVelocityClip = 10.0;
constexpr double kResetNoise = 5e-3;

EnvSpec HopperSpec() {
  EnvSpec spec;
  spec.name = "Hopper-v4";
  spec.obs_dim = 11;
  spec.action_dim = 3;
  spec.max_episode_steps = 1000;
  return spec;
}

class HopperEnv final : public MujocoEnv {
 public:
  explicit HopperEnv(MjModelPtr model)
      : MujocoEnv(HopperSpec(), TaskShape{/*nq=*/6, /*nv=*/6, /*nu=*/3, /*frame_skip=*/4}, std::move(model)) {}

  using MujocoEnv::Init;

  bool IsTerminal() const override {
    const mjData& d = data();
    const double z = d.qpos[1], angle = d.qpos[2];
    auto in_range = [](double v) { return -kHealthyStateLimit < v && v < kHealthyStateLimit; };
    const bool healthy_state =
        std::all_of(d.qpos + 2, d.qpos + 6, in_range) && std::all_of(d.qvel, d.qvel + 6, in_range);
    const bool healthy_z = kHealthyZMin < z;
    const bool healthy_angle = -kHealthyAngleLimit < angle && angle < kHealthyAngleLimit;
    return !(healthy_state && healthy_z && healthy_angle);
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
    std::copy(d.qpos + 1, d.qpos + 6, obs.begin());
    for (int i = 0; i < 6; ++i) obs[5 + i] = std::clamp(d.qvel[i], -kVelocityClip, kVelocityClip);
  }

  double x_before_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<MujocoEnv>> MakeHopper(MjModelPtr model, const MujocoTaskOptions& options) {
  auto env = std::make_unique<HopperEnv>(std::move(model));
  MEOW_RETURN_IF_ERROR(env->Init());
  return env;
}

}  // namespace meow
