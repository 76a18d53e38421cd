// TLS and the bearer token on the real servers (replay, and the learner's ParameterService and
// LearnerService) over 127.0.0.1: a client with the right token over TLS gets through; one
// without the token, with a wrong token, or without TLS against a TLS server does not, and its
// data is not stored. Certificates are made for the test with openssl. Label: integration.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "actor/parameter_client.h"
#include "common/grpc_security.h"
#include "common/tensor_codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "learner/parameter_server.h"
#include "replay/replay_client.h"
#include "replay/replay_server.h"

namespace meow {
namespace {

// How long a call may take to be answered (refused or not): generous, since TLS handshakes on a
// loaded 2-core machine can take seconds.
constexpr absl::Duration kAnswer = absl::Seconds(60);

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class GrpcSecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "/grpc_security_", getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    const std::string command = absl::StrCat(
        "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=meow-test -addext "
        "subjectAltName=IP:127.0.0.1,DNS:meow-replay -keyout ",
        dir_, "/key.pem -out ", dir_, "/cert.pem 2>/dev/null");
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
    std::ofstream(dir_ + "/token") << "s3cret-token\n";
    std::ofstream(dir_ + "/wrong") << "not-the-token\n";
    auto server_side = LoadGrpcSecurity(dir_ + "/cert.pem", dir_ + "/key.pem", "", dir_ + "/token", "");
    ASSERT_TRUE(server_side.ok()) << server_side.status();
    server_ = *server_side;
    EXPECT_EQ(server_.token, "s3cret-token");  // surrounding whitespace dropped

    ReplayServerConfig replay_config;
    replay_config.table.obs_dim = 2;
    replay_config.table.action_dim = 2;
    replay_config.security = server_;
    auto replay = StartReplayServer(replay_config);
    ASSERT_TRUE(replay.ok()) << replay.status();
    replay_ = *std::move(replay);
    ParameterServerConfig parameter_config;
    parameter_config.security = server_;
    auto learner = StartParameterServer(parameter_config);
    ASSERT_TRUE(learner.ok()) << learner.status();
    learner_ = *std::move(learner);
  }
  void TearDown() override {
    replay_.reset();
    learner_.reset();
    fs::remove_all(dir_);
  }

  // The client settings the calls below pass in: TLS with the test CA, and the given token file.
  void UseClient(const std::string& token_file, bool tls = true) {
    auto client = LoadGrpcSecurity("", "", tls ? dir_ + "/cert.pem" : "", token_file, "");
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *client;
  }

  // One batch through a raw Insert stream; the stream's final status.
  grpc::Status InsertOneBatch() {
    auto stub = proto::ReplayService::NewStub(CreateChannel(replay_->address(), 64 << 20, client_));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    auto stream = stub->Insert(&context);
    proto::InsertRequest open;
    open.mutable_open()->set_actor_id(7);
    stream->Write(open);
    proto::InsertRequest request;
    *request.mutable_batch() = MakeTransitionBatch(2, 2, {0, 0}, {0.5f, 0.5f}, {1}, {0, 0}, {0}, 0);
    request.mutable_batch()->set_actor_id(7);
    request.mutable_batch()->set_sequence_number(1);
    stream->Write(request);
    stream->WritesDone();
    proto::InsertResponse response;
    while (stream->Read(&response)) {
    }
    return stream->Finish();
  }

  std::string dir_;
  GrpcSecurity server_;
  GrpcSecurity client_;
  std::unique_ptr<ReplayServer> replay_;
  std::unique_ptr<ParameterServer> learner_;
};

TEST_F(GrpcSecurityTest, TheRightTokenOverTlsGetsThrough) {
  UseClient(dir_ + "/token");
  auto info = GetReplayInfo(replay_->address(), kAnswer, client_);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_TRUE(InsertOneBatch().ok());
  EXPECT_EQ(replay_->table()->Info().size(), 1);
  ParameterClient client(learner_->address(), client_);
  auto weights = client.Get(0, kAnswer);
  EXPECT_TRUE(weights.ok()) << weights.status();
  EXPECT_TRUE(client.Report(proto::ReportRequest(), kAnswer).ok());
}

TEST_F(GrpcSecurityTest, NoTokenOrAWrongTokenIsUnauthenticatedAndStoresNothing) {
  for (const std::string& token_file : {std::string(), dir_ + "/wrong"}) {
    SCOPED_TRACE(token_file.empty() ? "no token" : "wrong token");
    UseClient(token_file);
    auto info = GetReplayInfo(replay_->address(), kAnswer, client_);
    EXPECT_EQ(info.status().code(), absl::StatusCode::kUnauthenticated) << info.status();
    EXPECT_THAT(std::string(info.status().message()),
                HasSubstr(token_file.empty() ? "requires a bearer token" : "wrong bearer token"));
    const grpc::Status insert = InsertOneBatch();
    EXPECT_EQ(insert.error_code(), grpc::StatusCode::UNAUTHENTICATED) << insert.error_message();
    EXPECT_EQ(replay_->table()->Info().size(), 0);
    EXPECT_EQ(replay_->table()->Info().actors(), 0);
    ParameterClient client(learner_->address(), client_);
    EXPECT_EQ(client.Get(0, kAnswer).status().code(), absl::StatusCode::kUnauthenticated);
    proto::ReportRequest report;
    proto::Episode* e = report.add_episodes();
    e->set_episode_return(1);
    e->set_length(1);
    EXPECT_EQ(client.Report(report, kAnswer).status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_TRUE(learner_->board()->TakeEpisodes().empty());
  }
}

TEST_F(GrpcSecurityTest, APlaintextClientCannotTalkToATlsServer) {
  UseClient(dir_ + "/token", /*tls=*/false);
  auto info = GetReplayInfo(replay_->address(), kAnswer, client_);
  EXPECT_EQ(info.status().code(), absl::StatusCode::kUnavailable) << info.status();
  EXPECT_EQ(InsertOneBatch().error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(replay_->table()->Info().size(), 0);
}

TEST_F(GrpcSecurityTest, BadSettingsNameTheFlagOrFile) {
  auto half = LoadGrpcSecurity(dir_ + "/cert.pem", "", "", "", "");
  EXPECT_THAT(std::string(half.status().message()), HasSubstr("--tls_cert and --tls_key go together"));
  auto not_pem = LoadGrpcSecurity("", "", dir_ + "/token", "", "");
  EXPECT_THAT(std::string(not_pem.status().message()), HasSubstr("--tls_ca=" + dir_ + "/token: not a PEM file"));
  std::ofstream(dir_ + "/empty") << "  \n";
  auto empty = LoadGrpcSecurity("", "", "", dir_ + "/empty", "");
  EXPECT_THAT(std::string(empty.status().message()), HasSubstr("is empty"));
  auto missing = LoadGrpcSecurity("", "", "", dir_ + "/absent", "");
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("--auth_token_file=" + dir_ + "/absent"));
}

}  // namespace
}  // namespace meow
