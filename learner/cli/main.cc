// `meow`: the one binary users run. `meow <subcommand> [--flags]`; `meow help` lists the
// subcommands, `meow <subcommand> --help` the flags that subcommand reads. The subcommands live in
// this folder, one per file (see cli.h).
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_format.h"
#include "common/grpc_security.h"
#include "common/runtime.h"
#include "learner/cli/cli.h"

namespace meow::cli {
namespace {

constexpr char kUsage[] = R"(meow: distributed MEow training (maximum-entropy RL with a flow policy)

usage: meow <subcommand> [--flag=value ...]   (flags may also come from --flagfile=FILE)

subcommands:
  train   train an agent: replay, learner, actors and an evaluator in this process, over gRPC
          on 127.0.0.1 (default task MultiGoal-v0; e.g. meow train --env=Hopper-v4)
  replay  a replay server: meow replay --env=TASK --address=HOST:PORT [--replay_dir=DIR]
  learner the learner: meow learner --env=TASK --replay=HOST:PORT[,...] --address=HOST:PORT
  actor   an actor: meow actor --env=TASK --replay=HOST:PORT[,...] --learner=HOST:PORT --actor_id=N
  eval    run a saved policy: meow eval --policy=FILE --env=TASK [--episodes=N]
          or evaluate a running learner's weights: meow eval --env=TASK --learner=HOST:PORT
  report  learning curves as one HTML page: meow report --run_dir=DIR (or --run_dirs=A,B,...)
  dataset offline datasets (HDF5, D4RL layout): meow dataset export --env=TASK --out=FILE.hdf5
          (--replay_dir=DIR or --policy=FILE|random), meow dataset info --dataset=FILE
  load    load a running replay: meow load --replay=HOST:PORT [--streams=64 --duration=60s]
          (insert streams and a sampler; reports throughput, limiter waits and any error, and
          checks that replay stored every acknowledged batch exactly once)
  help    this text; `meow <subcommand> --help` lists the flags of that subcommand
)";

const Subcommand* FindSubcommand(const std::string& name) {
  for (const Subcommand* c : {&TrainCommand(), &LearnerCommand(), &ReplayCommand(), &ActorCommand(), &EvalCommand(),
                              &LoadCommand(), &ReportCommand(), &DatasetCommand()}) {
    if (name == c->name) return c;
  }
  return nullptr;
}

std::vector<std::string>& MutableCommandWords() {
  static std::vector<std::string>* words = new std::vector<std::string>;
  return *words;
}

bool IsHelpFlag(const char* arg) {
  for (const char* help : {"--help", "-help", "--help=true", "-h"}) {
    if (std::strcmp(arg, help) == 0) return true;
  }
  return false;
}

// `meow <subcommand> ... --help` before absl's own --help, which lists every flag of the binary.
// Returns true when it printed something.
bool HandleHelp(int argc, char** argv) {
  bool help = false;
  const Subcommand* command = nullptr;
  for (int i = 1; i < argc; ++i) {
    if (IsHelpFlag(argv[i])) {
      help = true;
    } else if (argv[i][0] != '-' && command == nullptr) {
      command = FindSubcommand(argv[i]);
    }
  }
  if (!help) return false;
  if (command == nullptr) {
    std::fputs(kUsage, stdout);
  } else {
    PrintHelp(*command);
  }
  return true;
}

int Main(int argc, char** argv) {
  TuneAllocator();
  if (HandleHelp(argc, argv)) return 0;
  absl::SetProgramUsageMessage(kUsage);
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() < 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string name = positional[1];
  if (name == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  const Subcommand* command = FindSubcommand(name);
  if (command == nullptr) {
    absl::FPrintF(stderr, "meow: unknown subcommand \"%s\"\n\n%s", name, kUsage);
    return 2;
  }
  if (positional.size() > 2 && !command->takes_words) {
    absl::FPrintF(stderr, "meow %s: unexpected argument \"%s\" (flags are --name=value)\n", name, positional[2]);
    return 2;
  }
  for (size_t i = 2; i < positional.size(); ++i) MutableCommandWords().push_back(positional[i]);
  GrpcSecurity security;
  if (command->speaks_grpc) {
    auto loaded =
        LoadGrpcSecurity(absl::GetFlag(FLAGS_tls_cert), absl::GetFlag(FLAGS_tls_key), absl::GetFlag(FLAGS_tls_ca),
                         absl::GetFlag(FLAGS_auth_token_file), absl::GetFlag(FLAGS_tls_server_name));
    if (!loaded.ok()) return Fail(loaded.status());
    security = *std::move(loaded);
  }
  return command->run(security);
}

}  // namespace

const std::vector<std::string>& CommandWords() { return MutableCommandWords(); }

}  // namespace meow::cli

int main(int argc, char** argv) { return meow::cli::Main(argc, argv); }
