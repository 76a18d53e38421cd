// The one way every meow client dials a server (replay, learner) and reconnects to it.
//
// CreateChannel: its own connection, message limits as given, keepalive pings (so a dead server
// is noticed), gRPC's reconnect schedule set to find a restarted server within seconds, and the
// TLS and token settings given (grpc_security.h).
//
// After a failed call or stream every client follows one policy:
//   - it waits Reconnect::NextDelay() before trying again: uniformly in [d/2, d] so that clients
//     spread out, d starting at Backoff::initial and doubling with each failure in a row up to
//     Backoff::max, back to initial once a connection made progress (Reconnect::Progress);
//   - a stream that ended with a status RetryableStreamEnd accepts is opened again (the others,
//     e.g. INVALID_ARGUMENT or UNAUTHENTICATED, are the caller's to report);
//   - it replaces the channel when RedialNeeded: after UNAVAILABLE, or after DEADLINE_EXCEEDED on
//     a channel that is not connected (a gRPC channel that failed to connect can stay in
//     TRANSIENT_FAILURE for seconds after the server is back; a connected one is kept, so a
//     stream that simply reached its deadline does not pay for a new handshake).
// Thread-safe: CreateChannel, RetryableStreamEnd and RedialNeeded; a Reconnect is used by one thread.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/grpc_security.h"
#include "grpcpp/grpcpp.h"

namespace meow {

std::shared_ptr<grpc::Channel> CreateChannel(const std::string& address, int64_t max_message_bytes,
                                             const GrpcSecurity& security);

// The reconnection schedule's bounds.
struct Backoff {
  absl::Duration initial = absl::Milliseconds(50);
  absl::Duration max = absl::Seconds(5);
  // InvalidArgument unless 0 < initial <= max.
  absl::Status Validate() const;
};

class Reconnect {
 public:
  Reconnect(const Backoff& backoff, uint64_t seed);
  // The pause before the next attempt; the one after it is twice as long (up to max).
  absl::Duration NextDelay();
  // The connection got somewhere: the next pause starts from initial again.
  void Progress() { next_ = backoff_.initial; }

 private:
  Backoff backoff_;
  absl::Duration next_;
  std::mt19937_64 rng_;
};

// Whether a stream that ended with `code` is worth opening again: the server is away or
// restarting, a deadline passed, the stream was superseded, or it ended without an error.
bool RetryableStreamEnd(grpc::StatusCode code);

// Whether a client should replace `channel` after a call or stream ended with `status`.
bool RedialNeeded(const grpc::Status& status, grpc::Channel& channel);

}  // namespace meow
