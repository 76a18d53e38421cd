// The one reconnect policy of every client (common/grpc_channel.h): the backoff schedule and when
// a channel is dialled again, against a real gRPC server on 127.0.0.1.
#include "common/grpc_channel.h"

#include <memory>
#include <string>

#include "common/grpc_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meow {
namespace {

using ::testing::HasSubstr;

TEST(BackoffTest, BoundsAreChecked) {
  EXPECT_TRUE(Backoff().Validate().ok());
  Backoff zero{absl::ZeroDuration(), absl::Seconds(1)};
  EXPECT_THAT(std::string(zero.Validate().message()), HasSubstr("expected 0 < initial <= max"));
  Backoff inverted{absl::Seconds(2), absl::Seconds(1)};
  EXPECT_FALSE(inverted.Validate().ok());
}

TEST(ReconnectTest, DoublesWithJitterUpToMaxAndStartsAgainAfterProgress) {
  Reconnect reconnect({absl::Milliseconds(50), absl::Milliseconds(300)}, /*seed=*/1);
  for (double bound_ms : {50.0, 100.0, 200.0, 300.0, 300.0}) {
    const double ms = absl::ToDoubleMilliseconds(reconnect.NextDelay());
    EXPECT_GE(ms, bound_ms / 2);
    EXPECT_LE(ms, bound_ms);
  }
  reconnect.Progress();
  EXPECT_LE(absl::ToDoubleMilliseconds(reconnect.NextDelay()), 50.0);
  // Two clients with different seeds do not retry in lockstep.
  Reconnect a({absl::Seconds(1), absl::Seconds(1)}, 1), b({absl::Seconds(1), absl::Seconds(1)}, 2);
  EXPECT_NE(a.NextDelay(), b.NextDelay());
}

TEST(RedialNeededTest, AfterUnavailableOrATimeoutOnAChannelThatIsNotConnected) {
  // A live server: its channel connects, and a timed-out call there keeps the channel.
  GrpcServerOptions options;
  options.what = "test server";
  options.address = "127.0.0.1:0";
  auto server = StartGrpcServer(options);  // health checking and reflection only
  ASSERT_TRUE(server.ok()) << server.status();
  auto live = CreateChannel(server->address, 1 << 20, GrpcSecurity());
  ASSERT_TRUE(live->WaitForConnected(absl::ToChronoTime(absl::Now() + absl::Seconds(30))));
  const grpc::Status deadline(grpc::StatusCode::DEADLINE_EXCEEDED, "deadline");
  EXPECT_FALSE(RedialNeeded(deadline, *live));
  EXPECT_TRUE(RedialNeeded(grpc::Status(grpc::StatusCode::UNAVAILABLE, "gone"), *live));
  EXPECT_FALSE(RedialNeeded(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad"), *live));
  EXPECT_FALSE(RedialNeeded(grpc::Status::OK, *live));
  // Nobody listens: the channel never connects, so a timed-out call dials again.
  server->server->Shutdown();
  auto dead = CreateChannel(server->address, 1 << 20, GrpcSecurity());
  EXPECT_FALSE(dead->WaitForConnected(absl::ToChronoTime(absl::Now() + absl::Milliseconds(200))));
  EXPECT_TRUE(RedialNeeded(deadline, *dead));
}

}  // namespace
}  // namespace meow
