// Conformance of the project's own MuJoCo task models with Gymnasium's v4 reference models
// (../shared/reference/gymnasium-mujoco-assets, found through MEOW_REFERENCE_MODELS_DIR).
//   - Model equality: sizes, every body mass and inertia, joint ranges, actuator gears and
//     control ranges, timestep, integrator and the rest of the physics parameters, within 1e-9.
//   - Trajectory equality: the same task code on our model and on the reference model, from the
//     same seeded initial state, 300 steps of the same random actions (episodes that end are reset
//     on both sides the same way): qpos, qvel, observation and reward within 1e-6, the same
//     termination and truncation flags. A third copy, the reference model stepped with bare
//     MuJoCo calls exactly as Gymnasium's MujocoEnv does (data.ctrl = action, frame_skip x
//     mj_step, mj_rnePostConstraint; reset = mj_resetData, set qpos/qvel, mj_forward), checks our
//     stepping procedure itself: qpos, qvel and cfrc_ext within 1e-6.
// Skipped, with the reason, where the reference models are not present.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "actor/mujoco/tasks.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#ifndef MEOW_REFERENCE_MODELS_DIR
#error "MEOW_REFERENCE_MODELS_DIR must name the reference model folder"
#endif

namespace meow {
namespace {

constexpr double kModelTolerance = 1e-9;
constexpr double kTrajectoryTolerance = 1e-6;
constexpr int kTrajectorySteps = 300;

struct TaskCase {
  const char* name;
  const char* reference_file;
};

const TaskCase kCases[] = {
    {"Hopper-v4", "hopper.xml"},
    {"HalfCheetah-v4", "half_cheetah.xml"},
    {"Walker2d-v4", "walker2d.xml"},
    {"Ant-v4", "ant.xml"},
    {"Humanoid-v4", "humanoid.xml"},
    {"InvertedPendulum-v4", "inverted_pendulum.xml"},
    {"InvertedDoublePendulum-v4", "inverted_double_pendulum.xml"},
};

void PrintTo(const TaskCase& task, std::ostream* os) { *os << task.name; }

std::string ReferencePath(const TaskCase& task) {
  return std::string(MEOW_REFERENCE_MODELS_DIR) + "/" + task.reference_file;
}

class ConformanceTest : public ::testing::TestWithParam<TaskCase> {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(ReferencePath(GetParam()))) {
      GTEST_SKIP() << "reference model " << ReferencePath(GetParam())
                   << " is not present (../shared is absent): conformance not checked";
    }
  }
};

// Compares `count` values of a model array; the message names the field and the index.
template <typename T>
void ExpectArraysNear(const char* field, const T* ours, const T* reference, int count) {
  for (int i = 0; i < count; ++i) {
    EXPECT_NEAR(static_cast<double>(ours[i]), static_cast<double>(reference[i]), kModelTolerance)
        << field << "[" << i << "]";
  }
}

TEST_P(ConformanceTest, ModelEqualsTheReference) {
  auto ours_or = MakeMujocoEnv(GetParam().name);
  ASSERT_TRUE(ours_or.ok()) << ours_or.status();
  MujocoTaskOptions reference_options;
  reference_options.model_file = ReferencePath(GetParam());
  auto reference_or = MakeMujocoEnv(GetParam().name, reference_options);
  ASSERT_TRUE(reference_or.ok()) << reference_or.status();
  const mjModel& a = (*ours_or)->model();
  const mjModel& b = (*reference_or)->model();

  // Sizes: without them nothing below is comparable.
  ASSERT_EQ(a.nq, b.nq);
  ASSERT_EQ(a.nv, b.nv);
  ASSERT_EQ(a.nu, b.nu);
  ASSERT_EQ(a.na, b.na);
  ASSERT_EQ(a.nbody, b.nbody);
  ASSERT_EQ(a.njnt, b.njnt);
  ASSERT_EQ(a.ngeom, b.ngeom);
  ASSERT_EQ(a.nsite, b.nsite);
  ASSERT_EQ(a.ntendon, b.ntendon);
  ASSERT_EQ(a.nwrap, b.nwrap);
  ASSERT_EQ(a.neq, b.neq);
  ASSERT_EQ(a.nsensor, b.nsensor);
  ASSERT_EQ(a.nexclude, b.nexclude);
  ASSERT_EQ(a.npair, b.npair);

  // Options.
#define MEOW_EXPECT_OPTION(field) ExpectArraysNear("opt." #field, &a.opt.field, &b.opt.field, 1)
#define MEOW_EXPECT_OPTION_ARRAY(field, n) ExpectArraysNear("opt." #field, a.opt.field, b.opt.field, n)
  MEOW_EXPECT_OPTION(timestep);
  MEOW_EXPECT_OPTION(impratio);
  MEOW_EXPECT_OPTION(tolerance);
  MEOW_EXPECT_OPTION(noslip_tolerance);
  MEOW_EXPECT_OPTION(mpr_tolerance);
  MEOW_EXPECT_OPTION_ARRAY(gravity, 3);
  MEOW_EXPECT_OPTION_ARRAY(wind, 3);
  MEOW_EXPECT_OPTION_ARRAY(magnetic, 3);
  MEOW_EXPECT_OPTION(density);
  MEOW_EXPECT_OPTION(viscosity);
  MEOW_EXPECT_OPTION(o_margin);
  MEOW_EXPECT_OPTION_ARRAY(o_solref, mjNREF);
  MEOW_EXPECT_OPTION_ARRAY(o_solimp, mjNIMP);
  EXPECT_EQ(a.opt.integrator, b.opt.integrator);
  EXPECT_EQ(a.opt.collision, b.opt.collision);
  EXPECT_EQ(a.opt.cone, b.opt.cone);
  EXPECT_EQ(a.opt.jacobian, b.opt.jacobian);
  EXPECT_EQ(a.opt.solver, b.opt.solver);
  EXPECT_EQ(a.opt.iterations, b.opt.iterations);
  EXPECT_EQ(a.opt.noslip_iterations, b.opt.noslip_iterations);
  EXPECT_EQ(a.opt.mpr_iterations, b.opt.mpr_iterations);
  EXPECT_EQ(a.opt.disableflags, b.opt.disableflags);
  EXPECT_EQ(a.opt.enableflags, b.opt.enableflags);
#undef MEOW_EXPECT_OPTION
#undef MEOW_EXPECT_OPTION_ARRAY

  // Arrays: field name and length.
#define MEOW_EXPECT_FIELD(field, n) ExpectArraysNear(#field, a.field, b.field, (n))
  MEOW_EXPECT_FIELD(qpos0, a.nq);
  MEOW_EXPECT_FIELD(qpos_spring, a.nq);
  // Bodies: tree, frames, mass and inertia.
  MEOW_EXPECT_FIELD(body_parentid, a.nbody);
  MEOW_EXPECT_FIELD(body_jntnum, a.nbody);
  MEOW_EXPECT_FIELD(body_jntadr, a.nbody);
  MEOW_EXPECT_FIELD(body_dofnum, a.nbody);
  MEOW_EXPECT_FIELD(body_geomnum, a.nbody);
  MEOW_EXPECT_FIELD(body_pos, 3 * a.nbody);
  MEOW_EXPECT_FIELD(body_quat, 4 * a.nbody);
  MEOW_EXPECT_FIELD(body_ipos, 3 * a.nbody);
  MEOW_EXPECT_FIELD(body_iquat, 4 * a.nbody);
  MEOW_EXPECT_FIELD(body_mass, a.nbody);
  MEOW_EXPECT_FIELD(body_inertia, 3 * a.nbody);
  // Joints and dofs.
  MEOW_EXPECT_FIELD(jnt_type, a.njnt);
  MEOW_EXPECT_FIELD(jnt_bodyid, a.njnt);
  MEOW_EXPECT_FIELD(jnt_qposadr, a.njnt);
  MEOW_EXPECT_FIELD(jnt_limited, a.njnt);
  MEOW_EXPECT_FIELD(jnt_range, 2 * a.njnt);
  MEOW_EXPECT_FIELD(jnt_pos, 3 * a.njnt);
  MEOW_EXPECT_FIELD(jnt_axis, 3 * a.njnt);
  MEOW_EXPECT_FIELD(jnt_stiffness, a.njnt);
  MEOW_EXPECT_FIELD(jnt_margin, a.njnt);
  MEOW_EXPECT_FIELD(jnt_solref, mjNREF * a.njnt);
  MEOW_EXPECT_FIELD(jnt_solimp, mjNIMP * a.njnt);
  MEOW_EXPECT_FIELD(dof_bodyid, a.nv);
  MEOW_EXPECT_FIELD(dof_damping, a.nv);
  MEOW_EXPECT_FIELD(dof_armature, a.nv);
  MEOW_EXPECT_FIELD(dof_frictionloss, a.nv);
  MEOW_EXPECT_FIELD(dof_solref, mjNREF * a.nv);
  MEOW_EXPECT_FIELD(dof_solimp, mjNIMP * a.nv);
  // Geoms: shape, placement and contact parameters.
  MEOW_EXPECT_FIELD(geom_type, a.ngeom);
  MEOW_EXPECT_FIELD(geom_bodyid, a.ngeom);
  MEOW_EXPECT_FIELD(geom_contype, a.ngeom);
  MEOW_EXPECT_FIELD(geom_conaffinity, a.ngeom);
  MEOW_EXPECT_FIELD(geom_condim, a.ngeom);
  MEOW_EXPECT_FIELD(geom_priority, a.ngeom);
  MEOW_EXPECT_FIELD(geom_size, 3 * a.ngeom);
  MEOW_EXPECT_FIELD(geom_rbound, a.ngeom);
  MEOW_EXPECT_FIELD(geom_pos, 3 * a.ngeom);
  MEOW_EXPECT_FIELD(geom_quat, 4 * a.ngeom);
  MEOW_EXPECT_FIELD(geom_friction, 3 * a.ngeom);
  MEOW_EXPECT_FIELD(geom_margin, a.ngeom);
  MEOW_EXPECT_FIELD(geom_gap, a.ngeom);
  MEOW_EXPECT_FIELD(geom_solmix, a.ngeom);
  MEOW_EXPECT_FIELD(geom_solref, mjNREF * a.ngeom);
  MEOW_EXPECT_FIELD(geom_solimp, mjNIMP * a.ngeom);
  // Sites (IDP's tip).
  MEOW_EXPECT_FIELD(site_bodyid, a.nsite);
  MEOW_EXPECT_FIELD(site_pos, 3 * a.nsite);
  MEOW_EXPECT_FIELD(site_quat, 4 * a.nsite);
  // Tendons (Humanoid's hip-knee couplings).
  MEOW_EXPECT_FIELD(tendon_adr, a.ntendon);
  MEOW_EXPECT_FIELD(tendon_num, a.ntendon);
  MEOW_EXPECT_FIELD(tendon_limited, a.ntendon);
  MEOW_EXPECT_FIELD(tendon_range, 2 * a.ntendon);
  MEOW_EXPECT_FIELD(tendon_stiffness, a.ntendon);
  MEOW_EXPECT_FIELD(tendon_damping, a.ntendon);
  MEOW_EXPECT_FIELD(tendon_frictionloss, a.ntendon);
  MEOW_EXPECT_FIELD(tendon_lengthspring, a.ntendon);
  MEOW_EXPECT_FIELD(wrap_type, a.nwrap);
  MEOW_EXPECT_FIELD(wrap_objid, a.nwrap);
  MEOW_EXPECT_FIELD(wrap_prm, a.nwrap);
  // Actuators: order, transmission, gear, control range and gains.
  MEOW_EXPECT_FIELD(actuator_trntype, a.nu);
  MEOW_EXPECT_FIELD(actuator_dyntype, a.nu);
  MEOW_EXPECT_FIELD(actuator_gaintype, a.nu);
  MEOW_EXPECT_FIELD(actuator_biastype, a.nu);
  MEOW_EXPECT_FIELD(actuator_trnid, 2 * a.nu);
  MEOW_EXPECT_FIELD(actuator_ctrllimited, a.nu);
  MEOW_EXPECT_FIELD(actuator_forcelimited, a.nu);
  MEOW_EXPECT_FIELD(actuator_ctrlrange, 2 * a.nu);
  MEOW_EXPECT_FIELD(actuator_forcerange, 2 * a.nu);
  MEOW_EXPECT_FIELD(actuator_gear, 6 * a.nu);
  MEOW_EXPECT_FIELD(actuator_gainprm, mjNGAIN * a.nu);
  MEOW_EXPECT_FIELD(actuator_biasprm, mjNBIAS * a.nu);
  MEOW_EXPECT_FIELD(actuator_dynprm, mjNDYN * a.nu);
#undef MEOW_EXPECT_FIELD
}

TEST_P(ConformanceTest, TrajectoryEqualsTheReference) {
  auto ours_or = MakeMujocoEnv(GetParam().name);
  ASSERT_TRUE(ours_or.ok()) << ours_or.status();
  MujocoTaskOptions reference_options;
  reference_options.model_file = ReferencePath(GetParam());
  auto reference_or = MakeMujocoEnv(GetParam().name, reference_options);
  ASSERT_TRUE(reference_or.ok()) << reference_or.status();
  MujocoEnv& ours = **ours_or;
  MujocoEnv& reference = **reference_or;
  const int nq = ours.model().nq, nv = ours.model().nv;
  const int action_dim = ours.spec().action_dim, obs_dim = ours.spec().obs_dim;

  double max_diff = 0;
  auto expect_same_state = [&](int step) {
    auto compare = [&](const char* what, const double* x, const double* y, int n) {
      for (int i = 0; i < n; ++i) {
        const double diff = std::abs(x[i] - y[i]);
        max_diff = std::max(max_diff, diff);
        ASSERT_LE(diff, kTrajectoryTolerance)
            << what << "[" << i << "] at step " << step << ": " << x[i] << " vs reference " << y[i];
      }
    };
    compare("qpos", ours.data().qpos, reference.data().qpos, nq);
    compare("qvel", ours.data().qvel, reference.data().qvel, nv);
    compare("observation", ours.Observation().data(), reference.Observation().data(), obs_dim);
  };

  // Gymnasium's loop, written out with bare MuJoCo calls on the reference model.
  auto raw_model_or = LoadModelFromFile(ReferencePath(GetParam()));
  ASSERT_TRUE(raw_model_or.ok()) << raw_model_or.status();
  MjModelPtr raw_model = *std::move(raw_model_or);
  MjDataPtr raw_data(mj_makeData(raw_model.get()));
  mjModel* rm = raw_model.get();
  mjData* rd = raw_data.get();
  auto raw_reset_to_ours = [&] {  // the reset noise is ours; the reset procedure is Gymnasium's
    mj_resetData(rm, rd);
    mju_copy(rd->qpos, ours.data().qpos, nq);
    mju_copy(rd->qvel, ours.data().qvel, nv);
    mj_forward(rm, rd);
    // mj_forward normalises free-joint quaternions in place, and normalising ours (already
    // normalised by our reset's mj_forward) again can move the last bit, and with it the solver
    // warm start that mj_forward leaves. Keep our bits: they are what Gymnasium's reset makes
    // from the same noisy qpos.
    mju_copy(rd->qpos, ours.data().qpos, nq);
    mju_copy(rd->qacc_warmstart, ours.data().qacc_warmstart, nv);
  };
  auto expect_same_as_raw = [&](int step) {
    auto compare = [&](const char* what, const double* x, const double* y, int n) {
      for (int i = 0; i < n; ++i) {
        max_diff = std::max(max_diff, std::abs(x[i] - y[i]));
        ASSERT_NEAR(x[i], y[i], kTrajectoryTolerance)
            << what << "[" << i << "] at step " << step << " vs Gymnasium's loop";
      }
    };
    compare("qpos", ours.data().qpos, rd->qpos, nq);
    compare("qvel", ours.data().qvel, rd->qvel, nv);
    compare("cfrc_ext", ours.data().cfrc_ext, rd->cfrc_ext, 6 * rm->nbody);
    compare("xpos", ours.data().xpos, rd->xpos, 3 * rm->nbody);
  };

  ASSERT_TRUE(ours.Reset(/*seed=*/2024).ok());
  ASSERT_TRUE(reference.Reset(/*seed=*/2024).ok());
  raw_reset_to_ours();
  expect_same_state(0);
  if (HasFatalFailure()) return;
  expect_same_as_raw(0);
  if (HasFatalFailure()) return;

  std::mt19937_64 rng(/*seed=*/7);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> action(action_dim);
  int episodes = 1, terminations = 0;
  for (int step = 1; step <= kTrajectorySteps; ++step) {
    for (float& a : action) a = uniform(rng);
    auto r_ours = ours.Step(action);
    auto r_reference = reference.Step(action);
    for (int i = 0; i < rm->nu; ++i) {  // RescaleAction from [-1, 1] to the control range
      const double lo = rm->actuator_ctrlrange[2 * i], hi = rm->actuator_ctrlrange[2 * i + 1];
      rd->ctrl[i] = lo + 0.5 * (hi - lo) * (static_cast<double>(action[i]) + 1.0);
    }
    for (int k = 0; k < ours.frame_skip(); ++k) mj_step(rm, rd);
    mj_rnePostConstraint(rm, rd);
    ASSERT_TRUE(r_ours.ok()) << r_ours.status();
    ASSERT_TRUE(r_reference.ok()) << r_reference.status();
    EXPECT_TRUE(r_ours->warning.empty()) << r_ours->warning;
    const double reward_diff = std::abs(r_ours->reward - r_reference->reward);
    max_diff = std::max(max_diff, reward_diff);
    ASSERT_LE(reward_diff, kTrajectoryTolerance)
        << "reward at step " << step << ": " << r_ours->reward << " vs " << r_reference->reward;
    ASSERT_EQ(r_ours->terminated, r_reference->terminated) << "at step " << step;
    ASSERT_EQ(r_ours->truncated, r_reference->truncated) << "at step " << step;
    expect_same_state(step);
    if (HasFatalFailure()) return;
    expect_same_as_raw(step);
    if (HasFatalFailure()) return;
    if (r_ours->terminated || r_ours->truncated) {
      // Both go on with their (identically seeded) random streams.
      terminations += r_ours->terminated;
      ++episodes;
      ASSERT_TRUE(ours.Reset(std::nullopt).ok());
      ASSERT_TRUE(reference.Reset(std::nullopt).ok());
      raw_reset_to_ours();
      expect_same_state(step);
      if (HasFatalFailure()) return;
    }
  }
  RecordProperty("episodes", episodes);
  RecordProperty("max_abs_difference", std::to_string(max_diff));
  std::cout << GetParam().name << ": " << kTrajectorySteps << " steps over " << episodes << " episode(s), "
            << terminations << " termination(s); largest difference from the "
            << "reference " << max_diff << "\n";
}

INSTANTIATE_TEST_SUITE_P(AllTasks, ConformanceTest, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<TaskCase>& info) {
                           std::string name = info.param.name;
                           name.erase(std::remove(name.begin(), name.end(), '-'), name.end());
                           return name;
                         });

}  // namespace
}  // namespace meow
