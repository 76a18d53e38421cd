// One MEow update for Hopper (S=11, A=3) and Humanoid (S=376, A=17) sizes: MeowUpdater beside the
// straightforward formulation (StraightforwardUpdater) in the same run. On the CPU at batch 256
// with 1 and 2 threads; when LibTorch has CUDA and a device is present, also on the GPU at batch
// 256 and 1024 (the device's name is in the context). Each CPU MeowUpdate benchmark also runs both
// formulations side by side for 5 updates with dropout off and reports the largest relative
// difference of their losses as `loss_rel_diff`. BM_MeowUpdateDataParallel: the batch split across
// 1, 2, 4, 8, 16 learner threads (as many as the machine has cores), one thread beside them.
// BM_MeowUpdateDeviceResident: the GPU learner's update (MeowGraphUpdater) on host batches, as the
// learner feeds it: on the GPU as a CUDA graph (capture 1) or its ops one by one (capture 0), K
// updates per launch; on the CPU (capture 0) the same formulation run eagerly, for its cost there.
//
//   build/tests/bench/bench_meow_update --benchmark_min_time=2
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <torch/cuda.h>
#include <torch/utils.h>

#include "benchmark/benchmark.h"
#include "common/runtime.h"
#include "learner/meow_graph_update.h"
#include "learner/meow_update.h"
#include "learner/straightforward_update.h"

namespace meow {
namespace {

struct Task {
  int64_t obs_dim;
  int64_t action_dim;
};
constexpr Task kTasks[] = {{11, 3}, {376, 17}};  // Hopper, Humanoid

Batch RandomBatch(const Task& task, int64_t rows, const c10::Device& device = at::kCPU) {
  return Batch{at::randn({rows, task.obs_dim}).to(device), (at::rand({rows, task.action_dim}) * 2 - 1).to(device),
               at::randn({rows}).to(device), at::randn({rows, task.obs_dim}).to(device),
               (at::rand({rows}) < 0.05).to(at::kFloat).to(device)};
}

FlowPolicyConfig PolicyConfig(const Task& task, double dropout) {
  FlowPolicyConfig c;
  c.obs_dim = task.obs_dim;
  c.action_dim = task.action_dim;
  c.alpha = 0.25;
  c.dropout = dropout;
  return c;
}

// Largest relative difference of the two formulations' losses over 5 updates from the same
// weights on the same batches, dropout off. (The first step alone agrees trivially: the shift
// heads start with zero weights.)
double LossAgreement(const Task& task) {
  torch::manual_seed(7);
  auto fast = MeowUpdater::Create(PolicyConfig(task, 0.0), MeowUpdateConfig(), at::kCPU);
  StraightforwardUpdater plain(*(*fast)->policy(), MeowUpdateConfig());
  double worst = 0;
  for (int step = 0; step < 5; ++step) {
    const Batch batch = RandomBatch(task, 256);
    const double plain_loss = plain.Step(batch);
    const double fast_loss = (*fast)->Step(batch)->loss;
    worst = std::max(worst, std::abs(fast_loss - plain_loss) / std::max(1e-12, std::abs(plain_loss)));
  }
  return worst;
}

void BM_MeowUpdate(benchmark::State& state) {
  const Task& task = kTasks[state.range(0)];
  SetComputeThreads(static_cast<int>(state.range(1)));
  torch::manual_seed(1);
  auto updater = MeowUpdater::Create(PolicyConfig(task, 0.1), MeowUpdateConfig(), at::kCPU);
  const Batch batch = RandomBatch(task, 256);
  for (auto _ : state) benchmark::DoNotOptimize((*updater)->Step(batch));
  state.counters["updates_per_s"] = benchmark::Counter(state.iterations(), benchmark::Counter::kIsRate);
  state.counters["loss_rel_diff"] = LossAgreement(task);
}

void BM_Straightforward(benchmark::State& state) {
  const Task& task = kTasks[state.range(0)];
  SetComputeThreads(static_cast<int>(state.range(1)));
  torch::manual_seed(1);
  FlowPolicy init(PolicyConfig(task, 0.1));
  StraightforwardUpdater updater(*init, MeowUpdateConfig());
  const Batch batch = RandomBatch(task, 256);
  for (auto _ : state) benchmark::DoNotOptimize(updater.Step(batch));
  state.counters["updates_per_s"] = benchmark::Counter(state.iterations(), benchmark::Counter::kIsRate);
}

// Args: {task index (0 Hopper, 1 Humanoid), threads}. Pairs run side by side for a fair ratio.
void Args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"task", "threads"});
  for (int task : {0, 1}) {
    for (int threads : {1, 2}) b->Args({task, threads});
  }
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}
BENCHMARK(BM_MeowUpdate)->Apply(Args);
BENCHMARK(BM_Straightforward)->Apply(Args);

// The data-parallel CPU learner: {task, learner threads}, one LibTorch thread each (the batch
// split across the threads, MeowUpdateConfig::threads). Registered for 1, 2, 4, 8, 16 threads up
// to the machine's cores, so that each count stands beside one thread in the same run.
void BM_MeowUpdateDataParallel(benchmark::State& state) {
  const Task& task = kTasks[state.range(0)];
  SetComputeThreads(1);
  torch::manual_seed(1);
  MeowUpdateConfig config;
  config.threads = static_cast<int>(state.range(1));
  auto updater = MeowUpdater::Create(PolicyConfig(task, 0.1), config, at::kCPU);
  if (!updater.ok()) {
    state.SkipWithError(updater.status().ToString().c_str());
    return;
  }
  const Batch batch = RandomBatch(task, 256);
  for (int i = 0; i < 5; ++i) (void)(*updater)->Step(batch);  // warm-up: the threads' heaps
  for (auto _ : state) benchmark::DoNotOptimize((*updater)->Step(batch));
  state.counters["updates_per_s"] = benchmark::Counter(state.iterations(), benchmark::Counter::kIsRate);
}

void DataParallelArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"task", "learner_threads"});
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int task : {0, 1}) {
    for (int threads : {1, 2, 4, 8, 16}) {
      if (threads == 1 || threads <= std::max(2, cores)) b->Args({task, threads});
    }
  }
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}
BENCHMARK(BM_MeowUpdateDataParallel)->Apply(DataParallelArgs);

// On the GPU: {task, batch}. Each Step reads its loss back, as the learner does, so every
// iteration includes the device synchronisation.
void BM_MeowUpdateCuda(benchmark::State& state) {
  const Task& task = kTasks[state.range(0)];
  torch::manual_seed(1);
  auto updater = MeowUpdater::Create(PolicyConfig(task, 0.1), MeowUpdateConfig(), at::kCUDA);
  if (!updater.ok()) {
    state.SkipWithError(updater.status().ToString().c_str());
    return;
  }
  const Batch batch = RandomBatch(task, state.range(1), at::kCUDA);
  for (int i = 0; i < 20; ++i) {  // warm-up: kernels, allocator
    auto step = (*updater)->Step(batch);
    if (!step.ok()) {
      state.SkipWithError(step.status().ToString().c_str());
      return;
    }
  }
  for (auto _ : state) benchmark::DoNotOptimize((*updater)->Step(batch));
  state.counters["updates_per_s"] = benchmark::Counter(state.iterations(), benchmark::Counter::kIsRate);
}

void BM_StraightforwardCuda(benchmark::State& state) {
  const Task& task = kTasks[state.range(0)];
  torch::manual_seed(1);
  FlowPolicy init(PolicyConfig(task, 0.1));
  init->to(at::kCUDA);
  StraightforwardUpdater updater(*init, MeowUpdateConfig());
  const Batch batch = RandomBatch(task, state.range(1), at::kCUDA);
  for (int i = 0; i < 20; ++i) (void)updater.Step(batch);
  for (auto _ : state) benchmark::DoNotOptimize(updater.Step(batch));
  state.counters["updates_per_s"] = benchmark::Counter(state.iterations(), benchmark::Counter::kIsRate);
}

// ATen operators dispatched per device-resident update, views and allocations left out: each of
// the rest is at least one kernel on a GPU, and so at least one node of the CUDA graph.
thread_local int op_depth = 0;
std::atomic<int64_t> op_count{0};

bool LaunchesNoKernel(const char* name) {
  for (const char* view : {"aten::view", "aten::narrow", "aten::select", "aten::slice", "aten::as_strided",
                           "aten::t", "aten::transpose", "aten::unsqueeze", "aten::squeeze", "aten::reshape",
                           "aten::expand", "aten::detach", "aten::alias", "aten::empty", "aten::empty_like",
                           "aten::empty_strided", "aten::contiguous", "aten::_unsafe_view", "aten::resize_",
                           "aten::lift_fresh", "aten::set_"}) {
    if (std::strcmp(name, view) == 0) return true;
  }
  return false;
}

std::unique_ptr<at::ObserverContext> CountOpStart(const at::RecordFunction& fn) {
  if (op_depth++ == 0 && !LaunchesNoKernel(fn.name())) ++op_count;
  return nullptr;
}
void CountOpEnd(const at::RecordFunction&, at::ObserverContext*) { --op_depth; }

double OpsPerUpdate(const Task& task) {
  torch::manual_seed(1);
  auto updater = MeowGraphUpdater::Create(PolicyConfig(task, 0.1), MeowUpdateConfig(), at::kCPU);
  const Batch batch = RandomBatch(task, 256);
  for (int i = 0; i < 3; ++i) (void)(*updater)->Update(batch);
  op_count = 0;
  const at::CallbackHandle handle = at::addGlobalCallback(
      at::RecordFunctionCallback(CountOpStart, CountOpEnd).scopes({at::RecordScope::FUNCTION}));
  constexpr int kUpdates = 10;
  for (int i = 0; i < kUpdates; ++i) (void)(*updater)->Update(batch);
  at::removeCallback(handle);
  return static_cast<double>(op_count.load()) / kUpdates;
}

// The device-resident update (MeowGraphUpdater) fed host batches, as the learner does: {task,
// batch, updates per launch K, capture}. One iteration is 100 updates and a Synchronize, so every
// update counted has reached the weights; eight batches in turn, so that no input stays cached.
constexpr int kUpdatesPerIteration = 100;

void BM_MeowUpdateDeviceResident(benchmark::State& state, const c10::Device& device) {
  const Task& task = kTasks[state.range(0)];
  SetComputeThreads(1);
  torch::manual_seed(1);
  MeowUpdateConfig config;
  config.graph.updates_per_launch = static_cast<int>(state.range(2));
  config.graph.capture = state.range(3) != 0;
  auto updater = MeowGraphUpdater::Create(PolicyConfig(task, 0.1), config, device);
  if (!updater.ok()) {
    state.SkipWithError(updater.status().ToString().c_str());
    return;
  }
  std::vector<Batch> batches;
  for (int i = 0; i < 8; ++i) batches.push_back(RandomBatch(task, state.range(1)));
  int64_t next = 0;
  auto run = [&](int n) -> bool {
    for (int i = 0; i < n; ++i) {
      auto step = (*updater)->Update(batches[next++ % batches.size()]);
      if (!step.ok()) {
        state.SkipWithError(step.status().ToString().c_str());
        return false;
      }
    }
    (*updater)->Synchronize();
    return true;
  };
  if (!run(kUpdatesPerIteration)) return;  // warm-up: the capture, kernels, allocator
  for (auto _ : state) {
    if (!run(kUpdatesPerIteration)) return;
  }
  state.counters["captured"] = (*updater)->captured() ? 1 : 0;
  if (device.is_cpu()) state.counters["ops_per_update"] = OpsPerUpdate(task);
  state.counters["updates_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations() * kUpdatesPerIteration), benchmark::Counter::kIsRate);
}

void DeviceResidentCudaArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"task", "batch", "k", "capture"});
  for (int task : {0, 1}) {
    for (int batch : {256, 1024}) {
      b->Args({task, batch, 1, 0});
      for (int k : {1, 4, 16}) b->Args({task, batch, k, 1});
    }
  }
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

void DeviceResidentCpuArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"task", "batch", "k", "capture"});
  for (int task : {0, 1}) b->Args({task, 256, 1, 0});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}
BENCHMARK_CAPTURE(BM_MeowUpdateDeviceResident, cpu, c10::Device(c10::kCPU))->Apply(DeviceResidentCpuArgs);

// The GPU's name and driver as nvidia-smi reports them (empty when it is absent).
std::string CudaDeviceName() {
  std::string name;
  if (FILE* pipe = popen("nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null", "r")) {
    char buf[256];
    while (fgets(buf, sizeof(buf), pipe) != nullptr) name += buf;
    pclose(pipe);
  }
  while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
  return name.empty() ? "unknown CUDA device" : name;
}

void CudaArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"task", "batch"});
  for (int task : {0, 1}) {
    for (int batch : {256, 1024}) b->Args({task, batch});
  }
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

}  // namespace
}  // namespace meow

int main(int argc, char** argv) {
  meow::TuneAllocator();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  if (torch::cuda::is_available()) {
    benchmark::AddCustomContext("cuda_device", meow::CudaDeviceName());
    benchmark::RegisterBenchmark("BM_MeowUpdateCuda", meow::BM_MeowUpdateCuda)->Apply(meow::CudaArgs);
    benchmark::RegisterBenchmark("BM_StraightforwardCuda", meow::BM_StraightforwardCuda)->Apply(meow::CudaArgs);
    benchmark::RegisterBenchmark("BM_MeowUpdateDeviceResident/cuda", meow::BM_MeowUpdateDeviceResident,
                                 c10::Device(c10::kCUDA))
        ->Apply(meow::DeviceResidentCudaArgs);
  }
  benchmark::AddCustomContext("cuda_graphs_compiled", meow::CudaGraphsCompiled() ? "yes" : "no");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
