// HalfCheetah-v4: Gymnasium v0.29.1 half_cheetah_v4.py with its default arguments, on
// models/half_cheetah.xml.
//   observation (17) = qpos[1:9] | qvel (not clipped)
//   reward           = (x' - x) / dt - 0.1 * |a|^2, x = qpos[0], a = the env-scale action.
//   terminal         never: episodes end only by the 1000-step truncation.
//   reset            qpos0 + U(-0.1, 0.1) per entry, qvel 0.1 * N(0, 1); frame_skip 5 (dt 50 ms).
#include <algorithm>
#include <memory>
#include <utility>

#include "actor/mujoco/mujoco_env.h"
#include "actor/mujoco/tasks.h"
#include "common/status.h"

namespace meow {
namespace {

constexpr double kForwardRewardWeight = 1.0;
constexpr double kCtrlCostWeight = 0.1;
constexpr double kResetNoise = 0.1;

EnvSpec HalfCheetahSpec() {
  EnvSpec spec;
  spec.name = "HalfCheetah-v4";
  spec.obs_dim = 17;
  spec.action_dim = 6;
  spec.max_episode_steps = 1000;
  return spec;
}

class HalfCheetahEnv final : public MujocoEnv {
 public:
  explicit HalfCheetahEnv(MjModelPtr model)
      : MujocoEnv(HalfCheetahSpec(), TaskShape{/*nq=*/9, /*nv=*/9, /*nu=*/6, /*frame_skip=*/5}, std::move(model)) {}

  using MujocoEnv::Init;

  bool IsTerminal() const override { return false; }

 private:
  void AddResetNoise(absl::Span<double> qpos, absl::Span<double> qvel) override {
    for (double& q : qpos) q += Uniform(-kResetNoise, kResetNoise);
    for (double& v : qvel) v += kResetNoise * StandardNormal();
  }

  void BeforePhysics() override { x_before_ = data().qpos[0]; }

  double Reward() override {
    const double x_velocity = (data().qpos[0] - x_before_) / dt();
    return kForwardRewardWeight * x_velocity - kCtrlCostWeight * SquaredControl();
  }

  void WriteObservation(absl::Span<double> obs) const override {
    const mjData& d = data();
    std::copy(d.qpos + 1, d.qpos + 9, obs.begin());
    std::copy(d.qvel, d.qvel + 9, obs.begin() + 8);
  }

  double x_before_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<MujocoEnv>> MakeHalfCheetah(MjModelPtr model, const MujocoTaskOptions& options) {
  auto env = std::make_unique<HalfCheetahEnv>(std::move(model));
  MEOW_RETURN_IF_ERROR(env->Init());
  return env;
}

}  // namespace meow
