// The actor and the evaluator as processes of a run spread over machines (`meow actor`,
// `meow eval --learner=...`): each waits for its peers (up to connect_timeout), serves its metrics
// page when asked, runs its loop on a thread, prints a progress line on stdout, and returns when
// the learner says training is over or `stop` is set (SIGTERM). The CLI only turns flags into these
// configs; local mode runs the same Actor and Evaluator classes in one process instead.
// Thread-safe: each function runs on the caller's thread; `stop` may be set from any.
#pragma once

#include <atomic>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "actor/actor_loop.h"
#include "actor/evaluator.h"
#include "actor/parameter_client.h"

namespace meow {

struct ActorProcessConfig {
  ActorConfig actor;
  absl::Duration connect_timeout = absl::Seconds(60);  // for replay and the learner to answer
  std::string metrics_address;                         // host:port of /metrics; empty: none
};

// Checks that replay holds this task's sizes and that the learner answers, then acts until done.
// Progress every 10 s. Errors: UNAVAILABLE when a peer cannot be reached in time, the actor's own.
absl::Status RunActorProcess(const ActorProcessConfig& config, const std::atomic<bool>& stop);

struct EvaluatorProcessConfig {
  EvaluatorConfig evaluator;
  absl::Duration connect_timeout = absl::Seconds(60);
  std::string metrics_address;
};

// Waits for the learner, then evaluates its weights every `interval` env steps until done; one
// line per evaluation.
absl::Status RunEvaluatorProcess(const EvaluatorProcessConfig& config, const std::atomic<bool>& stop);

// Waits up to `timeout` for the learner to answer a Report. UNAVAILABLE naming the address.
absl::Status WaitForLearner(ParameterClient& client, absl::Duration timeout);

}  // namespace meow
