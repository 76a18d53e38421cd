#include "actor/processes.h"

#include <cstdio>
#include <functional>
#include <memory>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "actor/env_registry.h"
#include "common/metrics_http.h"
#include "replay/replay_client.h"

namespace meow {
namespace {

// The process's metrics page with the loop's figures (`fill`). Actors and evaluators serve no RPCs,
// so there are no RPC counts to add; their client errors are among the loop's figures.
absl::StatusOr<std::unique_ptr<MetricsHttpServer>> StartProcessMetrics(const std::string& address,
                                                                       std::function<void(PrometheusText&)> fill) {
  if (address.empty()) return std::unique_ptr<MetricsHttpServer>();
  return MetricsHttpServer::Start(address, [fill = std::move(fill)] {
    PrometheusText text;
    fill(text);
    return text.text();
  });
}

void FillActorMetrics(const ActorStats& st, PrometheusText& text) {
  text.Counter("actor_env_steps_total", "Transitions produced.", st.env_steps);
  text.Counter("actor_episodes_total", "Episodes finished.", st.episodes);
  text.Gauge("actor_last_episode_return", "Return of the newest finished episode.", st.last_episode_return);
  text.Gauge("actor_policy_version", "Weight version acting (0: random actions).", st.policy_version);
  text.Counter("actor_weight_updates_total", "Newer weights loaded.", st.weight_updates);
  text.Counter("actor_fetch_errors_total", "Weight fetches that failed.", st.fetch_errors);
  text.Counter("actor_report_errors_total", "Episode reports that failed.", st.report_errors);
  text.Counter("actor_batches_total", "Transition batches queued for replay.", st.batches_queued);
  text.Counter("actor_simulator_warnings_total", "MuJoCo warnings.", st.simulator_warnings);
  text.Gauge("actor_acked_sequence_number",
             "Highest batch sequence number replay acknowledged (it holds every batch up to it).",
             static_cast<double>(st.replay.acked_sequence_number));
  text.Counter("actor_acked_batches_total", "Batches replay acknowledged (resends of stored ones included).",
               st.replay.acked);
  text.Gauge("actor_unacked_batches", "Batches queued or in flight to replay.", st.replay.unacked);
  text.Counter("actor_replay_connects_total", "Insert streams opened to replay.", st.replay.connects);
}

void FillEvaluatorMetrics(const EvaluatorStats& st, PrometheusText& text) {
  text.Counter("eval_evaluations_total", "Evaluations reported.", st.evaluations);
  text.Gauge("eval_return_mean", "Mean return of the newest evaluation.", st.last_mean);
  text.Gauge("eval_return_std", "Return spread of the newest evaluation.", st.last_std);
  text.Gauge("eval_env_steps", "Environment steps at the newest evaluation.", st.last_env_steps);
  text.Gauge("eval_policy_version", "Weight version of the newest evaluation.", st.last_version);
  text.Counter("eval_errors_total", "Learner calls that failed.", st.errors);
}

// Runs `run` on a thread and calls `tick` every 100 ms on this one until it returns.
absl::Status RunWithTicks(const std::function<absl::Status()>& run, const std::function<void()>& tick) {
  absl::Status status;
  std::atomic<bool> done{false};
  std::thread runner([&] {
    status = run();
    done.store(true);
  });
  while (!done.load()) {
    absl::SleepFor(absl::Milliseconds(100));
    tick();
  }
  runner.join();
  return status;
}

}  // namespace

absl::Status WaitForLearner(ParameterClient& client, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    auto response = client.Report(proto::ReportRequest(), absl::Seconds(1));
    if (response.ok()) return absl::OkStatus();
    if (absl::IsInvalidArgument(response.status()) || absl::Now() >= deadline) {
      return absl::UnavailableError(absl::StrCat("cannot reach the learner at ", client.address(), " within ",
                                                 absl::FormatDuration(timeout), ": ", response.status().message()));
    }
    absl::SleepFor(absl::Milliseconds(250));
  }
}

absl::Status RunActorProcess(const ActorProcessConfig& config, const std::atomic<bool>& stop) {
  const ActorConfig& c = config.actor;
  if (absl::Status s = c.Validate(); !s.ok()) return s;
  auto env = MakeEnv(c.env);
  if (!env.ok()) return env.status();
  if (absl::Status s = WaitForReplay(c.replay_addresses, (*env)->spec().obs_dim, (*env)->spec().action_dim,
                                     config.connect_timeout, c.security);
      !s.ok()) {
    return s;
  }
  ParameterClient probe(c.learner_address, c.security);
  if (absl::Status s = WaitForLearner(probe, config.connect_timeout); !s.ok()) return s;
  auto actor = Actor::Create(c);
  if (!actor.ok()) return actor.status();
  Actor* raw = actor->get();
  auto metrics = StartProcessMetrics(config.metrics_address,
                                     [raw](PrometheusText& text) { FillActorMetrics(raw->stats(), text); });
  if (!metrics.ok()) return metrics.status();
  absl::PrintF("meow actor %d: %s x %d, replay %s, learner %s\n", c.actor_id, c.env, c.num_envs,
               absl::StrJoin(c.replay_addresses, ","), c.learner_address);
  std::fflush(stdout);
  absl::Time next_line = absl::Now() + absl::Seconds(10);
  absl::Status status = RunWithTicks(
      [&] { return raw->Run(stop); },
      [&] {
        if (absl::Now() < next_line) return;
        const ActorStats st = raw->stats();
        absl::PrintF("actor %d: %d env steps, %d episodes (last return %.1f), policy version %d, %d fetch errors\n",
                     c.actor_id, st.env_steps, st.episodes, st.last_episode_return, st.policy_version, st.fetch_errors);
        std::fflush(stdout);
        next_line += absl::Seconds(10);
      });
  if (!status.ok()) return status;
  const ActorStats st = raw->stats();
  absl::PrintF("actor %d %s: %d env steps, %d episodes, policy version %d\n", c.actor_id,
               st.learner_done ? "done (training is over)" : "stopped", st.env_steps, st.episodes, st.policy_version);
  return absl::OkStatus();
}

absl::Status RunEvaluatorProcess(const EvaluatorProcessConfig& config, const std::atomic<bool>& stop) {
  const EvaluatorConfig& c = config.evaluator;
  if (absl::Status s = c.Validate(); !s.ok()) return s;
  ParameterClient probe(c.learner_address, c.security);
  if (absl::Status s = WaitForLearner(probe, config.connect_timeout); !s.ok()) return s;
  auto evaluator = Evaluator::Create(c);
  if (!evaluator.ok()) return evaluator.status();
  Evaluator* raw = evaluator->get();
  auto metrics = StartProcessMetrics(config.metrics_address,
                                     [raw](PrometheusText& text) { FillEvaluatorMetrics(raw->stats(), text); });
  if (!metrics.ok()) return metrics.status();
  absl::PrintF("meow eval: %s, %d episodes every %d env steps, learner %s\n", c.env, c.episodes, c.interval,
               c.learner_address);
  std::fflush(stdout);
  int64_t printed = 0;
  absl::Status status = RunWithTicks([&] { return raw->Run(stop); },
                                     [&] {
                                       const EvaluatorStats st = raw->stats();
                                       if (st.evaluations <= printed) return;
                                       printed = st.evaluations;
                                       absl::PrintF("eval at %d env steps (version %d): return %.2f +- %.2f\n",
                                                    st.last_env_steps, st.last_version, st.last_mean, st.last_std);
                                       std::fflush(stdout);
                                     });
  if (!status.ok()) return status;
  absl::PrintF("evaluator %s after %d evaluations\n", raw->stats().learner_done ? "done" : "stopped",
               raw->stats().evaluations);
  return absl::OkStatus();
}

}  // namespace meow
