// The actor loop against real replay and parameter servers on 127.0.0.1: random actions until
// weights exist, then the learner's weights (their version reaches the actor and tags its
// transitions), every transition stored once, and an unreachable learner that does not stop it.
#include "actor/actor_loop.h"

#include <thread>

#include "absl/synchronization/notification.h"

#include <torch/utils.h>

#include "gtest/gtest.h"
#include "learner/parameter_server.h"
#include "replay/dataset.h"
#include "replay/replay_client.h"
#include "replay/replay_server.h"

namespace meow {
namespace {

// Calls that should be answered: long enough for a first connection on a busy machine.
constexpr absl::Duration kAnswer = absl::Seconds(60);

std::unique_ptr<ReplayServer> StartReplay() {
  ReplayServerConfig config;
  config.table.obs_dim = 2;
  config.table.action_dim = 2;
  config.table.capacity = 100000;
  config.table.rate_limiter = RateLimiterConfig::MinSize(1);
  auto server = StartReplayServer(config);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

ActorConfig Config(const std::string& replay, const std::string& learner) {
  ActorConfig c;
  c.env = "MultiGoal-v0";
  c.num_envs = 3;
  c.actor_id = 4;
  c.replay_addresses = {replay};
  c.learner_address = learner;
  c.policy.alpha = 2.5;
  c.policy.sigma_max = 1.0;
  c.policy.sigma_min = -2.0;
  c.steps_per_batch = 4;
  c.refresh_interval = 5;
  c.rpc_timeout = absl::Milliseconds(500);
  return c;
}

// Polls `done` for up to `limit`.
template <typename F>
bool WaitFor(F done, absl::Duration limit) {
  const absl::Time end = absl::Now() + limit;
  while (absl::Now() < end) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return done();
}

TEST(ActorLoopTest, WeightsReachTheActorAndTagItsTransitions) {
  auto replay = StartReplay();
  auto params = StartParameterServer(ParameterServerConfig());
  ASSERT_TRUE(params.ok());
  auto actor = Actor::Create(Config(replay->address(), (*params)->address()));
  ASSERT_TRUE(actor.ok()) << actor.status();
  std::atomic<bool> stop{false};
  absl::Status result;
  std::thread thread([&] { result = (*actor)->Run(stop); });

  ASSERT_TRUE(WaitFor([&] { return (*actor)->stats().env_steps >= 300; }, absl::Seconds(30)));
  EXPECT_EQ((*actor)->stats().policy_version, 0);  // random actions: no weights yet
  torch::manual_seed(1);
  FlowPolicyConfig pc = Config("", "").policy;
  pc.obs_dim = 2;
  pc.action_dim = 2;
  FlowPolicy learner(pc);
  ASSERT_TRUE((*params)->store()->Publish(1, learner->ExportWeights()).ok());
  ASSERT_TRUE(WaitFor([&] { return (*actor)->stats().policy_version == 1; }, absl::Seconds(30)));
  const int64_t at_update = (*actor)->stats().env_steps;
  ASSERT_TRUE(WaitFor([&] { return (*actor)->stats().env_steps >= at_update + 300; }, absl::Seconds(30)));
  stop = true;
  thread.join();
  ASSERT_TRUE(result.ok()) << result;

  const ActorStats stats = (*actor)->stats();
  EXPECT_EQ(stats.weight_updates, 1);
  EXPECT_EQ(stats.fetch_errors, 0);
  EXPECT_GT(stats.episodes, 0);
  // Every transition the actor produced is stored, once.
  auto info = GetReplayInfo(replay->address(), kAnswer);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->table().inserted_transitions(), stats.env_steps);
  EXPECT_EQ(info->table().size(), stats.env_steps);

  // Both policy versions are in the table: sample and look.
  ReplaySamplerConfig sampler_config;
  sampler_config.addresses = {replay->address()};
  sampler_config.batch_size = 512;
  sampler_config.obs_dim = 2;
  sampler_config.action_dim = 2;
  auto sampler = ReplaySampler::Create(sampler_config);
  ASSERT_TRUE(sampler.ok());
  auto batch = (*sampler)->Next(absl::Seconds(10));
  ASSERT_TRUE(batch.ok()) << batch.status();
  int versions[2] = {0, 0};
  for (int64_t v : batch->policy_version) {
    ASSERT_TRUE(v == 0 || v == 1) << v;
    ++versions[v];
  }
  EXPECT_GT(versions[0], 0);
  EXPECT_GT(versions[1], 0);
  for (float a : batch->action) {
    EXPECT_GE(a, -1.0f);
    EXPECT_LE(a, 1.0f);
  }
}

// Episodes the actor's environments cut at their time limit reach replay as truncated rows (and
// the true terminations as terminated ones), so a dataset made from replay has D4RL's timeouts.
TEST(ActorLoopTest, TimeLimitTruncationsAreStoredAsSuch) {
  auto replay = StartReplay();
  auto params = StartParameterServer(ParameterServerConfig());
  ASSERT_TRUE(params.ok());
  ActorConfig config = Config(replay->address(), (*params)->address());
  config.max_episode_steps = 7;
  config.max_vector_steps = 40;  // 3 envs x 40 steps: at least 5 full episodes each
  auto actor = Actor::Create(config);
  ASSERT_TRUE(actor.ok()) << actor.status();
  std::atomic<bool> stop{false};
  ASSERT_TRUE((*actor)->Run(stop).ok());
  ASSERT_TRUE(WaitFor([&] { return replay->table()->size() == 120; }, kAnswer));
  const Dataset rows = DatasetFromStore(replay->table()->Copy([] {}).store);
  int timeouts = 0;
  for (int64_t i = 0; i < rows.rows; ++i) {
    timeouts += rows.timeouts[i];
    EXPECT_FALSE(rows.timeouts[i] && rows.terminals[i]) << "row " << i;
  }
  // Each environment's episodes: 7 steps unless a goal was reached first; at least 15 cut in all
  // would be fewer only if goals ended most of them, which random actions from the origin do not.
  EXPECT_GE(timeouts, 15);
  EXPECT_LE(timeouts, 3 * (40 / 7));
}

// A replay for the actors' 2-dimensional test task whose rate limiter holds inserts back: one
// sampled transition per inserted one, sampling from 10 rows, 5 transitions of slack.
absl::StatusOr<std::unique_ptr<ReplayServer>> StartHoldingReplay() {
  ReplayServerConfig config;
  config.table.obs_dim = 2;
  config.table.action_dim = 2;
  config.table.capacity = 100000;
  config.table.rate_limiter = RateLimiterConfig::SampleToInsertRatio(1.0, 10, 5.0);
  return StartReplayServer(config);
}

// Replay's rate limiter decides how far the actors get ahead of the learner: an actor whose inserts
// are held back stops stepping after at most the batch in flight and the one it was filling,
// rather than queueing up transitions made with ever staler weights (with a queue of 64 batches,
// the data of MultiGoal-v0's local mode ran 440 updates behind the learner and learned worse).
TEST(ActorLoopTest, AnActorHeldByReplaysRateLimiterStopsStepping) {
  auto replay = StartHoldingReplay();
  ASSERT_TRUE(replay.ok()) << replay.status();
  auto params = StartParameterServer(ParameterServerConfig());
  ASSERT_TRUE(params.ok());
  ActorConfig config = Config((*replay)->address(), (*params)->address());  // 3 envs x 4 steps
  const int64_t rows_per_batch = config.num_envs * config.steps_per_batch;
  ASSERT_EQ(config.max_unacked_batches, ActorConfig().max_unacked_batches);  // the default
  auto actor = Actor::Create(config);
  ASSERT_TRUE(actor.ok()) << actor.status();
  std::atomic<bool> stop{false};
  absl::Status result;
  std::thread thread([&] { result = (*actor)->Run(stop); });

  // Replay takes two batches (24 rows; the limiter allows 15 and each insert may overshoot by its
  // own size), then holds the third until something is sampled.
  auto info = [&] { return GetReplayInfo((*replay)->address(), kAnswer); };
  ASSERT_TRUE(WaitFor(
      [&] {
        auto i = info();
        return i.ok() && i->rate_limiter().blocked_inserts() > 0;
      },
      absl::Seconds(30)));
  const int64_t stored = info()->table().inserted_transitions();
  EXPECT_EQ(stored, 2 * rows_per_batch);
  // The actor may have the held batch in flight and have filled the next: no more.
  ASSERT_EQ(config.max_unacked_batches, 1);
  const int64_t bound = stored + 2 * rows_per_batch;
  EXPECT_FALSE(WaitFor([&] { return (*actor)->stats().env_steps > bound; }, absl::Seconds(2)))
      << "the actor stepped on to " << (*actor)->stats().env_steps << " transitions with replay holding " << stored;

  // Sampling releases it.
  ReplaySamplerConfig sampler_config;
  sampler_config.addresses = {(*replay)->address()};
  sampler_config.batch_size = 8;
  sampler_config.obs_dim = 2;
  sampler_config.action_dim = 2;
  auto sampler = ReplaySampler::Create(sampler_config);
  ASSERT_TRUE(sampler.ok());
  for (int i = 0; i < 20; ++i) ASSERT_TRUE((*sampler)->Next(absl::Seconds(30)).ok());
  EXPECT_TRUE(WaitFor([&] { return (*actor)->stats().env_steps > bound; }, absl::Seconds(30)));
  (*sampler)->Close();
  stop = true;
  thread.join();
  EXPECT_TRUE(result.ok()) << result;
}

// An actor held by the rate limiter after the learner has gone (its "done" was missed) hears from
// replay that training is over and ends cleanly, instead of waiting forever.
TEST(ActorLoopTest, AnActorHeldByReplayEndsWhenReplaySaysTrainingIsOver) {
  auto replay = StartHoldingReplay();
  ASSERT_TRUE(replay.ok()) << replay.status();
  ActorConfig config = Config((*replay)->address(), "127.0.0.1:1");  // no learner there
  config.rpc_timeout = absl::Milliseconds(200);
  auto actor = Actor::Create(config);
  ASSERT_TRUE(actor.ok()) << actor.status();
  std::atomic<bool> stop{false};
  absl::Status result;
  absl::Notification finished;
  std::thread thread([&] {
    result = (*actor)->Run(stop);
    finished.Notify();
  });
  auto blocked = [&] {
    auto i = GetReplayInfo((*replay)->address(), kAnswer);
    return i.ok() && i->rate_limiter().blocked_inserts() > 0;
  };
  ASSERT_TRUE(WaitFor(blocked, absl::Seconds(30)));
  EXPECT_FALSE(finished.WaitForNotificationWithTimeout(absl::Milliseconds(500)));
  ASSERT_TRUE(SetReplayTrainingDone((*replay)->address(), true, 24, kAnswer).ok());
  EXPECT_TRUE(finished.WaitForNotificationWithTimeout(absl::Seconds(60)));
  stop = true;  // ends the test either way
  thread.join();
  EXPECT_TRUE(result.ok()) << result;
  EXPECT_TRUE((*actor)->stats().learner_done);
  auto info = GetReplayInfo((*replay)->address(), kAnswer);
  ASSERT_TRUE(info.ok());
  EXPECT_TRUE(info->table().training_done());
}

TEST(ActorLoopTest, AnUnreachableLearnerDoesNotStopTheActor) {
  auto replay = StartReplay();
  ActorConfig config = Config(replay->address(), "127.0.0.1:1");  // nothing listens there
  config.max_vector_steps = 40;
  config.rpc_timeout = absl::Milliseconds(100);
  auto actor = Actor::Create(config);
  ASSERT_TRUE(actor.ok());
  std::atomic<bool> stop{false};
  ASSERT_TRUE((*actor)->Run(stop).ok());
  EXPECT_EQ((*actor)->stats().env_steps, 120);
  EXPECT_EQ((*actor)->stats().fetch_errors, 8);  // one per refresh interval
  EXPECT_EQ((*actor)->stats().policy_version, 0);
  auto info = GetReplayInfo(replay->address(), kAnswer);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->table().inserted_transitions(), 120);
}

TEST(ActorLoopTest, BadConfigsAreRefused) {
  ActorConfig config = Config("127.0.0.1:1", "127.0.0.1:2");
  config.num_envs = 0;
  EXPECT_EQ(Actor::Create(config).status().code(), absl::StatusCode::kInvalidArgument);
  config = Config("127.0.0.1:1", "127.0.0.1:2");
  config.env = "Nope-v0";
  EXPECT_EQ(Actor::Create(config).status().code(), absl::StatusCode::kNotFound);
  config = Config("127.0.0.1:1", "");
  EXPECT_EQ(Actor::Create(config).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace meow
