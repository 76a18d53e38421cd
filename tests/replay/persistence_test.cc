#include "replay/persistence.h"

#include <unistd.h>

#include <cstdio>
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
    path_ = absl::StrCat(::testing::TempDir(), "/replay_", test->test_suite_name(), "_",
                         test->name(), "_", ::getpid());
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
void InsertDurably(Table& table, Persistence& persistence, uint64_t actor, uint64_t first,
                   uint64_t last, int rows = 8) {
  for (uint64_t sequence = first; sequence <= last; ++sequence) {
    absl::StatusOr<InsertResult> result =
        table.Insert(MakeBatch(actor, sequence, rows), 0, kLong, nullptr);
    ASSERT_TRUE(result.ok()) << result.status();
    ASSERT_TRUE(persistence.WaitDurable(result->log_position, absl::Now() + kLong).ok());
  }
}

// Expects every row of batches first..last of `actor` exactly once in `counts`.
void ExpectBatchesOnce(const std::map<RowKey, int>& counts, uint64_t actor, uint64_t first,
                       uint64_t last, int rows = 8) {
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
  absl::StatusOr<std::unique_ptr<ReplayLog>> log =
      ReplayLog::Create(path, proto::LogHeader(), /*fsync=*/true);
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

TEST(SnapshotTest, RoundTripAndPartialRead) {
  TempDir dir;
  std::unique_ptr<Table> table = NewTable(50);
  for (uint64_t sequence = 1; sequence <= 10; ++sequence) {
    ASSERT_TRUE(table->Insert(MakeBatch(2, sequence, 8), 0, kLong, nullptr).ok());
  }
  const TableState state = table->Copy([] {});
  const std::string path = dir.path() + "/snapshot";
  ASSERT_TRUE(
      WriteSnapshot(path, state, /*generation=*/4, /*capacity=*/50, /*chunk_rows=*/16).ok());
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
    absl::StatusOr<std::unique_ptr<Persistence>> persistence =
        Persistence::Open(Config(dir.path()), table.get());
    ASSERT_TRUE(persistence.ok()) << persistence.status();
    InsertDurably(*table, **persistence, 1, 1, 20);
    ASSERT_TRUE((*persistence)->Snapshot().ok());
    InsertDurably(*table, **persistence, 1, 21, 30);
    InsertDurably(*table, **persistence, 2, 1, 5);
    // Gone without a final snapshot, like a killed process.
  }
  std::unique_ptr<Table> table = NewTable();
  absl::StatusOr<std::unique_ptr<Persistence>> persistence =
      Persistence::Open(Config(dir.path()), table.get());
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
  EXPECT_EQ(report.snapshot_generation,
            std::stoll(snapshots[0].substr(snapshots[0].size() - 17, 12)));
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

}  // namespace
}  // namespace meow
