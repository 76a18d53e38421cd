// One update of the baselines beside MEow's in the same run, for Hopper (S=11, A=3) and Humanoid
// (S=376, A=17) sizes at batch 256 on the CPU with 1 and 2 LibTorch threads: SAC (CleanRL's
// networks, 256x2) and SQL (the MEow authors' networks, 128x2, 16 SVGD and 16 value particles).
// Each fast formulation beside its straightforward one in the same run: SAC's hand-written
// gradients (critics, actor, temperature) against autograd (BM_SacAutograd); SQL's particles' first
// layers with the state's part computed once per state and its hand-written critic gradients
// against each state repeated K times through whole networks with autograd, as both SQL codes
// write it (BM_SqlStraightforward; SQL's SVGD sampler step is autograd in both). MEow's row is its
// hand-written update (bench_meow_update measures it against its own autograd formulation). CNF's
// latent controller (offline), autograd through its frozen flow, beside its straightforward
// formulation (BM_CnfStraightforward: three separate decodes, LibTorch's prelu).
//
// One command line:
//   build/tests/bench/bench_baselines_update --benchmark_min_time=1 --benchmark_filter=threads:1
//     --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true
// (interleaved repetitions: on a noisy machine one pass in benchmark order can move a ratio by 30%)
#include <ATen/ATen.h>

#include "benchmark/benchmark.h"
#include "common/runtime.h"
#include "learner/cnf_update.h"
#include "learner/meow_update.h"
#include "learner/sac_update.h"
#include "learner/sql_update.h"

namespace meow {
namespace {

struct Task {
  int64_t obs_dim;
  int64_t action_dim;
};
constexpr Task kTasks[] = {{11, 3}, {376, 17}};  // Hopper, Humanoid

Batch RandomBatch(const Task& task, int64_t rows) {
  return Batch{at::randn({rows, task.obs_dim}), at::rand({rows, task.action_dim}) * 2 - 1, at::randn({rows}),
               at::randn({rows, task.obs_dim}), (at::rand({rows}) < 0.05).to(at::kFloat)};
}

template <typename MakeUpdater>
void RunUpdates(benchmark::State& state, MakeUpdater make) {
  const Task& task = kTasks[state.range(0)];
  SetComputeThreads(static_cast<int>(state.range(1)));
  torch::manual_seed(1);
  auto updater = make(task);
  if (!updater.ok()) {
    state.SkipWithError(updater.status().ToString().c_str());
    return;
  }
  const Batch batch = RandomBatch(task, 256);
  for (int i = 0; i < 3; ++i) (void)(*updater)->Update(batch);
  for (auto _ : state) benchmark::DoNotOptimize((*updater)->Update(batch));
  state.counters["updates_per_s"] = benchmark::Counter(state.iterations(), benchmark::Counter::kIsRate);
}

// A policy config (FlowPolicyConfig, SacPolicyConfig, SqlPolicyConfig) of the task's sizes.
template <typename PolicyConfig>
PolicyConfig SizesOf(const Task& task) {
  PolicyConfig c;
  c.obs_dim = task.obs_dim;
  c.action_dim = task.action_dim;
  return c;
}

SacUpdateConfig SacAutogradConfig() {
  SacUpdateConfig config;
  config.manual_backward = false;
  return config;
}

SqlUpdateConfig SqlStraightforwardConfig() {
  SqlUpdateConfig config;
  config.per_state_first_layer = false;
  config.manual_critic_backward = false;
  return config;
}

void BM_MeowUpdate(benchmark::State& state) {
  RunUpdates(state, [](const Task& task) {
    FlowPolicyConfig c = SizesOf<FlowPolicyConfig>(task);
    c.alpha = 0.25;
    return MeowUpdater::Create(c, MeowUpdateConfig(), at::kCPU);
  });
}

void BM_SacUpdate(benchmark::State& state) {
  RunUpdates(state, [](const Task& task) {
    return SacUpdater::Create(SizesOf<SacPolicyConfig>(task), SacUpdateConfig(), at::kCPU);
  });
}

// SAC's straightforward formulation: the same update with autograd's gradients.
void BM_SacAutograd(benchmark::State& state) {
  RunUpdates(state, [](const Task& task) {
    return SacUpdater::Create(SizesOf<SacPolicyConfig>(task), SacAutogradConfig(), at::kCPU);
  });
}

void BM_SqlUpdate(benchmark::State& state) {
  RunUpdates(state, [](const Task& task) {
    return SqlUpdater::Create(SizesOf<SqlPolicyConfig>(task), SqlUpdateConfig(), at::kCPU);
  });
}

// SQL's straightforward formulation: each state repeated K times through whole networks, autograd.
void BM_SqlStraightforward(benchmark::State& state) {
  RunUpdates(state, [](const Task& task) {
    return SqlUpdater::Create(SizesOf<SqlPolicyConfig>(task), SqlStraightforwardConfig(), at::kCPU);
  });
}

// CNF's latent controller (offline): the reference's sizes (a 12-layer, 256-wide conditional flow,
// frozen, decoded three times an update; 4x256 actor and twin critics), the flow's ActNorms
// initialised on a batch as pre-training leaves them.
void RunCnfUpdates(benchmark::State& state, bool fast) {
  RunUpdates(state, [&](const Task& task) -> absl::StatusOr<std::unique_ptr<CnfUpdater>> {
    CnfPolicyConfig c;
    c.flow.frozen_prelu_as_leaky_relu = fast;
    CnfUpdateConfig update;
    update.batch_no_grad_decodes = fast;
    c.flow.obs_dim = task.obs_dim;
    c.flow.action_dim = task.action_dim;
    CnfFlow flow(c.flow);
    const at::Tensor obs = at::randn({1024, task.obs_dim});
    if (absl::Status s = flow->SetStateNormalizer(obs.mean(0), obs.std(0)); !s.ok()) return s;
    flow->InitializeActNorm(at::rand({1024, task.action_dim}) * 1.8 - 0.9, obs);
    return CnfUpdater::Create(c, update, ExportFlowWeights(*flow), at::kCPU);
  });
}
void BM_CnfUpdate(benchmark::State& state) { RunCnfUpdates(state, true); }
// The straightforward formulation, as the reference writes it: three separate decodes, the frozen
// flow's PReLUs through LibTorch's prelu (whose backward also reduces the slopes' gradients).
void BM_CnfStraightforward(benchmark::State& state) { RunCnfUpdates(state, false); }

// Args: {task index (0 Hopper, 1 Humanoid), LibTorch threads}.
void Args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"task", "threads"});
  for (int task : {0, 1}) {
    for (int threads : {1, 2}) b->Args({task, threads});
  }
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}
BENCHMARK(BM_MeowUpdate)->Apply(Args);
BENCHMARK(BM_SacUpdate)->Apply(Args);
BENCHMARK(BM_SacAutograd)->Apply(Args);
BENCHMARK(BM_SqlUpdate)->Apply(Args);
BENCHMARK(BM_SqlStraightforward)->Apply(Args);
BENCHMARK(BM_CnfUpdate)->Apply(Args);
BENCHMARK(BM_CnfStraightforward)->Apply(Args);

}  // namespace
}  // namespace meow

int main(int argc, char** argv) {
  meow::TuneAllocator();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
