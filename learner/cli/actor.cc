// `meow actor`: one actor process of a run spread over machines.
#include <unistd.h>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "actor/processes.h"
#include "learner/cli/cli.h"

ABSL_FLAG(std::optional<int64_t>, actor_id, std::nullopt,
          "Required. this actor's id, unique per run (it numbers the actor's batches and "
          "picks its replay shard; a restarted actor with the same id continues where it stopped); -1 "
          "derives it from the host name (a Kubernetes pod's name), so a restarted container keeps it.");

namespace meow::cli {
namespace {

// 40 bits of FNV-1a of the host name: a stable actor id per Kubernetes pod.
uint64_t ActorIdFromHostName() {
  char name[256] = {};
  gethostname(name, sizeof(name) - 1);
  uint64_t h = 1469598103934665603ull;
  for (const char* p = name; *p != 0; ++p) {
    h ^= static_cast<unsigned char>(*p);
    h *= 1099511628211ull;
  }
  return h & ((uint64_t{1} << 40) - 1);
}

absl::StatusOr<ActorProcessConfig> ActorFromFlags(const GrpcSecurity& security) {
  auto training = TrainConfigFromFlags();
  if (!training.ok()) return training.status();
  ActorProcessConfig p;
  ActorConfig& c = p.actor;
  c.env = training->env;
  c.algo = training->algo;
  c.policy = training->policy;
  c.seed = training->seed;
  c.replay_addresses = absl::GetFlag(FLAGS_replay);
  c.learner_address = absl::GetFlag(FLAGS_learner);
  c.security = security;
  if (c.replay_addresses.empty()) return absl::InvalidArgumentError("meow actor needs --replay=HOST:PORT[,...]");
  if (c.learner_address.empty()) return absl::InvalidArgumentError("meow actor needs --learner=HOST:PORT");
  for (const std::string& a : c.replay_addresses) {
    if (absl::Status s = CheckAddress("replay", a); !s.ok()) return s;
  }
  if (absl::Status s = CheckAddress("learner", c.learner_address); !s.ok()) return s;
  if (!absl::GetFlag(FLAGS_actor_id).has_value()) {
    return absl::InvalidArgumentError(
        "meow actor needs --actor_id=N, unique per actor of a run (two actors with one id are "
        "refused by replay), or --actor_id=-1 to take it from the host name");
  }
  int64_t id = *absl::GetFlag(FLAGS_actor_id);
  if (id == -1) id = static_cast<int64_t>(ActorIdFromHostName());
  if (absl::Status s = CheckRange("actor_id", id, 0, int64_t{1} << 40); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(s.message(), " (or -1: from the host name)"));
  }
  c.actor_id = static_cast<uint64_t>(id);
  c.num_envs = absl::GetFlag(FLAGS_envs_per_actor);
  if (absl::Status s = CheckRange("envs_per_actor", c.num_envs, 1, 4096); !s.ok()) return s;
  c.refresh_interval = absl::GetFlag(FLAGS_refresh_interval);
  if (absl::Status s = CheckRange("refresh_interval", c.refresh_interval, 1, 1'000'000); !s.ok()) return s;
  c.max_unacked_batches = absl::GetFlag(FLAGS_max_unacked_batches);
  if (absl::Status s = CheckRange("max_unacked_batches", c.max_unacked_batches, 1, 4096); !s.ok()) return s;
  p.connect_timeout = absl::GetFlag(FLAGS_connect_timeout);
  p.metrics_address = absl::GetFlag(FLAGS_metrics_address);
  if (!p.metrics_address.empty()) {
    if (absl::Status s = CheckAddress("metrics_address", p.metrics_address); !s.ok()) return s;
  }
  return p;
}

int RunActor(const GrpcSecurity& security) {
  auto config = ActorFromFlags(security);
  if (!config.ok()) return Fail(config.status());
  if (absl::Status s = SetThreadsFromFlag(); !s.ok()) return Fail(s);
  const std::atomic<bool>& stop = InstallStopHandlers();
  if (absl::Status s = RunActorProcess(*config, stop); !s.ok()) return Fail(s);
  return 0;
}

}  // namespace

const Subcommand& ActorCommand() {
  static const Subcommand command{
      "actor",
      "meow actor --env=TASK --replay=HOST:PORT[,...] --learner=HOST:PORT --actor_id=N [flags]",
      "an actor process: steps its environments with the learner's newest weights and streams the "
      "transitions to replay (its shard: actor_id modulo the number of --replay addresses).",
      Concat(
          {{"env", "algo", "seed", "replay", "learner", "actor_id", "envs_per_actor", "refresh_interval", "max_unacked_batches",
            "alpha", "sigma_max", "sigma_min", "threads", "connect_timeout", "metrics_address"},
           kClientSecurityFlags}),
      /*speaks_grpc=*/true,
      RunActor};
  return command;
}

}  // namespace meow::cli
