// A real replay server process killed with SIGKILL while actors insert, then restarted on the same
// directory: every acknowledged batch must be there exactly once (with the inserters' resends of
// unacknowledged ones). Also damaged files after a kill: a corrupt snapshot and a torn log tail.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "replay/replay_client.h"
#include "replay/snapshot.h"
#include "tests/replay/test_util.h"

namespace meow {
namespace {

using ::testing::HasSubstr;
using testing::KeyOf;
using testing::MakeBatch;
using testing::RowKey;

namespace fs = std::filesystem;

constexpr absl::Duration kLong = absl::Seconds(60);

// A replay_test_server child process. Killed (SIGKILL) on destruction; dies with the test too.
class ServerProcess {
 public:
  // Starts the server on 127.0.0.1:`port` (0 = any) and waits until it serves.
  static std::unique_ptr<ServerProcess> Start(const std::string& dir, int port, bool fsync, int snapshot_interval_ms) {
    const std::string port_file = dir + ".port";
    fs::remove(port_file);
    std::vector<std::string> args = {
        MEOW_REPLAY_TEST_SERVER,
        "--dir=" + dir,
        absl::StrCat("--port=", port),
        "--port_file=" + port_file,
        absl::StrCat("--fsync=", fsync ? 1 : 0),
        absl::StrCat("--snapshot_interval_ms=", snapshot_interval_ms),
    };
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    auto process = std::unique_ptr<ServerProcess>(new ServerProcess(pid, port_file));
    const absl::Time deadline = absl::Now() + kLong;
    while (absl::Now() < deadline) {
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        process->pid_ = -1;
        ADD_FAILURE() << "replay_test_server exited with status " << status;
        return nullptr;
      }
      if (absl::StatusOr<std::string> text = ReadFile(port_file); text.ok()) {
        if (absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &process->port_)) return process;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    ADD_FAILURE() << "replay_test_server did not start within " << kLong;
    return nullptr;
  }

  ~ServerProcess() {
    Kill();
    fs::remove(port_file_);
  }

  void Kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  int port() const { return port_; }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }

 private:
  ServerProcess(pid_t pid, std::string port_file) : pid_(pid), port_file_(std::move(port_file)) {}
  pid_t pid_;
  std::string port_file_;
  int port_ = 0;
};

std::string FreshDir(const std::string& name) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "/replay_crash_", name, "_", getpid());
  fs::remove_all(dir);
  return dir;
}

// How often each row occurs in the snapshot the server writes on request.
std::map<RowKey, int> CheckpointedRows(const std::string& address) {
  std::map<RowKey, int> counts;
  absl::StatusOr<proto::CheckpointResponse> checkpoint = CheckpointReplay(address, kLong);
  EXPECT_TRUE(checkpoint.ok()) << checkpoint.status();
  if (!checkpoint.ok()) return counts;
  absl::StatusOr<LoadedSnapshot> snapshot = ReadSnapshot(checkpoint->path());
  EXPECT_TRUE(snapshot.ok()) << snapshot.status();
  EXPECT_TRUE(snapshot->complete) << snapshot->error;
  for (const proto::SnapshotChunk& chunk : snapshot->chunks) {
    absl::StatusOr<TransitionBatchView> view = ValidateTransitionBatch(chunk.rows(), BatchSignature{11, 3});
    EXPECT_TRUE(view.ok());
    for (int64_t r = 0; r < view->rows; ++r) {
      float obs[11];
      std::memcpy(obs, view->obs + r * sizeof(obs), sizeof(obs));
      ++counts[KeyOf(obs)];
    }
  }
  return counts;
}

std::unique_ptr<ReplayInserter> NewInserter(const std::string& address, uint64_t actor) {
  ReplayInserterConfig config;
  config.addresses = {address};
  config.actor_id = actor;
  config.max_unacked_batches = 32;
  config.backoff.initial = absl::Milliseconds(20);
  config.backoff.max = absl::Milliseconds(300);
  absl::StatusOr<std::unique_ptr<ReplayInserter>> inserter = ReplayInserter::Create(config);
  EXPECT_TRUE(inserter.ok()) << inserter.status();
  return *std::move(inserter);
}

int64_t TotalAcked(const std::vector<std::unique_ptr<ReplayInserter>>& inserters) {
  int64_t acked = 0;
  for (const auto& inserter : inserters) acked += inserter->stats().acked;
  return acked;
}

// Actors insert while the server is killed twice and restarted; then every batch that any actor
// handed to its inserter must be stored exactly once.
void KillDuringInserts(bool fsync, int batches_per_actor) {
  constexpr int kActors = 4;
  constexpr int kRows = 64;
  const std::string dir = FreshDir(fsync ? "fsync" : "nofsync");
  std::unique_ptr<ServerProcess> server = ServerProcess::Start(dir, 0, fsync, /*snapshot_interval_ms=*/1000);
  ASSERT_NE(server, nullptr);
  const int port = server->port();
  std::vector<std::unique_ptr<ReplayInserter>> inserters;
  for (int a = 0; a < kActors; ++a) inserters.push_back(NewInserter(server->address(), a + 1));

  std::vector<absl::Status> results(kActors);
  std::vector<std::thread> actors;
  for (int a = 0; a < kActors; ++a) {
    actors.emplace_back([&, a] {
      for (uint64_t i = 1; i <= static_cast<uint64_t>(batches_per_actor); ++i) {
        // The inserter numbers batches 1, 2, ... on a fresh directory: the tag matches.
        if (absl::Status s = inserters[a]->Insert(MakeBatch(a + 1, i, kRows), kLong); !s.ok()) {
          results[a] = s;
          return;
        }
      }
      results[a] = inserters[a]->Flush(kLong);
    });
  }
  const int64_t total = int64_t{kActors} * batches_per_actor;
  for (int kill = 1; kill <= 2; ++kill) {
    // Kill once a third (then two thirds) of all batches are acknowledged.
    const absl::Time deadline = absl::Now() + kLong;
    while (TotalAcked(inserters) < total * kill / 3 && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(2));
    }
    server->Kill();
    const int64_t acked_at_kill = TotalAcked(inserters);
    std::printf("kill %d: %lld of %lld batches acknowledged\n", kill, static_cast<long long>(acked_at_kill),
                static_cast<long long>(total));
    EXPECT_LT(acked_at_kill, total);          // the kill really hit the inserts
    absl::SleepFor(absl::Milliseconds(200));  // actors go on queueing meanwhile
    server = ServerProcess::Start(dir, port, fsync, 1000);
    ASSERT_NE(server, nullptr);
  }
  for (std::thread& actor : actors) actor.join();
  for (const absl::Status& result : results) EXPECT_TRUE(result.ok()) << result;
  int64_t resent = 0, duplicates = 0, connects = 0;
  for (const auto& inserter : inserters) {
    ReplayInserter::Stats stats = inserter->stats();
    resent += stats.sent - batches_per_actor;
    duplicates += stats.duplicates;
    connects += stats.connects;
  }
  // Every actor reconnected after the first kill, and at least one after the second.
  EXPECT_GE(connects, 2 * kActors + 1);
  std::printf("resent %lld batches after reconnecting, %lld acknowledged as duplicates\n",
              static_cast<long long>(resent), static_cast<long long>(duplicates));

  std::map<RowKey, int> counts = CheckpointedRows(server->address());
  EXPECT_EQ(counts.size(), static_cast<size_t>(total * kRows));
  for (int a = 0; a < kActors; ++a) {
    for (uint64_t i = 1; i <= static_cast<uint64_t>(batches_per_actor); ++i) {
      for (int r = 0; r < kRows; ++r) {
        auto it = counts.find(RowKey{static_cast<uint64_t>(a + 1), i, r});
        ASSERT_NE(it, counts.end()) << "actor " << a + 1 << " batch " << i << " row " << r;
        ASSERT_EQ(it->second, 1) << "actor " << a + 1 << " batch " << i << " row " << r;
      }
    }
  }
  inserters.clear();
  server.reset();
  fs::remove_all(dir);
}

TEST(ReplayCrashTest, SigkillDuringInsertsLosesAndDuplicatesNothing) {
  KillDuringInserts(/*fsync=*/false, /*batches_per_actor=*/1500);
}

TEST(ReplayCrashTest, SigkillWithFsyncBeforeAck) { KillDuringInserts(/*fsync=*/true, /*batches_per_actor=*/400); }

std::vector<std::string> Files(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) == 0 && absl::EndsWith(name, ".meow")) {
      files.push_back(entry.path().string());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

TEST(ReplayCrashTest, CorruptSnapshotAndTornLogAreReportedAndSurvived) {
  const std::string dir = FreshDir("damaged");
  std::unique_ptr<ServerProcess> server =
      ServerProcess::Start(dir, 0, /*fsync=*/false, /*snapshot_interval_ms=*/3600000);
  ASSERT_NE(server, nullptr);
  {
    std::unique_ptr<ReplayInserter> inserter = NewInserter(server->address(), 1);
    uint64_t sequence = 0;
    for (int round = 0; round < 3; ++round) {
      const int batches = round < 2 ? 200 : 100;
      for (int i = 0; i < batches; ++i) {
        ASSERT_TRUE(inserter->Insert(MakeBatch(1, ++sequence, 32), kLong).ok());
      }
      ASSERT_TRUE(inserter->Flush(kLong).ok());
      if (round < 2) {
        ASSERT_TRUE(CheckpointReplay(server->address(), kLong).ok());
      }
    }
  }
  server->Kill();

  // Damage the newest snapshot in its middle, and tear the newest log's last record.
  const std::string snapshot = Files(dir, "snapshot-").back();
  {
    std::fstream file(snapshot, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(static_cast<std::streamoff>(fs::file_size(snapshot) / 2));
    file.put('\x7f');
    file.put('\x00');
  }
  const std::string log = Files(dir, "log-").back();
  fs::resize_file(log, fs::file_size(log) - 10);

  server = ServerProcess::Start(dir, 0, false, 3600000);
  ASSERT_NE(server, nullptr);  // it starts: damage is reported, not fatal
  absl::StatusOr<proto::InfoResponse> info = GetReplayInfo(server->address(), kLong);
  ASSERT_TRUE(info.ok()) << info.status();
  const auto& errors = info->persistence().recovery_errors();
  ASSERT_EQ(errors.size(), 2);
  EXPECT_THAT(errors[0], HasSubstr(snapshot));
  EXPECT_THAT(errors[1], HasSubstr(log));
  EXPECT_THAT(errors[1], HasSubstr("truncated record"));
  // Everything up to the last good record: batches 1..499 once; the torn 500th is gone.
  std::map<RowKey, int> counts = CheckpointedRows(server->address());
  EXPECT_EQ(counts.size(), 499u * 32);
  for (uint64_t i = 1; i <= 499; ++i) {
    auto it = counts.find(RowKey{1, i, 0});
    ASSERT_NE(it, counts.end()) << "batch " << i;
    EXPECT_EQ(it->second, 1);
  }
  EXPECT_EQ(counts.count(RowKey{1, 500, 0}), 0u);
  server.reset();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace meow
