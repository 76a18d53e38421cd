// `meow load`: loads a running replay server with simulated actors and a sampler, and checks that
// it stored every acknowledged batch exactly once.
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "learner/cli/cli.h"
#include "replay/load_generator.h"

ABSL_FLAG(int32_t, streams, 64, "Concurrent insert streams (one per simulated actor).");
ABSL_FLAG(int32_t, rows_per_batch, 32, "Transitions per inserted batch.");
ABSL_FLAG(int32_t, samplers, 1, "Samplers drawing batches of --batch_size (default 256) meanwhile.");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(60), "How long to insert.");
ABSL_FLAG(uint64_t, first_actor_id, 1'000'000, "Actor id of the first stream (the others follow).");

namespace meow::cli {
namespace {

int RunLoad(const GrpcSecurity& security) {
  const std::vector<std::string> replay = absl::GetFlag(FLAGS_replay);
  if (replay.size() != 1) return Fail(absl::InvalidArgumentError("meow load needs exactly one --replay=HOST:PORT"));
  if (absl::Status s = CheckAddress("replay", replay[0]); !s.ok()) return Fail(s);
  ReplayLoadConfig config;
  config.address = replay[0];
  config.streams = absl::GetFlag(FLAGS_streams);
  config.rows_per_batch = absl::GetFlag(FLAGS_rows_per_batch);
  config.samplers = absl::GetFlag(FLAGS_samplers);
  config.sample_batch_size = static_cast<int>(absl::GetFlag(FLAGS_batch_size).value_or(256));
  config.duration = absl::GetFlag(FLAGS_duration);
  config.first_actor_id = absl::GetFlag(FLAGS_first_actor_id);
  config.seed = absl::GetFlag(FLAGS_seed);
  config.security = security;
  config.report_interval = absl::Seconds(5);
  if (absl::Status s = config.Validate(); !s.ok()) {
    return Fail(absl::InvalidArgumentError(absl::StrCat("bad flag: ", s.message())));
  }
  absl::PrintF("meow load: %d insert streams of %d-row batches and %d sampler(s) against %s for %s\n", config.streams,
               config.rows_per_batch, config.samplers, config.address, absl::FormatDuration(config.duration));
  std::fflush(stdout);
  auto result = RunReplayLoad(config, [](const std::string& line) {
    absl::PrintF("%s\n", line);
    std::fflush(stdout);
  });
  if (!result.ok()) return Fail(result.status());
  absl::PrintF("result: %s\n", result->Summary());
  if (!result->ok()) {
    absl::FPrintF(stderr, "meow load: errors during the run; the first: %s\n", result->first_error);
    return 1;
  }
  if (result->stored_batches_of_load != result->batches_acked) {
    absl::FPrintF(stderr,
                  "meow load: replay stored %d batches of the load's actors but acknowledged %d: not exactly once\n",
                  result->stored_batches_of_load, result->batches_acked);
    return 1;
  }
  absl::PrintF("exactly once: replay stored %d batches for the %d streams, as many as it acknowledged\n",
               result->stored_batches_of_load, config.streams);
  return 0;
}

}  // namespace

const Subcommand& LoadCommand() {
  static const Subcommand command{
      "load",
      "meow load --replay=HOST:PORT [--streams=64] [--duration=60s] [flags]",
      "loads a running replay: insert streams and samplers; reports throughput, limiter waits and any "
      "error, and checks that replay stored every acknowledged batch exactly once.",
      Concat({{"replay", "streams", "rows_per_batch", "samplers", "batch_size", "duration", "first_actor_id", "seed"},
              kClientSecurityFlags}),
      /*speaks_grpc=*/true,
      RunLoad};
  return command;
}

}  // namespace meow::cli
