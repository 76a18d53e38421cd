// `meow replay`: a replay server (one shard) of a run spread over machines.
#include <algorithm>
#include <cmath>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "actor/env_registry.h"
#include "common/presets.h"
#include "learner/cli/cli.h"
#include "replay/replay_server.h"

ABSL_FLAG(std::string, replay_dir, "",
          "meow replay: the directory for its snapshot and log (empty: memory only). meow dataset export: the "
          "replay directory to read (or a run directory, whose replay/ is read).");
ABSL_FLAG(bool, fsync_before_ack, false,
          "Acknowledge a batch only after its log record is fsynced (survives power loss).");
ABSL_FLAG(absl::Duration, snapshot_interval, absl::Minutes(10), "Time between snapshots.");
ABSL_FLAG(int64_t, min_replay_size, 256, "Rows stored before sampling starts.");

namespace meow::cli {
namespace {

// The limiter from --min_replay_size and --samples_per_insert(_tolerance).
absl::StatusOr<RateLimiterConfig> LimiterFromFlags(int64_t capacity) {
  const int64_t min_size = absl::GetFlag(FLAGS_min_replay_size);
  if (min_size < 1 || min_size > capacity) {
    return absl::InvalidArgumentError(absl::StrCat("bad flag: --min_replay_size=", min_size,
                                                   ": expected in [1, --buffer_size=", capacity,
                                                   "]; replay could never hold enough to sample"));
  }
  auto ratio = absl::GetFlag(FLAGS_samples_per_insert);
  if (!ratio.has_value()) return RateLimiterConfig::MinSize(min_size);
  if (!(*ratio > 0) || !std::isfinite(*ratio)) {
    return absl::InvalidArgumentError(absl::StrCat("bad flag: --samples_per_insert=", *ratio,
                                                   ": expected a finite value > 0 (leave it unset to let "
                                                   "sampling run free)"));
  }
  const double tolerance = absl::GetFlag(FLAGS_samples_per_insert_tolerance).value_or(std::max(*ratio, 1.0));
  if (!(tolerance > 0) || !std::isfinite(tolerance)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad flag: --samples_per_insert_tolerance=", tolerance, ": expected a finite value > 0"));
  }
  return RateLimiterConfig::SampleToInsertRatio(*ratio, min_size, tolerance);
}

int RunReplayServer(const GrpcSecurity& security) {
  const std::string env_name = absl::GetFlag(FLAGS_env);
  auto env = MakeEnv(env_name);
  if (!env.ok()) return Fail(absl::NotFoundError(absl::StrCat("--env=", env_name, ": ", env.status().message())));
  auto preset = GetPreset(env_name);
  ReplayServerConfig config;
  config.security = security;
  config.address = absl::GetFlag(FLAGS_address).empty() ? "127.0.0.1:7777" : absl::GetFlag(FLAGS_address);
  if (absl::Status s = CheckAddress("address", config.address); !s.ok()) return Fail(s);
  config.table.obs_dim = (*env)->spec().obs_dim;
  config.table.action_dim = (*env)->spec().action_dim;
  config.table.capacity = absl::GetFlag(FLAGS_buffer_size).value_or(preset.ok() ? preset->buffer_size : 1'000'000);
  config.table.seed = absl::GetFlag(FLAGS_seed);
  auto limiter = LimiterFromFlags(config.table.capacity);
  if (!limiter.ok()) return Fail(limiter.status());
  config.table.rate_limiter = *limiter;
  config.persistence.directory = absl::GetFlag(FLAGS_replay_dir);
  config.persistence.fsync_before_ack = absl::GetFlag(FLAGS_fsync_before_ack);
  config.persistence.snapshot_interval = absl::GetFlag(FLAGS_snapshot_interval);
  config.metrics_address = absl::GetFlag(FLAGS_metrics_address);
  if (absl::Status s = config.Validate(); !s.ok()) {
    return Fail(absl::InvalidArgumentError(absl::StrCat("bad flag: ", s.message())));
  }
  absl::PrintF("meow replay: %s (obs %d, action %d, capacity %d) on %s%s\n", env_name, config.table.obs_dim,
               config.table.action_dim, config.table.capacity, config.address,
               config.persistence.directory.empty() ? ", memory only"
                                                    : absl::StrCat(", persisted in ", config.persistence.directory));
  if (absl::Status s = RunReplay(config); !s.ok()) return Fail(s);
  return 0;
}

}  // namespace

const Subcommand& ReplayCommand() {
  static const Subcommand command{
      "replay",
      "meow replay --env=TASK --address=HOST:PORT [--replay_dir=DIR] [flags]",
      "a replay server: stores the actors' transitions (exactly once, persisted with --replay_dir) and "
      "serves the learner's samples under the samples-per-insert rate limiter.",
      Concat(
          {{"env", "address", "buffer_size", "seed", "min_replay_size", "samples_per_insert",
            "samples_per_insert_tolerance", "replay_dir", "fsync_before_ack", "snapshot_interval", "metrics_address"},
           kServerSecurityFlags}),
      /*speaks_grpc=*/true,
      RunReplayServer};
  return command;
}

}  // namespace meow::cli
