// Humanoid-v4: Gymnasium v0.29.1 humanoid_v4.py with its default arguments, on
// models/humanoid.xml.
//   observation (376) = qpos[2:24] (22) | qvel (23) | cinert (14 x 10) | cvel (14 x 6)
//                       | qfrc_actuator (23) | cfrc_ext (14 x 6). As in v4 this keeps the world
//                       body's rows and the free joint's actuator forces, which are always 0.
//                       cinert and cvel are those mj_step left (one substep behind the state);
//                       cfrc_ext comes from the mj_rnePostConstraint after the last substep, and
//                       is 0 in the reset observation.
//   reward            = 1.25 * (c' - c) / dt + 5 - 0.1 * |data.ctrl|^2, c = x of the
//                       mass-weighted mean of data.xipos over all bodies. No contact cost (v4).
//                       The healthy bonus 5 is paid on every step, the terminating one included.
//   terminal          unless z = qpos[2] in (1.0, 2.0), strict.
//   reset             qpos0 + U(-1e-2, 1e-2) per entry, qvel U(-1e-2, 1e-2); frame_skip 5
//                     (dt 15 ms). The action box is the control range [-0.4, 0.4]^17, so the
//                     policy's a in [-1, 1] becomes ctrl = 0.4 * a.
#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "actor/mujoco/mujoco_env.h"
#include "actor/mujoco/tasks.h"
#include "common/status.h"

namespace meow {
namespace {

constexpr double kForwardRewardWeight = 1.25;
constexpr double kCtrlCostWeight = 0.1;
constexpr double kHealthyReward = 5.0;
constexpr double kHealthyZMin = 1.0;
constexpr double kHealthyZMax = 2.0;
constexpr double kResetNoise = 1e-2;
constexpr int kNq = 24, kNv = 23;
constexpr int kNumBodies = 14;

EnvSpec HumanoidSpec() {
  EnvSpec spec;
  spec.name = "Humanoid-v4";
  spec.obs_dim = (kNq - 2) + kNv + 10 * kNumBodies + 6 * kNumBodies + kNv + 6 * kNumBodies;
  spec.action_dim = 17;
  spec.max_episode_steps = 1000;
  return spec;
}

class HumanoidEnv final : public MujocoEnv {
 public:
  explicit HumanoidEnv(MjModelPtr model)
      : MujocoEnv(HumanoidSpec(), TaskShape{/*nq=*/kNq, /*nv=*/kNv, /*nu=*/17, /*frame_skip=*/5}, std::move(model)) {}

  using MujocoEnv::Init;

  bool IsTerminal() const override {
    const double z = data().qpos[2];
    return !(kHealthyZMin < z && z < kHealthyZMax);
  }

 private:
  absl::Status LookUpNames() override {
    const mjModel& m = model();
    if (m.nbody != kNumBodies) {
      return absl::InvalidArgumentError(
          absl::StrCat("Humanoid-v4: the model has ", m.nbody, " bodies, expected ", kNumBodies));
    }
    total_mass_ = 0;
    for (int b = 0; b < m.nbody; ++b) total_mass_ += m.body_mass[b];
    if (!(total_mass_ > 0)) {
      return absl::InvalidArgumentError("Humanoid-v4: the model's bodies have no mass");
    }
    return absl::OkStatus();
  }

  void AddResetNoise(absl::Span<double> qpos, absl::Span<double> qvel) override {
    for (double& q : qpos) q += Uniform(-kResetNoise, kResetNoise);
    for (double& v : qvel) v += Uniform(-kResetNoise, kResetNoise);
  }

  // x of the centre of mass from the body inertial frames mj_step left in data.xipos.
  double MassCenterX() const {
    const mjModel& m = model();
    const mjData& d = data();
    double weighted = 0;
    for (int b = 0; b < m.nbody; ++b) weighted += m.body_mass[b] * d.xipos[3 * b];
    return weighted / total_mass_;
  }

  void BeforePhysics() override { x_before_ = MassCenterX(); }

  double Reward() override {
    const double x_velocity = (MassCenterX() - x_before_) / dt();
    return kForwardRewardWeight * x_velocity + kHealthyReward - kCtrlCostWeight * SquaredControl();
  }

  void WriteObservation(absl::Span<double> obs) const override {
    const mjData& d = data();
    auto out = obs.begin();
    out = std::copy(d.qpos + 2, d.qpos + kNq, out);
    out = std::copy(d.qvel, d.qvel + kNv, out);
    out = std::copy(d.cinert, d.cinert + 10 * kNumBodies, out);
    out = std::copy(d.cvel, d.cvel + 6 * kNumBodies, out);
    out = std::copy(d.qfrc_actuator, d.qfrc_actuator + kNv, out);
    std::copy(d.cfrc_ext, d.cfrc_ext + 6 * kNumBodies, out);
  }

  double total_mass_ = 0;
  double x_before_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<MujocoEnv>> MakeHumanoid(MjModelPtr model, const MujocoTaskOptions& options) {
  auto env = std::make_unique<HumanoidEnv>(std::move(model));
  MEOW_RETURN_IF_ERROR(env->Init());
  return env;
}

}  // namespace meow
