// Replay throughput and memory on 127.0.0.1 (Google Benchmark as the harness; each benchmark runs
// once for a fixed wall-clock window and reports rates as counters).
//
//   BM_Insert/streams:S/persist:P   Hopper transitions (S=11, A=3) in batches of 64 through S
//                                   concurrent insert streams; P=1 logs every batch to disk
//                                   (acknowledged after write(2)), P=0 keeps memory only.
//   BM_SampleWhileInserting/...     batches of 256 drawn by one prefetching sampler while S
//                                   streams insert.
//   BM_Memory                       bytes per stored transition of a 1M-row table, and how long a
//                                   snapshot of it locks the table (the in-memory copy).
//
// Run: build-replay/tests/replay/bench_replay [--benchmark_filter=...]
//      MEOW_BENCH_SECONDS=N sets the measuring window (default 3).
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "replay/replay_client.h"
#include "replay/replay_server.h"

namespace meow {
namespace {

constexpr int kObsDim = 11;
constexpr int kActionDim = 3;

double WindowSeconds() {
  const char* env = std::getenv("MEOW_BENCH_SECONDS");
  return env != nullptr ? std::atof(env) : 3.0;
}

proto::TransitionBatch RandomBatch(int rows, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<float> unit(-1, 1);
  std::vector<float> obs(rows * kObsDim), next_obs(rows * kObsDim), action(rows * kActionDim), reward(rows);
  std::vector<uint8_t> terminated(rows);
  for (float& x : obs) x = normal(rng);
  for (float& x : next_obs) x = normal(rng);
  for (float& x : action) x = unit(rng);
  for (float& x : reward) x = normal(rng);
  for (uint8_t& t : terminated) t = rng() % 100 == 0;
  return MakeTransitionBatch(kObsDim, kActionDim, obs, action, reward, next_obs, terminated, 1);
}

struct Replay {
  std::unique_ptr<ReplayServer> server;
  std::string dir;
  ~Replay() {
    server.reset();
    if (!dir.empty()) std::filesystem::remove_all(dir);
  }
};

std::unique_ptr<Replay> StartReplay(bool persist, int64_t capacity) {
  auto replay = std::make_unique<Replay>();
  ReplayServerConfig config;
  config.address = "127.0.0.1:0";
  config.table.obs_dim = kObsDim;
  config.table.action_dim = kActionDim;
  config.table.capacity = capacity;
  config.snapshot_on_shutdown = false;
  if (persist) {
    replay->dir = absl::StrCat("/tmp/meow_replay_bench_", getpid());
    std::filesystem::remove_all(replay->dir);
    config.persistence.directory = replay->dir;
  }
  absl::StatusOr<std::unique_ptr<ReplayServer>> server = StartReplayServer(config);
  if (!server.ok()) {
    std::fprintf(stderr, "cannot start replay: %s\n", std::string(server.status().message()).c_str());
    std::abort();
  }
  replay->server = *std::move(server);
  return replay;
}

// `streams` inserters sending batches of 64 as fast as replay acknowledges them.
class InsertLoad {
 public:
  InsertLoad(const std::string& address, int streams) {
    for (int s = 0; s < streams; ++s) {
      ReplayInserterConfig config;
      config.addresses = {address};
      config.actor_id = s + 1;
      config.max_unacked_batches = 64;
      inserters_.push_back(*ReplayInserter::Create(config));
      batches_.push_back(RandomBatch(64, s + 1));
    }
    for (int s = 0; s < streams; ++s) {
      threads_.emplace_back([this, s] {
        while (!stop_.load(std::memory_order_relaxed)) {
          if (!inserters_[s]->Insert(batches_[s], absl::Seconds(30)).ok()) return;
        }
      });
    }
  }
  ~InsertLoad() {
    stop_.store(true);
    for (std::thread& thread : threads_) thread.join();
    for (auto& inserter : inserters_) (void)inserter->Flush(absl::Seconds(30));
  }
  int64_t acked_transitions() const {
    int64_t acked = 0;
    for (const auto& inserter : inserters_) acked += inserter->stats().acked;
    return acked * 64;
  }

 private:
  std::vector<std::unique_ptr<ReplayInserter>> inserters_;
  std::vector<proto::TransitionBatch> batches_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

void BM_Insert(benchmark::State& state) {
  const int streams = static_cast<int>(state.range(0));
  const bool persist = state.range(1) != 0;
  std::unique_ptr<Replay> replay = StartReplay(persist, 1'000'000);
  double rate = 0;
  for (auto _ : state) {
    InsertLoad load(replay->server->address(), streams);
    absl::SleepFor(absl::Milliseconds(500));  // connect and warm up
    const int64_t before = load.acked_transitions();
    const absl::Time start = absl::Now();
    absl::SleepFor(absl::Seconds(WindowSeconds()));
    rate = (load.acked_transitions() - before) / absl::ToDoubleSeconds(absl::Now() - start);
  }
  state.counters["transitions_per_s"] = rate;
  state.counters["batches_per_s"] = rate / 64;
}
BENCHMARK(BM_Insert)
    ->ArgsProduct({{1, 4, 16}, {0, 1}})
    ->ArgNames({"streams", "persist"})
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kSecond);

void BM_SampleWhileInserting(benchmark::State& state) {
  const int streams = static_cast<int>(state.range(0));
  const bool persist = state.range(1) != 0;
  std::unique_ptr<Replay> replay = StartReplay(persist, 1'000'000);
  {
    // Start from a table with 200k transitions.
    InsertLoad fill(replay->server->address(), 4);
    while (fill.acked_transitions() < 200'000) absl::SleepFor(absl::Milliseconds(10));
  }
  double sampled_rate = 0, insert_rate = 0;
  for (auto _ : state) {
    InsertLoad load(replay->server->address(), streams);
    ReplaySamplerConfig config;
    config.addresses = {replay->server->address()};
    config.batch_size = 256;
    config.prefetch_batches = 16;
    std::unique_ptr<ReplaySampler> sampler = *ReplaySampler::Create(config);
    for (int i = 0; i < 100; ++i) (void)sampler->Next(absl::Seconds(30));  // warm up
    const int64_t inserted_before = load.acked_transitions();
    const absl::Time start = absl::Now();
    const absl::Time end = start + absl::Seconds(WindowSeconds());
    int64_t batches = 0;
    while (absl::Now() < end) {
      absl::StatusOr<SampledBatch> batch = sampler->Next(absl::Seconds(30));
      if (!batch.ok()) {
        state.SkipWithError(std::string(batch.status().message()).c_str());
        return;
      }
      benchmark::DoNotOptimize(batch->obs.data());
      ++batches;
    }
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    sampled_rate = batches / seconds;
    insert_rate = (load.acked_transitions() - inserted_before) / seconds;
  }
  state.counters["sampled_batches_per_s"] = sampled_rate;
  state.counters["inserted_transitions_per_s"] = insert_rate;
}
BENCHMARK(BM_SampleWhileInserting)
    ->ArgsProduct({{0, 1, 4}, {0, 1}})
    ->ArgNames({"streams", "persist"})
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kSecond);

int64_t ResidentBytes() {
  long pages = 0, resident = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
  std::fclose(f);
  return static_cast<int64_t>(resident) * sysconf(_SC_PAGESIZE);
}

void BM_Memory(benchmark::State& state) {
  constexpr int64_t kRows = 1'000'000;
  constexpr double kRawBytes = 4 * (11 + 3 + 1 + 11) + 1;  // float32 columns + a bool
  double table_bytes = 0, resident = 0, copy_ms = 0, snapshot_ms = 0;
  for (auto _ : state) {
    const int64_t before = ResidentBytes();
    TableConfig config;
    config.obs_dim = kObsDim;
    config.action_dim = kActionDim;
    config.capacity = kRows;
    std::unique_ptr<Table> table = *Table::Create(config);
    proto::TransitionBatch batch = RandomBatch(4096, 1);
    for (uint64_t sequence = 1; table->size() < kRows; ++sequence) {
      batch.set_sequence_number(sequence);
      (void)table->Insert(batch, 0, absl::Seconds(1), nullptr);
    }
    resident = static_cast<double>(ResidentBytes() - before) / kRows;
    table_bytes = static_cast<double>(table->Info().bytes()) / kRows;
    // Snapshot of the full table: how long it locks the table, and how long it takes in all.
    PersistenceConfig persistence_config;
    persistence_config.directory = absl::StrCat("/tmp/meow_replay_bench_snap_", getpid());
    std::filesystem::remove_all(persistence_config.directory);
    {
      std::unique_ptr<Persistence> persistence = *Persistence::Open(persistence_config, table.get());
      absl::StatusOr<proto::CheckpointResponse> snapshot = persistence->Snapshot();
      if (snapshot.ok()) {
        snapshot_ms = snapshot->seconds() * 1000;
        copy_ms = persistence->Info().last_snapshot_copy_seconds() * 1000;
      }
    }
    std::filesystem::remove_all(persistence_config.directory);
  }
  state.counters["table_bytes_per_transition"] = table_bytes;
  state.counters["resident_bytes_per_transition"] = resident;
  state.counters["ratio_to_raw_payload"] = table_bytes / kRawBytes;
  state.counters["snapshot_lock_ms"] = copy_ms;
  state.counters["snapshot_total_ms"] = snapshot_ms;
}
BENCHMARK(BM_Memory)->Iterations(1)->UseRealTime()->Unit(benchmark::kSecond);

}  // namespace
}  // namespace meow

BENCHMARK_MAIN();
