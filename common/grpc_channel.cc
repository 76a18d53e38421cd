#include "common/grpc_channel.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace meow {

std::shared_ptr<grpc::Channel> CreateChannel(const std::string& address, int64_t max_message_bytes,
                                             const GrpcSecurity& security) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(static_cast<int>(max_message_bytes));
  args.SetMaxSendMessageSize(static_cast<int>(max_message_bytes));
  // Notice a dead peer within ~40 s even on a silent network.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  // Each client gets its own connection (gRPC would otherwise share one per target).
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // Reconnect within seconds after a replay restart (gRPC's default backoff grows to minutes).
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  // gRPC gives each connection attempt max(backoff, this) to complete (TCP, TLS, the server's
  // HTTP/2 SETTINGS). At 100 ms a busy server, a far network or a TLS handshake lost every attempt
  // ("timed out before receiving SETTINGS frame"); 20 s is gRPC's own default, kept explicit.
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 20000);
  return MakeChannel(address, security, args);
}

absl::Status Backoff::Validate() const {
  if (initial <= absl::ZeroDuration() || max < initial) {
    return absl::InvalidArgumentError(absl::StrCat("backoff: expected 0 < initial <= max, got initial=",
                                                   absl::FormatDuration(initial), ", max=", absl::FormatDuration(max)));
  }
  return absl::OkStatus();
}

Reconnect::Reconnect(const Backoff& backoff, uint64_t seed) : backoff_(backoff), next_(backoff.initial), rng_(seed) {}

absl::Duration Reconnect::NextDelay() {
  std::uniform_real_distribution<double> unit(0.5, 1.0);
  const absl::Duration delay = next_ * unit(rng_);
  next_ = std::min(next_ * 2, backoff_.max);
  return delay;
}

bool RetryableStreamEnd(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::UNKNOWN:
      return true;
    default:
      return false;
  }
}

bool RedialNeeded(const grpc::Status& status, grpc::Channel& channel) {
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      return true;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return channel.GetState(/*try_to_connect=*/false) != GRPC_CHANNEL_READY;
    default:
      return false;
  }
}

}  // namespace meow
