// Env steps per second of the MuJoCo tasks, beside a bare mj_step loop doing the same physics on
// the same model in the same run, and the ratio of the two.
//
// Both sides do exactly the same physics: a fixed table of random actions in [-1, 1] is played
// through our environment once, untimed, recording every episode's initial state and every
// step's control. The bare loop replays that record with nothing but MuJoCo calls
// (mj_resetData + set state + mj_forward at each episode start, then ctrl and frame_skip x
// mj_step per env step). Our loop plays the same table through a VectorEnv (Reset with the same
// seed at the start of each pass, auto-reset inside), so its trajectories are the recorded ones.
// The difference is what our stepping adds: action checks and rescaling, mj_rnePostConstraint,
// warning checks, reward, termination, observation, auto-reset bookkeeping.
//
// The two loops run in alternating blocks of 25 env steps, each timed, so that the load of a
// shared machine falls on both alike. V=1 is one instance; V=16 a VectorEnv of 16 on the
// calling thread beside a bare loop over 16 mjData. A summary table with the ratios follows
// Google Benchmark's output.
//   build-actor/tests/bench/bench_mujoco_env --benchmark_min_time=2
#include <benchmark/benchmark.h>
#include <mujoco/mujoco.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "actor/mujoco/tasks.h"
#include "actor/vector_env.h"

namespace meow {
namespace {

constexpr int kStepsPerPass = 2000;  // env steps per instance in the recorded pass
constexpr uint64_t kSeed = 1234;

const char* const kTasks[] = {"Hopper-v4",           "HalfCheetah-v4",           "Walker2d-v4", "Ant-v4", "Humanoid-v4",
                              "InvertedPendulum-v4", "InvertedDoublePendulum-v4"};

// One instance's recorded pass: episode starts and per-step controls.
struct Recording {
  std::vector<int> episode_start;  // step index where each episode begins
  std::vector<std::vector<double>> start_qpos, start_qvel;
  std::vector<double> ctrl;  // kStepsPerPass x nu
};

// The random actions of one pass: kStepsPerPass rows of num_envs x action_dim.
std::vector<float> ActionTable(int num_envs, int action_dim) {
  std::mt19937_64 rng(/*seed=*/77);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> table(static_cast<size_t>(kStepsPerPass) * num_envs * action_dim);
  for (float& a : table) a = uniform(rng);
  return table;
}

// Plays the action table through a VectorEnv once and records what each instance did.
std::vector<Recording> Record(const std::string& task, int num_envs, const std::vector<float>& table) {
  auto vec = *VectorEnv::Create(task, num_envs);
  const int action_dim = vec->spec().action_dim;
  std::vector<Recording> recordings(num_envs);
  auto record_start = [&](int i, int step) {
    const auto& env = dynamic_cast<const MujocoEnv&>(vec->env(i));
    recordings[i].episode_start.push_back(step);
    recordings[i].start_qpos.emplace_back(env.data().qpos, env.data().qpos + env.model().nq);
    recordings[i].start_qvel.emplace_back(env.data().qvel, env.data().qvel + env.model().nv);
  };
  if (!vec->Reset(kSeed).ok()) std::abort();
  for (int i = 0; i < num_envs; ++i) record_start(i, 0);
  for (int step = 0; step < kStepsPerPass; ++step) {
    const float* row = table.data() + static_cast<size_t>(step) * num_envs * action_dim;
    if (!vec->Step(absl::MakeConstSpan(row, num_envs * action_dim)).ok()) std::abort();
    for (int i = 0; i < num_envs; ++i) {
      const auto& env = dynamic_cast<const MujocoEnv&>(vec->env(i));
      // The control of this step; an instance that ended was reset, which zeroes ctrl, so the
      // control is recomputed from the action the same way the environment rescales it.
      for (int u = 0; u < env.model().nu; ++u) {
        const double lo = env.model().actuator_ctrlrange[2 * u];
        const double hi = env.model().actuator_ctrlrange[2 * u + 1];
        const double a = std::clamp(static_cast<double>(row[i * action_dim + u]), -1.0, 1.0);
        recordings[i].ctrl.push_back(lo + 0.5 * (hi - lo) * (a + 1.0));
      }
      if ((vec->terminated()[i] || vec->truncated()[i]) && step + 1 < kStepsPerPass) {
        record_start(i, step + 1);
      }
    }
  }
  return recordings;
}

// Record() once per task and V: Google Benchmark calls a benchmark function several times (to
// size the iteration count, and once per repetition), and Humanoid's pass takes seconds.
const std::vector<Recording>& CachedRecord(const std::string& task, int num_envs, int action_dim) {
  static auto* cache = new std::map<std::pair<std::string, int>, std::vector<Recording>>();
  auto key = std::make_pair(task, num_envs);
  auto it = cache->find(key);
  if (it == cache->end()) {
    it = cache->emplace(key, Record(task, num_envs, ActionTable(num_envs, action_dim))).first;
  }
  return it->second;
}

// The bare loop: only MuJoCo calls, replaying the recorded passes of num_envs instances.
class BareLoop {
 public:
  BareLoop(const std::string& task, int num_envs) : num_envs_(num_envs) {
    auto env = *MakeMujocoEnv(task);
    frame_skip_ = env->frame_skip();
    recordings_ = CachedRecord(task, num_envs, env->spec().action_dim);
    // A model of its own, compiled from the same embedded file.
    model_ = *LoadModelFromXml("bare.xml", *EmbeddedTaskModel(task));
    for (int i = 0; i < num_envs; ++i) datas_.emplace_back(mj_makeData(model_.get()));
    next_episode_.assign(num_envs, 0);
  }

  // Advances every instance by `steps` env steps.
  void Run(int steps) {
    mjModel* m = model_.get();
    for (int s = 0; s < steps; ++s) {
      for (int i = 0; i < num_envs_; ++i) {
        const Recording& r = recordings_[i];
        mjData* d = datas_[i].get();
        size_t& episode = next_episode_[i];
        if (episode < r.episode_start.size() && r.episode_start[episode] == step_) {
          mj_resetData(m, d);
          mju_copy(d->qpos, r.start_qpos[episode].data(), m->nq);
          mju_copy(d->qvel, r.start_qvel[episode].data(), m->nv);
          mj_forward(m, d);
          ++episode;
        }
        mju_copy(d->ctrl, r.ctrl.data() + static_cast<size_t>(step_) * m->nu, m->nu);
        for (int k = 0; k < frame_skip_; ++k) mj_step(m, d);
      }
      if (++step_ == kStepsPerPass) {
        step_ = 0;
        std::fill(next_episode_.begin(), next_episode_.end(), 0);
      }
    }
  }

 private:
  const int num_envs_;
  int frame_skip_ = 1;
  std::vector<Recording> recordings_;
  MjModelPtr model_;
  std::vector<MjDataPtr> datas_;
  std::vector<size_t> next_episode_;
  int step_ = 0;
};

// Our stepping: a VectorEnv of num_envs (a single instance for V=1) on the calling thread,
// playing the same action table from the same seed.
class EnvLoop {
 public:
  EnvLoop(const std::string& task, int num_envs) : vec_(*VectorEnv::Create(task, num_envs)) {
    row_ = num_envs * vec_->spec().action_dim;
    table_ = ActionTable(num_envs, vec_->spec().action_dim);
  }

  void Run(int steps) {
    for (int s = 0; s < steps; ++s) {
      if (step_ == 0 && !vec_->Reset(kSeed).ok()) std::abort();
      absl::Span<const float> actions(table_.data() + static_cast<size_t>(step_) * row_, row_);
      if (!vec_->Step(actions).ok()) std::abort();
      benchmark::DoNotOptimize(vec_->observations().data());
      if (++step_ == kStepsPerPass) step_ = 0;
    }
  }

 private:
  std::unique_ptr<VectorEnv> vec_;
  int row_ = 0;
  std::vector<float> table_;
  int step_ = 0;
};

// Runs the two loops in alternating blocks, timing each, so that the load of a shared machine
// falls on both alike; reports both rates and their ratio.
void BM_Steps(benchmark::State& state, std::string task, int num_envs) {
  if (!MakeMujocoEnv(task).ok()) {
    state.SkipWithError(("cannot make " + task).c_str());
    return;
  }
  BareLoop bare(task, num_envs);
  EnvLoop ours(task, num_envs);
  constexpr int kBlock = 25;  // env steps per instance per block
  using Clock = std::chrono::steady_clock;
  double bare_seconds = 0, our_seconds = 0;
  int64_t blocks = 0;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    bare.Run(kBlock);
    const auto t1 = Clock::now();
    ours.Run(kBlock);
    const auto t2 = Clock::now();
    bare_seconds += std::chrono::duration<double>(t1 - t0).count();
    our_seconds += std::chrono::duration<double>(t2 - t1).count();
    ++blocks;
  }
  const double steps = static_cast<double>(blocks) * kBlock * num_envs;
  state.counters["bare_steps/s"] = steps / bare_seconds;
  state.counters["env_steps/s"] = steps / our_seconds;
  state.counters["ratio"] = bare_seconds / our_seconds;
}

// Google Benchmark's console output, plus the env steps/s of every run for the summary.
class SummaryReporter : public benchmark::ConsoleReporter {
 public:
  // The registered name of a benchmark, e.g. "Steps/Hopper-v4/V:16".
  static std::string Name(const char* task, int num_envs) {
    return std::string("Steps/") + task + "/V:" + std::to_string(num_envs);
  }

  void ReportRuns(const std::vector<Run>& runs) override {
    // With --benchmark_repetitions the median is summarised; without, the single run.
    for (const Run& run : runs) {
      const bool median = run.run_type == Run::RT_Aggregate && run.aggregate_name == "median";
      if (run.run_type != Run::RT_Iteration && !median) continue;
      Rates& rates = rates_[run.run_name.function_name];
      if (rates.from_median && !median) continue;
      rates.bare = Counter(run, "bare_steps/s");
      rates.ours = Counter(run, "env_steps/s");
      rates.from_median = median;
    }
    ConsoleReporter::ReportRuns(runs);
  }

  void PrintSummary() const {
    std::printf("\n%-26s %11s %11s %7s %11s %11s %7s\n", "task", "bare V=1", "ours V=1", "ratio", "bare V=16",
                "ours V=16", "ratio");
    for (const char* task : kTasks) {
      const Rates one = Find(task, 1), sixteen = Find(task, 16);
      if (one.bare <= 0 && sixteen.bare <= 0) continue;
      std::printf("%-26s %11.0f %11.0f %6.1f%% %11.0f %11.0f %6.1f%%\n", task, one.bare, one.ours, Percent(one),
                  sixteen.bare, sixteen.ours, Percent(sixteen));
    }
    std::printf("(env steps/s; ratio = ours / the bare mj_step loop doing the same physics)\n");
  }

 private:
  struct Rates {
    double bare = 0, ours = 0;
    bool from_median = false;
  };

  static double Counter(const Run& run, const char* name) {
    auto it = run.counters.find(name);
    return it == run.counters.end() ? 0.0 : it->second.value;
  }
  static double Percent(const Rates& r) { return r.bare > 0 ? 100 * r.ours / r.bare : 0.0; }

  Rates Find(const char* task, int num_envs) const {
    auto it = rates_.find(Name(task, num_envs));
    return it == rates_.end() ? Rates{} : it->second;
  }

  std::map<std::string, Rates> rates_;  // by benchmark name
};

void RegisterAll() {
  for (const char* task : kTasks) {
    for (int num_envs : {1, 16}) {
      benchmark::RegisterBenchmark(SummaryReporter::Name(task, num_envs).c_str(), BM_Steps, std::string(task),
                                   num_envs);
    }
  }
}

}  // namespace
}  // namespace meow

int main(int argc, char** argv) {
  meow::RegisterAll();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  meow::SummaryReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.PrintSummary();
  benchmark::Shutdown();
  return 0;
}
