// The actor loop against real replay and parameter servers on 127.0.0.1: random actions until
// weights exist, then the learner's weights (their version reaches the actor and tags its
// transitions), every transition stored once, and an unreachable learner that does not stop it.
#include "actor/actor_loop.h"

#include <thread>

#include <torch/utils.h>

#include "gtest/gtest.h"
#include "learner/parameter_server.h"
#include "replay/replay_client.h"
#include "replay/replay_server.h"

namespace meow {
namespace {

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
  auto info = GetReplayInfo(replay->address(), absl::Seconds(5));
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
  auto info = GetReplayInfo(replay->address(), absl::Seconds(5));
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
