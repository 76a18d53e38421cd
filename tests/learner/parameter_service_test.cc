// The ParameterService over real gRPC on 127.0.0.1: versions, not-newer answers, a policy's
// weights moving from learner to actor exactly, watchers, bad requests, an unreachable learner
// (an error within the deadline, no hang) and a restarted learner picked up by the same client.
#include <chrono>
#include <cmath>
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

TEST(ParameterServiceTest, ReportsReachTheBoardAndBadOnesAreRefusedWhole) {
  auto server = Start();
  ParameterClient client(server->address());
  server->board()->SetProgress({1234, 56, 7, 5000});
  proto::ReportRequest episodes;
  episodes.set_source("actor-0");
  for (double r : {1.5, -2.0}) {
    proto::Episode* e = episodes.add_episodes();
    e->set_episode_return(r);
    e->set_length(10);
  }
  auto answer = client.Report(episodes, absl::Seconds(5));
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->env_steps(), 1234);
  EXPECT_EQ(answer->updates(), 56);
  EXPECT_EQ(answer->version(), 7);
  EXPECT_EQ(answer->total_env_steps(), 5000);
  EXPECT_FALSE(answer->done());
  EXPECT_EQ(server->board()->TakeEpisodes().size(), 2u);

  // A NaN return, a zero length, an evaluation of version 0 or with a short tensor: refused,
  // naming the field, and nothing of the report is kept.
  proto::ReportRequest nan = episodes;
  nan.mutable_episodes(1)->set_episode_return(std::nan(""));
  auto refused = client.Report(nan, absl::Seconds(5));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("ReportRequest.episodes[1].episode_return is not finite"));
  proto::ReportRequest zero = episodes;
  zero.mutable_episodes(0)->set_length(0);
  EXPECT_THAT(std::string(client.Report(zero, absl::Seconds(5)).status().message()),
              HasSubstr("episodes[0].length must be >= 1"));
  proto::ReportRequest eval;
  eval.mutable_evaluation()->set_env_steps(1000);
  eval.mutable_evaluation()->set_policy_version(3);
  proto::Episode* e = eval.mutable_evaluation()->add_episodes();
  e->set_episode_return(42);
  e->set_length(1000);
  proto::NamedTensor* t = eval.mutable_evaluation()->add_tensors();
  t->set_name("flows.0.t.net.0.bias");
  *t->mutable_tensor() = EncodeFloat32({4}, std::vector<float>{1, 2, 3, 4});
  proto::ReportRequest short_tensor = eval;
  short_tensor.mutable_evaluation()->mutable_tensors(0)->mutable_tensor()->mutable_data()->resize(12);
  auto bad_tensor = client.Report(short_tensor, absl::Seconds(5));
  EXPECT_EQ(bad_tensor.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad_tensor.status().message()), HasSubstr("flows.0.t.net.0.bias"));
  proto::ReportRequest version0 = eval;
  version0.mutable_evaluation()->set_policy_version(0);
  EXPECT_THAT(std::string(client.Report(version0, absl::Seconds(5)).status().message()),
              HasSubstr("policy_version must be >= 1, got 0"));
  EXPECT_TRUE(server->board()->TakeEpisodes().empty());
  EXPECT_TRUE(server->board()->TakeEvaluations().empty());

  // A good evaluation arrives with its summary and weights; "done" reaches the reporters.
  ASSERT_TRUE(client.Report(eval, absl::Seconds(5)).ok());
  auto evaluations = server->board()->TakeEvaluations();
  ASSERT_EQ(evaluations.size(), 1u);
  EXPECT_EQ(evaluations[0].mean, 42);
  EXPECT_EQ(evaluations[0].policy_version, 3);
  EXPECT_EQ(evaluations[0].weights.tensors.count("flows.0.t.net.0.bias"), 1u);
  server->board()->SetDone();
  EXPECT_TRUE(client.Report(proto::ReportRequest(), absl::Seconds(5))->done());
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
