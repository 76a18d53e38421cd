// What the `meow` subcommands share: the flags more than one of them reads, the checks that name
// a bad flag, the stop signal, and the subcommand table with its per-subcommand --help. Each
// subcommand lives in its own file (train.cc, learner.cc, replay.cc, actor.cc, eval.cc, load.cc,
// report.cc), defines the flags only it reads, turns flags into a validated config and calls a
// library entry point; nothing here runs training itself.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/grpc_security.h"
#include "learner/sync_trainer.h"
#include "learner/training.h"

// The task and its hyperparameters (train, learner; actor and eval read the policy's).
ABSL_DECLARE_FLAG(std::string, env);
ABSL_DECLARE_FLAG(std::string, run_dir);
ABSL_DECLARE_FLAG(uint64_t, seed);
ABSL_DECLARE_FLAG(std::string, device);
ABSL_DECLARE_FLAG(std::optional<int64_t>, total_env_steps);
ABSL_DECLARE_FLAG(std::optional<int64_t>, learning_starts);
ABSL_DECLARE_FLAG(std::optional<int64_t>, batch_size);
ABSL_DECLARE_FLAG(std::optional<int64_t>, buffer_size);
ABSL_DECLARE_FLAG(std::optional<int64_t>, eval_interval);
ABSL_DECLARE_FLAG(std::optional<int64_t>, eval_episodes);
ABSL_DECLARE_FLAG(std::optional<bool>, deterministic_eval);
ABSL_DECLARE_FLAG(std::optional<int64_t>, eval_max_steps);
ABSL_DECLARE_FLAG(std::optional<int32_t>, learner_threads);
ABSL_DECLARE_FLAG(std::optional<double>, alpha);
ABSL_DECLARE_FLAG(std::optional<double>, tau);
ABSL_DECLARE_FLAG(std::optional<double>, sigma_max);
ABSL_DECLARE_FLAG(std::optional<double>, sigma_min);
ABSL_DECLARE_FLAG(std::optional<double>, gamma);
ABSL_DECLARE_FLAG(std::optional<double>, lr);
ABSL_DECLARE_FLAG(std::optional<double>, grad_clip);
ABSL_DECLARE_FLAG(int64_t, log_interval);
// Videos (train, eval).
ABSL_DECLARE_FLAG(int64_t, video_every);
ABSL_DECLARE_FLAG(int32_t, video_width);
ABSL_DECLARE_FLAG(int32_t, video_height);
// Processes and their peers.
ABSL_DECLARE_FLAG(std::string, address);
ABSL_DECLARE_FLAG(std::vector<std::string>, replay);
ABSL_DECLARE_FLAG(std::string, learner);
ABSL_DECLARE_FLAG(std::string, metrics_address);
ABSL_DECLARE_FLAG(absl::Duration, connect_timeout);
ABSL_DECLARE_FLAG(int32_t, threads);
ABSL_DECLARE_FLAG(int32_t, envs_per_actor);
ABSL_DECLARE_FLAG(int64_t, refresh_interval);
ABSL_DECLARE_FLAG(int32_t, max_unacked_batches);
ABSL_DECLARE_FLAG(std::optional<double>, samples_per_insert);
ABSL_DECLARE_FLAG(std::optional<double>, samples_per_insert_tolerance);
// Security (every subcommand that speaks gRPC).
ABSL_DECLARE_FLAG(std::string, tls_cert);
ABSL_DECLARE_FLAG(std::string, tls_key);
ABSL_DECLARE_FLAG(std::string, tls_ca);
ABSL_DECLARE_FLAG(std::string, tls_server_name);
ABSL_DECLARE_FLAG(std::string, auth_token_file);

namespace meow::cli {

struct Subcommand {
  const char* name;
  const char* usage;  // one line: how it is called
  const char* summary;
  std::vector<const char*> flags;  // the flags it reads, in the order --help lists them
  bool speaks_grpc;                // reads the TLS/token flags
  // The exit code. `security`: the TLS/token settings loaded from the flags (speaks_grpc), for
  // the configs of its servers and clients; empty otherwise.
  int (*run)(const GrpcSecurity& security);
  // Words after the subcommand's name it takes (e.g. `meow dataset export`); others refuse them.
  bool takes_words = false;
};

// The words after the subcommand's name on the command line (takes_words), e.g. {"export"}.
const std::vector<std::string>& CommandWords();

// Flag lists more than one subcommand reads.
extern const std::vector<const char*> kTrainingFlags;  // task, hyperparameters, run dir
extern const std::vector<const char*> kClientSecurityFlags;
extern const std::vector<const char*> kServerSecurityFlags;
std::vector<const char*> Concat(std::initializer_list<std::vector<const char*>> lists);

// The subcommands, defined one per file.
const Subcommand& TrainCommand();
const Subcommand& LearnerCommand();
const Subcommand& ReplayCommand();
const Subcommand& ActorCommand();
const Subcommand& EvalCommand();
const Subcommand& LoadCommand();
const Subcommand& ReportCommand();
const Subcommand& DatasetCommand();

// `meow <subcommand> --help`: the usage line, the summary and each flag it reads with its help
// text and default.
void PrintHelp(const Subcommand& command);

// Prints the status and returns the exit code: 2 for bad input (INVALID_ARGUMENT, NOT_FOUND), 1 else.
int Fail(const absl::Status& status);

// INVALID_ARGUMENT "bad flag: --flag=value: expected lo to hi" unless lo <= value <= hi.
absl::Status CheckRange(const char* flag, int64_t value, int64_t lo, int64_t hi);
// INVALID_ARGUMENT "bad flag: --flag=value: expected HOST:PORT (...)" for what ParseHostPort refuses.
absl::Status CheckAddress(const char* flag, const std::string& address);

// --video_width / --video_height, checked (even, 16 to 4096), when `wanted`; InvalidArgument
// naming the flag.
absl::Status CheckVideoSizeFlags(bool wanted);

// --threads, checked, applied to LibTorch's pools.
absl::Status SetThreadsFromFlag();

// The task's preset overridden by the training flags, validated (errors name the flag).
// `sync_run_dir`: the default run dir is runs/<env>-seed<N>-sync (the sync loop's own layout).
absl::StatusOr<TrainSettings> TrainConfigFromFlags(bool sync_run_dir = false);

// The training flags plus the distributed ones: local mode (`meow train`) or a learner process,
// with `security` for its servers and clients.
absl::StatusOr<TrainConfig> DistributedConfigFromFlags(bool local, const GrpcSecurity& security);

// Runs local mode or a learner process and prints the summary; the exit code.
int RunDistributedTraining(const TrainConfig& config);

// SIGINT/SIGTERM set the returned flag (a second signal ends the process at once).
const std::atomic<bool>& InstallStopHandlers();

}  // namespace meow::cli
