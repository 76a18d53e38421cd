// `meow learner`: the learner process of a run spread over machines. It samples the replay
// servers named by --replay, serves weights and takes reports on --address.
#include "learner/cli/cli.h"

namespace meow::cli {
namespace {

int RunLearner(const GrpcSecurity& security) {
  auto config = DistributedConfigFromFlags(/*local=*/false, security);
  if (!config.ok()) return Fail(config.status());
  return RunDistributedTraining(*config);
}

}  // namespace

const Subcommand& LearnerCommand() {
  static const Subcommand command{
      "learner",
      "meow learner --env=TASK --replay=HOST:PORT[,...] --address=HOST:PORT [flags]",
      "the learner process: samples replay, updates the policy, publishes weights and writes the run dir.",
      Concat({kTrainingFlags,
              {"replay", "address", "publish_interval", "checkpoint_interval", "samples_per_insert",
               "samples_per_insert_tolerance", "run_free", "stop_at_return", "connect_timeout", "metrics_address"},
              kServerSecurityFlags,
              kClientSecurityFlags}),
      /*speaks_grpc=*/true,
      RunLearner};
  return command;
}

}  // namespace meow::cli
