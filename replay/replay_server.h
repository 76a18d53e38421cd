// A replay server process's core: one table, optional persistence, the ReplayService, gRPC health
// checking (grpc.health.v1) and server reflection. `meow replay` turns its flags into a
// ReplayServerConfig and calls RunReplay; tests and the local trainer call StartReplayServer.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/grpc_security.h"
#include "common/grpc_server.h"
#include "common/rpc_metrics.h"
#include "grpcpp/grpcpp.h"
#include "proto/replay.pb.h"
#include "replay/persistence.h"
#include "replay/replay_service.h"
#include "replay/table.h"

namespace meow {

struct ReplayServerConfig {
  // host:port to listen on; port 0 picks a free one (see ReplayServer::port()).
  std::string address = "127.0.0.1:0";
  TableConfig table;
  PersistenceConfig persistence;  // directory empty: memory only
  // How long an insert may wait for the rate limiter before its stream ends with
  // DEADLINE_EXCEEDED (the client then resends).
  absl::Duration insert_timeout = absl::Seconds(60);
  // Largest gRPC message either way; larger inserts fail with RESOURCE_EXHAUSTED.
  int64_t max_message_bytes = 64 << 20;
  // Unread acknowledgements per insert stream before the server stops reading it.
  int max_pending_acks = 1024;
  bool snapshot_on_shutdown = true;  // when persistence is on
  GrpcSecurity security;             // TLS and token; default: plaintext, no token
  // Where its RPCs are counted (e.g. shared with other servers of the process); null: its own.
  std::shared_ptr<RpcMetrics> rpc_metrics;
  // RunReplay: host:port of the Prometheus metrics page (/metrics, /healthz); empty: none.
  std::string metrics_address;

  absl::Status Validate() const;
};

// A running replay server: owns its table, persistence (if any), service and gRPC server. Shut
// down once (destruction shuts down too). Thread-safe.
class ReplayServer {
 public:
  ~ReplayServer();  // Shutdown()
  ReplayServer(const ReplayServer&) = delete;
  ReplayServer& operator=(const ReplayServer&) = delete;

  int port() const { return grpc_.port; }
  // "host:port" with the bound port, for clients.
  const std::string& address() const { return grpc_.address; }
  Table* table() { return table_.get(); }
  Persistence* persistence() { return persistence_.get(); }  // null without a directory
  RpcMetrics& rpc_metrics() { return *grpc_.rpc_metrics; }

  // Stops serving: marks health NOT_SERVING, wakes blocked calls (CANCELLED), gives running calls
  // up to `grace` to end, then writes a final snapshot (if configured). Idempotent.
  void Shutdown(absl::Duration grace = absl::Milliseconds(500));

 private:
  friend absl::StatusOr<std::unique_ptr<ReplayServer>> StartReplayServer(const ReplayServerConfig& config);
  ReplayServer() = default;

  ReplayServerConfig config_;
  std::unique_ptr<Table> table_;
  std::unique_ptr<Persistence> persistence_;  // may be null
  std::unique_ptr<ReplayServiceImpl> service_;
  GrpcServerHandle grpc_;  // the gRPC server, its port and address, its RPC counts
  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

// Validates `config`, recovers the table from its directory (if any) and starts serving.
absl::StatusOr<std::unique_ptr<ReplayServer>> StartReplayServer(const ReplayServerConfig& config);

// Runs a replay server until SIGINT or SIGTERM, then shuts it down cleanly (final snapshot).
// For `meow replay`; installs its own handlers for those two signals while it runs.
absl::Status RunReplay(const ReplayServerConfig& config);

}  // namespace meow
