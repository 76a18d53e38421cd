// The seven Gymnasium v4 MuJoCo tasks on their embedded models, against the v4 rules written out
// again here, independently of actor/mujoco/ (reference/meow-and-envs.md §5): observation layout
// and clipping, reward terms, termination, truncation, reset noise, action rescaling, seeding,
// bad input, MuJoCo warnings and model loading errors. Hand-made states check each task's
// termination rule at its edges.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "actor/env_registry.h"
#include "actor/mujoco/embedded_models.h"
#include "actor/mujoco/tasks.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meow {
namespace {

using ::testing::HasSubstr;

// The table of §5: what each task must look like.
struct TaskFacts {
  const char* name;
  int obs_dim, action_dim, nq, nv, nu, frame_skip;
  double dt, ctrl_low, ctrl_high;
  double qpos_noise;  // U(-s, s) added to qpos0
  double qvel_noise;  // U(-s, s), or the standard deviation where qvel_normal
  bool qvel_normal;
  bool can_terminate;
};

const TaskFacts kTasks[] = {
    {"Hopper-v4", 11, 3, 6, 6, 3, 4, 0.008, -1, 1, 5e-3, 5e-3, false, true},
    {"HalfCheetah-v4", 17, 6, 9, 9, 6, 5, 0.05, -1, 1, 0.1, 0.1, true, false},
    {"Walker2d-v4", 17, 6, 9, 9, 6, 4, 0.008, -1, 1, 5e-3, 5e-3, false, true},
    {"Ant-v4", 27, 8, 15, 14, 8, 5, 0.05, -1, 1, 0.1, 0.1, true, true},
    {"Humanoid-v4", 376, 17, 24, 23, 17, 5, 0.015, -0.4, 0.4, 1e-2, 1e-2, false, true},
    {"InvertedPendulum-v4", 4, 1, 2, 2, 1, 2, 0.04, -3, 3, 0.01, 0.01, false, true},
    {"InvertedDoublePendulum-v4", 11, 1, 3, 3, 1, 5, 0.05, -1, 1, 0.1, 0.1, true, true},
};

void PrintTo(const TaskFacts& task, std::ostream* os) { *os << task.name; }

std::unique_ptr<MujocoEnv> Make(const std::string& name, MujocoTaskOptions options = {}) {
  auto env = MakeMujocoEnv(name, options);
  EXPECT_TRUE(env.ok()) << env.status();
  return env.ok() ? *std::move(env) : nullptr;
}

// --- The v4 rules, written out again
// --------------------------------------------------------------

double Clip(double x, double lo, double hi) { return std::min(std::max(x, lo), hi); }

int BodyId(const MujocoEnv& env, const char* name) { return mj_name2id(&env.model(), mjOBJ_BODY, name); }

// Humanoid's mass_center(): the mass-weighted mean of data.xipos, x component.
double MassCenterX(const MujocoEnv& env) {
  const mjModel& m = env.model();
  double weighted = 0, mass = 0;
  for (int b = 0; b < m.nbody; ++b) {
    weighted += m.body_mass[b] * env.data().xipos[3 * b];
    mass += m.body_mass[b];
  }
  return weighted / mass;
}

// What a step's reward compares with, read before the step.
struct Before {
  double qpos_x = 0;   // qpos[0]
  double torso_x = 0;  // data.xpos of Ant's torso
  double com_x = 0;    // Humanoid's centre of mass
};

Before Capture(const std::string& task, const MujocoEnv& env) {
  Before before;
  before.qpos_x = env.data().qpos[0];
  if (task == "Ant-v4") before.torso_x = env.data().xpos[3 * BodyId(env, "torso")];
  if (task == "Humanoid-v4") before.com_x = MassCenterX(env);
  return before;
}

double SumSq(const double* x, int n) {
  double s = 0;
  for (int i = 0; i < n; ++i) s += x[i] * x[i];
  return s;
}

double ExpectedReward(const std::string& task, const Before& before, const MujocoEnv& env,
                      const std::vector<double>& ctrl, bool contact_forces = false) {
  const mjData& d = env.data();
  const double dt = env.dt();
  const double ctrl_sq = SumSq(ctrl.data(), static_cast<int>(ctrl.size()));
  if (task == "Hopper-v4" || task == "Walker2d-v4") {
    return (d.qpos[0] - before.qpos_x) / dt + 1.0 - 1e-3 * ctrl_sq;
  }
  if (task == "HalfCheetah-v4") return (d.qpos[0] - before.qpos_x) / dt - 0.1 * ctrl_sq;
  if (task == "Ant-v4") {
    double reward = (d.xpos[3 * BodyId(env, "torso")] - before.torso_x) / dt + 1.0 - 0.5 * ctrl_sq;
    if (contact_forces) {
      double contact_sq = 0;
      for (int i = 0; i < 6 * env.model().nbody; ++i) {
        const double f = Clip(d.cfrc_ext[i], -1, 1);
        contact_sq += f * f;
      }
      reward -= 5e-4 * contact_sq;
    }
    return reward;
  }
  if (task == "Humanoid-v4") return 1.25 * (MassCenterX(env) - before.com_x) / dt + 5.0 - 0.1 * ctrl_sq;
  if (task == "InvertedPendulum-v4") return 1.0;
  if (task == "InvertedDoublePendulum-v4") {
    const int tip = mj_name2id(&env.model(), mjOBJ_SITE, "tip");
    const double x = d.site_xpos[3 * tip], y = d.site_xpos[3 * tip + 2];
    return 10.0 - (0.01 * x * x + (y - 2) * (y - 2)) - (1e-3 * d.qvel[1] * d.qvel[1] + 5e-3 * d.qvel[2] * d.qvel[2]);
  }
  ADD_FAILURE() << "no reward rule for " << task;
  return 0;
}

std::vector<double> ExpectedObservation(const std::string& task, const MujocoEnv& env, bool contact_forces = false) {
  const mjModel& m = env.model();
  const mjData& d = env.data();
  std::vector<double> obs;
  auto append = [&obs](const double* x, int n) { obs.insert(obs.end(), x, x + n); };
  auto append_clipped = [&obs](const double* x, int n, double limit) {
    for (int i = 0; i < n; ++i) obs.push_back(Clip(x[i], -limit, limit));
  };
  if (task == "Hopper-v4" || task == "Walker2d-v4") {
    append(d.qpos + 1, m.nq - 1);
    append_clipped(d.qvel, m.nv, 10);
  } else if (task == "HalfCheetah-v4") {
    append(d.qpos + 1, m.nq - 1);
    append(d.qvel, m.nv);
  } else if (task == "Ant-v4") {
    append(d.qpos + 2, m.nq - 2);
    append(d.qvel, m.nv);
    if (contact_forces) append_clipped(d.cfrc_ext, 6 * m.nbody, 1);
  } else if (task == "Humanoid-v4") {
    append(d.qpos + 2, m.nq - 2);
    append(d.qvel, m.nv);
    append(d.cinert, 10 * m.nbody);
    append(d.cvel, 6 * m.nbody);
    append(d.qfrc_actuator, m.nv);
    append(d.cfrc_ext, 6 * m.nbody);
  } else if (task == "InvertedPendulum-v4") {
    append(d.qpos, m.nq);
    append(d.qvel, m.nv);
  } else if (task == "InvertedDoublePendulum-v4") {
    obs.push_back(d.qpos[0]);
    obs.push_back(std::sin(d.qpos[1]));
    obs.push_back(std::sin(d.qpos[2]));
    obs.push_back(std::cos(d.qpos[1]));
    obs.push_back(std::cos(d.qpos[2]));
    append_clipped(d.qvel, m.nv, 10);
    append_clipped(d.qfrc_constraint, m.nv, 10);
  } else {
    ADD_FAILURE() << "no observation rule for " << task;
  }
  return obs;
}

bool ExpectedTerminal(const std::string& task, const MujocoEnv& env) {
  const mjModel& m = env.model();
  const mjData& d = env.data();
  if (task == "Hopper-v4") {
    bool healthy = 0.7 < d.qpos[1] && -0.2 < d.qpos[2] && d.qpos[2] < 0.2;
    for (int i = 2; i < m.nq; ++i) healthy = healthy && -100 < d.qpos[i] && d.qpos[i] < 100;
    for (int i = 0; i < m.nv; ++i) healthy = healthy && -100 < d.qvel[i] && d.qvel[i] < 100;
    return !healthy;
  }
  if (task == "Walker2d-v4") {
    return !(0.8 < d.qpos[1] && d.qpos[1] < 2.0 && -1 < d.qpos[2] && d.qpos[2] < 1);
  }
  if (task == "HalfCheetah-v4") return false;
  if (task == "Ant-v4") {
    bool finite = true;
    for (int i = 0; i < m.nq; ++i) finite = finite && std::isfinite(d.qpos[i]);
    for (int i = 0; i < m.nv; ++i) finite = finite && std::isfinite(d.qvel[i]);
    return !(finite && 0.2 <= d.qpos[2] && d.qpos[2] <= 1.0);
  }
  if (task == "Humanoid-v4") return !(1.0 < d.qpos[2] && d.qpos[2] < 2.0);
  if (task == "InvertedPendulum-v4") {
    bool finite = true;
    for (int i = 0; i < 2; ++i) finite = finite && std::isfinite(d.qpos[i]) && std::isfinite(d.qvel[i]);
    return !finite || std::abs(d.qpos[1]) > 0.2;
  }
  if (task == "InvertedDoublePendulum-v4") {
    return d.site_xpos[3 * mj_name2id(&m, mjOBJ_SITE, "tip") + 2] <= 1;
  }
  ADD_FAILURE() << "no termination rule for " << task;
  return false;
}

std::vector<double> QposOf(const MujocoEnv& env) {
  return std::vector<double>(env.data().qpos, env.data().qpos + env.model().nq);
}
std::vector<double> QvelOf(const MujocoEnv& env) {
  return std::vector<double>(env.data().qvel, env.data().qvel + env.model().nv);
}
std::vector<double> ObsOf(const MujocoEnv& env) {
  return std::vector<double>(env.Observation().begin(), env.Observation().end());
}

// --- Tests over every task ----------------------------------------------------------------------

class TaskTest : public ::testing::TestWithParam<TaskFacts> {};

TEST_P(TaskTest, SpecAndModelHaveTheV4Shape) {
  const TaskFacts& t = GetParam();
  auto env = Make(t.name);
  ASSERT_NE(env, nullptr);
  EXPECT_EQ(env->spec().name, t.name);
  EXPECT_EQ(env->spec().obs_dim, t.obs_dim);
  EXPECT_EQ(env->spec().action_dim, t.action_dim);
  EXPECT_EQ(env->spec().max_episode_steps, 1000);
  EXPECT_EQ(env->model().nq, t.nq);
  EXPECT_EQ(env->model().nv, t.nv);
  EXPECT_EQ(env->model().nu, t.nu);
  EXPECT_EQ(env->frame_skip(), t.frame_skip);
  EXPECT_NEAR(env->dt(), t.dt, 1e-12);
  for (int i = 0; i < env->model().nu; ++i) {
    EXPECT_EQ(env->model().actuator_ctrlrange[2 * i], t.ctrl_low);
    EXPECT_EQ(env->model().actuator_ctrlrange[2 * i + 1], t.ctrl_high);
  }
}

// Random actions, some outside [-1, 1]: every step's control, reward, observation and flags
// follow the rules above, the terminal step's healthy bonus included.
TEST_P(TaskTest, StepsFollowTheV4Rules) {
  const TaskFacts& t = GetParam();
  auto env = Make(t.name);
  ASSERT_NE(env, nullptr);
  ASSERT_TRUE(env->Reset(/*seed=*/11).ok());
  EXPECT_THAT(ObsOf(*env), ::testing::Pointwise(::testing::DoubleEq(), ExpectedObservation(t.name, *env)));
  std::mt19937_64 rng(/*seed=*/3);
  std::uniform_real_distribution<float> uniform(-1.3f, 1.3f);
  std::vector<float> action(t.action_dim);
  int terminal_steps = 0;
  for (int step = 0; step < 200; ++step) {
    for (float& a : action) a = uniform(rng);
    const Before before = Capture(t.name, *env);
    auto result = env->Step(action);
    ASSERT_TRUE(result.ok()) << result.status();
    // RescaleAction: [-1, 1] onto the control range, clipped.
    std::vector<double> ctrl(t.action_dim);
    for (int i = 0; i < t.action_dim; ++i) {
      const double a = Clip(action[i], -1, 1);
      ctrl[i] = t.ctrl_low + (t.ctrl_high - t.ctrl_low) * (a + 1) / 2;
      ASSERT_NEAR(env->data().ctrl[i], ctrl[i], 1e-12) << "ctrl[" << i << "] at step " << step;
    }
    const double expected = ExpectedReward(t.name, before, *env, ctrl);
    ASSERT_NEAR(result->reward, expected, 1e-9 * std::max(1.0, std::abs(expected))) << "at step " << step;
    ASSERT_THAT(ObsOf(*env), ::testing::Pointwise(::testing::DoubleEq(), ExpectedObservation(t.name, *env)))
        << "at step " << step;
    ASSERT_EQ(result->terminated, ExpectedTerminal(t.name, *env)) << "at step " << step;
    EXPECT_FALSE(result->truncated);
    EXPECT_TRUE(result->warning.empty()) << result->warning;
    if (result->terminated) {
      ++terminal_steps;
      // The episode is over: a further step is refused until the next reset.
      EXPECT_EQ(env->Step(action).status().code(), absl::StatusCode::kFailedPrecondition);
      ASSERT_TRUE(env->Reset(std::nullopt).ok());
    }
  }
  if (t.can_terminate && std::string(t.name) != "Ant-v4") {
    EXPECT_GT(terminal_steps, 0) << "random actions should end some episodes";
  }
  if (!t.can_terminate) EXPECT_EQ(terminal_steps, 0);
}

TEST_P(TaskTest, TheSameSeedGivesTheSameTrajectoryBitForBit) {
  const TaskFacts& t = GetParam();
  auto a = Make(t.name), b = Make(t.name);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(a->Reset(/*seed=*/99).ok());
  ASSERT_TRUE(b->Reset(/*seed=*/99).ok());
  std::mt19937_64 rng(/*seed=*/5);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> action(t.action_dim);
  for (int step = 0; step < 100; ++step) {
    ASSERT_EQ(ObsOf(*a), ObsOf(*b)) << "at step " << step;
    for (float& x : action) x = uniform(rng);
    auto ra = a->Step(action);
    auto rb = b->Step(action);
    ASSERT_TRUE(ra.ok() && rb.ok());
    ASSERT_EQ(ra->reward, rb->reward) << "at step " << step;
    ASSERT_EQ(ra->terminated, rb->terminated);
    if (ra->terminated) {
      ASSERT_TRUE(a->Reset(std::nullopt).ok());
      ASSERT_TRUE(b->Reset(std::nullopt).ok());
    }
  }
  // Another seed starts elsewhere; a reset without a seed goes on with the stream.
  ASSERT_TRUE(a->Reset(/*seed=*/99).ok());
  ASSERT_TRUE(b->Reset(/*seed=*/100).ok());
  EXPECT_NE(ObsOf(*a), ObsOf(*b));
  const std::vector<double> first = ObsOf(*a);
  ASSERT_TRUE(a->Reset(std::nullopt).ok());
  EXPECT_NE(ObsOf(*a), first);
}

TEST_P(TaskTest, ResetNoiseHasTheV4Distribution) {
  const TaskFacts& t = GetParam();
  auto env = Make(t.name);
  ASSERT_NE(env, nullptr);
  const mjModel& m = env->model();
  double max_qpos = 0, max_qvel = 0, sum_sq_qvel = 0;
  int count_qvel = 0;
  ASSERT_TRUE(env->Reset(/*seed=*/1).ok());
  for (int episode = 0; episode < 200; ++episode) {
    if (episode > 0) ASSERT_TRUE(env->Reset(std::nullopt).ok());
    EXPECT_EQ(env->data().time, 0.0);
    EXPECT_EQ(env->elapsed_steps(), 0);
    // Ant and Humanoid stand on a free joint whose quaternion (qpos[3:7]) gets the noise too, and
    // mj_forward then normalises it in place (MuJoCo 2.2.2, as under Gymnasium): it is checked
    // for unit length instead of the noise bound.
    const bool free_joint = m.jnt_type[0] == mjJNT_FREE;
    if (free_joint) {
      const double* quat = env->data().qpos + 3;
      EXPECT_NEAR(SumSq(quat, 4), 1.0, 1e-12);
      EXPECT_NE(quat[0], 1.0);  // noisy, not the default orientation
    }
    for (int i = 0; i < m.nq; ++i) {
      if (free_joint && i >= 3 && i < 7) continue;
      max_qpos = std::max(max_qpos, std::abs(env->data().qpos[i] - m.qpos0[i]));
    }
    for (int i = 0; i < m.nv; ++i) {
      max_qvel = std::max(max_qvel, std::abs(env->data().qvel[i]));
      sum_sq_qvel += env->data().qvel[i] * env->data().qvel[i];
      ++count_qvel;
    }
  }
  // Uniform noise fills (-s, s) and never leaves it.
  EXPECT_LE(max_qpos, t.qpos_noise);
  EXPECT_GT(max_qpos, 0.9 * t.qpos_noise);
  if (t.qvel_normal) {
    EXPECT_NEAR(std::sqrt(sum_sq_qvel / count_qvel), t.qvel_noise, 0.1 * t.qvel_noise);
    EXPECT_GT(max_qvel, t.qvel_noise);  // a normal exceeds one sigma somewhere in 200 x nv draws
  } else {
    EXPECT_LE(max_qvel, t.qvel_noise);
    EXPECT_GT(max_qvel, 0.9 * t.qvel_noise);
  }
}

TEST_P(TaskTest, TheThousandthStepTruncatesAndDoesNotTerminate) {
  const TaskFacts& t = GetParam();
  auto env = Make(t.name);
  ASSERT_NE(env, nullptr);
  ASSERT_TRUE(env->Reset(/*seed=*/0).ok());
  const std::vector<double> qpos0(env->model().qpos0, env->model().qpos0 + t.nq);
  const std::vector<double> zero_qvel(t.nv, 0.0);
  // Zero action = the middle of the control range.
  const std::vector<float> action(t.action_dim, 0.0f);
  for (int step = 1; step <= 1000; ++step) {
    // Hold the model at its healthy default pose so only the step limit can end the episode.
    ASSERT_TRUE(env->SetState(qpos0, zero_qvel).ok());
    auto result = env->Step(action);
    ASSERT_TRUE(result.ok()) << result.status();
    ASSERT_FALSE(result->terminated) << "at step " << step;
    ASSERT_EQ(result->truncated, step == 1000) << "at step " << step;
  }
  EXPECT_EQ(env->elapsed_steps(), 1000);
  EXPECT_EQ(env->Step(action).status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(env->Reset(std::nullopt).ok());
  EXPECT_TRUE(env->Step(action).ok());
}

TEST_P(TaskTest, BadActionsAreRefusedAndNoStepIsTaken) {
  const TaskFacts& t = GetParam();
  auto env = Make(t.name);
  ASSERT_NE(env, nullptr);
  EXPECT_EQ(env->Step(std::vector<float>(t.action_dim, 0.0f)).status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(env->Reset(/*seed=*/4).ok());
  ASSERT_TRUE(env->Step(std::vector<float>(t.action_dim, 0.1f)).ok());
  const std::vector<double> qpos = QposOf(*env), qvel = QvelOf(*env), obs = ObsOf(*env);
  const double time = env->data().time;
  auto expect_untouched = [&] {
    EXPECT_EQ(QposOf(*env), qpos);
    EXPECT_EQ(QvelOf(*env), qvel);
    EXPECT_EQ(ObsOf(*env), obs);
    EXPECT_EQ(env->data().time, time);
    EXPECT_EQ(env->elapsed_steps(), 1);
  };

  absl::Status too_long = env->Step(std::vector<float>(t.action_dim + 1, 0.0f)).status();
  EXPECT_EQ(too_long.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(too_long.message()), HasSubstr("expected " + std::to_string(t.action_dim)));
  expect_untouched();
  EXPECT_EQ(env->Step({}).status().code(), absl::StatusCode::kInvalidArgument);
  expect_untouched();

  std::vector<float> bad(t.action_dim, 0.0f);
  bad.back() = std::numeric_limits<float>::quiet_NaN();
  absl::Status nan = env->Step(bad).status();
  EXPECT_EQ(nan.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(nan.message()), HasSubstr("action[" + std::to_string(t.action_dim - 1) + "]"));
  expect_untouched();
  bad.back() = -std::numeric_limits<float>::infinity();
  EXPECT_EQ(env->Step(bad).status().code(), absl::StatusCode::kInvalidArgument);
  expect_untouched();
  // The episode goes on after a refused action.
  EXPECT_TRUE(env->Step(std::vector<float>(t.action_dim, 0.0f)).ok());
}

TEST_P(TaskTest, ActionsAreRescaledToTheControlRangeAndClipped) {
  const TaskFacts& t = GetParam();
  auto env = Make(t.name);
  ASSERT_NE(env, nullptr);
  struct Case {
    float action;
    double ctrl;
  };
  const double mid = (t.ctrl_low + t.ctrl_high) / 2;
  for (const Case& c : {Case{1.0f, t.ctrl_high}, Case{-1.0f, t.ctrl_low}, Case{0.0f, mid}, Case{7.0f, t.ctrl_high},
                        Case{-7.0f, t.ctrl_low}, Case{0.5f, mid + 0.25 * (t.ctrl_high - t.ctrl_low)}}) {
    ASSERT_TRUE(env->Reset(/*seed=*/0).ok());
    ASSERT_TRUE(env->Step(std::vector<float>(t.action_dim, c.action)).ok());
    for (int i = 0; i < t.action_dim; ++i) {
      EXPECT_NEAR(env->data().ctrl[i], c.ctrl, 1e-12) << "action " << c.action;
    }
  }
}

TEST_P(TaskTest, SetStateChecksSizes) {
  const TaskFacts& t = GetParam();
  auto env = Make(t.name);
  ASSERT_NE(env, nullptr);
  absl::Status status = env->SetState(std::vector<double>(t.nq + 1), std::vector<double>(t.nv));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("nq=" + std::to_string(t.nq)));
}

TEST_P(TaskTest, TheRegistryMakesIt) {
  auto env = MakeEnv(GetParam().name);
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ((*env)->spec().obs_dim, GetParam().obs_dim);
  EXPECT_THAT(KnownEnvs(), ::testing::Contains(std::string(GetParam().name)));
}

INSTANTIATE_TEST_SUITE_P(AllTasks, TaskTest, ::testing::ValuesIn(kTasks),
                         [](const ::testing::TestParamInfo<TaskFacts>& info) {
                           std::string name = info.param.name;
                           name.erase(std::remove(name.begin(), name.end(), '-'), name.end());
                           return name;
                         });

// --- Hand-made states, task by task
// ---------------------------------------------------------------

// Sets (qpos0 with `overrides`, qvel with `qvel_overrides`) and returns IsTerminal().
bool TerminalAt(MujocoEnv& env, std::vector<std::pair<int, double>> overrides,
                std::vector<std::pair<int, double>> qvel_overrides = {}) {
  std::vector<double> qpos(env.model().qpos0, env.model().qpos0 + env.model().nq);
  std::vector<double> qvel(env.model().nv, 0.0);
  for (auto [i, v] : overrides) qpos[i] = v;
  for (auto [i, v] : qvel_overrides) qvel[i] = v;
  EXPECT_TRUE(env.SetState(qpos, qvel).ok());
  return env.IsTerminal();
}

TEST(HopperTest, TerminationFollowsTheHealthyRanges) {
  auto env = Make("Hopper-v4");
  ASSERT_NE(env, nullptr);
  EXPECT_FALSE(TerminalAt(*env, {}));
  EXPECT_TRUE(TerminalAt(*env, {{1, 0.69}}));  // below 0.7 m
  EXPECT_TRUE(TerminalAt(*env, {{1, 0.7}}));   // strict
  EXPECT_FALSE(TerminalAt(*env, {{1, 0.71}}));
  EXPECT_FALSE(TerminalAt(*env, {{1, 50.0}}));  // no upper bound on z
  EXPECT_TRUE(TerminalAt(*env, {{2, 0.21}}));
  EXPECT_TRUE(TerminalAt(*env, {{2, -0.2}}));
  EXPECT_FALSE(TerminalAt(*env, {{2, 0.19}}));
  EXPECT_TRUE(TerminalAt(*env, {}, {{5, 100.0}}));  // state entries in (-100, 100)
  EXPECT_FALSE(TerminalAt(*env, {}, {{5, 99.0}}));
  // state_vector()[2:] drops only qpos[0:2]: every qvel entry counts, the x velocity included,
  // and so do the joint angles.
  EXPECT_TRUE(TerminalAt(*env, {}, {{0, 150.0}}));
  EXPECT_TRUE(TerminalAt(*env, {{3, -100.0}}));
  EXPECT_FALSE(TerminalAt(*env, {{0, 1000.0}}));  // but not the x position
}

TEST(HopperTest, FallingBelowTheHeightLimitTerminatesAndStillPaysTheHealthyBonus) {
  auto env = Make("Hopper-v4");
  ASSERT_NE(env, nullptr);
  ASSERT_TRUE(env->Reset(/*seed=*/0).ok());
  std::vector<double> qpos(env->model().qpos0, env->model().qpos0 + 6);
  qpos[1] = 0.6;
  ASSERT_TRUE(env->SetState(qpos, std::vector<double>(6, 0.0)).ok());
  const double x_before = env->data().qpos[0];
  auto result = env->Step(std::vector<float>{0.0f, 0.0f, 0.0f});
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(result->terminated);
  EXPECT_FALSE(result->truncated);
  EXPECT_NEAR(result->reward, (env->data().qpos[0] - x_before) / env->dt() + 1.0, 1e-12);
}

TEST(HalfCheetahTest, NeverTerminatesEvenUpsideDown) {
  auto env = Make("HalfCheetah-v4");
  ASSERT_NE(env, nullptr);
  EXPECT_FALSE(TerminalAt(*env, {{1, -5.0}, {2, 3.14159}}, {{0, 1e3}, {3, -1e3}}));
  ASSERT_TRUE(env->Reset(/*seed=*/0).ok());
  std::vector<double> qpos(9, 0.0), qvel(9, 0.0);
  qpos[2] = 3.14159;  // flipped onto its back
  ASSERT_TRUE(env->SetState(qpos, qvel).ok());
  for (int step = 0; step < 50; ++step) {
    auto result = env->Step(std::vector<float>(6, 1.0f));
    ASSERT_TRUE(result.ok());
    ASSERT_FALSE(result->terminated);
  }
}

TEST(Walker2dTest, TerminationFollowsTheHealthyRanges) {
  auto env = Make("Walker2d-v4");
  ASSERT_NE(env, nullptr);
  EXPECT_FALSE(TerminalAt(*env, {}));
  EXPECT_TRUE(TerminalAt(*env, {{1, 0.79}}));
  EXPECT_TRUE(TerminalAt(*env, {{1, 0.8}}));
  EXPECT_FALSE(TerminalAt(*env, {{1, 0.81}}));
  EXPECT_FALSE(TerminalAt(*env, {{1, 1.99}}));
  EXPECT_TRUE(TerminalAt(*env, {{1, 2.0}}));
  EXPECT_TRUE(TerminalAt(*env, {{2, 1.0}}));
  EXPECT_TRUE(TerminalAt(*env, {{2, -1.01}}));
  EXPECT_FALSE(TerminalAt(*env, {{2, 0.99}}));
  EXPECT_FALSE(TerminalAt(*env, {}, {{2, 500.0}}));  // no velocity rule in Walker2d
}

TEST(AntTest, TerminationUsesTheInclusiveHeightRangeAndFiniteness) {
  auto env = Make("Ant-v4");
  ASSERT_NE(env, nullptr);
  EXPECT_FALSE(TerminalAt(*env, {}));
  EXPECT_FALSE(TerminalAt(*env, {{2, 0.2}}));  // inclusive
  EXPECT_TRUE(TerminalAt(*env, {{2, 0.19}}));
  EXPECT_FALSE(TerminalAt(*env, {{2, 1.0}}));
  EXPECT_TRUE(TerminalAt(*env, {{2, 1.01}}));
  EXPECT_TRUE(TerminalAt(*env, {}, {{7, std::numeric_limits<double>::infinity()}}));
  EXPECT_TRUE(TerminalAt(*env, {}, {{3, std::numeric_limits<double>::quiet_NaN()}}));
}

TEST(AntTest, ContactForcesOptionExtendsObservationAndReward) {
  MujocoTaskOptions options;
  options.use_contact_forces = true;
  auto env = Make("Ant-v4", options);
  ASSERT_NE(env, nullptr);
  EXPECT_EQ(env->spec().obs_dim, 111);
  ASSERT_TRUE(env->Reset(/*seed=*/2).ok());
  // The reset observation has cfrc_ext = 0: only mj_forward ran.
  for (int i = 27; i < 111; ++i) EXPECT_EQ(env->Observation()[i], 0.0);
  std::mt19937_64 rng(/*seed=*/9);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> action(8);
  bool saw_contact = false;
  for (int step = 0; step < 60; ++step) {
    for (float& a : action) a = uniform(rng);
    const Before before = Capture("Ant-v4", *env);
    auto result = env->Step(action);
    ASSERT_TRUE(result.ok());
    std::vector<double> ctrl(env->data().ctrl, env->data().ctrl + 8);
    EXPECT_NEAR(result->reward, ExpectedReward("Ant-v4", before, *env, ctrl, /*contact_forces=*/true), 1e-9);
    ASSERT_THAT(ObsOf(*env), ::testing::Pointwise(::testing::DoubleEq(), ExpectedObservation("Ant-v4", *env, true)));
    for (int i = 27; i < 111; ++i) saw_contact = saw_contact || env->Observation()[i] != 0.0;
    if (result->terminated) ASSERT_TRUE(env->Reset(std::nullopt).ok());
  }
  EXPECT_TRUE(saw_contact) << "the legs touch the floor: cfrc_ext must show it";
}

TEST(HumanoidTest, TerminationFollowsTheStrictHeightRange) {
  auto env = Make("Humanoid-v4");
  ASSERT_NE(env, nullptr);
  EXPECT_FALSE(TerminalAt(*env, {}));
  EXPECT_TRUE(TerminalAt(*env, {{2, 1.0}}));
  EXPECT_FALSE(TerminalAt(*env, {{2, 1.01}}));
  EXPECT_FALSE(TerminalAt(*env, {{2, 1.99}}));
  EXPECT_TRUE(TerminalAt(*env, {{2, 2.0}}));
}

TEST(HumanoidTest, ObservationKeepsTheAlwaysZeroEntriesOfV4) {
  auto env = Make("Humanoid-v4");
  ASSERT_NE(env, nullptr);
  ASSERT_TRUE(env->Reset(/*seed=*/3).ok());
  constexpr int kCinert = 22 + 23, kCvel = kCinert + 140, kActuator = kCvel + 84, kCfrc = kActuator + 23;
  for (int i = kCfrc; i < 376; ++i) EXPECT_EQ(env->Observation()[i], 0.0) << "reset obs " << i;
  for (int step = 0; step < 10; ++step) {
    ASSERT_TRUE(env->Step(std::vector<float>(17, 0.7f)).ok());
    auto obs = env->Observation();
    for (int i = 0; i < 10; ++i) EXPECT_EQ(obs[kCinert + i], 0.0);   // world cinert
    for (int i = 0; i < 6; ++i) EXPECT_EQ(obs[kCvel + i], 0.0);      // world cvel
    for (int i = 0; i < 6; ++i) EXPECT_EQ(obs[kActuator + i], 0.0);  // free joint
    for (int i = 0; i < 6; ++i) EXPECT_EQ(obs[kCfrc + i], 0.0);      // world cfrc_ext
  }
}

TEST(InvertedPendulumTest, TerminatesPastTwoTenthsOfARadian) {
  auto env = Make("InvertedPendulum-v4");
  ASSERT_NE(env, nullptr);
  EXPECT_FALSE(TerminalAt(*env, {}));
  EXPECT_FALSE(TerminalAt(*env, {{1, 0.2}}));  // |angle| > 0.2, strict
  EXPECT_TRUE(TerminalAt(*env, {{1, 0.2001}}));
  EXPECT_TRUE(TerminalAt(*env, {{1, -0.2001}}));
  EXPECT_TRUE(TerminalAt(*env, {}, {{0, std::numeric_limits<double>::quiet_NaN()}}));
  // The terminal step still pays 1.
  ASSERT_TRUE(env->Reset(/*seed=*/0).ok());
  ASSERT_TRUE(env->SetState(std::vector<double>{0.0, 0.5}, std::vector<double>{0.0, 0.0}).ok());
  auto result = env->Step(std::vector<float>{0.0f});
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(result->terminated);
  EXPECT_EQ(result->reward, 1.0);
}

TEST(InvertedDoublePendulumTest, TerminatesWhenTheTipIsAtOrBelowOneMetre) {
  auto env = Make("InvertedDoublePendulum-v4");
  ASSERT_NE(env, nullptr);
  // Tip height = 0.6 cos(q1) + 0.6 cos(q1 + q2): upright 1.2.
  EXPECT_FALSE(TerminalAt(*env, {}));
  EXPECT_FALSE(TerminalAt(*env, {{1, 0.5}}));  // 1.2 cos 0.5 = 1.053
  EXPECT_TRUE(TerminalAt(*env, {{1, 0.6}}));   // 1.2 cos 0.6 = 0.990
  EXPECT_TRUE(TerminalAt(*env, {{1, 0.3}, {2, 1.2}}));
  // At rest upright the reward is 10 - (2 - 1.2)^2 up to the small motion of one step.
  ASSERT_TRUE(env->Reset(/*seed=*/0).ok());
  ASSERT_TRUE(env->SetState(std::vector<double>(3, 0.0), std::vector<double>(3, 0.0)).ok());
  auto result = env->Step(std::vector<float>{0.0f});
  ASSERT_TRUE(result.ok());
  EXPECT_NEAR(result->reward, 10.0 - 0.64, 1e-3);
  EXPECT_FALSE(result->terminated);
}

// --- Warnings and errors -----------------------------------------------------------------------

TEST(MujocoEnvTest, AnUnstableStateIsReportedWithTheStepAndCounted) {
  auto env = Make("Hopper-v4");
  ASSERT_NE(env, nullptr);
  ASSERT_TRUE(env->Reset(/*seed=*/0).ok());
  ASSERT_TRUE(env->Step(std::vector<float>(3, 0.0f)).ok());
  std::vector<double> qpos(env->data().qpos, env->data().qpos + 6);
  std::vector<double> qvel(6, 0.0);
  qvel[2] = 1e20;  // beyond MuJoCo's "huge value" threshold
  ASSERT_TRUE(env->SetState(qpos, qvel).ok());
  EXPECT_EQ(env->warning_count(), 0);
  auto result = env->Step(std::vector<float>(3, 0.0f));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(result->warning, HasSubstr("Hopper-v4 episode step 2"));
  EXPECT_THAT(result->warning, HasSubstr("unstable"));
  EXPECT_EQ(env->warning_count(), 1);
  // MuJoCo reset the physics; later clean steps report nothing new.
  auto next = env->Step(std::vector<float>(3, 0.0f));
  ASSERT_TRUE(next.ok());
  EXPECT_TRUE(next->warning.empty()) << next->warning;
  EXPECT_EQ(env->warning_count(), 1);
}

class ModelFileTest : public ::testing::Test {
 protected:
  std::string WriteFile(const std::string& name, const std::string& text) {
    const std::string path = ::testing::TempDir() + "/" + name;
    std::ofstream(path) << text;
    return path;
  }
};

TEST_F(ModelFileTest, ABrokenModelGivesMuJoCosErrorText) {
  auto model =
      LoadModelFromXml("broken.xml", "<mujoco><worldbody><body><joint type=\"twist\"/></body></worldbody></mujoco>");
  ASSERT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(model.status().message()), HasSubstr("broken.xml"));
  EXPECT_THAT(std::string(model.status().message()), HasSubstr("invalid keyword: 'twist'"));
  auto unclosed = LoadModelFromXml("unclosed.xml", "<mujoco><worldbody>");
  EXPECT_EQ(unclosed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(unclosed.status().message()), HasSubstr("XML"));

  const std::string path = WriteFile("bad_hopper.xml", "<mujoco><option timestep=\"fast\"/></mujoco>");
  MujocoTaskOptions options;
  options.model_file = path;
  auto env = MakeMujocoEnv("Hopper-v4", options);
  EXPECT_EQ(env.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(env.status().message()), HasSubstr("MuJoCo could not load model"));
}

TEST_F(ModelFileTest, AMissingFileIsNotFound) {
  MujocoTaskOptions options;
  options.model_file = ::testing::TempDir() + "/no_such_model.xml";
  auto env = MakeMujocoEnv("Hopper-v4", options);
  EXPECT_EQ(env.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(env.status().message()), HasSubstr("no_such_model.xml"));
}

TEST_F(ModelFileTest, AModelOfTheWrongShapeIsRefused) {
  auto pendulum = EmbeddedTaskModel("InvertedPendulum-v4");
  ASSERT_TRUE(pendulum.ok());
  MujocoTaskOptions options;
  options.model_file = WriteFile("pendulum_as_hopper.xml", std::string(*pendulum));
  auto env = MakeMujocoEnv("Hopper-v4", options);
  EXPECT_EQ(env.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(env.status().message()), HasSubstr("expected nq=6 nv=6 nu=3"));

  // The right sizes but no "tip" site for InvertedDoublePendulum's reward.
  options.model_file = WriteFile("no_tip.xml", R"(
    <mujoco><worldbody><body>
      <joint name="slider" type="slide" axis="1 0 0"/><geom size="0.1"/>
      <body><joint type="hinge" axis="0 1 0"/><geom size="0.1"/>
        <body><joint type="hinge" axis="0 1 0"/><geom size="0.1"/></body></body>
    </body></worldbody>
    <actuator><motor joint="slider" ctrllimited="true" ctrlrange="-1 1"/></actuator></mujoco>)");
  env = MakeMujocoEnv("InvertedDoublePendulum-v4", options);
  EXPECT_EQ(env.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(env.status().message()), HasSubstr("site named \"tip\""));

  // An actuator without a control range gives no action box.
  options.model_file = WriteFile("unlimited.xml", R"(
    <mujoco><worldbody><body>
      <joint name="slider" type="slide" axis="1 0 0"/><geom size="0.1"/>
      <body><joint name="hinge" type="hinge" axis="0 1 0"/><geom size="0.1"/></body>
    </body></worldbody>
    <actuator><motor joint="slider"/></actuator></mujoco>)");
  env = MakeMujocoEnv("InvertedPendulum-v4", options);
  EXPECT_EQ(env.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(env.status().message()), HasSubstr("ctrllimited"));
}

TEST(MujocoTasksTest, UnknownTaskIsNotFoundAndListsTheKnownOnes) {
  auto env = MakeMujocoEnv("Hopper-v5");
  EXPECT_EQ(env.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(env.status().message()), HasSubstr("Hopper-v4"));
  EXPECT_THAT(std::string(env.status().message()), HasSubstr("InvertedDoublePendulum-v4"));
  auto via_registry = MakeEnv("Hopper-v5");
  EXPECT_EQ(via_registry.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(via_registry.status().message()), HasSubstr("Humanoid-v4"));
  EXPECT_THAT(std::string(via_registry.status().message()), HasSubstr("MultiGoal-v0"));
}

TEST(MujocoTasksTest, EveryTaskModelIsEmbedded) {
  EXPECT_EQ(EmbeddedModelFiles().size(), 7u);
  for (const std::string& name : MujocoTaskNames()) {
    auto xml = EmbeddedTaskModel(name);
    ASSERT_TRUE(xml.ok()) << xml.status();
    EXPECT_THAT(std::string(*xml), HasSubstr("<mujoco model=\"meow_"));
    EXPECT_TRUE(LoadModelFromXml("copy.xml", *xml).ok()) << name;
  }
}

}  // namespace
}  // namespace meow
