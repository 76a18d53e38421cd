// InvertedDoublePendulum-v4: Gymnasium v0.29.1 inverted_double_pendulum_v4.py, on
// models/inverted_double_pendulum.xml.
//   observation (11) = qpos[0] | sin(qpos[1:3]) | cos(qpos[1:3]) | clip(qvel, -10, 10)
//                      | clip(qfrc_constraint, -10, 10). The two hinge entries of the last three
//                      are always 0 (the hinges have no limits), as in v4.
//   reward           = 10 - (0.01 * x_tip^2 + (y_tip - 2)^2) - (1e-3 * qvel[1]^2 + 5e-3 *
//   qvel[2]^2),
//                      (x_tip, ., y_tip) = data.site_xpos of "tip" as mj_step left it. The alive
//                      bonus 10 is paid on every step, the terminating one included.
//   terminal         when y_tip <= 1.
//   reset            qpos0 + U(-0.1, 0.1) per entry, qvel 0.1 * N(0, 1); frame_skip 5 (dt 50 ms).
#include <algorithm>
#include <cmath>
#include <memory>
#include <utility>

#include "actor/mujoco/mujoco_env.h"
#include "actor/mujoco/tasks.h"
#include "common/status.h"

namespace meow {
namespace {

constexpr double kAliveBonus = 10.0;
constexpr double kTipXWeight = 0.01;
constexpr double kTipTargetHeight = 2.0;
constexpr double kVelocityWeight1 = 1e-3;
constexpr double kVelocityWeight2 = 5e-3;
constexpr double kTerminalTipHeight = 1.0;  // y_tip <= 1 ends the episode
constexpr double kClip = 10.0;
constexpr double kResetNoise = 0.1;

EnvSpec InvertedDoublePendulumSpec() {
  EnvSpec spec;
  spec.name = "InvertedDoublePendulum-v4";
  spec.obs_dim = 11;
  spec.action_dim = 1;
  spec.max_episode_steps = 1000;
  return spec;
}

class InvertedDoublePendulumEnv final : public MujocoEnv {
 public:
  explicit InvertedDoublePendulumEnv(MjModelPtr model)
      : MujocoEnv(InvertedDoublePendulumSpec(), TaskShape{/*nq=*/3, /*nv=*/3, /*nu=*/1, /*frame_skip=*/5},
                  std::move(model)) {}

  using MujocoEnv::Init;

  bool IsTerminal() const override { return TipY() <= kTerminalTipHeight; }

 private:
  absl::Status LookUpNames() override {
    MEOW_ASSIGN_OR_RETURN(tip_, LookUpId(mjOBJ_SITE, "tip"));
    return absl::OkStatus();
  }

  double TipX() const { return data().site_xpos[3 * tip_]; }
  double TipY() const { return data().site_xpos[3 * tip_ + 2]; }

  void AddResetNoise(absl::Span<double> qpos, absl::Span<double> qvel) override {
    for (double& q : qpos) q += Uniform(-kResetNoise, kResetNoise);
    for (double& v : qvel) v += kResetNoise * StandardNormal();
  }

  double Reward() override {
    const double x = TipX(), y = TipY();
    const double dist_penalty = kTipXWeight * x * x + (y - kTipTargetHeight) * (y - kTipTargetHeight);
    const double v1 = data().qvel[1], v2 = data().qvel[2];
    const double vel_penalty = kVelocityWeight1 * v1 * v1 + kVelocityWeight2 * v2 * v2;
    return kAliveBonus - dist_penalty - vel_penalty;
  }

  void WriteObservation(absl::Span<double> obs) const override {
    const mjData& d = data();
    obs[0] = d.qpos[0];
    obs[1] = std::sin(d.qpos[1]);
    obs[2] = std::sin(d.qpos[2]);
    obs[3] = std::cos(d.qpos[1]);
    obs[4] = std::cos(d.qpos[2]);
    for (int i = 0; i < 3; ++i) obs[5 + i] = std::clamp(d.qvel[i], -kClip, kClip);
    for (int i = 0; i < 3; ++i) obs[8 + i] = std::clamp(d.qfrc_constraint[i], -kClip, kClip);
  }

  int tip_ = -1;
};

}  // namespace

absl::StatusOr<std::unique_ptr<MujocoEnv>> MakeInvertedDoublePendulum(MjModelPtr model,
                                                                      const MujocoTaskOptions& options) {
  auto env = std::make_unique<InvertedDoublePendulumEnv>(std::move(model));
  MEOW_RETURN_IF_ERROR(env->Init());
  return env;
}

}  // namespace meow
