// The replay service in-process on 127.0.0.1: the wire protocol, the client library, health
// checking and reflection, concurrency, shards, and a restart with persistence.
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/metrics_http.h"
#include "common/rpc_metrics.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "replay/replay_client.h"
#include "replay/replay_server.h"
#include "tests/replay/health.grpc.pb.h"
#include "tests/replay/slow_proxy.h"
#include "tests/replay/test_util.h"

namespace meow {
namespace {

using testing::CountRows;
using ::testing::HasSubstr;
using testing::HopperTable;
using testing::KeyOf;
using testing::MakeBatch;
using testing::RowKey;

constexpr absl::Duration kLong = absl::Seconds(30);

ReplayServerConfig ServerConfig(int64_t capacity = 200000) {
  ReplayServerConfig config;
  config.address = "127.0.0.1:0";
  config.table = HopperTable(capacity);
  config.table.max_batch_rows = 1024;
  config.table.max_sample_rows = 4096;
  return config;
}

std::unique_ptr<ReplayServer> Start(const ReplayServerConfig& config) {
  absl::StatusOr<std::unique_ptr<ReplayServer>> server = StartReplayServer(config);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

std::unique_ptr<ReplayInserter> NewInserter(std::vector<std::string> addresses, uint64_t actor, int max_unacked = 32) {
  ReplayInserterConfig config;
  config.addresses = std::move(addresses);
  config.actor_id = actor;
  config.max_unacked_batches = max_unacked;
  config.backoff.initial = absl::Milliseconds(20);
  config.backoff.max = absl::Milliseconds(500);
  absl::StatusOr<std::unique_ptr<ReplayInserter>> inserter = ReplayInserter::Create(config);
  EXPECT_TRUE(inserter.ok()) << inserter.status();
  return *std::move(inserter);
}

std::unique_ptr<ReplaySampler> NewSampler(std::vector<std::string> addresses, int batch_size = 256, int prefetch = 8) {
  ReplaySamplerConfig config;
  config.addresses = std::move(addresses);
  config.batch_size = batch_size;
  config.prefetch_batches = prefetch;
  config.obs_dim = testing::kObsDim;
  config.action_dim = testing::kActionDim;
  config.backoff.initial = absl::Milliseconds(20);
  config.backoff.max = absl::Milliseconds(500);
  absl::StatusOr<std::unique_ptr<ReplaySampler>> sampler = ReplaySampler::Create(config);
  EXPECT_TRUE(sampler.ok()) << sampler.status();
  return *std::move(sampler);
}

// Calls `call` until it answers anything but UNAVAILABLE, for up to kLong.
template <typename Call>
auto WhileUnavailable(Call call) {
  auto result = call();
  for (const absl::Time deadline = absl::Now() + kLong;
       absl::IsUnavailable(result.status()) && absl::Now() < deadline;) {
    absl::SleepFor(absl::Milliseconds(50));
    result = call();
  }
  return result;
}

// A raw Insert stream, for protocol tests.
class RawInsertStream {
 public:
  explicit RawInsertStream(const std::string& address)
      : stub_(proto::ReplayService::NewStub(CreateChannel(address, 64 << 20, GrpcSecurity()))) {
    context_.set_deadline(absl::ToChronoTime(absl::Now() + kLong));
    stream_ = stub_->Insert(&context_);
  }
  bool Write(const proto::InsertRequest& request) { return stream_->Write(request); }
  bool Open(uint64_t actor, proto::InsertStreamOpened* opened) {
    proto::InsertRequest request;
    request.mutable_open()->set_actor_id(actor);
    proto::InsertResponse response;
    if (!Write(request) || !stream_->Read(&response) || !response.has_opened()) return false;
    *opened = response.opened();
    return true;
  }
  // Sends one batch and returns its acknowledgement (or nullopt when the stream ended).
  std::optional<proto::InsertAck> Send(const proto::TransitionBatch& batch) {
    proto::InsertRequest request;
    *request.mutable_batch() = batch;
    proto::InsertResponse response;
    if (!Write(request) || !stream_->Read(&response)) return std::nullopt;
    EXPECT_EQ(response.acks_size(), 1);  // one batch in flight: one ack per response
    if (response.acks_size() != 1) return std::nullopt;
    return response.acks(0);
  }
  grpc::Status Finish() {
    stream_->WritesDone();
    proto::InsertResponse response;
    while (stream_->Read(&response)) {
    }
    return stream_->Finish();
  }

 private:
  std::unique_ptr<proto::ReplayService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<proto::InsertRequest, proto::InsertResponse>> stream_;
};

TEST(ReplayServiceTest, InsertThenSampleThroughTheClients) {
  std::unique_ptr<ReplayServer> server = Start(ServerConfig());
  ASSERT_NE(server, nullptr);
  std::unique_ptr<ReplayInserter> inserter = NewInserter({server->address()}, /*actor=*/7);
  for (uint64_t i = 1; i <= 50; ++i) {
    ASSERT_TRUE(inserter->Insert(MakeBatch(7, i, 64), kLong).ok());
  }
  ASSERT_TRUE(inserter->Flush(kLong).ok());
  ReplayInserter::Stats stats = inserter->stats();
  EXPECT_EQ(stats.acked, 50);
  EXPECT_EQ(stats.unacked, 0);
  EXPECT_EQ(stats.next_sequence_number, 51u);

  absl::StatusOr<proto::InfoResponse> info = GetReplayInfo(server->address(), kLong);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->table().size(), 50 * 64);
  EXPECT_EQ(info->table().inserted_batches(), 50);
  EXPECT_EQ(info->table().actors(), 1);
  EXPECT_FALSE(info->persistence().enabled());

  std::unique_ptr<ReplaySampler> sampler = NewSampler({server->address()});
  for (int i = 0; i < 20; ++i) {
    absl::StatusOr<SampledBatch> batch = sampler->Next(kLong);
    ASSERT_TRUE(batch.ok()) << batch.status();
    ASSERT_EQ(batch->rows, 256);
    EXPECT_EQ(batch->table_size, 50 * 64);
    for (int64_t r = 0; r < batch->rows; ++r) {
      const RowKey key = KeyOf(&batch->obs[r * 11]);
      EXPECT_EQ(std::get<0>(key), 7u);
      EXPECT_GE(std::get<1>(key), 1u);
      EXPECT_LE(std::get<1>(key), 50u);
      EXPECT_EQ(batch->next_obs[r * 11 + 3], batch->obs[r * 11 + 3] + 0.5f);
      EXPECT_EQ(batch->policy_version[r], static_cast<int64_t>(std::get<1>(key)));
    }
  }
  info = GetReplayInfo(server->address(), kLong);
  ASSERT_TRUE(info.ok());
  EXPECT_GE(info->table().sampled_batches(), 20);
}

TEST(ReplayServiceTest, ATakenPortIsAnErrorNotShared) {
  std::unique_ptr<ReplayServer> server = Start(ServerConfig());
  ASSERT_NE(server, nullptr);
  ReplayServerConfig second = ServerConfig();
  second.address = server->address();
  absl::StatusOr<std::unique_ptr<ReplayServer>> refused = StartReplayServer(second);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(refused.status().message(), HasSubstr(server->address()));
}

TEST(ReplayServiceTest, HealthCheckAndReflection) {
  std::unique_ptr<ReplayServer> server = Start(ServerConfig());
  ASSERT_NE(server, nullptr);
  auto channel = CreateChannel(server->address(), 1 << 20, GrpcSecurity());
  auto health = grpc::health::v1::Health::NewStub(channel);
  for (const std::string service : {"", "meow.proto.ReplayService"}) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + kLong));
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status status = health->Check(&context, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING) << service;
  }

  // Reflection: ask the v1alpha service to list services, over a generic stream of raw bytes.
  grpc::GenericStub generic(channel);
  grpc::CompletionQueue queue;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kLong));
  auto call = generic.PrepareCall(&context, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &queue);
  void* tag;
  bool ok;
  auto step = [&](intptr_t want) {
    ASSERT_TRUE(queue.Next(&tag, &ok));
    EXPECT_EQ(reinterpret_cast<intptr_t>(tag), want);
    EXPECT_TRUE(ok);
  };
  call->StartCall(reinterpret_cast<void*>(1));
  step(1);
  const char list_services[] = {0x3a, 0x00};  // ServerReflectionRequest{list_services: ""}
  grpc::Slice slice(list_services, sizeof(list_services));
  grpc::ByteBuffer request(&slice, 1);
  call->Write(request, reinterpret_cast<void*>(2));
  step(2);
  call->WritesDone(reinterpret_cast<void*>(3));
  step(3);
  grpc::ByteBuffer response;
  call->Read(&response, reinterpret_cast<void*>(4));
  step(4);
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (const grpc::Slice& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  EXPECT_THAT(bytes, HasSubstr("meow.proto.ReplayService"));
  EXPECT_THAT(bytes, HasSubstr("grpc.health.v1.Health"));
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  step(5);
  EXPECT_TRUE(status.ok()) << status.error_message();
}

TEST(ReplayServiceTest, ResentBatchIsAcknowledgedAndStoredOnce) {
  std::unique_ptr<ReplayServer> server = Start(ServerConfig());
  ASSERT_NE(server, nullptr);
  RawInsertStream stream(server->address());
  proto::InsertStreamOpened opened;
  ASSERT_TRUE(stream.Open(3, &opened));
  EXPECT_EQ(opened.last_sequence_number(), 0u);
  EXPECT_EQ(opened.obs_dim(), 11);
  EXPECT_EQ(opened.action_dim(), 3);
  EXPECT_EQ(opened.max_batch_rows(), 1024);
  for (uint64_t sequence : {1, 2, 2, 1, 3}) {
    std::optional<proto::InsertAck> ack = stream.Send(MakeBatch(3, sequence, 16));
    ASSERT_TRUE(ack.has_value());
    EXPECT_EQ(ack->sequence_number(), sequence);
    EXPECT_EQ(ack->code(), 0);
  }
  EXPECT_TRUE(stream.Finish().ok());
  EXPECT_EQ(server->table()->size(), 3 * 16);
  EXPECT_EQ(server->table()->Info().duplicate_batches(), 2);
  for (const auto& [key, count] : CountRows(server->table()->Copy([] {}).store)) {
    EXPECT_EQ(count, 1);
  }
  // A new stream learns where the actor stands; a resend there is a duplicate too.
  RawInsertStream again(server->address());
  ASSERT_TRUE(again.Open(3, &opened));
  EXPECT_EQ(opened.last_sequence_number(), 3u);
  std::optional<proto::InsertAck> ack = again.Send(MakeBatch(3, 3, 16));
  ASSERT_TRUE(ack.has_value());
  EXPECT_TRUE(ack->duplicate());

  // Info shows where each actor stands: stored batches = the sum of the last sequence numbers.
  const proto::TableInfo info = server->table()->Info();
  ASSERT_EQ(info.last_sequence_number_by_actor().size(), 1u);
  EXPECT_EQ(info.last_sequence_number_by_actor().at(3), 3u);
  EXPECT_EQ(info.inserted_batches(), 3);
  PrometheusText text;
  AppendProtoNumbers(text, "replay", info);
  EXPECT_THAT(text.text(), HasSubstr("meow_replay_last_sequence_number{actor=\"3\"} 3\n"));
  EXPECT_THAT(text.text(), HasSubstr("meow_replay_inserted_batches 3\n"));
}

// Two actors started with one id (two inserters, each its own incarnation): the second is refused
// with ALREADY_EXISTS naming the id, and nothing of the first is dropped or superseded; once the
// first has gone, the id is free again and numbering continues after its batches.
TEST(ReplayServiceTest, ASecondLiveActorWithTheSameIdIsRefused) {
  std::unique_ptr<ReplayServer> server = Start(ServerConfig());
  ASSERT_NE(server, nullptr);
  std::unique_ptr<ReplayInserter> first = NewInserter({server->address()}, /*actor=*/3);
  for (uint64_t i = 1; i <= 20; ++i) ASSERT_TRUE(first->Insert(MakeBatch(3, i, 16), kLong).ok());
  ASSERT_TRUE(first->Flush(kLong).ok());

  ReplayInserterConfig config;
  config.addresses = {server->address()};
  config.actor_id = 3;
  config.id_conflict_grace = absl::ZeroDuration();
  config.backoff.initial = absl::Milliseconds(20);
  auto second = ReplayInserter::Create(config);
  ASSERT_TRUE(second.ok());
  absl::Status refused = (*second)->Insert(MakeBatch(3, 1, 16), kLong);
  if (refused.ok()) refused = (*second)->Flush(kLong);
  EXPECT_EQ(refused.code(), absl::StatusCode::kAlreadyExists) << refused;
  EXPECT_THAT(std::string(refused.message()), HasSubstr("actor id 3 is in use by another live actor"));

  // The first goes on undisturbed.
  for (uint64_t i = 21; i <= 30; ++i) ASSERT_TRUE(first->Insert(MakeBatch(3, i, 16), kLong).ok());
  ASSERT_TRUE(first->Flush(kLong).ok());
  EXPECT_EQ(first->stats().connects, 1);
  EXPECT_EQ(server->table()->Info().inserted_batches(), 30);
  EXPECT_EQ(server->table()->size(), 30 * 16);

  // Gone, it frees the id: a restarted actor continues after batch 30.
  first.reset();
  std::unique_ptr<ReplayInserter> restarted = NewInserter({server->address()}, /*actor=*/3);
  ASSERT_TRUE(restarted->Insert(MakeBatch(3, 1, 16), kLong).ok());
  ASSERT_TRUE(restarted->Flush(kLong).ok());
  EXPECT_EQ(restarted->stats().acked_sequence_number, 31u);
  EXPECT_EQ(server->table()->Info().inserted_batches(), 31);
}

// "Training is over" from the learner: inserts waiting on the rate limiter and later ones end
// with OUT_OF_RANGE saying so; a learner starting again (done = false) lets them in again.
TEST(ReplayServiceTest, TrainingDoneEndsWaitingAndLaterInserts) {
  ReplayServerConfig config = ServerConfig();
  config.table.rate_limiter = RateLimiterConfig::SampleToInsertRatio(1.0, 16, 8.0);
  std::unique_ptr<ReplayServer> server = Start(config);
  ASSERT_NE(server, nullptr);
  std::unique_ptr<ReplayInserter> inserter = NewInserter({server->address()}, /*actor=*/2);
  for (uint64_t i = 1; i <= 4; ++i) ASSERT_TRUE(inserter->Insert(MakeBatch(2, i, 16), kLong).ok());
  // Two batches fit (16 rows below the minimum, then 16 within the slack); the third waits.
  std::string last_info;
  auto blocked = [&] {
    auto info = GetReplayInfo(server->address(), kLong);
    last_info = info.ok() ? info->DebugString() : info.status().ToString();
    return info.ok() && info->rate_limiter().blocked_inserts() > 0;
  };
  const absl::Time deadline = absl::Now() + kLong;
  bool held = false;
  while (!(held = blocked()) && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  ASSERT_TRUE(held) << last_info;
  ASSERT_TRUE(SetReplayTrainingDone(server->address(), true, 32, kLong).ok());
  absl::Status flushed = inserter->Flush(kLong);
  EXPECT_EQ(flushed.code(), absl::StatusCode::kOutOfRange) << flushed;
  EXPECT_THAT(std::string(flushed.message()),
              HasSubstr("training is over (the learner finished at 32 environment steps)"));
  EXPECT_TRUE(GetReplayInfo(server->address(), kLong)->table().training_done());
  std::unique_ptr<ReplayInserter> late = NewInserter({server->address()}, /*actor=*/5);
  ASSERT_TRUE(late->Insert(MakeBatch(5, 1, 4), kLong).ok());
  EXPECT_EQ(late->Flush(kLong).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(server->table()->size(), 32);

  // A learner resuming the run clears it.
  ASSERT_TRUE(SetReplayTrainingDone(server->address(), false, 0, kLong).ok());
  std::unique_ptr<ReplayInserter> resumed = NewInserter({server->address()}, /*actor=*/6);
  ASSERT_TRUE(resumed->Insert(MakeBatch(6, 1, 4), kLong).ok());
  // Its insert waits until the sampler (which prefetches as far as the limiter lets it) has drawn
  // enough.
  std::unique_ptr<ReplaySampler> sampler = NewSampler({server->address()}, /*batch_size=*/8);
  EXPECT_TRUE(resumed->Flush(kLong).ok());
}

TEST(ReplayServiceTest, BadBatchesAreRefusedAloneWithTheField) {
  std::unique_ptr<ReplayServer> server = Start(ServerConfig());
  ASSERT_NE(server, nullptr);
  RawInsertStream stream(server->address());
  proto::InsertStreamOpened opened;
  ASSERT_TRUE(stream.Open(4, &opened));

  proto::TransitionBatch nan_reward = MakeBatch(4, 1, 8);
  const float nan = std::nanf("");
  std::memcpy(nan_reward.mutable_reward()->mutable_data()->data() + 4, &nan, 4);
  std::optional<proto::InsertAck> ack = stream.Send(nan_reward);
  ASSERT_TRUE(ack.has_value());
  EXPECT_EQ(ack->code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
  EXPECT_THAT(ack->error_message(), HasSubstr("TransitionBatch.reward[1]: expected a finite"));

  ack = stream.Send(MakeBatch(4, 2, 8, /*obs_dim=*/17));
  ASSERT_TRUE(ack.has_value());
  EXPECT_EQ(ack->code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
  EXPECT_THAT(ack->error_message(), HasSubstr("TransitionBatch.obs.shape: expected [*, 11]"));

  ack = stream.Send(MakeBatch(5, 3, 8));  // another actor's batch on this actor's stream
  ASSERT_TRUE(ack.has_value());
  EXPECT_THAT(ack->error_message(), HasSubstr("TransitionBatch.actor_id: expected 4"));

  ack = stream.Send(MakeBatch(4, 4, 1025));
  ASSERT_TRUE(ack.has_value());
  EXPECT_EQ(ack->code(), static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED));
  EXPECT_THAT(ack->error_message(), HasSubstr("1025 rows exceed the limit of 1024"));

  ack = stream.Send(MakeBatch(4, 1, 8));  // the stream goes on
  ASSERT_TRUE(ack.has_value());
  EXPECT_EQ(ack->code(), 0);
  EXPECT_FALSE(ack->duplicate());
  EXPECT_TRUE(stream.Finish().ok());
  EXPECT_EQ(server->table()->size(), 8);
  EXPECT_EQ(server->table()->Info().rejected_batches(), 3);
}

TEST(ReplayServiceTest, ProtocolViolationsEndTheStream) {
  std::unique_ptr<ReplayServer> server = Start(ServerConfig());
  ASSERT_NE(server, nullptr);
  {
    RawInsertStream stream(server->address());
    proto::InsertRequest request;
    *request.mutable_batch() = MakeBatch(1, 1, 4);
    stream.Write(request);
    grpc::Status status = stream.Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("InsertRequest.open"));
  }
  {
    // A message over the server's limit: RESOURCE_EXHAUSTED for the stream.
    ReplayServerConfig config = ServerConfig();
    config.table.max_batch_rows = 8;
    config.max_message_bytes = 8 * 1024;
    std::unique_ptr<ReplayServer> small = Start(config);
    ASSERT_NE(small, nullptr);
    RawInsertStream stream(small->address());
    proto::InsertStreamOpened opened;
    ASSERT_TRUE(stream.Open(1, &opened));
    EXPECT_FALSE(stream.Send(MakeBatch(1, 1, 200)).has_value());
    grpc::Status status = stream.Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
    EXPECT_EQ(small->table()->size(), 0);
  }
}

TEST(ReplayServiceTest, SampleStreamHonoursCredit) {
  std::unique_ptr<ReplayServer> server = Start(ServerConfig());
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(server->table()->Insert(MakeBatch(1, 1, 64), 0, kLong, nullptr).ok());
  auto stub = proto::ReplayService::NewStub(CreateChannel(server->address(), 64 << 20, GrpcSecurity()));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kLong));
  auto stream = stub->Sample(&context);
  proto::SampleRequest request;
  request.set_batch_size(32);
  request.set_credit(2);
  ASSERT_TRUE(stream->Write(request));
  proto::SampleResponse response;
  ASSERT_TRUE(stream->Read(&response));
  ASSERT_TRUE(stream->Read(&response));
  EXPECT_EQ(response.batch().obs().shape(0), 32);
  // No credit left: nothing more arrives in the next 1.5 s (counted from the second batch, so a
  // slow first connection does not eat the window); then the client gives up.
  std::thread canceller([&] {
    absl::SleepFor(absl::Milliseconds(1500));
    context.TryCancel();
  });
  EXPECT_FALSE(stream->Read(&response));
  canceller.join();
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(server->table()->Info().sampled_batches(), 2);
}

TEST(ReplayServiceTest, AReplaySlowToAnswerANewConnectionIsStillReached) {
  std::unique_ptr<ReplayServer> server = Start(ServerConfig());
  ASSERT_NE(server, nullptr);
  const int port = std::stoi(server->address().substr(server->address().rfind(':') + 1));
  // Each connection waits 1 s before the replay sees it. gRPC gives a connection attempt as long
  // as its minimum reconnect backoff; at 100 ms every attempt was abandoned ("tcp handshaker
  // shutdown") and a busy replay could not be reached at all.
  SlowToAnswerProxy proxy(port, absl::Seconds(1));
  auto info = GetReplayInfo(proxy.address(), kLong);
  EXPECT_TRUE(info.ok()) << info.status();
}

TEST(ReplayServiceTest, SampleStreamRefusesBadRequests) {
  std::unique_ptr<ReplayServer> server = Start(ServerConfig());
  ASSERT_NE(server, nullptr);
  auto stub = proto::ReplayService::NewStub(CreateChannel(server->address(), 64 << 20, GrpcSecurity()));
  struct Case {
    int batch_size, credit;
    grpc::StatusCode code;
    std::string message;
  };
  for (const Case& c : {Case{0, 1, grpc::StatusCode::INVALID_ARGUMENT, "SampleRequest.batch_size"},
                        Case{5000, 1, grpc::StatusCode::RESOURCE_EXHAUSTED, "exceed the limit"},
                        Case{8, -1, grpc::StatusCode::INVALID_ARGUMENT, "SampleRequest.credit"}}) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + kLong));
    auto stream = stub->Sample(&context);
    proto::SampleRequest request;
    request.set_batch_size(c.batch_size);
    request.set_credit(c.credit);
    stream->Write(request);
    stream->WritesDone();
    proto::SampleResponse response;
    EXPECT_FALSE(stream->Read(&response));
    grpc::Status status = stream->Finish();
    EXPECT_EQ(status.error_code(), c.code) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(c.message));
  }
  // Through the client: a batch size replay refuses is a fatal error of the sampler.
  std::unique_ptr<ReplaySampler> sampler = NewSampler({server->address()}, /*batch_size=*/5000);
  absl::Status status = sampler->Next(kLong).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
}

TEST(ReplayServiceTest, InserterRefusesBadBatchesLocally) {
  std::unique_ptr<ReplayServer> server = Start(ServerConfig());
  ASSERT_NE(server, nullptr);
  std::unique_ptr<ReplayInserter> inserter = NewInserter({server->address()}, 1);
  proto::TransitionBatch bad = MakeBatch(1, 1, 4);
  bad.mutable_action()->mutable_data()->resize(5);
  absl::Status status = inserter->Insert(bad, kLong);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("TransitionBatch.action.data"));
  // Once connected the inserter knows the table's signature.
  ASSERT_TRUE(inserter->Insert(MakeBatch(1, 1, 4), kLong).ok());
  ASSERT_TRUE(inserter->Flush(kLong).ok());
  status = inserter->Insert(MakeBatch(1, 1, 4, /*obs_dim=*/12), kLong);
  EXPECT_THAT(status.message(), HasSubstr("TransitionBatch.obs.shape: expected [*, 11]"));
  status = inserter->Insert(MakeBatch(1, 1, 2000), kLong);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(server->table()->size(), 4);
}

TEST(ReplayServiceTest, InserterBlocksAtItsBoundWhileReplayIsAway) {
  // Nothing listens at this port (the server is gone).
  std::string address;
  {
    std::unique_ptr<ReplayServer> server = Start(ServerConfig());
    ASSERT_NE(server, nullptr);
    address = server->address();
  }
  std::unique_ptr<ReplayInserter> inserter = NewInserter({address}, 1, /*max_unacked=*/3);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(inserter->Insert(MakeBatch(1, 1, 4), kLong).ok());
  absl::Status status = inserter->Insert(MakeBatch(1, 1, 4), absl::Milliseconds(200));
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(status.message(), HasSubstr("3 batches stayed unacknowledged"));
  EXPECT_EQ(inserter->Flush(absl::Milliseconds(100)).code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(inserter->stats().next_sequence_number, 0u);  // never connected
  inserter->Close();
  EXPECT_EQ(inserter->Insert(MakeBatch(1, 1, 4), kLong).code(), absl::StatusCode::kCancelled);
}

TEST(ReplayServiceTest, EightInsertersAndTwoSamplersConcurrently) {
  std::unique_ptr<ReplayServer> server = Start(ServerConfig(/*capacity=*/200000));
  ASSERT_NE(server, nullptr);
  constexpr int kInserters = 8;
  constexpr int kBatches = 150;
  constexpr int kRows = 64;
  std::atomic<bool> inserting{true};
  std::vector<std::thread> threads;
  std::vector<absl::Status> insert_status(kInserters);
  for (int a = 0; a < kInserters; ++a) {
    threads.emplace_back([&, a] {
      std::unique_ptr<ReplayInserter> inserter = NewInserter({server->address()}, 100 + a);
      for (uint64_t i = 1; i <= kBatches; ++i) {
        // Rows carry their own (actor, sequence, row) so the table can be audited afterwards;
        // the inserter numbers batches 1, 2, ... on a fresh table.
        absl::Status s = inserter->Insert(MakeBatch(100 + a, i, kRows), kLong);
        if (!s.ok()) {
          insert_status[a] = s;
          return;
        }
      }
      insert_status[a] = inserter->Flush(kLong);
    });
  }
  std::atomic<int64_t> sampled{0};
  std::vector<absl::Status> sample_status(2);
  std::vector<std::thread> samplers;
  for (int s = 0; s < 2; ++s) {
    samplers.emplace_back([&, s] {
      std::unique_ptr<ReplaySampler> sampler = NewSampler({server->address()}, 128, 4);
      while (inserting.load()) {
        absl::StatusOr<SampledBatch> batch = sampler->Next(kLong);
        if (!batch.ok()) {
          sample_status[s] = batch.status();
          return;
        }
        for (int64_t r = 0; r < batch->rows; ++r) {
          const RowKey key = KeyOf(&batch->obs[r * 11]);
          if (std::get<0>(key) < 100 || std::get<0>(key) >= 100 + kInserters || std::get<1>(key) < 1 ||
              std::get<1>(key) > kBatches || std::get<2>(key) >= kRows) {
            sample_status[s] = absl::InternalError("sampled a row nobody inserted");
            return;
          }
        }
        sampled.fetch_add(1);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  inserting.store(false);
  for (std::thread& t : samplers) t.join();
  for (const absl::Status& s : insert_status) EXPECT_TRUE(s.ok()) << s;
  for (const absl::Status& s : sample_status) EXPECT_TRUE(s.ok()) << s;
  EXPECT_GT(sampled.load(), 0);
  // Every batch of every actor exactly once.
  std::map<RowKey, int> counts = CountRows(server->table()->Copy([] {}).store);
  EXPECT_EQ(counts.size(), static_cast<size_t>(kInserters * kBatches * kRows));
  for (const auto& [key, count] : counts) ASSERT_EQ(count, 1);
  for (int a = 0; a < kInserters; ++a) {
    EXPECT_EQ(server->table()->LastSequenceNumber(100 + a), static_cast<uint64_t>(kBatches));
  }
}

TEST(ReplayServiceTest, ShardsSplitInsertsByActorAndSamplesComeFromAll) {
  std::unique_ptr<ReplayServer> shard0 = Start(ServerConfig());
  std::unique_ptr<ReplayServer> shard1 = Start(ServerConfig());
  ASSERT_NE(shard0, nullptr);
  ASSERT_NE(shard1, nullptr);
  const std::vector<std::string> shards = {shard0->address(), shard1->address()};
  for (uint64_t actor = 0; actor < 4; ++actor) {
    std::unique_ptr<ReplayInserter> inserter = NewInserter(shards, actor);
    EXPECT_EQ(inserter->address(), shards[actor % 2]);
    for (uint64_t i = 1; i <= 10; ++i) {
      ASSERT_TRUE(inserter->Insert(MakeBatch(actor, i, 32), kLong).ok());
    }
    ASSERT_TRUE(inserter->Flush(kLong).ok());
  }
  EXPECT_EQ(shard0->table()->LastSequenceNumber(0), 10u);
  EXPECT_EQ(shard0->table()->LastSequenceNumber(1), 0u);
  EXPECT_EQ(shard1->table()->LastSequenceNumber(1), 10u);
  EXPECT_EQ(shard0->table()->size(), 2 * 10 * 32);
  EXPECT_EQ(shard1->table()->size(), 2 * 10 * 32);
  std::unique_ptr<ReplaySampler> sampler = NewSampler(shards, 64, /*prefetch=*/2);
  // Both shards have filled their credit: 2 + 2 batches.
  const absl::Time deadline = absl::Now() + kLong;
  while (sampler->stats().received < 4 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  // Samples come from both shards in about equal shares (shard 0 holds actors 0 and 2). The
  // learner here takes a batch once both shards have refilled their credit (2 batches each), like
  // a learner slower than replay, however busy the machine is.
  std::set<uint64_t> actors;
  int from_shard0 = 0;
  constexpr int kBatches = 100;
  for (int i = 0; i < kBatches; ++i) {
    const absl::Time full_deadline = absl::Now() + kLong;
    while (absl::Now() < full_deadline) {
      const ReplaySampler::Stats stats = sampler->stats();
      if (stats.received - stats.returned >= 4) break;
      absl::SleepFor(absl::Milliseconds(1));
    }
    absl::StatusOr<SampledBatch> batch = sampler->Next(kLong);
    ASSERT_TRUE(batch.ok()) << batch.status();
    const uint64_t first_actor = std::get<0>(KeyOf(&batch->obs[0]));
    from_shard0 += first_actor % 2 == 0;
    for (int64_t r = 0; r < batch->rows; ++r) {
      const uint64_t actor = std::get<0>(KeyOf(&batch->obs[r * 11]));
      EXPECT_EQ(actor % 2, first_actor % 2);  // a batch comes from one shard
      actors.insert(actor);
    }
  }
  EXPECT_EQ(actors, (std::set<uint64_t>{0, 1, 2, 3}));
  EXPECT_GE(from_shard0, kBatches * 4 / 10);
  EXPECT_LE(from_shard0, kBatches * 6 / 10);
}

TEST(ReplayServiceTest, RateLimiterPacesInsertsToTheLearner) {
  ReplayServerConfig config = ServerConfig();
  // 4 sampled transitions per inserted one, a band of 256 transitions.
  config.table.rate_limiter = RateLimiterConfig::SampleToInsertRatio(4, /*min_size=*/64, 256);
  std::unique_ptr<ReplayServer> server = Start(config);
  ASSERT_NE(server, nullptr);
  std::unique_ptr<ReplayInserter> inserter = NewInserter({server->address()}, 1, 4);
  std::atomic<bool> stop{false};
  std::thread actor([&] {
    for (uint64_t i = 1; !stop.load(); ++i) {
      if (!inserter->Insert(MakeBatch(1, i, 16), absl::Milliseconds(100)).ok()) continue;
    }
  });
  std::unique_ptr<ReplaySampler> sampler = NewSampler({server->address()}, 64, 2);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(sampler->Next(kLong).ok());
  // The learner has stopped taking batches (the sampler holds at most its 2 prefetched), so the
  // actor, still inserting, must be held by the limiter: however the machine's load split the time
  // between the two threads above, the inserts end up waiting.
  proto::InfoResponse info;
  const absl::Time deadline = absl::Now() + kLong;
  do {
    absl::SleepFor(absl::Milliseconds(10));
    info = *GetReplayInfo(server->address(), kLong);
  } while (info.rate_limiter().insert_waits() == 0 && absl::Now() < deadline);
  EXPECT_GT(info.rate_limiter().insert_waits(), 0);
  stop.store(true);
  actor.join();
  inserter->Close();
  sampler->Close();
  info = *GetReplayInfo(server->address(), kLong);
  // Sampled/inserted stays near 4: within the band (plus one batch of overshoot each way).
  const double inserted = static_cast<double>(info.table().inserted_transitions());
  const double sampled = static_cast<double>(info.table().sampled_transitions());
  EXPECT_NEAR(inserted * 4 - sampled, 4 * 64, 256 + 4 * 16 + 64 + 1);
}

TEST(ReplayServiceTest, CheckpointNeedsADirectory) {
  std::unique_ptr<ReplayServer> server = Start(ServerConfig());
  ASSERT_NE(server, nullptr);
  absl::Status status = CheckpointReplay(server->address(), kLong).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("persistence directory"));
}

TEST(ReplayServiceTest, InserterResendsAcrossARestartAndNothingIsDuplicated) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "/replay_service_restart_", ::getpid());
  std::filesystem::remove_all(dir);
  ReplayServerConfig config = ServerConfig();
  config.persistence.directory = dir;
  std::unique_ptr<ReplayServer> server = Start(config);
  ASSERT_NE(server, nullptr);
  config.address = server->address();  // the restart reuses the port
  std::unique_ptr<ReplayInserter> inserter = NewInserter({server->address()}, 9, 16);
  for (uint64_t i = 1; i <= 30; ++i) ASSERT_TRUE(inserter->Insert(MakeBatch(9, i, 32), kLong).ok());
  ASSERT_TRUE(inserter->Flush(kLong).ok());
  server->Shutdown();
  server.reset();
  // Batches queued while replay is away go out after it is back.
  for (uint64_t i = 31; i <= 40; ++i) ASSERT_TRUE(inserter->Insert(MakeBatch(9, i, 32), kLong).ok());
  server = Start(config);
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(inserter->Flush(kLong).ok());
  EXPECT_GE(inserter->stats().connects, 2);
  std::map<RowKey, int> counts = CountRows(server->table()->Copy([] {}).store);
  EXPECT_EQ(counts.size(), 40u * 32);
  for (const auto& [key, count] : counts) ASSERT_EQ(count, 1);
  // One-shot calls right after the restart: gRPC may still hold the failed connection of the
  // down time for a moment (UNAVAILABLE at once), so retry within the deadline.
  auto checkpoint = WhileUnavailable([&] { return CheckpointReplay(server->address(), kLong); });
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_EQ(checkpoint->rows(), 40 * 32);
  EXPECT_TRUE(std::filesystem::exists(checkpoint->path()));
  auto info = WhileUnavailable([&] { return GetReplayInfo(server->address(), kLong); });
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_TRUE(info->persistence().enabled());
  EXPECT_EQ(info->persistence().recovered_transitions(), 30 * 32);
  server.reset();
  std::filesystem::remove_all(dir);
}

// What one client can make the server hold: a sampled batch larger than a message can carry is
// refused up front (before any rows are gathered), and the server keeps serving.
TEST(ReplayServiceTest, ASampleLargerThanAMessageIsRefusedNamingTheLimit) {
  ReplayServerConfig config = ServerConfig();
  config.max_message_bytes = 1 << 20;  // holds 1024-row inserts (~105 KB), not 20,000-row samples
  config.table.max_sample_rows = 65536;
  std::unique_ptr<ReplayServer> server = Start(config);
  ASSERT_NE(server, nullptr);
  std::unique_ptr<ReplayInserter> inserter = NewInserter({server->address()}, /*actor=*/1);
  for (uint64_t i = 1; i <= 4; ++i) ASSERT_TRUE(inserter->Insert(MakeBatch(1, i, 64), kLong).ok());
  ASSERT_TRUE(inserter->Flush(kLong).ok());

  auto stub = proto::ReplayService::NewStub(CreateChannel(server->address(), 64 << 20, GrpcSecurity()));
  auto sample = [&](int64_t rows, proto::SampleResponse* response) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + kLong));
    auto stream = stub->Sample(&context);
    proto::SampleRequest request;
    request.set_batch_size(rows);
    request.set_credit(1);
    stream->Write(request);
    stream->WritesDone();
    while (stream->Read(response)) {
    }
    return stream->Finish();
  };
  proto::SampleResponse response;
  const grpc::Status refused = sample(20000, &response);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << refused.error_message();
  EXPECT_THAT(refused.error_message(), HasSubstr("SampleRequest.batch_size: 20000 rows"));
  EXPECT_THAT(refused.error_message(), HasSubstr("max_message_bytes=1048576"));
  EXPECT_EQ(server->table()->Info().sampled_batches(), 0);
  const grpc::Status served = sample(256, &response);
  EXPECT_TRUE(served.ok()) << served.error_message();
  EXPECT_EQ(response.batch().reward().shape(0), 256);
}

// A client that sends batches but never reads its acks: the server stops reading its stream once
// max_pending_acks acks wait (gRPC flow control then holds the client), instead of queueing acks
// without bound; when the client reads, everything is stored and acknowledged once.
TEST(ReplayServiceTest, AClientThatDoesNotReadItsAcksIsHeldBack) {
  ReplayServerConfig config = ServerConfig();
  config.max_pending_acks = 16;
  std::unique_ptr<ReplayServer> server = Start(config);
  ASSERT_NE(server, nullptr);
  // A small receive window on the client, so that unread acks fill it quickly.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 1024);
  auto stub = proto::ReplayService::NewStub(
      grpc::CreateCustomChannel(server->address(), grpc::InsecureChannelCredentials(), args));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(120)));
  auto stream = stub->Insert(&context);
  proto::InsertRequest open;
  open.mutable_open()->set_actor_id(9);
  ASSERT_TRUE(stream->Write(open));
  proto::InsertResponse response;
  ASSERT_TRUE(stream->Read(&response));
  ASSERT_TRUE(response.has_opened());

  constexpr int kBatches = 20000;
  std::atomic<int> written{0};
  std::thread writer([&] {
    proto::InsertRequest request;
    for (int i = 1; i <= kBatches; ++i) {
      *request.mutable_batch() = MakeBatch(9, i, 1);
      if (!stream->Write(request)) return;
      ++written;
    }
    stream->WritesDone();
  });
  auto held = [&] {
    auto info = GetReplayInfo(server->address(), kLong);
    return info.ok() && info->service().ack_backpressure_waits() > 0;
  };
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (!held() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_TRUE(held()) << "the server read " << server->table()->Info().inserted_batches()
                      << " batches of a client that read no acks";
  EXPECT_LT(server->table()->Info().inserted_batches(), kBatches);

  // The client reads now: every batch is stored and acknowledged once, in order.
  int acked = 0;
  while (acked < kBatches && stream->Read(&response)) {
    for (const proto::InsertAck& ack : response.acks()) {
      EXPECT_EQ(ack.sequence_number(), static_cast<uint64_t>(acked + 1));
      EXPECT_FALSE(ack.duplicate());
      ++acked;
    }
  }
  writer.join();
  EXPECT_EQ(acked, kBatches);
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(server->table()->Info().inserted_batches(), kBatches);
}

}  // namespace
}  // namespace meow
