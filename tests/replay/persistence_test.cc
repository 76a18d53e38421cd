#include "replay/persistence.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "replay/record_io.h"
#include "replay/replay_log.h"
#include "replay/snapshot.h"
#include "tests/replay/test_util.h"

namespace meow {
namespace {

using testing::CountRows;
using ::testing::HasSubstr;
using testing::HopperTable;
using testing::MakeBatch;
using testing::RowKey;

namespace fs = std::filesystem;

constexpr absl::Duration kLong = absl::Seconds(20);

// A fresh directory under the test's temp dir, removed at the end.
class TempDir {
 public:
  TempDir() {
    const ::testing::TestInfo* test = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = absl::StrCat(::testing::TempDir(), "/replay_", test->test_suite_name(), "_", test->name(), "_", ::getpid());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::unique_ptr<Table> NewTable(int64_t capacity = 100000) {
  absl::StatusOr<std::unique_ptr<Table>> table = Table::Create(HopperTable(capacity));
  EXPECT_TRUE(table.ok()) << table.status();
  return *std::move(table);
}

PersistenceConfig Config(const std::string& dir) {
  PersistenceConfig config;
  config.directory = dir;
  config.snapshot_interval = absl::Hours(1);  // snapshots only when the test asks
  return config;
}

// Inserts batches (actor, first..last) of `rows` rows and waits until each is durable.
void InsertDurably(Table& table, Persistence& persistence, uint64_t actor, uint64_t first, uint64_t last,
                   int rows = 8) {
  for (uint64_t sequence = first; sequence <= last; ++sequence) {
    absl::StatusOr<InsertResult> result = table.Insert(MakeBatch(actor, sequence, rows), 0, kLong, nullptr);
    ASSERT_TRUE(result.ok()) << result.status();
    ASSERT_TRUE(persistence.WaitDurable(result->log_position, absl::Now() + kLong).ok());
  }
}

// Expects every row of batches first..last of `actor` exactly once in `counts`.
void ExpectBatchesOnce(const std::map<RowKey, int>& counts, uint64_t actor, uint64_t first, uint64_t last,
                       int rows = 8) {
  for (uint64_t sequence = first; sequence <= last; ++sequence) {
    for (int row = 0; row < rows; ++row) {
      auto it = counts.find(RowKey{actor, sequence, row});
      ASSERT_NE(it, counts.end()) << "missing actor " << actor << " batch " << sequence;
      EXPECT_EQ(it->second, 1) << "actor " << actor << " batch " << sequence;
    }
  }
}

std::vector<std::string> Files(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) == 0 && name.size() > 5 && name.substr(name.size() - 5) == ".meow") {
      files.push_back(entry.path().string());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

void FlipByte(const std::string& path, int64_t offset) {
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  file.seekg(offset);
  char c = 0;
  file.read(&c, 1);
  c = static_cast<char>(c ^ 0x5a);
  file.seekp(offset);
  file.write(&c, 1);
}

TEST(RecordIoTest, RoundTripsAndStopsAtDamage) {
  TempDir dir;
  const std::string path = dir.path() + "/records";
  std::string bytes;
  AppendRecord("first", &bytes);
  AppendRecord("second record", &bytes);
  AppendRecord("third", &bytes);
  {
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  auto read_all = [&](std::vector<std::string>* records) -> absl::Status {
    absl::StatusOr<std::unique_ptr<RecordReader>> reader = RecordReader::Open(path);
    if (!reader.ok()) return reader.status();
    for (;;) {
      absl::StatusOr<std::optional<std::string>> record = (*reader)->Next();
      if (!record.ok()) return record.status();
      if (!record->has_value()) return absl::OkStatus();
      records->push_back(**record);
    }
  };
  std::vector<std::string> records;
  ASSERT_TRUE(read_all(&records).ok());
  EXPECT_THAT(records, ::testing::ElementsAre("first", "second record", "third"));

  // A bit flip in the second record's payload: the first survives, the error names the file.
  FlipByte(path, 12 + 5 + 12 + 3);
  records.clear();
  absl::Status status = read_all(&records);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr(path));
  EXPECT_THAT(status.message(), HasSubstr("checksum mismatch"));
  EXPECT_THAT(status.message(), HasSubstr("at offset 17"));
  EXPECT_THAT(records, ::testing::ElementsAre("first"));

  // A torn tail: everything before it survives.
  FlipByte(path, 12 + 5 + 12 + 3);
  fs::resize_file(path, bytes.size() - 2);
  records.clear();
  status = read_all(&records);
  EXPECT_THAT(status.message(), HasSubstr("truncated record"));
  EXPECT_THAT(records, ::testing::ElementsAre("first", "second record"));
}

TEST(ReplayLogTest, GroupCommitMakesEveryWaiterDurable) {
  TempDir dir;
  const std::string path = dir.path() + "/log";
  absl::StatusOr<std::unique_ptr<ReplayLog>> log = ReplayLog::Create(path, proto::LogHeader(), /*fsync=*/true);
  ASSERT_TRUE(log.ok()) << log.status();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (uint64_t sequence = 1; sequence <= 25; ++sequence) {
        const uint64_t position = (*log)->Append(MakeBatch(t, sequence, 2));
        ASSERT_TRUE((*log)->WaitDurable(position, absl::Now() + kLong).ok());
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ((*log)->position(), 100u);
  EXPECT_EQ((*log)->file_records(), 100);
  // Everything acknowledged is in the file, in order per writer.
  absl::StatusOr<std::unique_ptr<RecordReader>> reader = RecordReader::Open(path);
  ASSERT_TRUE(reader.ok());
  int records = 0;
  std::map<uint64_t, uint64_t> last;
  for (;;) {
    absl::StatusOr<std::optional<std::string>> payload = (*reader)->Next();
    ASSERT_TRUE(payload.ok()) << payload.status();
    if (!payload->has_value()) break;
    if (records++ == 0) continue;  // header
    proto::TransitionBatch batch;
    ASSERT_TRUE(batch.ParseFromString(**payload));
    EXPECT_EQ(batch.sequence_number(), last[batch.actor_id()] + 1);
    last[batch.actor_id()] = batch.sequence_number();
  }
  EXPECT_EQ(records, 101);
}

// Reads every batch record of the log at `path` (after its header) as (actor, sequence).
std::vector<std::pair<uint64_t, uint64_t>> LoggedBatches(const std::string& path) {
  std::vector<std::pair<uint64_t, uint64_t>> batches;
  absl::StatusOr<std::unique_ptr<RecordReader>> reader = RecordReader::Open(path);
  EXPECT_TRUE(reader.ok()) << reader.status();
  if (!reader.ok()) return batches;
  bool header = true;
  for (;;) {
    absl::StatusOr<std::optional<std::string>> payload = (*reader)->Next();
    EXPECT_TRUE(payload.ok()) << payload.status();
    if (!payload.ok() || !payload->has_value()) break;
    if (header) {
      header = false;
      continue;
    }
    proto::TransitionBatch batch;
    EXPECT_TRUE(batch.ParseFromString(**payload));
    batches.emplace_back(batch.actor_id(), batch.sequence_number());
  }
  return batches;
}

TEST(ReplayLogTest, RotationPutsEachRecordInItsFileWithoutIoAtTheSwitch) {
  TempDir dir;
  auto log = ReplayLog::Create(dir.path() + "/a", proto::LogHeader(), /*fsync=*/true);
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_EQ((*log)->SwitchToPrepared().code(), absl::StatusCode::kFailedPrecondition);
  for (uint64_t sequence = 1; sequence <= 10; ++sequence) (*log)->Append(MakeBatch(1, sequence, 2));
  ASSERT_TRUE((*log)->WaitDurable(4, absl::Now() + kLong).ok());  // 1..10 reach a (group commit)
  for (uint64_t sequence = 11; sequence <= 14; ++sequence) (*log)->Append(MakeBatch(1, sequence, 2));
  ASSERT_TRUE((*log)->PrepareRotation(dir.path() + "/b", proto::LogHeader()).ok());
  ASSERT_TRUE((*log)->SwitchToPrepared().ok());
  EXPECT_EQ((*log)->path(), dir.path() + "/b");
  EXPECT_EQ((*log)->file_records(), 0);
  // Records appended after the switch belong to b; 11..14 still go to a, written first.
  for (uint64_t sequence = 15; sequence <= 17; ++sequence) (*log)->Append(MakeBatch(1, sequence, 2));
  ASSERT_TRUE((*log)->FinishRotation(absl::Now() + kLong).ok());
  EXPECT_EQ((*log)->position(), 17u);
  std::vector<std::pair<uint64_t, uint64_t>> a, b;
  for (uint64_t sequence = 1; sequence <= 14; ++sequence) a.emplace_back(1, sequence);
  for (uint64_t sequence = 15; sequence <= 17; ++sequence) b.emplace_back(1, sequence);
  EXPECT_EQ(LoggedBatches(dir.path() + "/a"), a);
  EXPECT_EQ(LoggedBatches(dir.path() + "/b"), b);
  // A rotation with nothing pending still closes the old file, so the next one can switch.
  ASSERT_TRUE((*log)->PrepareRotation(dir.path() + "/b2", proto::LogHeader()).ok());
  ASSERT_TRUE((*log)->SwitchToPrepared().ok());
  ASSERT_TRUE((*log)->FinishRotation(absl::Now() + kLong).ok());
  ASSERT_TRUE((*log)->PrepareRotation(dir.path() + "/b3", proto::LogHeader()).ok());
  ASSERT_TRUE((*log)->SwitchToPrepared().ok());
  ASSERT_TRUE((*log)->FinishRotation(absl::Now() + kLong).ok());
  EXPECT_EQ(LoggedBatches(dir.path() + "/b2"), (std::vector<std::pair<uint64_t, uint64_t>>{}));
  // Another rotation, finished by a plain WaitDurable of an insert instead.
  ASSERT_TRUE((*log)->PrepareRotation(dir.path() + "/c", proto::LogHeader()).ok());
  (*log)->Append(MakeBatch(1, 18, 2));
  ASSERT_TRUE((*log)->SwitchToPrepared().ok());
  const uint64_t position = (*log)->Append(MakeBatch(1, 19, 2));
  ASSERT_TRUE((*log)->WaitDurable(position, absl::Now() + kLong).ok());
  EXPECT_EQ(LoggedBatches(dir.path() + "/b3"), (std::vector<std::pair<uint64_t, uint64_t>>{{1, 18}}));
  EXPECT_EQ(LoggedBatches(dir.path() + "/c"), (std::vector<std::pair<uint64_t, uint64_t>>{{1, 19}}));
}

TEST(SnapshotTest, RoundTripAndPartialRead) {
  TempDir dir;
  std::unique_ptr<Table> table = NewTable(50);
  for (uint64_t sequence = 1; sequence <= 10; ++sequence) {
    ASSERT_TRUE(table->Insert(MakeBatch(2, sequence, 8), 0, kLong, nullptr).ok());
  }
  const TableState state = table->Copy([] {});
  const std::string path = dir.path() + "/snapshot";
  ASSERT_TRUE(WriteSnapshot(path, state, /*generation=*/4, /*capacity=*/50, /*chunk_rows=*/16).ok());
  absl::StatusOr<LoadedSnapshot> loaded = ReadSnapshot(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(loaded->complete);
  EXPECT_EQ(loaded->rows, 50);
  EXPECT_EQ(loaded->chunks.size(), 4u);
  EXPECT_EQ(loaded->header.generation(), 4);
  EXPECT_EQ(loaded->header.actors(0).last_sequence_number(), 10u);

  // Damage the last chunk: the earlier chunks are kept, the error names the file.
  const int64_t size = static_cast<int64_t>(fs::file_size(path));
  FlipByte(path, size - 200);
  loaded = ReadSnapshot(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_FALSE(loaded->complete);
  EXPECT_EQ(loaded->rows, 48);
  EXPECT_THAT(loaded->error.message(), HasSubstr(path));
}

TEST(PersistenceTest, RecoversSnapshotPlusLogExactlyOnce) {
  TempDir dir;
  {
    std::unique_ptr<Table> table = NewTable();
    absl::StatusOr<std::unique_ptr<Persistence>> persistence = Persistence::Open(Config(dir.path()), table.get());
    ASSERT_TRUE(persistence.ok()) << persistence.status();
    InsertDurably(*table, **persistence, 1, 1, 20);
    ASSERT_TRUE((*persistence)->Snapshot().ok());
    InsertDurably(*table, **persistence, 1, 21, 30);
    InsertDurably(*table, **persistence, 2, 1, 5);
    // Gone without a final snapshot, like a killed process.
  }
  std::unique_ptr<Table> table = NewTable();
  absl::StatusOr<std::unique_ptr<Persistence>> persistence = Persistence::Open(Config(dir.path()), table.get());
  ASSERT_TRUE(persistence.ok()) << persistence.status();
  EXPECT_TRUE((*persistence)->recovery().errors.empty());
  EXPECT_EQ((*persistence)->recovery().log_batches, 15);
  EXPECT_EQ(table->size(), 35 * 8);
  std::map<RowKey, int> counts = CountRows(table->Copy([] {}).store);
  ExpectBatchesOnce(counts, 1, 1, 30);
  ExpectBatchesOnce(counts, 2, 1, 5);
  EXPECT_EQ(table->LastSequenceNumber(1), 30u);
  EXPECT_EQ(table->Info().inserted_batches(), 35);
  // A resend after the restart is still recognised.
  absl::StatusOr<InsertResult> resent = table->Insert(MakeBatch(1, 30, 8), 0, kLong, nullptr);
  ASSERT_TRUE(resent.ok());
  EXPECT_TRUE(resent->duplicate);
}

// Every row's truncated flag, keyed by the row (oldest first in the store).
std::map<RowKey, uint8_t> TruncatedFlags(const TransitionStore& store) {
  std::map<RowKey, uint8_t> flags;
  std::vector<float> obs(store.obs_dim()), action(store.action_dim()), reward(1), next_obs(store.obs_dim());
  std::vector<uint8_t> terminated(1), truncated(1);
  std::vector<int64_t> version(1);
  for (int64_t age = 0; age < store.size(); ++age) {
    const int64_t slot = store.SlotOfAge(age);
    store.Gather(absl::MakeConstSpan(&slot, 1), obs.data(), action.data(), reward.data(), next_obs.data(),
                 terminated.data(), truncated.data(), version.data());
    flags[testing::KeyOf(obs.data())] = truncated[0];
  }
  return flags;
}

// A batch whose row r is truncated where r % 3 == 1 (and not where the batch is terminated).
proto::TransitionBatch TruncatingBatch(uint64_t actor, uint64_t sequence, int rows) {
  proto::TransitionBatch batch = MakeBatch(actor, sequence, rows);
  std::vector<uint8_t> truncated(rows);
  for (int r = 0; r < rows; ++r) truncated[r] = r % 3 == 1 ? 1 : 0;
  *batch.mutable_truncated() = EncodeTensor(proto::DTYPE_BOOL, {rows}, truncated.data(), truncated.size());
  return batch;
}

TEST(PersistenceTest, TruncationFlagsComeBackFromSnapshotAndLog) {
  TempDir dir;
  {
    std::unique_ptr<Table> table = NewTable();
    absl::StatusOr<std::unique_ptr<Persistence>> persistence = Persistence::Open(Config(dir.path()), table.get());
    ASSERT_TRUE(persistence.ok()) << persistence.status();
    for (uint64_t sequence = 1; sequence <= 4; ++sequence) {
      ASSERT_TRUE(table->Insert(TruncatingBatch(1, sequence, 8), 0, kLong, nullptr).ok());
    }
    // A batch of an earlier version, without the column: none of its rows is truncated.
    ASSERT_TRUE(table->Insert(MakeBatch(1, 5, 8), 0, kLong, nullptr).ok());
    ASSERT_TRUE((*persistence)->Snapshot().ok());  // rows 1-5 go into the snapshot
    absl::StatusOr<InsertResult> logged = table->Insert(TruncatingBatch(2, 1, 8), 0, kLong, nullptr);
    ASSERT_TRUE(logged.ok());
    ASSERT_TRUE((*persistence)->WaitDurable(logged->log_position, absl::Now() + kLong).ok());
  }
  std::unique_ptr<Table> table = NewTable();
  absl::StatusOr<RecoveryReport> report = RecoverTable(dir.path(), table.get());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->errors.empty());
  EXPECT_EQ(report->log_batches, 1);
  const std::map<RowKey, uint8_t> flags = TruncatedFlags(table->Copy([] {}).store);
  ASSERT_EQ(flags.size(), 6u * 8u);
  int truncated = 0;
  for (const auto& [key, flag] : flags) {
    const auto [actor, sequence, row] = key;
    const bool expected = !(actor == 1 && sequence == 5) && row % 3 == 1;
    EXPECT_EQ(flag, expected ? 1 : 0) << "actor " << actor << " batch " << sequence << " row " << row;
    truncated += flag;
  }
  EXPECT_EQ(truncated, 5 * 3);  // rows 1, 4 and 7 of five batches
}

TEST(PersistenceTest, CorruptNewestSnapshotFallsBackToPrevious) {
  TempDir dir;
  {
    std::unique_ptr<Table> table = NewTable();
    auto persistence = Persistence::Open(Config(dir.path()), table.get());
    ASSERT_TRUE(persistence.ok()) << persistence.status();
    InsertDurably(*table, **persistence, 1, 1, 10);
    ASSERT_TRUE((*persistence)->Snapshot().ok());
    InsertDurably(*table, **persistence, 1, 11, 20);
    ASSERT_TRUE((*persistence)->Snapshot().ok());
    InsertDurably(*table, **persistence, 1, 21, 25);
  }
  std::vector<std::string> snapshots = Files(dir.path(), "snapshot-");
  ASSERT_EQ(snapshots.size(), 2u);
  const std::string newest = snapshots.back();
  FlipByte(newest, static_cast<int64_t>(fs::file_size(newest)) / 2);

  std::unique_ptr<Table> table = NewTable();
  auto persistence = Persistence::Open(Config(dir.path()), table.get());
  ASSERT_TRUE(persistence.ok()) << persistence.status();
  const RecoveryReport& report = (*persistence)->recovery();
  ASSERT_EQ(report.errors.size(), 1u);
  EXPECT_THAT(report.errors[0], HasSubstr(newest));
  EXPECT_EQ(report.snapshot_generation, std::stoll(snapshots[0].substr(snapshots[0].size() - 17, 12)));
  EXPECT_TRUE(report.snapshot_complete);
  ExpectBatchesOnce(CountRows(table->Copy([] {}).store), 1, 1, 25);
  EXPECT_EQ(table->size(), 25 * 8);
  EXPECT_EQ((*persistence)->Info().recovery_errors_size(), 1);
}

TEST(PersistenceTest, TornLogTailKeepsEverythingBefore) {
  TempDir dir;
  {
    std::unique_ptr<Table> table = NewTable();
    auto persistence = Persistence::Open(Config(dir.path()), table.get());
    ASSERT_TRUE(persistence.ok());
    InsertDurably(*table, **persistence, 1, 1, 12);
  }
  std::vector<std::string> logs = Files(dir.path(), "log-");
  const std::string log = logs.back();
  fs::resize_file(log, fs::file_size(log) - 7);  // the last record is torn

  std::unique_ptr<Table> table = NewTable();
  auto persistence = Persistence::Open(Config(dir.path()), table.get());
  ASSERT_TRUE(persistence.ok()) << persistence.status();
  const RecoveryReport& report = (*persistence)->recovery();
  ASSERT_EQ(report.errors.size(), 1u);
  EXPECT_THAT(report.errors[0], HasSubstr(log));
  EXPECT_THAT(report.errors[0], HasSubstr("truncated record"));
  std::map<RowKey, int> counts = CountRows(table->Copy([] {}).store);
  ExpectBatchesOnce(counts, 1, 1, 11);
  EXPECT_EQ(counts.count(RowKey{1, 12, 0}), 0u);
  EXPECT_EQ(table->LastSequenceNumber(1), 11u);

  // The start-up snapshot folded the good records in: a second restart reports nothing.
  persistence->reset();
  table = NewTable();
  persistence = Persistence::Open(Config(dir.path()), table.get());
  ASSERT_TRUE(persistence.ok());
  EXPECT_TRUE((*persistence)->recovery().errors.empty());
  EXPECT_EQ(table->size(), 11 * 8);
}

TEST(PersistenceTest, GarbageAfterLastRecordIsReported) {
  TempDir dir;
  {
    std::unique_ptr<Table> table = NewTable();
    auto persistence = Persistence::Open(Config(dir.path()), table.get());
    ASSERT_TRUE(persistence.ok());
    InsertDurably(*table, **persistence, 1, 1, 5);
  }
  const std::string log = Files(dir.path(), "log-").back();
  {
    std::ofstream out(log, std::ios::binary | std::ios::app);
    out << "garbage that is not a record";
  }
  std::unique_ptr<Table> table = NewTable();
  auto persistence = Persistence::Open(Config(dir.path()), table.get());
  ASSERT_TRUE(persistence.ok());
  ASSERT_EQ((*persistence)->recovery().errors.size(), 1u);
  EXPECT_THAT((*persistence)->recovery().errors[0], HasSubstr("bad record magic"));
  ExpectBatchesOnce(CountRows(table->Copy([] {}).store), 1, 1, 5);
}

TEST(PersistenceTest, EverySnapshotDamagedStillStartsWithWhatIsLeft) {
  TempDir dir;
  {
    std::unique_ptr<Table> table = NewTable();
    auto persistence = Persistence::Open(Config(dir.path()), table.get());
    ASSERT_TRUE(persistence.ok());
    InsertDurably(*table, **persistence, 1, 1, 10);
    ASSERT_TRUE((*persistence)->Snapshot().ok());
    InsertDurably(*table, **persistence, 1, 11, 15);
  }
  for (const std::string& snapshot : Files(dir.path(), "snapshot-")) {
    fs::resize_file(snapshot, 10);  // even the first record header is torn
  }
  std::unique_ptr<Table> table = NewTable();
  auto persistence = Persistence::Open(Config(dir.path()), table.get());
  ASSERT_TRUE(persistence.ok()) << persistence.status();
  ASSERT_EQ((*persistence)->recovery().errors.size(), 2u);
  EXPECT_THAT((*persistence)->recovery().errors[0], HasSubstr("truncated record header"));
  EXPECT_EQ((*persistence)->recovery().snapshot_generation, -1);
  // The logs from the fallback generation on still hold batches 1..15.
  ExpectBatchesOnce(CountRows(table->Copy([] {}).store), 1, 1, 15);
}

TEST(PersistenceTest, RefusesFilesOfAnotherSignature) {
  TempDir dir;
  {
    std::unique_ptr<Table> table = NewTable();
    auto persistence = Persistence::Open(Config(dir.path()), table.get());
    ASSERT_TRUE(persistence.ok());
  }
  TableConfig config = HopperTable(100);
  config.obs_dim = 17;
  auto table = Table::Create(config);
  ASSERT_TRUE(table.ok());
  absl::Status status = Persistence::Open(Config(dir.path()), table->get()).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("obs_dim=11"));
  EXPECT_THAT(status.message(), HasSubstr(dir.path()));
}

TEST(PersistenceTest, OneServerPerDirectory) {
  TempDir dir;
  std::unique_ptr<Table> first_table = NewTable();
  auto first = Persistence::Open(Config(dir.path()), first_table.get());
  ASSERT_TRUE(first.ok());
  std::unique_ptr<Table> second_table = NewTable();
  absl::Status status = Persistence::Open(Config(dir.path()), second_table.get()).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("in use by another process"));
}

TEST(PersistenceTest, KeepsOnlyTheLastTwoGenerations) {
  TempDir dir;
  std::unique_ptr<Table> table = NewTable();
  auto persistence = Persistence::Open(Config(dir.path()), table.get());
  ASSERT_TRUE(persistence.ok());
  for (uint64_t round = 0; round < 5; ++round) {
    InsertDurably(*table, **persistence, 1, round * 3 + 1, round * 3 + 3);
    absl::StatusOr<proto::CheckpointResponse> snapshot = (*persistence)->Snapshot();
    ASSERT_TRUE(snapshot.ok());
    EXPECT_EQ(snapshot->rows(), static_cast<int64_t>((round + 1) * 3 * 8));
    EXPECT_TRUE(fs::exists(snapshot->path()));
  }
  EXPECT_EQ(Files(dir.path(), "snapshot-").size(), 2u);
  EXPECT_EQ(Files(dir.path(), "log-").size(), 2u);
}

TEST(PersistenceTest, SnapshotThreadFiresWhenTheLogOutgrowsTheLimit) {
  TempDir dir;
  std::unique_ptr<Table> table = NewTable();
  PersistenceConfig config = Config(dir.path());
  config.snapshot_log_bytes = 20000;
  auto persistence = Persistence::Open(config, table.get());
  ASSERT_TRUE(persistence.ok());
  const int64_t before = (*persistence)->Info().snapshots_written();
  InsertDurably(*table, **persistence, 1, 1, 40);  // ~40 KB of log
  const absl::Time deadline = absl::Now() + kLong;
  while ((*persistence)->Info().snapshots_written() == before && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_GT((*persistence)->Info().snapshots_written(), before);
}

TEST(PersistenceTest, APartialSnapshotDoesNotClaimTheRowsItLost) {
  TempDir dir;
  {
    std::unique_ptr<Table> table = NewTable();
    auto persistence = Persistence::Open(Config(dir.path()), table.get());
    ASSERT_TRUE(persistence.ok());
    // 33 batches of 512 rows: the snapshot's first chunk holds batches 1..32, its second batch 33.
    InsertDurably(*table, **persistence, 1, 1, 33, 512);
    ASSERT_TRUE((*persistence)->Snapshot().ok());
  }
  // The start-up snapshot (empty) and ours. With the start-up one unreadable, ours is the only
  // one left, and only partly: its last chunk is damaged.
  const std::vector<std::string> snapshots = Files(dir.path(), "snapshot-");
  ASSERT_EQ(snapshots.size(), 2u);
  fs::resize_file(snapshots[0], 10);
  FlipByte(snapshots[1], static_cast<int64_t>(fs::file_size(snapshots[1])) - 200);

  std::unique_ptr<Table> table = NewTable();
  auto persistence = Persistence::Open(Config(dir.path()), table.get());
  ASSERT_TRUE(persistence.ok()) << persistence.status();
  EXPECT_FALSE((*persistence)->recovery().snapshot_complete);
  EXPECT_EQ(table->size(), 32 * 512);
  ASSERT_FALSE((*persistence)->recovery().errors.empty());
  EXPECT_THAT((*persistence)->recovery().errors.back(), HasSubstr("sequence numbers are not restored"));
  // Batch 33 is gone, so it must not count as stored: the actor's resend is taken.
  EXPECT_LT(table->LastSequenceNumber(1), 33u);
  absl::StatusOr<InsertResult> resent = table->Insert(MakeBatch(1, 33, 512), 0, kLong, nullptr);
  ASSERT_TRUE(resent.ok()) << resent.status();
  EXPECT_FALSE(resent->duplicate) << "a batch the partial snapshot lost was taken as already stored";
  EXPECT_EQ(table->size(), 33 * 512);
}

TEST(PersistenceTest, TheRateLimiterComesBackNeutralAfterAKillBetweenSnapshots) {
  // One sampled transition per inserted one, one batch of slack: inserts and samples go in step.
  TableConfig config = HopperTable(100000);
  config.rate_limiter = RateLimiterConfig::SampleToInsertRatio(1.0, /*min_size=*/64, /*error_buffer=*/8);
  TempDir dir;
  {
    auto table = Table::Create(config);
    ASSERT_TRUE(table.ok());
    auto persistence = Persistence::Open(Config(dir.path()), table->get());
    ASSERT_TRUE(persistence.ok());
    InsertDurably(**table, **persistence, 1, 1, 8);  // 64 rows: sampling may start
    ASSERT_TRUE((*persistence)->Snapshot().ok());
    for (uint64_t sequence = 9; sequence < 9 + 500; ++sequence) {  // 4,000 in, 4,000 out
      ASSERT_TRUE((*table)->Sample(8, kLong, nullptr).ok());
      InsertDurably(**table, **persistence, 1, sequence, sequence);
    }
    const proto::RateLimiterInfo before = (*table)->RateLimiterState();
    EXPECT_TRUE(before.can_insert() && before.can_sample()) << before.DebugString();
    // Gone without a final snapshot, like a killed process.
  }
  auto table = Table::Create(config);
  ASSERT_TRUE(table.ok());
  auto persistence = Persistence::Open(Config(dir.path()), table->get());
  ASSERT_TRUE(persistence.ok()) << persistence.status();
  EXPECT_EQ((*persistence)->recovery().log_batches, 500);
  EXPECT_TRUE((*persistence)->recovery().rate_limiter_centered);
  const proto::RateLimiterInfo after = (*table)->RateLimiterState();
  EXPECT_GE(after.diff(), after.min_diff()) << after.DebugString();
  EXPECT_LE(after.diff(), after.max_diff()) << after.DebugString();
  EXPECT_TRUE(after.can_insert()) << "inserts would wait for samples made before the kill: " << after.DebugString();
  EXPECT_TRUE(after.can_sample()) << after.DebugString();
  // Both sides go on in step (with the old count an insert waited here until its deadline).
  for (uint64_t sequence = 509; sequence < 509 + 20; ++sequence) {
    absl::StatusOr<InsertResult> inserted = (*table)->Insert(MakeBatch(1, sequence, 8), 0, kLong, nullptr);
    ASSERT_TRUE(inserted.ok()) << inserted.status();
    ASSERT_TRUE((*table)->Sample(8, kLong, nullptr).ok());
  }
}

TEST(PersistenceTest, InsertsAndSamplesGoOnWhileTheNextLogFileIsSlowToCreate) {
  // The next generation's log path is a FIFO: opening it for writing blocks until a reader comes,
  // like a file system that stalls. A snapshot waits there; the table must not.
  TempDir dir;
  std::unique_ptr<Table> table = NewTable();
  auto persistence = Persistence::Open(Config(dir.path()), table.get());
  ASSERT_TRUE(persistence.ok()) << persistence.status();
  InsertDurably(*table, **persistence, 1, 1, 4);
  const std::vector<std::string> logs = Files(dir.path(), "log-");
  ASSERT_FALSE(logs.empty());
  const std::string newest = logs.back();
  const int64_t generation = std::stoll(newest.substr(newest.size() - 17, 12));
  const std::string fifo = LogPath(dir.path(), generation + 1);
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);

  std::atomic<bool> snapshot_done{false};
  std::atomic<long> snapshot_tid{0};
  std::thread snapshot([&] {
    snapshot_tid = ::syscall(SYS_gettid);
    EXPECT_TRUE((*persistence)->Snapshot().ok());
    snapshot_done = true;
  });
  // Wait until the snapshot is blocked opening the FIFO (the kernel shows the thread's syscall).
  auto blocked_in_open = [&] {
    if (snapshot_tid == 0) return false;
    std::ifstream file(absl::StrCat("/proc/self/task/", snapshot_tid.load(), "/syscall"));
    long number = -1;
    return static_cast<bool>(file >> number) && number == SYS_openat;
  };
  const absl::Time blocked_deadline = absl::Now() + absl::Seconds(60);
  while (!blocked_in_open() && absl::Now() < blocked_deadline) absl::SleepFor(absl::Milliseconds(5));
  EXPECT_TRUE(blocked_in_open()) << "the snapshot never reached the next log file";
  std::atomic<int64_t> done{0};
  std::atomic<bool> stop{false};
  std::thread inserter([&] {
    for (uint64_t sequence = 5; !stop; ++sequence) {
      absl::StatusOr<InsertResult> result = table->Insert(MakeBatch(1, sequence, 8), 0, kLong, nullptr);
      if (!result.ok() || !(*persistence)->WaitDurable(result->log_position, absl::Now() + kLong).ok() ||
          !table->Sample(8, kLong, nullptr).ok()) {
        ADD_FAILURE() << "insert " << sequence << " failed";
        return;
      }
      ++done;
    }
  });
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (done < 200 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_GE(done.load(), 200) << "inserts stopped while the snapshot waited for its next log file";
  EXPECT_FALSE(snapshot_done.load());  // it was waiting the whole time
  stop = true;
  // Let the snapshot go on: a reader drains the FIFO until the log closes it.
  std::thread reader([&] {
    const int fd = ::open(fifo.c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    char buffer[4096];
    while (::read(fd, buffer, sizeof(buffer)) > 0) {
    }
    ::close(fd);
  });
  inserter.join();
  snapshot.join();
  EXPECT_TRUE(snapshot_done.load());
  persistence->reset();
  reader.join();
}

}  // namespace
}  // namespace meow
