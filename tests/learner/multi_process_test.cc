// The multi-process layout on 127.0.0.1, each part its own `meow` process as users start them:
// `meow replay`, `meow learner`, two `meow actor`s and `meow eval --learner`. An actor is SIGKILLed
// and started again, the learner is SIGKILLed and restarted from its run directory; training goes
// on to the end, weight versions keep increasing, and every process exits on its own when the
// learner says training is over. Replay and an actor serve Prometheus metrics, scraped over HTTP.
// Label: integration.
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "learner/checkpoint.h"
#include "learner/report.h"
#include "replay/replay_client.h"

namespace meow {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// A free TCP port on 127.0.0.1 (the kernel's pick; released before the child binds it).
int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// A `meow` child process with its output in a log file. SIGKILLed on destruction.
class Child {
 public:
  Child(std::string name, std::vector<std::string> args, const std::string& log) : name_(std::move(name)), log_(log) {
    args.insert(args.begin(), MEOW_BINARY);
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      FILE* out = std::fopen(log.c_str(), "a");
      if (out != nullptr) {
        ::dup2(fileno(out), STDOUT_FILENO);
        ::dup2(fileno(out), STDERR_FILENO);
      }
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }
  ~Child() { Signal(SIGKILL), Wait(absl::Seconds(10)); }

  void Signal(int sig) {
    if (pid_ > 0 && !exit_code_.has_value()) ::kill(pid_, sig);
  }
  // The exit code once the process ended (-1 for a signal), nullopt if it runs past `timeout`.
  std::optional<int> Wait(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (!exit_code_.has_value()) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        break;
      }
      if (absl::Now() >= deadline) break;
      absl::SleepFor(absl::Milliseconds(50));
    }
    return exit_code_;
  }
  bool running() { return !Wait(absl::ZeroDuration()).has_value(); }
  std::string Log() const {
    std::ifstream in(log_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  std::string log_;
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
};

int64_t Inserted(const std::string& replay) {
  auto info = GetReplayInfo(replay, absl::Seconds(2));
  return info.ok() ? info->table().inserted_transitions() : -1;
}

// GET http://127.0.0.1:port/path; the body, or "" when it fails.
std::string HttpGet(int port, const std::string& path) {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(2);
  auto response = client.Get(path.c_str());
  return response && response->status == 200 ? response->body : "";
}

// Waits until `predicate` holds; false after `timeout`.
template <typename P>
bool WaitUntil(P predicate, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (predicate()) return true;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return predicate();
}

TEST(MultiProcessTest, KilledActorsAndLearnerAreRestartedAndTrainingFinishes) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "/multi_process_", getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string replay = absl::StrCat("127.0.0.1:", FreePort());
  const std::string learner = absl::StrCat("127.0.0.1:", FreePort());
  const int replay_metrics = FreePort(), actor_metrics = FreePort();
  const std::string run_dir = dir + "/run";
  const std::vector<std::string> common = {"--env=MultiGoal-v0", "--connect_timeout=60s"};
  auto with = [&](std::vector<std::string> args) {
    args.insert(args.end(), common.begin(), common.end());
    return args;
  };
  Child replay_process(
      "replay",
      with({"replay", "--address=" + replay, "--replay_dir=" + dir + "/replay", "--samples_per_insert=64",
            "--min_replay_size=500", absl::StrCat("--metrics_address=127.0.0.1:", replay_metrics)}),
      dir + "/replay.log");
  const std::vector<std::string> learner_args =
      with({"learner", "--replay=" + replay, "--address=" + learner, "--run_dir=" + run_dir, "--total_env_steps=4000",
            "--learning_starts=500", "--batch_size=64", "--eval_interval=1000", "--eval_episodes=2",
            "--log_interval=500", "--checkpoint_interval=200"});
  auto learner_process = std::make_unique<Child>("learner", learner_args, dir + "/learner.log");
  auto actor_args = [&](int id) {
    return with({"actor", "--replay=" + replay, "--learner=" + learner, absl::StrCat("--actor_id=", id)});
  };
  std::vector<std::unique_ptr<Child>> actors;
  for (int id = 0; id < 2; ++id) {
    std::vector<std::string> args = actor_args(id);
    if (id == 0) args.push_back(absl::StrCat("--metrics_address=127.0.0.1:", actor_metrics));
    actors.push_back(
        std::make_unique<Child>(absl::StrCat("actor ", id), args, absl::StrCat(dir, "/actor", id, ".log")));
  }
  Child evaluator("evaluator", with({"eval", "--learner=" + learner, "--eval_interval=1000", "--eval_episodes=2"}),
                  dir + "/eval.log");
  auto logs = [&] {
    std::string all = absl::StrCat("--- replay\n", replay_process.Log(), "--- learner\n", learner_process->Log());
    for (auto& a : actors) absl::StrAppend(&all, "--- ", a->name(), "\n", a->Log());
    absl::StrAppend(&all, "--- evaluator\n", evaluator.Log());
    return all;
  };

  // Training is under way: an actor is killed and started again with the same id.
  ASSERT_TRUE(WaitUntil([&] { return Inserted(replay) >= 1200; }, absl::Seconds(120))) << logs();
  // An actor's metrics page and liveness check.
  EXPECT_EQ(HttpGet(actor_metrics, "/healthz"), "ok\n");
  const std::string actor_page = HttpGet(actor_metrics, "/metrics");
  EXPECT_THAT(actor_page, HasSubstr("# TYPE meow_actor_env_steps_total counter"));
  EXPECT_THAT(actor_page, HasSubstr("meow_actor_policy_version "));
  actors[1]->Signal(SIGKILL);
  EXPECT_EQ(actors[1]->Wait(absl::Seconds(10)), -1);
  actors[1] = std::make_unique<Child>("actor 1 (restarted)", actor_args(1), dir + "/actor1b.log");

  // The learner is killed once it has checkpointed, and restarted from its run directory.
  ASSERT_TRUE(WaitUntil([&] { return Inserted(replay) >= 2000 && !CheckpointStore(run_dir).List().empty(); },
                        absl::Seconds(120)))
      << logs();
  learner_process->Signal(SIGKILL);
  EXPECT_EQ(learner_process->Wait(absl::Seconds(10)), -1);
  const std::string first_learner_log = learner_process->Log();
  for (auto& a : actors) EXPECT_TRUE(a->running()) << a->name() << " ended when the learner died\n" << logs();
  EXPECT_TRUE(evaluator.running()) << logs();
  learner_process = std::make_unique<Child>("learner (restarted)", learner_args, dir + "/learner2.log");

  // Everyone finishes on their own.
  EXPECT_EQ(learner_process->Wait(absl::Seconds(240)), 0) << logs();
  for (auto& a : actors) EXPECT_EQ(a->Wait(absl::Seconds(30)), 0) << a->name() << "\n" << logs();
  EXPECT_EQ(evaluator.Wait(absl::Seconds(60)), 0) << logs();

  const std::string restarted = learner_process->Log();
  EXPECT_THAT(restarted, HasSubstr("resumed from"));
  EXPECT_THAT(restarted, HasSubstr("done: "));
  // Weight versions: the restarted learner continued above what it restored.
  int64_t restored_version = -1, final_version = -1;
  if (size_t at = restarted.find("weight version "); at != std::string::npos) {
    restored_version = std::stoll(restarted.substr(at + 15));
  }
  if (size_t at = restarted.rfind("weight version "); at != std::string::npos) {
    final_version = std::stoll(restarted.substr(at + 15));
  }
  EXPECT_GT(restored_version, 0) << restarted;
  EXPECT_GT(final_version, restored_version + 50) << restarted;
  EXPECT_THAT(actors[1]->Log(), HasSubstr("done (training is over)"));
  EXPECT_THAT(evaluator.Log(), HasSubstr("eval at "));

  // Replay took transitions from both actor ids, the restarted one after its predecessor.
  auto info = GetReplayInfo(replay, absl::Seconds(60));
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_GE(info->table().inserted_transitions(), 4000);
  EXPECT_EQ(info->table().actors(), 2);
  EXPECT_EQ(info->table().rejected_batches(), 0);
  // The run directory: metrics from both learner lives, with evaluations.
  auto metrics = ReadRunMetrics(run_dir);
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  int evals = 0;
  for (double v : metrics->values["eval_return_mean"]) evals += std::isfinite(v);
  EXPECT_GE(evals, 2);
  EXPECT_GE(metrics->values["env_steps"].back(), 4000);
  EXPECT_TRUE(fs::exists(run_dir + "/policy_best.safetensors"));

  // Replay's metrics: the table's counters and the RPCs it answered.
  const std::string page = HttpGet(replay_metrics, "/metrics");
  EXPECT_THAT(page, HasSubstr(absl::StrCat("meow_replay_table_inserted_transitions ",
                                           info->table().inserted_transitions(), "\n")));
  EXPECT_THAT(page, HasSubstr("meow_replay_rate_limiter_insert_waits "));
  EXPECT_THAT(page, HasSubstr("meow_rpc_total{code=\"OK\",method=\"/meow.proto.ReplayService/Info\"}"));
  // Streams are counted when they end: those of the killed actor and learner ended CANCELLED.
  EXPECT_THAT(page, HasSubstr(",method=\"/meow.proto.ReplayService/Insert\"}"));
  EXPECT_THAT(page, HasSubstr("meow_rpc_errors_total{method=\"/meow.proto.ReplayService/Sample\"}"));
  replay_process.Signal(SIGTERM);
  EXPECT_EQ(replay_process.Wait(absl::Seconds(30)), 0) << logs();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace meow
