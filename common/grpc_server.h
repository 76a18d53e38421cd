// The one server bootstrap of meow's gRPC servers (replay, the learner's parameter server): the
// services on a listening port that is not shared with another process (no SO_REUSEPORT), TLS
// and token from the given security settings, the RPC-metrics interceptor counting into the given
// registry, health checking with
// each service SERVING and server reflection, message limits and keepalive.
// Thread-safe: StartGrpcServer may be called from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/grpc_security.h"
#include "grpcpp/grpcpp.h"

namespace meow {

class RpcMetrics;  // common/rpc_metrics.h

struct GrpcServerOptions {
  std::string what;     // names the server in errors: "replay", "parameter server"
  std::string address;  // host:port; port 0 picks a free one
  GrpcSecurity security;
  // Where the server's RPCs are counted (shared with the owner's metrics page); null: a registry
  // of its own, in GrpcServerHandle::rpc_metrics.
  std::shared_ptr<RpcMetrics> rpc_metrics;
  std::vector<grpc::Service*> services;   // not owned; outlive the server
  std::vector<std::string> health_names;  // full service names reported SERVING
  int64_t max_send_bytes = 4 << 20;
  int64_t max_receive_bytes = 0;  // 0: gRPC's default (4 MiB)
  // Ping clients every 30 s (timeout 10 s), so the stream of a client whose host vanished ends
  // within ~40 s. Clients' own pings (every 30 s) are always allowed.
  bool ping_clients = false;
};

struct GrpcServerHandle {
  std::unique_ptr<grpc::Server> server;
  int port = 0;                             // the bound port
  std::string address;                      // host:port for clients (0.0.0.0 and [::] become 127.0.0.1)
  std::shared_ptr<RpcMetrics> rpc_metrics;  // never null
};

// UNAVAILABLE "<what> cannot listen on <address> (...)" when the port cannot be bound.
absl::StatusOr<GrpcServerHandle> StartGrpcServer(const GrpcServerOptions& options);

// The one shutdown of such a server, in two steps so that its owner can wake its own blocked calls
// in between: MarkNotServing reports NOT_SERVING for every service (probes and load balancers stop
// sending) and ignores later status changes; StopGrpcServer gives the calls still running `grace`
// to end, cancels the rest and waits until the server has stopped.
void MarkNotServing(grpc::Server& server);
void StopGrpcServer(grpc::Server& server, absl::Duration grace);

}  // namespace meow
