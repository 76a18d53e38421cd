#include "replay/table.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "replay/cancellation.h"
#include "replay/transition_store.h"
#include "tests/replay/test_util.h"

namespace meow {
namespace {

using testing::CountRows;
using ::testing::HasSubstr;
using testing::HopperTable;
using testing::KeyOf;
using testing::MakeBatch;
using testing::RowKey;

constexpr absl::Duration kShort = absl::Milliseconds(100);  // "does not happen" window
constexpr absl::Duration kLong = absl::Seconds(20);         // "happens" bound

std::unique_ptr<Table> MakeTable(const TableConfig& config) {
  absl::StatusOr<std::unique_ptr<Table>> table = Table::Create(config);
  EXPECT_TRUE(table.ok()) << table.status();
  return *std::move(table);
}

absl::Status Insert(Table& table, const proto::TransitionBatch& batch) {
  return table.Insert(batch, /*session=*/0, kLong, nullptr).status();
}

// Rows of a sample as keys, checking that every column agrees with MakeBatch's pattern.
std::vector<RowKey> SampledKeys(const proto::SampleResponse& response) {
  absl::StatusOr<SampledBatch> batch = DecodeSampleResponse(response, BatchSignature{11, 3}, -1);
  EXPECT_TRUE(batch.ok()) << batch.status();
  std::vector<RowKey> keys;
  for (int64_t i = 0; i < batch->rows; ++i) {
    const float* obs = &batch->obs[i * 11];
    const int row = static_cast<int>(obs[2]);
    EXPECT_EQ(batch->next_obs[i * 11 + 5], obs[5] + 0.5f);
    EXPECT_EQ(batch->reward[i], static_cast<float>(row));
    EXPECT_EQ(batch->terminated[i], row % 7 == 0 ? 1.0f : 0.0f);
    EXPECT_FLOAT_EQ(batch->action[i * 3 + 1], (row % 5) / 5.0f - 0.5f + 0.1f);
    EXPECT_EQ(batch->policy_version[i], static_cast<int64_t>(obs[1]));
    keys.push_back(KeyOf(obs));
  }
  return keys;
}

TEST(TableConfigTest, NamesTheBadField) {
  TableConfig config = HopperTable(100);
  config.obs_dim = 0;
  EXPECT_THAT(Table::Create(config).status().message(), HasSubstr("table.obs_dim"));
  config = HopperTable(100);
  config.max_batch_rows = 101;
  EXPECT_THAT(Table::Create(config).status().message(), HasSubstr("table.max_batch_rows"));
  config = HopperTable(0);
  EXPECT_THAT(Table::Create(config).status().message(), HasSubstr("table.capacity"));
  // Configurations that could never sample.
  config = HopperTable(100);
  config.rate_limiter = RateLimiterConfig::MinSize(101);
  EXPECT_THAT(Table::Create(config).status().message(),
              HasSubstr("rate_limiter.min_size_to_sample (101) is above table.capacity (100)"));
  config.rate_limiter = RateLimiterConfig::SampleToInsertRatio(0.0, 10, 8.0);
  EXPECT_THAT(Table::Create(config).status().message(), HasSubstr("rate_limiter.samples_per_insert is 0"));
}

// A fixed dataset (offline training): rows come only through LoadRows; sessions and inserts are
// refused naming the dataset, sampling works as ever.
TEST(TableTest, AReadOnlyTableTakesRowsOnlyFromItsDataset) {
  TableConfig config = HopperTable(100);
  config.read_only = true;
  config.read_only_source = "hopper-medium.hdf5";
  config.rate_limiter = RateLimiterConfig::MinSize(1);
  absl::StatusOr<std::unique_ptr<Table>> table = Table::Create(config);
  ASSERT_TRUE(table.ok()) << table.status();
  const proto::TransitionBatch batch = MakeBatch(1, 1, 8);
  absl::StatusOr<TransitionBatchView> rows = ValidateTransitionBatch(batch, (*table)->signature());
  ASSERT_TRUE(rows.ok());
  ASSERT_TRUE((*table)->LoadRows(*rows, nullptr).ok());
  EXPECT_EQ((*table)->size(), 8);
  absl::StatusOr<InsertSession> session = (*table)->OpenSession(2);
  EXPECT_EQ(session.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(session.status().message(), HasSubstr("serves the fixed dataset hopper-medium.hdf5"));
  absl::StatusOr<InsertResult> inserted = (*table)->Insert(MakeBatch(2, 1, 8), 0, absl::Seconds(1), nullptr);
  EXPECT_EQ(inserted.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*table)->size(), 8);
  EXPECT_TRUE((*table)->Sample(16, absl::Seconds(5), nullptr).ok());
}

TEST(TableTest, SamplesOnlyInsertedRowsWithAllColumns) {
  std::unique_ptr<Table> table = MakeTable(HopperTable(1000));
  ASSERT_TRUE(Insert(*table, MakeBatch(1, 1, 10)).ok());
  ASSERT_TRUE(Insert(*table, MakeBatch(2, 1, 10)).ok());
  EXPECT_EQ(table->size(), 20);
  absl::StatusOr<proto::SampleResponse> sample = table->Sample(256, kLong, nullptr);
  ASSERT_TRUE(sample.ok()) << sample.status();
  EXPECT_EQ(sample->table_size(), 20);
  for (const RowKey& key : SampledKeys(*sample)) {
    EXPECT_TRUE(std::get<0>(key) == 1 || std::get<0>(key) == 2);
    EXPECT_EQ(std::get<1>(key), 1u);
    EXPECT_LT(std::get<2>(key), 10);
  }
  proto::TableInfo info = table->Info();
  EXPECT_EQ(info.inserted_batches(), 2);
  EXPECT_EQ(info.inserted_transitions(), 20);
  EXPECT_EQ(info.sampled_batches(), 1);
  EXPECT_EQ(info.sampled_transitions(), 256);
  EXPECT_EQ(info.actors(), 2);
  EXPECT_EQ(info.selector(), "uniform");
}

TEST(TableTest, EvictsOldestRowsFirst) {
  TableConfig config = HopperTable(10);
  std::unique_ptr<Table> table = MakeTable(config);
  for (uint64_t sequence = 1; sequence <= 4; ++sequence) {
    ASSERT_TRUE(Insert(*table, MakeBatch(1, sequence, 4)).ok());
  }
  EXPECT_EQ(table->size(), 10);
  // 16 rows went in; the 6 oldest (batch 1, and rows 0-1 of batch 2) are gone.
  std::map<RowKey, int> counts = CountRows(table->Copy([] {}).store);
  EXPECT_EQ(counts.size(), 10u);
  EXPECT_EQ(counts.count(RowKey{1, 1, 3}), 0u);
  EXPECT_EQ(counts.count(RowKey{1, 2, 1}), 0u);
  EXPECT_EQ(counts.count(RowKey{1, 2, 2}), 1u);
  EXPECT_EQ(counts.count(RowKey{1, 4, 3}), 1u);
  for (int i = 0; i < 50; ++i) {
    absl::StatusOr<proto::SampleResponse> sample = table->Sample(32, kLong, nullptr);
    ASSERT_TRUE(sample.ok());
    for (const RowKey& key : SampledKeys(*sample)) EXPECT_EQ(counts.count(key), 1u);
  }
}

TEST(TableTest, SamplesUniformlyWithReplacement) {
  std::unique_ptr<Table> table = MakeTable(HopperTable(100));
  for (uint64_t sequence = 1; sequence <= 10; ++sequence) {
    ASSERT_TRUE(Insert(*table, MakeBatch(1, sequence, 10)).ok());
  }
  std::map<RowKey, int> counts;
  for (int i = 0; i < 400; ++i) {
    absl::StatusOr<proto::SampleResponse> sample = table->Sample(250, kLong, nullptr);
    ASSERT_TRUE(sample.ok());
    for (const RowKey& key : SampledKeys(*sample)) ++counts[key];
  }
  // 100 rows, 100000 draws: about 1000 each (sd ~31); 20% is more than six sd.
  ASSERT_EQ(counts.size(), 100u);
  for (const auto& [key, count] : counts) {
    EXPECT_GT(count, 800);
    EXPECT_LT(count, 1200);
  }
}

TEST(TableTest, ResentBatchIsAcknowledgedButStoredOnce) {
  std::unique_ptr<Table> table = MakeTable(HopperTable(1000));
  absl::StatusOr<InsertResult> first = table->Insert(MakeBatch(5, 1, 8), 0, kLong, nullptr);
  ASSERT_TRUE(first.ok());
  EXPECT_FALSE(first->duplicate);
  absl::StatusOr<InsertResult> again = table->Insert(MakeBatch(5, 1, 8), 0, kLong, nullptr);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->duplicate);
  ASSERT_TRUE(Insert(*table, MakeBatch(5, 2, 8)).ok());
  absl::StatusOr<InsertResult> old = table->Insert(MakeBatch(5, 1, 8), 0, kLong, nullptr);
  ASSERT_TRUE(old.ok());
  EXPECT_TRUE(old->duplicate);
  // Another actor's sequence numbers are independent.
  absl::StatusOr<InsertResult> other = table->Insert(MakeBatch(6, 1, 8), 0, kLong, nullptr);
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->duplicate);
  EXPECT_EQ(table->size(), 24);
  EXPECT_EQ(table->Info().duplicate_batches(), 2);
  EXPECT_EQ(table->LastSequenceNumber(5), 2u);
  for (const auto& [key, count] : CountRows(table->Copy([] {}).store)) EXPECT_EQ(count, 1);
}

TEST(TableTest, NewerSessionSupersedesOlder) {
  std::unique_ptr<Table> table = MakeTable(HopperTable(1000));
  const InsertSession old_session = *table->OpenSession(9);
  ASSERT_TRUE(table->Insert(MakeBatch(9, 1, 4), old_session.token, kLong, nullptr).ok());
  const InsertSession new_session = *table->OpenSession(9);
  EXPECT_EQ(new_session.last_sequence_number, 1u);
  absl::Status stale = table->Insert(MakeBatch(9, 2, 4), old_session.token, kLong, nullptr).status();
  EXPECT_EQ(stale.code(), absl::StatusCode::kAborted);
  EXPECT_THAT(stale.message(), HasSubstr("actor 9 was superseded"));
  EXPECT_TRUE(table->Insert(MakeBatch(9, 2, 4), new_session.token, kLong, nullptr).ok());
  EXPECT_EQ(table->size(), 8);
}

// Incarnations: the same client reconnecting supersedes its session; another client is refused
// while the session is open and takes over once it is closed; a superseded session's close does
// not free the id; incarnation 0 (older clients) is never refused.
TEST(TableTest, AnotherIncarnationIsRefusedWhileTheSessionIsOpen) {
  std::unique_ptr<Table> table = MakeTable(HopperTable(1000));
  const InsertSession a1 = *table->OpenSession(4, /*incarnation=*/111);
  const InsertSession a2 = *table->OpenSession(4, 111);  // the same client reconnects
  absl::StatusOr<InsertSession> b = table->OpenSession(4, 222);
  EXPECT_EQ(b.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(b.status().message(), HasSubstr("actor id 4 is in use by another live actor"));
  table->CloseSession(4, a1.token);  // superseded: changes nothing
  EXPECT_EQ(table->OpenSession(4, 222).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(table->OpenSession(4, 0).ok());  // an older client without an incarnation
  table->CloseSession(4, a2.token);            // superseded by the incarnation-0 session: nothing
  const InsertSession zero = *table->OpenSession(4, 0);
  table->CloseSession(4, zero.token);
  EXPECT_TRUE(table->OpenSession(4, 222).ok());
  EXPECT_TRUE(table->OpenSession(5, 333).ok());  // other ids are independent
}

// An InsertLog that records positions and can be made to fail.
class FakeLog final : public InsertLog {
 public:
  uint64_t Append(const proto::TransitionBatch& batch) override { return ++position_; }
  uint64_t position() const override { return position_; }
  absl::Status status() const override { return status_; }
  void Fail() { status_ = absl::DataLossError("disk full"); }

 private:
  uint64_t position_ = 0;
  absl::Status status_;
};

TEST(TableTest, LogsStoredBatchesAndStopsWhenTheLogFails) {
  std::unique_ptr<Table> table = MakeTable(HopperTable(1000));
  FakeLog log;
  table->SetLog(&log);
  absl::StatusOr<InsertResult> first = table->Insert(MakeBatch(1, 1, 4), 0, kLong, nullptr);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->log_position, 1u);
  // A duplicate waits for the newest position: its original may still be on its way to disk.
  ASSERT_TRUE(table->Insert(MakeBatch(2, 1, 4), 0, kLong, nullptr).ok());
  absl::StatusOr<InsertResult> duplicate = table->Insert(MakeBatch(1, 1, 4), 0, kLong, nullptr);
  ASSERT_TRUE(duplicate.ok());
  EXPECT_TRUE(duplicate->duplicate);
  EXPECT_EQ(duplicate->log_position, 2u);
  log.Fail();
  absl::Status refused = table->Insert(MakeBatch(1, 2, 4), 0, kLong, nullptr).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(refused.message(), HasSubstr("disk full"));
  EXPECT_EQ(table->OpenSession(1).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(table->size(), 8);
  table->SetLog(nullptr);
}

// Each bad input: how to break a good batch, the expected code, and the message it must contain.
struct BadInput {
  std::string name;
  std::function<void(proto::TransitionBatch&)> mutate;
  absl::StatusCode code;
  std::string message;
};

void SetFloat(proto::Tensor* tensor, int index, float value) {
  std::memcpy(tensor->mutable_data()->data() + 4 * index, &value, 4);
}

std::vector<BadInput> BadInputs() {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  auto invalid = absl::StatusCode::kInvalidArgument;
  return {
      {"ObsDtype", [](auto& b) { b.mutable_obs()->set_dtype(proto::DTYPE_INT32); }, invalid,
       "TransitionBatch.obs.dtype: expected FLOAT32, got INT32"},
      {"UnknownDtype", [](auto& b) { b.mutable_action()->set_dtype(static_cast<proto::DType>(77)); }, invalid,
       "TransitionBatch.action.dtype: expected a known dtype"},
      {"ObsWidth", [](auto& b) { b = MakeBatch(1, 1, 4, /*obs_dim=*/12, 3); }, invalid,
       "TransitionBatch.obs.shape: expected [*, 11], got [4, 12]"},
      {"ActionWidth", [](auto& b) { b = MakeBatch(1, 1, 4, 11, /*action_dim=*/2); }, invalid,
       "TransitionBatch.action.shape: expected [4, 3], got [4, 2]"},
      {"ObsRank",
       [](auto& b) {
         b.mutable_obs()->clear_shape();
         b.mutable_obs()->add_shape(44);
       },
       invalid, "TransitionBatch.obs.shape: expected [*, 11], got [44]"},
      {"ObsBytes", [](auto& b) { b.mutable_obs()->mutable_data()->resize(40); }, invalid,
       "TransitionBatch.obs.data: expected 176 bytes for FLOAT32 [4, 11], got 40"},
      {"NegativeDim", [](auto& b) { b.mutable_reward()->set_shape(0, -4); }, invalid,
       "TransitionBatch.reward.shape[0]: expected a size >= 0, got -4"},
      {"RewardRows",
       [](auto& b) {
         b.mutable_reward()->set_shape(0, 3);
         b.mutable_reward()->mutable_data()->resize(12);
       },
       invalid, "TransitionBatch.reward.shape: expected [4], got [3]"},
      {"NextObsRows", [](auto& b) { *b.mutable_next_obs() = MakeBatch(1, 1, 5).next_obs(); }, invalid,
       "TransitionBatch.next_obs.shape: expected [4, 11], got [5, 11]"},
      {"TerminatedDtype",
       [](auto& b) {
         const float zeros[4] = {0, 0, 0, 0};
         *b.mutable_terminated() = EncodeFloat32({4}, zeros);
       },
       invalid, "TransitionBatch.terminated.dtype: expected BOOL, got FLOAT32"},
      {"TerminatedValue", [](auto& b) { (*b.mutable_terminated()->mutable_data())[1] = 2; }, invalid,
       "TransitionBatch.terminated[1]: expected 0 or 1, got 2"},
      {"MissingColumn", [](auto& b) { b.clear_next_obs(); }, invalid, "TransitionBatch.next_obs: missing"},
      {"NanObs", [nan](auto& b) { SetFloat(b.mutable_obs(), 11 + 5, nan); }, invalid,
       "TransitionBatch.obs[1, 5]: expected a finite value, got nan"},
      {"InfReward", [inf](auto& b) { SetFloat(b.mutable_reward(), 2, inf); }, invalid,
       "TransitionBatch.reward[2]: expected a finite value, got inf"},
      {"NegInfNextObs", [inf](auto& b) { SetFloat(b.mutable_next_obs(), 3 * 11 + 10, -inf); }, invalid,
       "TransitionBatch.next_obs[3, 10]: expected a finite value, got -inf"},
      {"NanAction", [nan](auto& b) { SetFloat(b.mutable_action(), 1, nan); }, invalid,
       "TransitionBatch.action[0, 1]: expected a finite value, got nan"},
      {"ActionOutOfRange", [](auto& b) { SetFloat(b.mutable_action(), 2 * 3 + 2, 1.5f); }, invalid,
       "TransitionBatch.action[2, 2]: expected a value in [-1, 1], got 1.5"},
      {"ZeroRows", [](auto& b) { b = MakeTransitionBatch(11, 3, {}, {}, {}, {}, {}, 0); }, invalid,
       "TransitionBatch.obs.shape: expected at least one row, got 0"},
      {"SequenceZero", [](auto& b) { b.set_sequence_number(0); }, invalid,
       "TransitionBatch.sequence_number: expected >= 1, got 0"},
      {"TooManyRows", [](auto& b) { b = MakeBatch(1, 1, 9); }, absl::StatusCode::kResourceExhausted,
       "TransitionBatch.obs.shape: 9 rows exceed the limit of 8 per batch"},
  };
}

class BadInputTest : public ::testing::TestWithParam<BadInput> {};

TEST_P(BadInputTest, RefusedWithFieldNameAndNothingStored) {
  TableConfig config = HopperTable(100);
  config.max_batch_rows = 8;
  std::unique_ptr<Table> table = MakeTable(config);
  proto::TransitionBatch batch = MakeBatch(1, 1, 4);
  ASSERT_TRUE(ValidateTransitionBatch(batch, table->signature()).ok());
  GetParam().mutate(batch);
  absl::Status status = Insert(*table, batch);
  EXPECT_EQ(status.code(), GetParam().code) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(GetParam().message));
  EXPECT_EQ(table->size(), 0);
  EXPECT_EQ(table->LastSequenceNumber(1), 0u);
  EXPECT_EQ(table->Info().rejected_batches(), 1);
  // The refusal leaves the sequence number free for a good batch.
  EXPECT_TRUE(Insert(*table, MakeBatch(1, 1, 4)).ok());
}

INSTANTIATE_TEST_SUITE_P(AllBadInputs, BadInputTest, ::testing::ValuesIn(BadInputs()),
                         [](const auto& info) { return info.param.name; });

TEST(TableTest, RefusesBadSampleSizes) {
  TableConfig config = HopperTable(100);
  config.max_sample_rows = 512;
  std::unique_ptr<Table> table = MakeTable(config);
  ASSERT_TRUE(Insert(*table, MakeBatch(1, 1, 4)).ok());
  absl::Status zero = table->Sample(0, kLong, nullptr).status();
  EXPECT_EQ(zero.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(zero.message(), HasSubstr("SampleRequest.batch_size: expected >= 1, got 0"));
  absl::Status big = table->Sample(513, kLong, nullptr).status();
  EXPECT_EQ(big.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(big.message(), HasSubstr("513 rows exceed the limit of 512"));
}

TEST(TableBlockingTest, SampleWaitsForMinSize) {
  TableConfig config = HopperTable(100);
  config.rate_limiter = RateLimiterConfig::MinSize(10);
  std::unique_ptr<Table> table = MakeTable(config);
  absl::Notification sampled;
  absl::Status status;
  std::thread sampler([&] {
    status = table->Sample(4, kLong, nullptr).status();
    sampled.Notify();
  });
  ASSERT_TRUE(Insert(*table, MakeBatch(1, 1, 9)).ok());
  EXPECT_FALSE(sampled.WaitForNotificationWithTimeout(kShort));
  // The sampler is (or soon is: its thread may start late on a busy machine) blocked.
  const absl::Time deadline = absl::Now() + kLong;
  while (table->RateLimiterState().blocked_samples() != 1 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_EQ(table->RateLimiterState().blocked_samples(), 1);
  EXPECT_FALSE(sampled.HasBeenNotified());
  ASSERT_TRUE(Insert(*table, MakeBatch(1, 2, 1)).ok());
  EXPECT_TRUE(sampled.WaitForNotificationWithTimeout(kLong));
  sampler.join();
  EXPECT_TRUE(status.ok()) << status;
  proto::RateLimiterInfo limiter = table->RateLimiterState();
  EXPECT_EQ(limiter.sample_waits(), 1);
  EXPECT_GT(limiter.sample_wait_seconds(), 0.0);
  EXPECT_EQ(limiter.blocked_samples(), 0);
}

TEST(TableBlockingTest, SampleTimesOut) {
  TableConfig config = HopperTable(100);
  config.rate_limiter = RateLimiterConfig::MinSize(10);
  std::unique_ptr<Table> table = MakeTable(config);
  absl::Status status = table->Sample(4, absl::Milliseconds(50), nullptr).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(status.message(), HasSubstr("min_size_to_sample=10"));
}

TEST(TableBlockingTest, InsertWaitsWhileAheadOfSampling) {
  TableConfig config = HopperTable(1000);
  // One sampled transition per inserted one, 8 transitions of slack.
  config.rate_limiter = RateLimiterConfig::SampleToInsertRatio(1, /*min_size=*/4, 8);
  std::unique_ptr<Table> table = MakeTable(config);
  uint64_t sequence = 1;
  while (table->RateLimiterState().can_insert()) {
    ASSERT_TRUE(Insert(*table, MakeBatch(1, sequence++, 4)).ok());
    ASSERT_LT(sequence, 100u);
  }
  const int64_t size = table->size();
  absl::Notification inserted;
  absl::Status status;
  std::thread inserter([&] {
    status = Insert(*table, MakeBatch(1, sequence, 4));
    inserted.Notify();
  });
  EXPECT_FALSE(inserted.WaitForNotificationWithTimeout(kShort));
  EXPECT_EQ(table->size(), size);
  ASSERT_TRUE(table->Sample(8, kLong, nullptr).ok());  // the learner catches up
  EXPECT_TRUE(inserted.WaitForNotificationWithTimeout(kLong));
  inserter.join();
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(table->size(), size + 4);
  EXPECT_EQ(table->RateLimiterState().insert_waits(), 1);
}

TEST(TableBlockingTest, InsertTimesOutAndStoresNothing) {
  TableConfig config = HopperTable(1000);
  config.rate_limiter = RateLimiterConfig::SampleToInsertRatio(1, 4, 8);
  std::unique_ptr<Table> table = MakeTable(config);
  uint64_t sequence = 1;
  while (table->RateLimiterState().can_insert()) {
    ASSERT_TRUE(Insert(*table, MakeBatch(1, sequence++, 4)).ok());
  }
  const int64_t size = table->size();
  absl::Status status = table->Insert(MakeBatch(1, sequence, 4), 0, absl::Milliseconds(50), nullptr).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(status.message(), HasSubstr("the sampler is behind"));
  EXPECT_EQ(table->size(), size);
  EXPECT_EQ(table->LastSequenceNumber(1), sequence - 1);
}

TEST(TableBlockingTest, CancellationWakesBlockedCalls) {
  TableConfig config = HopperTable(100);
  config.rate_limiter = RateLimiterConfig::MinSize(10);
  std::unique_ptr<Table> table = MakeTable(config);
  Cancellation cancellation;
  absl::Notification done;
  absl::Status status;
  std::thread sampler([&] {
    status = table->Sample(4, absl::Hours(1), &cancellation).status();
    done.Notify();
  });
  EXPECT_FALSE(done.WaitForNotificationWithTimeout(kShort));
  cancellation.Cancel();
  EXPECT_TRUE(done.WaitForNotificationWithTimeout(kLong));
  sampler.join();
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled);
  // An already cancelled call returns at once.
  EXPECT_EQ(table->Sample(4, absl::Hours(1), &cancellation).status().code(), absl::StatusCode::kCancelled);
}

TEST(TableBlockingTest, CloseWakesEveryWaiter) {
  TableConfig config = HopperTable(1000);
  config.rate_limiter = RateLimiterConfig::SampleToInsertRatio(1, 4, 8);
  std::unique_ptr<Table> table = MakeTable(config);
  uint64_t sequence = 1;
  while (table->RateLimiterState().can_insert()) {
    ASSERT_TRUE(Insert(*table, MakeBatch(1, sequence++, 4)).ok());
  }
  // Blocked insert; and a sampler blocked on another table below its minimum size.
  TableConfig empty_config = HopperTable(100);
  empty_config.rate_limiter = RateLimiterConfig::MinSize(10);
  std::unique_ptr<Table> empty = MakeTable(empty_config);
  absl::Notification insert_done, sample_done;
  absl::Status insert_status, sample_status;
  std::thread inserter([&] {
    insert_status = table->Insert(MakeBatch(1, sequence, 4), 0, absl::Hours(1), nullptr).status();
    insert_done.Notify();
  });
  std::thread sampler([&] {
    sample_status = empty->Sample(4, absl::Hours(1), nullptr).status();
    sample_done.Notify();
  });
  EXPECT_FALSE(insert_done.WaitForNotificationWithTimeout(kShort));
  EXPECT_FALSE(sample_done.HasBeenNotified());
  table->Close();
  empty->Close();
  EXPECT_TRUE(insert_done.WaitForNotificationWithTimeout(kLong));
  EXPECT_TRUE(sample_done.WaitForNotificationWithTimeout(kLong));
  inserter.join();
  sampler.join();
  EXPECT_EQ(insert_status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(sample_status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(Insert(*table, MakeBatch(2, 1, 4)).code(), absl::StatusCode::kCancelled);
}

TEST(TableTest, CopyRunsCallbackAtomicallyAndKeepsOrder) {
  std::unique_ptr<Table> table = MakeTable(HopperTable(6));
  for (uint64_t sequence = 1; sequence <= 3; ++sequence) {
    ASSERT_TRUE(Insert(*table, MakeBatch(4, sequence, 4)).ok());
  }
  bool ran = false;
  TableState state = table->Copy([&] { ran = true; });
  EXPECT_TRUE(ran);
  ASSERT_EQ(state.store.size(), 6);
  EXPECT_EQ(state.store.capacity(), 6);
  EXPECT_EQ(state.last_sequence_numbers.at(4), 3u);
  EXPECT_EQ(state.counters.inserted_transitions, 12);
  // Oldest first: batch 2 rows 2-3, then batch 3 rows 0-3.
  std::vector<float> obs(11), action(3), reward(1), next_obs(11);
  std::vector<uint8_t> terminated(1);
  std::vector<int64_t> version(1);
  const RowKey expected[] = {{4, 2, 2}, {4, 2, 3}, {4, 3, 0}, {4, 3, 1}, {4, 3, 2}, {4, 3, 3}};
  for (int age = 0; age < 6; ++age) {
    const int64_t slot = state.store.SlotOfAge(age);
    state.store.Gather(absl::MakeConstSpan(&slot, 1), obs.data(), action.data(), reward.data(), next_obs.data(),
                       terminated.data(), /*truncated=*/nullptr, version.data());
    EXPECT_EQ(KeyOf(obs.data()), expected[age]) << "age " << age;
  }
}

TEST(TableTest, ReplaySkipsStoredBatches) {
  std::unique_ptr<Table> table = MakeTable(HopperTable(100));
  table->LoadState({{3, 5}}, TableCounters{});
  absl::StatusOr<bool> stored = table->Replay(MakeBatch(3, 5, 4));
  ASSERT_TRUE(stored.ok());
  EXPECT_FALSE(*stored);
  stored = table->Replay(MakeBatch(3, 6, 4));
  ASSERT_TRUE(stored.ok());
  EXPECT_TRUE(*stored);
  EXPECT_EQ(table->size(), 4);
  EXPECT_EQ(table->LastSequenceNumber(3), 6u);
}

// Resident memory of this process in bytes.
int64_t ResidentBytes() {
  long pages = 0, resident = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
  std::fclose(f);
  return static_cast<int64_t>(resident) * sysconf(_SC_PAGESIZE);
}

TEST(TableMemoryTest, MillionHopperTransitionsWithinBudget) {
  constexpr int64_t kRows = 1'000'000;
  // Raw payload of one transition: obs, action, reward, next_obs as float32, terminated 1 byte.
  constexpr int64_t kRawBytes = 4 * (11 + 3 + 1 + 11) + 1;
  const int64_t before = ResidentBytes();
  TableConfig config = HopperTable(kRows);
  std::unique_ptr<Table> table = MakeTable(config);
  proto::TransitionBatch batch = MakeBatch(1, 1, 4096);
  for (uint64_t sequence = 1; table->size() < kRows; ++sequence) {
    batch.set_sequence_number(sequence);
    ASSERT_TRUE(Insert(*table, batch).ok());
  }
  const int64_t grown = ResidentBytes() - before;
  const int64_t accounted = table->Info().bytes();
  EXPECT_LE(accounted, kRows * kRawBytes * 5 / 4);
  EXPECT_LE(grown, kRows * kRawBytes * 5 / 4) << "resident growth " << grown;
  std::printf("table bytes per transition: %.1f (raw %lld), resident growth per transition %.1f\n",
              static_cast<double>(accounted) / kRows, static_cast<long long>(kRawBytes),
              static_cast<double>(grown) / kRows);
}

TEST(TransitionStoreTest, LegacyAddAndSampleStillWork) {
  TransitionStore store(2, 1, 3);
  const float obs[2] = {1, 2}, action[1] = {0.5f}, next_obs[2] = {3, 4};
  store.Add(obs, action, 7.0f, next_obs, true);
  EXPECT_EQ(store.size(), 1);
  EXPECT_EQ(store.total_added(), 1);
  std::mt19937_64 rng(1);
  float o[4], a[2], r[2], n[4], d[2];
  store.Sample(2, rng, o, a, r, n, d);
  EXPECT_EQ(o[2], 1.0f);
  EXPECT_EQ(a[1], 0.5f);
  EXPECT_EQ(r[0], 7.0f);
  EXPECT_EQ(n[3], 4.0f);
  EXPECT_EQ(d[1], 1.0f);
}

TEST(CancellationTest, RunsCallbacksOnceAndImmediatelyWhenLate) {
  Cancellation cancellation;
  int calls = 0;
  {
    auto registration = cancellation.Register([&] { ++calls; });
    cancellation.Cancel();
    cancellation.Cancel();
    EXPECT_EQ(calls, 1);
  }
  auto late = cancellation.Register([&] { ++calls; });
  EXPECT_EQ(calls, 2);
  EXPECT_TRUE(cancellation.cancelled());
}

TEST(TableTest, TheNumberOfTrackedActorIdsIsBounded) {
  TableConfig config = HopperTable(1000);
  config.max_actors = 3;
  auto table = Table::Create(config);
  ASSERT_TRUE(table.ok());
  // A client cycling through ids without storing anything leaves nothing behind.
  for (uint64_t id = 100; id < 10100; ++id) {
    absl::StatusOr<InsertSession> session = (*table)->OpenSession(id, 1);
    ASSERT_TRUE(session.ok()) << "id " << id << ": " << session.status();
    (*table)->CloseSession(id, session->token);
  }
  // Ids that stored batches are kept, up to max_actors.
  for (uint64_t id = 1; id <= 3; ++id) {
    absl::StatusOr<InsertSession> session = (*table)->OpenSession(id, 1);
    ASSERT_TRUE(session.ok()) << session.status();
    ASSERT_TRUE((*table)->Insert(MakeBatch(id, 1, 4), session->token, kLong, nullptr).ok());
    (*table)->CloseSession(id, session->token);
  }
  absl::StatusOr<InsertSession> refused = (*table)->OpenSession(4, 1);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("table.max_actors=3"));
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("actor id 4"));
  // A known id still gets its session, and resumes after its stored batch.
  absl::StatusOr<InsertSession> known = (*table)->OpenSession(2, 1);
  ASSERT_TRUE(known.ok()) << known.status();
  EXPECT_EQ(known->last_sequence_number, 1u);
  TableConfig bad = config;
  bad.max_actors = 0;
  EXPECT_THAT(std::string(Table::Create(bad).status().message()), HasSubstr("table.max_actors"));
}

}  // namespace
}  // namespace meow
