// RPC counts are kept in the registry each server is given, not in process state: a replay server
// and a learner's server that share one registry count into it (as local mode's page shows them),
// while a server given none counts into its own, and neither sees the other's calls. Real servers
// on 127.0.0.1. Label: integration.
#include <memory>
#include <string>

#include "actor/parameter_client.h"
#include "common/metrics_http.h"
#include "common/rpc_metrics.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "learner/parameter_server.h"
#include "replay/replay_client.h"
#include "replay/replay_server.h"

namespace meow {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr absl::Duration kAnswer = absl::Seconds(60);
constexpr char kInfo[] = "/meow.proto.ReplayService/Info";
constexpr char kGet[] = "/meow.proto.ParameterService/GetParameters";

std::unique_ptr<ReplayServer> StartReplay(std::shared_ptr<RpcMetrics> metrics) {
  ReplayServerConfig config;
  config.table.obs_dim = 2;
  config.table.action_dim = 1;
  config.rpc_metrics = std::move(metrics);
  auto server = StartReplayServer(config);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

int64_t Count(const RpcMetrics& metrics, const std::string& method, const std::string& code) {
  const auto snapshot = metrics.Snapshot();
  auto it = snapshot.find({method, code});
  return it == snapshot.end() ? 0 : it->second;
}

TEST(RpcMetricsTest, EachServerCountsIntoTheRegistryItIsGiven) {
  auto shared = std::make_shared<RpcMetrics>();
  auto replay = StartReplay(shared);
  ASSERT_NE(replay, nullptr);
  ParameterServerConfig pc;
  pc.rpc_metrics = shared;
  auto learner = StartParameterServer(pc);
  ASSERT_TRUE(learner.ok()) << learner.status();
  auto other = StartReplay(nullptr);  // no registry given: one of its own
  ASSERT_NE(other, nullptr);
  EXPECT_EQ(&replay->rpc_metrics(), shared.get());
  EXPECT_EQ(&(*learner)->rpc_metrics(), shared.get());
  EXPECT_NE(&other->rpc_metrics(), shared.get());

  ASSERT_TRUE(GetReplayInfo(replay->address(), kAnswer).ok());
  ASSERT_TRUE(GetReplayInfo(replay->address(), kAnswer).ok());
  ParameterClient client((*learner)->address());
  auto weights = client.Get(0, kAnswer);  // nothing published yet: an answer without weights
  ASSERT_TRUE(weights.ok()) << weights.status();
  ASSERT_TRUE(GetReplayInfo(other->address(), kAnswer).ok());
  // A refused call is counted with its code.
  EXPECT_FALSE(SetReplayTrainingDone(other->address(), true, -5, kAnswer).ok());

  EXPECT_EQ(Count(*shared, kInfo, "OK"), 2);
  EXPECT_EQ(Count(*shared, kGet, "OK"), 1);
  EXPECT_EQ(Count(other->rpc_metrics(), kInfo, "OK"), 1);
  EXPECT_EQ(Count(other->rpc_metrics(), kGet, "OK"), 0);
  EXPECT_EQ(Count(other->rpc_metrics(), "/meow.proto.ReplayService/SetTrainingDone", "INVALID_ARGUMENT"), 1);
  EXPECT_EQ(Count(*shared, "/meow.proto.ReplayService/SetTrainingDone", "INVALID_ARGUMENT"), 0);

  PrometheusText page;
  shared->AppendTo(page);
  EXPECT_THAT(page.text(),
              HasSubstr("meow_rpc_total{code=\"OK\",method=\"/meow.proto.ParameterService/GetParameters\"} 1"));
  EXPECT_THAT(page.text(), Not(HasSubstr("SetTrainingDone")));
}

}  // namespace
}  // namespace meow
