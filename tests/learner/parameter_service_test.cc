// The ParameterService over real gRPC on 127.0.0.1: versions, not-newer answers, a policy's
// weights moving from learner to actor exactly, watchers, bad requests, an unreachable learner
// (an error within the deadline, no hang) and a restarted learner picked up by the same client.
#include <chrono>
#include <cmath>
#include <cstring>
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

// How long a call that should be answered may take: generous, since a first connection to a
// fresh server on a loaded 2-core machine can take seconds (a short deadline fails it UNAVAILABLE).
constexpr absl::Duration kAnswer = absl::Seconds(60);

FlowPolicyConfig Config() {
  FlowPolicyConfig c;
  c.obs_dim = 11;
  c.action_dim = 3;
  return c;
}

std::unique_ptr<ParameterServer> Start(const std::string& address = "127.0.0.1:0") {
  ParameterServerConfig config;
  config.address = address;
  config.evaluated_weight_shapes = ShapesOf(FlowPolicy(Config())->ExportWeights());
  auto server = StartParameterServer(config);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

// A learner server started again on `address` once its port is free (null if it never is).
std::unique_ptr<ParameterServer> StartAgainOn(const std::string& address) {
  for (int attempt = 0; attempt < 50; ++attempt) {
    ParameterServerConfig config;
    config.address = address;
    auto server = StartParameterServer(config);
    if (server.ok()) return *std::move(server);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return nullptr;
}

// client.Get(min_version), tried again (20 times, 2 s each) while a restarted server is not yet
// reachable.
absl::StatusOr<std::optional<PolicyWeights>> GetOnceReachable(ParameterClient& client, int64_t min_version) {
  absl::StatusOr<std::optional<PolicyWeights>> got = absl::UnavailableError("not tried");
  for (int attempt = 0; attempt < 20; ++attempt) {
    got = client.Get(min_version, absl::Seconds(2));
    if (got.ok()) break;
  }
  return got;
}

TEST(ParameterServiceTest, VersionsAndNotNewer) {
  auto server = Start();
  ParameterClient client(server->address());
  auto none = client.Get(0, kAnswer);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());  // nothing published yet

  FlowPolicy policy(Config());
  ASSERT_TRUE(server->store()->Publish(1, policy->ExportWeights()).ok());
  auto v1 = client.Get(1, kAnswer);
  ASSERT_TRUE(v1.ok() && v1->has_value());
  EXPECT_EQ((*v1)->version, 1);
  EXPECT_EQ((*v1)->weights.tensors.size(), 76u);
  auto newer = client.Get(2, kAnswer);
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
  auto got = client.Get(0, kAnswer);
  ASSERT_TRUE(got.ok() && got->has_value()) << got.status();
  EXPECT_EQ((*got)->version, 7);
  // The file's metadata travels with the tensors (what actors build their policy from).
  EXPECT_EQ((*got)->weights.metadata, learner->ExportWeights().metadata);
  ASSERT_TRUE(actor->ImportWeights((*got)->weights).ok());
  auto a = learner->named_parameters(), b = actor->named_parameters();
  for (const auto& item : a) EXPECT_TRUE(at::equal(item.value(), b[item.key()])) << item.key();
}

TEST(ParameterServiceTest, BadRequestsAreInvalidArgument) {
  auto server = Start();
  ParameterClient client(server->address());
  auto bad = client.Get(-1, kAnswer);
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
  auto answer = client.Report(episodes, kAnswer);
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
  auto refused = client.Report(nan, kAnswer);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("ReportRequest.episodes[1].episode_return is not finite"));
  proto::ReportRequest zero = episodes;
  zero.mutable_episodes(0)->set_length(0);
  EXPECT_THAT(std::string(client.Report(zero, kAnswer).status().message()),
              HasSubstr("episodes[0].length must be in [1, "));
  // Evaluations: of a published version, with the policy's weights.
  FlowPolicy policy(Config());
  for (int64_t v = 1; v <= 3; ++v) ASSERT_TRUE(server->store()->Publish(v, policy->ExportWeights()).ok());
  proto::ReportRequest eval;
  eval.set_source("evaluator");
  eval.mutable_evaluation()->set_env_steps(1000);
  eval.mutable_evaluation()->set_policy_version(3);
  proto::Episode* e = eval.mutable_evaluation()->add_episodes();
  e->set_episode_return(42);
  e->set_length(1000);
  for (const auto& [name, raw] : policy->ExportWeights().tensors) {
    proto::NamedTensor* t = eval.mutable_evaluation()->add_tensors();
    t->set_name(name);
    std::vector<float> values(raw.data.size() / sizeof(float));
    std::memcpy(values.data(), raw.data.data(), raw.data.size());
    *t->mutable_tensor() = EncodeFloat32(raw.shape, values);
  }
  auto tensor = [](proto::ReportRequest& r, const std::string& name) -> proto::Tensor* {
    for (auto& t : *r.mutable_evaluation()->mutable_tensors()) {
      if (t.name() == name) return t.mutable_tensor();
    }
    return nullptr;
  };
  auto expect_refused = [&](const proto::ReportRequest& request, const std::string& message) {
    auto answer = client.Report(request, kAnswer);
    EXPECT_EQ(answer.status().code(), absl::StatusCode::kInvalidArgument) << message;
    EXPECT_THAT(std::string(answer.status().message()), HasSubstr(message));
  };
  proto::ReportRequest short_tensor = eval;
  tensor(short_tensor, "flows.0.t.net.0.bias")->mutable_data()->resize(12);
  expect_refused(short_tensor, "flows.0.t.net.0.bias");
  proto::ReportRequest version0 = eval;
  version0.mutable_evaluation()->set_policy_version(0);
  expect_refused(version0, "policy_version must be in [1, 3] (the versions published so far), got 0");
  proto::ReportRequest unpublished = eval;
  unpublished.mutable_evaluation()->set_policy_version(4);
  expect_refused(unpublished, "policy_version must be in [1, 3] (the versions published so far), got 4");
  // Weights that do not fit the policy: a missing or an unexpected tensor, a wrong shape, a NaN.
  proto::ReportRequest missing = eval;
  missing.mutable_evaluation()->mutable_tensors()->RemoveLast();
  expect_refused(missing, "missing tensor");
  proto::ReportRequest extra = eval;
  proto::NamedTensor* stray = extra.mutable_evaluation()->add_tensors();
  stray->set_name("stray.weight");
  *stray->mutable_tensor() = EncodeFloat32({1}, std::vector<float>{1});
  expect_refused(extra, "unexpected tensor \"stray.weight\"");
  proto::ReportRequest reshaped = eval;
  *tensor(reshaped, "prior.log_scale.net.4.bias") = EncodeFloat32({1, 3}, std::vector<float>{0, 0, 0});
  expect_refused(reshaped, "[\"prior.log_scale.net.4.bias\"] has shape [1,3], expected [3]");
  proto::ReportRequest nan_weight = eval;
  std::string* bytes = tensor(nan_weight, "flows.4.scale1.net.6.bias")->mutable_data();
  const float not_a_number = std::nanf("");
  std::memcpy(bytes->data(), &not_a_number, sizeof(float));
  expect_refused(nan_weight, "[\"flows.4.scale1.net.6.bias\"][0] is not finite");
  proto::ReportRequest absurd = eval;
  absurd.mutable_evaluation()->mutable_episodes(0)->set_episode_return(1e15);
  expect_refused(absurd, "episodes[0].episode_return 1e+15 is beyond +-1e+09");
  // MultiGoal goal counts: four of them, none negative, no more than the episodes.
  proto::ReportRequest three_goals = eval;
  for (int n : {1, 0, 0}) three_goals.mutable_evaluation()->add_goal_counts(n);
  expect_refused(three_goals, "goal_counts must have 4 entries (one per goal), got 3");
  proto::ReportRequest negative = eval;
  for (int n : {0, -1, 0, 0}) negative.mutable_evaluation()->add_goal_counts(n);
  expect_refused(negative, "goal_counts[1] must be in [0, 1] (the episodes), got -1");
  proto::ReportRequest too_many = eval;
  for (int n : {1, 0, 1, 0}) too_many.mutable_evaluation()->add_goal_counts(n);
  expect_refused(too_many, "goal_counts add up to 2, more than its 1 episodes");
  EXPECT_TRUE(server->board()->TakeEpisodes().empty());
  EXPECT_TRUE(server->board()->TakeEvaluations().empty());

  // A good evaluation arrives with its summary and weights, which import into the policy;
  // "done" reaches the reporters.
  ASSERT_TRUE(client.Report(eval, kAnswer).ok());
  auto evaluations = server->board()->TakeEvaluations();
  ASSERT_EQ(evaluations.size(), 1u);
  EXPECT_EQ(evaluations[0].mean, 42);
  EXPECT_EQ(evaluations[0].policy_version, 3);
  EXPECT_TRUE(FlowPolicy(Config())->ImportWeights(evaluations[0].weights).ok());
  EXPECT_FALSE(evaluations[0].goals.has_value());
  proto::ReportRequest counted = eval;
  for (int n : {0, 0, 1, 0}) counted.mutable_evaluation()->add_goal_counts(n);
  ASSERT_TRUE(client.Report(counted, kAnswer).ok());
  evaluations = server->board()->TakeEvaluations();
  ASSERT_EQ(evaluations.size(), 1u);
  ASSERT_TRUE(evaluations[0].goals.has_value());
  EXPECT_EQ(evaluations[0].goals->reached[2], 1);
  EXPECT_EQ(evaluations[0].goals->unfinished, 0);
  EXPECT_EQ(evaluations[0].goals->goals(), 1);
  server->board()->SetDone();
  EXPECT_TRUE(client.Report(proto::ReportRequest(), kAnswer)->done());
}

// A learner that expects no evaluated weights (none configured) refuses any that are sent.
TEST(ParameterServiceTest, WeightsAreRefusedWhenNoneAreExpected) {
  ParameterServerConfig config;
  auto server = StartParameterServer(config);
  ASSERT_TRUE(server.ok());
  FlowPolicy policy(Config());
  ASSERT_TRUE((*server)->store()->Publish(1, policy->ExportWeights()).ok());
  proto::ReportRequest eval;
  eval.mutable_evaluation()->set_policy_version(1);
  proto::Episode* e = eval.mutable_evaluation()->add_episodes();
  e->set_episode_return(1);
  e->set_length(1);
  proto::NamedTensor* t = eval.mutable_evaluation()->add_tensors();
  t->set_name("x");
  *t->mutable_tensor() = EncodeFloat32({1}, std::vector<float>{1});
  ParameterClient client((*server)->address());
  auto answer = client.Report(eval, kAnswer);
  EXPECT_EQ(answer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(answer.status().message()), HasSubstr("this learner takes no evaluated weights"));
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
  auto stub = proto::ParameterService::NewStub(CreateChannel(server->address(), 256 << 20, GrpcSecurity()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  context.set_wait_for_ready(true);  // a slow first connection on a busy machine is not a failure
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
  // An error (a hang would hit the test's timeout) naming the address.
  auto result = client.Get(0, absl::Seconds(2));
  EXPECT_TRUE(absl::IsUnavailable(result.status()) || absl::IsDeadlineExceeded(result.status())) << result.status();
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("127.0.0.1:1"));
}

TEST(ParameterServiceTest, ARestartedLearnerIsPickedUpByTheSameClient) {
  auto server = Start();
  const std::string address = server->address();
  FlowPolicy policy(Config());
  ASSERT_TRUE(server->store()->Publish(5, policy->ExportWeights()).ok());
  ParameterClient client(address);
  ASSERT_TRUE(client.Get(0, kAnswer).ok());
  server.reset();  // the learner goes away
  EXPECT_FALSE(client.Get(0, absl::Seconds(1)).ok());
  // It comes back on the same port, resuming its version counter from a checkpoint.
  std::unique_ptr<ParameterServer> restarted = StartAgainOn(address);
  ASSERT_NE(restarted, nullptr) << "port " << address << " did not come free";
  ASSERT_TRUE(restarted->store()->Publish(6, policy->ExportWeights()).ok());
  absl::StatusOr<std::optional<PolicyWeights>> got = GetOnceReachable(client, 6);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->version, 6);
}

TEST(ParameterServiceTest, ALearnerThatCountsFromOneAgainIsPickedUp) {
  // A learner that lost its run dir starts again at version 1: an actor that acted on version 5
  // of the old one must not wait for a version 6 that may never come.
  FlowPolicy policy(Config());
  auto server = Start();
  const std::string address = server->address();
  ASSERT_TRUE(server->store()->Publish(5, policy->ExportWeights()).ok());
  ParameterClient client(address);
  auto first = client.Get(1, kAnswer);
  ASSERT_TRUE(first.ok() && first->has_value()) << first.status();
  const uint64_t old_incarnation = (*first)->incarnation;
  EXPECT_NE(old_incarnation, 0u);
  server.reset();
  std::unique_ptr<ParameterServer> fresh = StartAgainOn(address);
  ASSERT_NE(fresh, nullptr) << "port " << address << " did not come free";
  EXPECT_NE(fresh->store()->incarnation(), old_incarnation);

  // Nothing published yet: nothing to answer, and the client still counts in the old incarnation.
  absl::StatusOr<std::optional<PolicyWeights>> got = GetOnceReachable(client, 6);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_FALSE(got->has_value());
  ASSERT_TRUE(fresh->store()->Publish(1, policy->ExportWeights()).ok());
  got = client.Get(6, kAnswer);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->has_value()) << "a restarted learner's version 1 never reaches an actor that saw version 5";
  EXPECT_EQ((*got)->version, 1);
  EXPECT_EQ((*got)->incarnation, fresh->store()->incarnation());
  // From then on versions count in the new incarnation.
  got = client.Get(2, kAnswer);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_FALSE(got->has_value());

  // A raw request naming another incarnation ignores its min_version, watchers included.
  auto stub = proto::ParameterService::NewStub(CreateChannel(address, 256 << 20, GrpcSecurity()));
  proto::GetParametersRequest request;
  request.set_min_version(100);
  request.set_incarnation(old_incarnation);
  {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + kAnswer));
    proto::GetParametersResponse response;
    ASSERT_TRUE(stub->GetParameters(&context, request, &response).ok());
    EXPECT_FALSE(response.not_newer());
    EXPECT_EQ(response.version(), 1);
  }
  {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + kAnswer));
    auto reader = stub->WatchParameters(&context, request);
    proto::GetParametersResponse response;
    ASSERT_TRUE(reader->Read(&response));
    EXPECT_EQ(response.version(), 1);
    context.TryCancel();
  }
  request.set_incarnation(fresh->store()->incarnation());
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kAnswer));
  proto::GetParametersResponse response;
  ASSERT_TRUE(stub->GetParameters(&context, request, &response).ok());
  EXPECT_TRUE(response.not_newer());
  EXPECT_EQ(response.incarnation(), fresh->store()->incarnation());
}

}  // namespace
}  // namespace meow
