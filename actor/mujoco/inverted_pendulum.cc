// InvertedPendulum-v4: Gymnasium v0.29.1 inverted_pendulum_v4.py, on
// models/inverted_pendulum.xml.
//   observation (4) = qpos (cart x, pole angle) | qvel
//   reward          = 1 on every step, the terminating one included.
//   terminal        when the observation is not all finite or |pole angle| > 0.2.
//   reset           qpos0 + U(-0.01, 0.01) per entry, qvel U(-0.01, 0.01); frame_skip 2 (dt 40 ms).
//                   The action box is the control range [-3, 3]: ctrl = 3 * a.
#include <algorithm>
#include <cmath>
#include <memory>
#include <utility>

#include "actor/mujoco/mujoco_env.h"
#include "actor/mujoco/tasks.h"
#include "common/status.h"

namespace meow {
namespace {

constexpr double kAliveReward = 1.0;
constexpr double kAngleLimit = 0.2;
constexpr double kResetNoise = 0.01;

EnvSpec InvertedPendulumSpec() {
  EnvSpec spec;
  spec.name = "InvertedPendulum-v4";
  spec.obs_dim = 4;
  spec.action_dim = 1;
  spec.max_episode_steps = 1000;
  return spec;
}

class InvertedPendulumEnv final : public MujocoEnv {
 public:
  explicit InvertedPendulumEnv(MjModelPtr model)
      : MujocoEnv(InvertedPendulumSpec(), TaskShape{/*nq=*/2, /*nv=*/2, /*nu=*/1, /*frame_skip=*/2}, std::move(model)) {
  }

  using MujocoEnv::Init;

  bool IsTerminal() const override {
    const mjData& d = data();
    auto finite = [](double v) { return std::isfinite(v); };
    const bool all_finite = std::all_of(d.qpos, d.qpos + 2, finite) && std::all_of(d.qvel, d.qvel + 2, finite);
    return !all_finite || std::abs(d.qpos[1]) > kAngleLimit;
  }

 private:
  void AddResetNoise(absl::Span<double> qpos, absl::Span<double> qvel) override {
    for (double& q : qpos) q += Uniform(-kResetNoise, kResetNoise);
    for (double& v : qvel) v += Uniform(-kResetNoise, kResetNoise);
  }

  double Reward() override { return kAliveReward; }

  void WriteObservation(absl::Span<double> obs) const override {
    const mjData& d = data();
    std::copy(d.qpos, d.qpos + 2, obs.begin());
    std::copy(d.qvel, d.qvel + 2, obs.begin() + 2);
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<MujocoEnv>> MakeInvertedPendulum(MjModelPtr model, const MujocoTaskOptions& options) {
  auto env = std::make_unique<InvertedPendulumEnv>(std::move(model));
  MEOW_RETURN_IF_ERROR(env->Init());
  return env;
}

}  // namespace meow
