// The ParameterService over real gRPC on 127.0.0.1: versions, not-newer answers, a policy's
// weights moving from learner to actor exactly, watchers, bad requests, an unreachable learner
// (an error within the deadline, no hang) and a restarted learner picked up by the same client.
#include <chrono>
#include <thread>

#include <ATen/ATen.h>
#include <torch/utils.h>

#include "actor/parameter_client.h"
#include "common/flow_policy.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "learner/parameter_server.h"
#include "replay/replay_client.h"

namespace meow {
namespace {

using ::testing::HasSubstr;

FlowPolicyConfig Config() {
  FlowPolicyConfig c;
  c.obs_dim = 11;
  c.action_dim = 3;
  return c;
}

std::unique_ptr<ParameterServer> Start(const std::string& address = "127.0.0.1:0") {
  ParameterServerConfig config;
  config.address = address;
  auto server = StartParameterServer(config);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

TEST(ParameterServiceTest, VersionsAndNotNewer) {
  auto server = Start();
  ParameterClient client(server->address());
  auto none = client.Get(0, absl::Seconds(5));
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());  // nothing published yet

  FlowPolicy policy(Config());
  ASSERT_TRUE(server->store()->Publish(1, policy->ExportWeights()).ok());
  auto v1 = client.Get(1, absl::Seconds(5));
  ASSERT_TRUE(v1.ok() && v1->has_value());
  EXPECT_EQ((*v1)->version, 1);
  EXPECT_EQ((*v1)->weights.tensors.size(), 76u);
  auto newer = client.Get(2, absl::Seconds(5));
  ASSERT_TRUE(newer.ok());
  EXPECT_FALSE(newer->has_value());

  // Versions only go up.
  absl::Status again = server->store()->Publish(1, policy->ExportWeights());
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(again.message()), HasSubstr("weight version 1 is not above the published 1"));
}

TEST(ParameterServiceTest, WeightsReachTheActorExactly) {
  torch::manual_seed(3);
  FlowPolicy learner(Config()), actor(Config());
  {
    torch::NoGradGuard no_grad;
    for (auto& p : learner->parameters()) p.add_(at::randn_like(p));
  }
  auto server = Start();
  ASSERT_TRUE(server->store()->Publish(7, learner->ExportWeights()).ok());
  ParameterClient client(server->address());
  auto got = client.Get(0, absl::Seconds(5));
  ASSERT_TRUE(got.ok() && got->has_value()) << got.status();
  EXPECT_EQ((*got)->version, 7);
  ASSERT_TRUE(actor->ImportWeights((*got)->weights).ok());
  auto a = learner->named_parameters(), b = actor->named_parameters();
  for (const auto& item : a) EXPECT_TRUE(at::equal(item.value(), b[item.key()])) << item.key();
}

TEST(ParameterServiceTest, BadRequestsAreInvalidArgument) {
  auto server = Start();
  ParameterClient client(server->address());
  auto bad = client.Get(-1, absl::Seconds(5));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("min_version must be >= 0, got -1"));
  SafetensorsFile not_float;
  not_float.tensors["x"] = {"I64", {1}, std::string(8, '\0')};
  EXPECT_EQ(server->store()->Publish(1, not_float).code(), absl::StatusCode::kInvalidArgument);
}

TEST(ParameterServiceTest, MalformedResponsesAreRefusedNamingTheTensor) {
  proto::GetParametersResponse response;
  response.set_version(3);
  auto* t = response.add_tensors();
  t->set_name("flows.0.t.net.0.bias");
  *t->mutable_tensor() = EncodeFloat32({4}, std::vector<float>{1, 2, 3, 4});
  t->mutable_tensor()->mutable_data()->resize(12);  // one float short
  auto decoded = DecodePolicyWeights(response);
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(decoded.status().message()), HasSubstr("flows.0.t.net.0.bias"));
}

TEST(ParameterServiceTest, WatchersSeeEachNewerVersion) {
  auto server = Start();
  auto stub = proto::ParameterService::NewStub(CreateReplayChannel(server->address(), 256 << 20));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  proto::GetParametersRequest request;
  request.set_min_version(1);
  auto reader = stub->WatchParameters(&context, request);
  FlowPolicy policy(Config());
  std::thread publisher([&] {
    for (int64_t v = 1; v <= 3; ++v) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      EXPECT_TRUE(server->store()->Publish(v, policy->ExportWeights()).ok());
    }
  });
  std::vector<int64_t> seen;
  proto::GetParametersResponse response;
  while (seen.size() < 3 && reader->Read(&response)) seen.push_back(response.version());
  publisher.join();
  EXPECT_EQ(seen, (std::vector<int64_t>{1, 2, 3}));
  // Shutting the server down ends the stream instead of leaving the watcher hanging.
  server->Shutdown();
  while (reader->Read(&response)) {
  }
  EXPECT_FALSE(reader->Finish().ok());
}

TEST(ParameterServiceTest, AnUnreachableLearnerIsAnErrorWithinTheDeadline) {
  ParameterClient client("127.0.0.1:1");  // nothing listens on port 1
  const absl::Time start = absl::Now();
  auto result = client.Get(0, absl::Seconds(2));
  EXPECT_TRUE(absl::IsUnavailable(result.status()) || absl::IsDeadlineExceeded(result.status()))
      << result.status();
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("127.0.0.1:1"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

TEST(ParameterServiceTest, ARestartedLearnerIsPickedUpByTheSameClient) {
  auto server = Start();
  const std::string address = server->address();
  FlowPolicy policy(Config());
  ASSERT_TRUE(server->store()->Publish(5, policy->ExportWeights()).ok());
  ParameterClient client(address);
  ASSERT_TRUE(client.Get(0, absl::Seconds(5)).ok());
  server.reset();  // the learner goes away
  EXPECT_FALSE(client.Get(0, absl::Seconds(1)).ok());
  // It comes back on the same port, resuming its version counter from a checkpoint.
  std::unique_ptr<ParameterServer> restarted;
  for (int attempt = 0; attempt < 50 && restarted == nullptr; ++attempt) {
    ParameterServerConfig config;
    config.address = address;
    auto s = StartParameterServer(config);
    if (s.ok()) restarted = *std::move(s);
    else std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_NE(restarted, nullptr) << "port " << address << " did not come free";
  ASSERT_TRUE(restarted->store()->Publish(6, policy->ExportWeights()).ok());
  absl::StatusOr<std::optional<PolicyWeights>> got = absl::UnavailableError("not tried");
  for (int attempt = 0; attempt < 20; ++attempt) {
    got = client.Get(6, absl::Seconds(2));
    if (got.ok()) break;
  }
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->version, 6);
}

}  // namespace
}  // namespace meow
