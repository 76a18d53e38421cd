#include "replay/dataset.h"

#include <hdf5.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "replay/persistence.h"
#include "replay/table.h"
#include "tests/common/transition_batches.h"

namespace meow {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

class DatasetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const ::testing::TestInfo* test = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = absl::StrCat(::testing::TempDir(), "/dataset_", test->name(), "_", ::getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path(const std::string& name) const { return absl::StrCat(dir_, "/", name); }

  std::string dir_;
};

// Two episodes of a 3-D observation, 2-D action task: one of 3 rows ending terminal, one of 2 rows
// ending by timeout, then 1 unfinished row.
Dataset SmallDataset() {
  Dataset d;
  d.obs_dim = 3;
  d.action_dim = 2;
  for (int i = 0; i < 6; ++i) {
    const float obs[3] = {0.1f * i, -0.2f * i, 1.0f + i};
    const float next[3] = {0.1f * (i + 1), -0.2f * (i + 1), 2.0f + i};
    const float action[2] = {i % 2 == 0 ? -1.0f : 0.5f, 0.25f * (i - 2)};
    d.Add(obs, action, /*reward=*/1.0f + i, next, /*terminal=*/i == 2, /*timeout=*/i == 4);
  }
  d.metadata.task = "Toy-v0";
  d.metadata.source = "policy";
  d.metadata.policy = "runs/Toy-v0-seed1/policy.safetensors";
  d.metadata.env_steps = 12345;
  d.metadata.episodes = 2;
  d.metadata.extra["stochastic"] = "true";
  return d;
}

void ExpectSameRows(const Dataset& a, const Dataset& b) {
  EXPECT_EQ(a.rows, b.rows);
  EXPECT_EQ(a.obs_dim, b.obs_dim);
  EXPECT_EQ(a.action_dim, b.action_dim);
  EXPECT_EQ(a.observations, b.observations);
  EXPECT_EQ(a.actions, b.actions);
  EXPECT_EQ(a.rewards, b.rewards);
  EXPECT_EQ(a.next_observations, b.next_observations);
  EXPECT_EQ(a.terminals, b.terminals);
  EXPECT_EQ(a.timeouts, b.timeouts);
}

// Writes a file key by key with HDF5's C API, as another tool might.
class RawFile {
 public:
  explicit RawFile(const std::string& path) : file_(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)) {}
  ~RawFile() { H5Fclose(file_); }
  void Doubles(const char* key, std::vector<hsize_t> dims, const std::vector<double>& values) {
    Write(key, dims, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, values.data());
  }
  void Bytes(const char* key, std::vector<hsize_t> dims, const std::vector<uint8_t>& values) {
    Write(key, dims, H5T_STD_U8LE, H5T_NATIVE_UINT8, values.data());
  }

 private:
  void Write(const char* key, std::vector<hsize_t> dims, hid_t file_type, hid_t memory_type, const void* data) {
    hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
    hid_t set = H5Dcreate2(file_, key, file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(H5Dwrite(set, memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), 0) << key;
    H5Dclose(set);
    H5Sclose(space);
  }
  hid_t file_;
};

TEST_F(DatasetTest, RoundTripsRowsAndMetadata) {
  const Dataset written = SmallDataset();
  ASSERT_TRUE(WriteDataset(Path("toy.hdf5"), written).ok());
  absl::StatusOr<Dataset> read = ReadDataset(Path("toy.hdf5"));
  ASSERT_TRUE(read.ok()) << read.status();
  ExpectSameRows(*read, written);
  EXPECT_EQ(read->metadata.task, "Toy-v0");
  EXPECT_EQ(read->metadata.source, "policy");
  EXPECT_EQ(read->metadata.policy, "runs/Toy-v0-seed1/policy.safetensors");
  EXPECT_EQ(read->metadata.env_steps, 12345);
  EXPECT_EQ(read->metadata.episodes, 2);
  EXPECT_EQ(read->metadata.extra.at("stochastic"), "true");
  EXPECT_EQ(read->metadata.extra.at("created_by"), "meow-rl");
  // No temporary file is left beside it.
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir_)) files += entry.is_regular_file() ? 1 : 0;
  EXPECT_EQ(files, 1);
}

TEST_F(DatasetTest, SummaryCountsEpisodesAndTheirReturns) {
  const DatasetSummary summary = SummarizeDataset(SmallDataset());
  EXPECT_EQ(summary.rows, 6);
  EXPECT_EQ(summary.terminals, 1);
  EXPECT_EQ(summary.timeouts, 1);
  EXPECT_EQ(summary.episodes, 2);
  EXPECT_EQ(summary.unfinished_rows, 1);
  EXPECT_DOUBLE_EQ(summary.return_mean, (6.0 + 9.0) / 2);  // 1+2+3 and 4+5
  EXPECT_DOUBLE_EQ(summary.return_min, 6.0);
  EXPECT_DOUBLE_EQ(summary.return_max, 9.0);
  EXPECT_DOUBLE_EQ(summary.reward_mean, 21.0 / 6);
}

// Another tool's file: float64 columns, uint8 flags, D4RL's raw layout without next_observations.
TEST_F(DatasetTest, AFileWithoutNextObservationsIsPairedRowByRow) {
  {
    RawFile file(Path("raw.hdf5"));
    // Rows 0-2: an episode ending by timeout at row 2; rows 3-4: one ending terminal at row 4;
    // row 5 unfinished (last row, successor unknown).
    std::vector<double> obs, actions;
    for (int i = 0; i < 6; ++i) {
      obs.push_back(i);
      obs.push_back(10 + i);
      actions.push_back(0.1 * i);
    }
    file.Doubles("observations", {6, 2}, obs);
    file.Doubles("actions", {6, 1}, actions);
    file.Doubles("rewards", {6}, {1, 2, 3, 4, 5, 6});
    file.Bytes("terminals", {6}, {0, 0, 0, 0, 1, 0});
    file.Bytes("timeouts", {6}, {0, 0, 1, 0, 0, 0});
  }
  absl::StatusOr<Dataset> read = ReadDataset(Path("raw.hdf5"));
  ASSERT_TRUE(read.ok()) << read.status();
  // Kept: 0 -> 1, 1 -> 2 (now the episode's end), 3 -> 4, 4 (terminal). Dropped: 2 and 5.
  ASSERT_EQ(read->rows, 4);
  EXPECT_EQ(read->rewards, (std::vector<float>{1, 2, 4, 5}));
  EXPECT_EQ(read->observations, (std::vector<float>{0, 10, 1, 11, 3, 13, 4, 14}));
  EXPECT_EQ(read->next_observations[0], 1.0f);
  EXPECT_EQ(read->next_observations[2], 2.0f);
  EXPECT_EQ(read->next_observations[4], 4.0f);
  EXPECT_EQ(read->terminals, (std::vector<uint8_t>{0, 0, 0, 1}));
  EXPECT_EQ(read->timeouts, (std::vector<uint8_t>{0, 1, 0, 0}));
  EXPECT_THAT(read->metadata.extra.at("next_observations"), HasSubstr("paired"));
  EXPECT_EQ(SummarizeDataset(*read).episodes, 2);
}

TEST_F(DatasetTest, BadFilesAreRefusedNamingTheKey) {
  EXPECT_EQ(ReadDataset(Path("absent.hdf5")).status().code(), absl::StatusCode::kNotFound);
  std::ofstream(Path("text.hdf5")) << "observations,actions\n1,2\n";
  EXPECT_THAT(ReadDataset(Path("text.hdf5")).status().message(), HasSubstr("not an HDF5 file"));

  auto write = [&](const std::string& name, auto&& mutate) {
    RawFile file(Path(name));
    std::vector<double> obs(8, 0.5), actions(4, 0.5), rewards(4, 1.0);
    std::vector<uint8_t> terminals(4, 0), timeouts(4, 0);
    std::vector<hsize_t> action_dims = {4, 1};
    bool with_rewards = true;
    mutate(obs, actions, action_dims, terminals, with_rewards);
    file.Doubles("observations", {4, 2}, obs);
    file.Doubles("actions", action_dims, actions);
    if (with_rewards) file.Doubles("rewards", {4}, rewards);
    file.Bytes("terminals", {4}, terminals);
    file.Bytes("timeouts", {4}, timeouts);
    file.Doubles("next_observations", {4, 2}, obs);
  };
  using Obs = std::vector<double>;
  using Flags = std::vector<uint8_t>;
  using Dims = std::vector<hsize_t>;
  write("no_rewards.hdf5", [](Obs&, Obs&, Dims&, Flags&, bool& rewards) { rewards = false; });
  EXPECT_THAT(ReadDataset(Path("no_rewards.hdf5")).status().message(), HasSubstr("missing key \"rewards\""));
  write("nan.hdf5", [](Obs& obs, Obs&, Dims&, Flags&, bool&) { obs[5] = std::nan(""); });
  EXPECT_THAT(ReadDataset(Path("nan.hdf5")).status().message(), HasSubstr("observations[2]: not finite"));
  write("range.hdf5", [](Obs&, Obs& actions, Dims&, Flags&, bool&) { actions[3] = 1.5; });
  EXPECT_THAT(ReadDataset(Path("range.hdf5")).status().message(), HasSubstr("actions[3]: 1.5 is outside [-1, 1]"));
  write("shape.hdf5", [](Obs&, Obs& actions, Dims& dims, Flags&, bool&) {
    actions.resize(3);
    dims = {3, 1};
  });
  EXPECT_THAT(ReadDataset(Path("shape.hdf5")).status().message(),
              HasSubstr("\"actions\" has shape [3, 1], expected [4, *]"));
  write("flag.hdf5", [](Obs&, Obs&, Dims&, Flags& terminals, bool&) { terminals[1] = 2; });
  EXPECT_THAT(ReadDataset(Path("flag.hdf5")).status().message(), HasSubstr("terminals[1] is 2, expected 0 or 1"));
  write("good.hdf5", [](Obs&, Obs&, Dims&, Flags&, bool&) {});
  EXPECT_TRUE(ReadDataset(Path("good.hdf5")).ok());
}

TEST_F(DatasetTest, ATaskMismatchIsRefusedNamingBoth) {
  const Dataset d = SmallDataset();
  EXPECT_TRUE(CheckDatasetTask(d, "Toy-v0", 3, 2).ok());
  EXPECT_THAT(CheckDatasetTask(d, "Hopper-v4", 3, 2).message(), HasSubstr("of task Toy-v0 (its metadata/task), not Hopper-v4"));
  Dataset unnamed = d;
  unnamed.metadata.task.clear();
  EXPECT_TRUE(CheckDatasetTask(unnamed, "Hopper-v4", 3, 2).ok());
  EXPECT_THAT(CheckDatasetTask(unnamed, "Hopper-v4", 11, 3).message(),
              HasSubstr("have 3 and 2 dimensions; Hopper-v4 has 11 and 3"));
}

TEST_F(DatasetTest, AFailedWriteLeavesTheEarlierFileAsItWas) {
  ASSERT_TRUE(WriteDataset(Path("kept.hdf5"), SmallDataset()).ok());
  Dataset bad = SmallDataset();
  bad.rewards[3] = std::numeric_limits<float>::infinity();
  EXPECT_THAT(WriteDataset(Path("kept.hdf5"), bad).message(), HasSubstr("rewards[3]: not finite"));
  absl::StatusOr<Dataset> read = ReadDataset(Path("kept.hdf5"));
  ASSERT_TRUE(read.ok()) << read.status();
  ExpectSameRows(*read, SmallDataset());
  EXPECT_FALSE(WriteDataset(Path("no/such/dir/x.hdf5"), SmallDataset()).ok());
}

TEST_F(DatasetTest, ATableLoadsTheRowsAndGivesThemBack) {
  const Dataset d = SmallDataset();
  TableConfig config;
  config.obs_dim = 3;
  config.action_dim = 2;
  config.capacity = d.rows;
  config.max_batch_rows = d.rows;
  absl::StatusOr<std::unique_ptr<Table>> table = Table::Create(config);
  ASSERT_TRUE(table.ok()) << table.status();
  ASSERT_TRUE((*table)->LoadRows(DatasetView(d), nullptr).ok());
  EXPECT_EQ((*table)->size(), d.rows);
  const Dataset back = DatasetFromStore((*table)->Copy([] {}).store);
  ExpectSameRows(back, d);  // timeouts included: replay keeps them
}

// Names and sizes of the files in `dir`.
std::map<std::string, uintmax_t> Listing(const std::string& dir) {
  std::map<std::string, uintmax_t> files;
  for (const auto& entry : fs::directory_iterator(dir)) files[entry.path().filename().string()] = entry.file_size();
  return files;
}

TEST_F(DatasetTest, AReplayDirectoryExportsWhatItHoldsAndStaysAsItWas) {
  const std::string replay_dir = Path("replay");
  {
    TableConfig config;
    config.obs_dim = 11;
    config.action_dim = 3;
    config.capacity = 100;  // 13 batches of 8 rows: the oldest 4 rows are evicted
    config.max_batch_rows = 100;
    absl::StatusOr<std::unique_ptr<Table>> table = Table::Create(config);
    ASSERT_TRUE(table.ok()) << table.status();
    PersistenceConfig persistence_config;
    persistence_config.directory = replay_dir;
    persistence_config.snapshot_interval = absl::Hours(1);
    absl::StatusOr<std::unique_ptr<Persistence>> persistence = Persistence::Open(persistence_config, table->get());
    ASSERT_TRUE(persistence.ok()) << persistence.status();
    for (uint64_t sequence = 1; sequence <= 13; ++sequence) {
      proto::TransitionBatch batch = testing::MakeBatch(/*actor=*/1, sequence, /*rows=*/8);
      const uint8_t flags[8] = {0, 0, 0, 0, 0, 0, 0, 1};  // each batch's last row timed out
      *batch.mutable_truncated() = EncodeTensor(proto::DTYPE_BOOL, {8}, flags, 8);
      absl::StatusOr<InsertResult> stored = (*table)->Insert(batch, 0, absl::Seconds(20), nullptr);
      ASSERT_TRUE(stored.ok()) << stored.status();
      ASSERT_TRUE((*persistence)->WaitDurable(stored->log_position, absl::Now() + absl::Seconds(20)).ok());
      if (sequence == 6) ASSERT_TRUE((*persistence)->Snapshot().ok());  // the rest stays in the log
    }
  }
  const std::map<std::string, uintmax_t> before = Listing(replay_dir);
  absl::StatusOr<ReplayExport> exported = DatasetFromReplayDirectory(replay_dir, 11, 3);
  ASSERT_TRUE(exported.ok()) << exported.status();
  EXPECT_TRUE(exported->errors.empty());
  EXPECT_EQ(exported->log_batches, 7);
  const Dataset& d = exported->dataset;
  ASSERT_EQ(d.rows, 100);
  // Oldest first: batch 1's rows 4-7 were evicted, so the first row is batch 1 row 4.
  EXPECT_EQ(d.observations[0 * 11 + 1], 1.0f);
  EXPECT_EQ(d.observations[0 * 11 + 2], 4.0f);
  EXPECT_EQ(d.observations[99 * 11 + 1], 13.0f);
  int timeouts = 0;
  for (uint8_t t : d.timeouts) timeouts += t;
  EXPECT_EQ(timeouts, 13);  // every batch's last row, also those recovered from the snapshot
  EXPECT_EQ(d.metadata.source, "replay");
  EXPECT_TRUE(ValidateDataset(d).ok());
  EXPECT_EQ(Listing(replay_dir), before);  // read only

  EXPECT_EQ(DatasetFromReplayDirectory(replay_dir, 17, 6).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(DatasetFromReplayDirectory(Path("none"), 11, 3).status().code(), absl::StatusCode::kNotFound);
  fs::create_directories(Path("empty"));
  EXPECT_THAT(DatasetFromReplayDirectory(Path("empty"), 11, 3).status().message(), HasSubstr("no replay files"));
}

// The file is what Python's offline-RL tools read: h5py sees numpy bools and float32 columns.
TEST_F(DatasetTest, PythonsH5pyReadsTheFileAsD4rlDoes) {
  if (std::system("/usr/bin/python3 -c 'import h5py' 2>/dev/null") != 0) {
    GTEST_SKIP() << "python3-h5py is not installed (deploy/setup.sh installs it)";
  }
  ASSERT_TRUE(WriteDataset(Path("toy.hdf5"), SmallDataset()).ok());
  const std::string script = Path("check.py");
  std::ofstream(script) << R"(import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], 'r')
assert f['observations'].shape == (6, 3) and f['observations'].dtype == np.float32
assert f['actions'].shape == (6, 2)
assert f['terminals'].dtype == np.bool_, f['terminals'].dtype
assert f['timeouts'].dtype == np.bool_
assert list(np.nonzero(f['terminals'][:])[0]) == [2]
assert list(np.nonzero(f['timeouts'][:])[0]) == [4]
assert f['metadata/task'][()].decode() == 'Toy-v0'
assert int(f['metadata/env_steps'][()]) == 12345
# A user's file written by h5py: numpy bools and float64, no next_observations.
g = h5py.File(sys.argv[2], 'w')
g['observations'] = np.arange(8, dtype=np.float64).reshape(4, 2)
g['actions'] = np.zeros((4, 1))
g['rewards'] = np.ones(4)
g['terminals'] = np.array([False, True, False, False])
g['timeouts'] = np.array([False, False, False, True])
g['metadata/task'] = 'Toy-v0'
g.close()
)";
  const std::string command = absl::StrCat("/usr/bin/python3 ", script, " ", Path("toy.hdf5"), " ", Path("user.hdf5"));
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  absl::StatusOr<Dataset> user = ReadDataset(Path("user.hdf5"));
  ASSERT_TRUE(user.ok()) << user.status();
  EXPECT_EQ(user->metadata.task, "Toy-v0");
  // Rows 0-2 kept (row 2's episode now ends there), row 3 timed out with its successor unknown.
  EXPECT_EQ(user->rows, 3);
  EXPECT_EQ(user->terminals, (std::vector<uint8_t>{0, 1, 0}));
  EXPECT_EQ(user->timeouts, (std::vector<uint8_t>{0, 0, 1}));
  EXPECT_EQ(user->next_observations, (std::vector<float>{2, 3, 4, 5, 6, 7}));
}

}  // namespace
}  // namespace meow
