#include "replay/replay_server.h"

#include <csignal>
#include <iostream>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/address.h"
#include "common/grpc_server.h"
#include "common/rpc_metrics.h"
#include "grpcpp/health_check_service_interface.h"

namespace meow {
namespace {

constexpr char kServiceName[] = "meow.proto.ReplayService";

}  // namespace

absl::Status ReplayServerConfig::Validate() const {
  if (absl::Status s = ValidateAddress("address", address); !s.ok()) return s;
  if (absl::Status s = table.Validate(); !s.ok()) return s;
  if (absl::Status s = persistence.Validate(); !s.ok()) return s;
  if (insert_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("insert_timeout: expected > 0, got ", absl::FormatDuration(insert_timeout)));
  }
  if (max_pending_acks < 1) {
    return absl::InvalidArgumentError(absl::StrCat("max_pending_acks: expected >= 1, got ", max_pending_acks));
  }
  if (max_message_bytes > std::numeric_limits<int>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_message_bytes: expected <= ", std::numeric_limits<int>::max(), ", got ", max_message_bytes));
  }
  // A batch of max_batch_rows rows must fit into one message.
  const int64_t row_bytes = 4 * (2 * int64_t{table.obs_dim} + table.action_dim + 1) + 1;
  const int64_t needed = table.max_batch_rows * row_bytes + 4096;
  if (max_message_bytes < needed) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_message_bytes: ", max_message_bytes, " cannot hold a batch of table.max_batch_rows=", table.max_batch_rows,
        " rows (", needed, " bytes)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ReplayServer>> StartReplayServer(const ReplayServerConfig& config) {
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  std::unique_ptr<ReplayServer> server(new ReplayServer());
  server->config_ = config;
  absl::StatusOr<std::unique_ptr<Table>> table = Table::Create(config.table);
  if (!table.ok()) return table.status();
  server->table_ = *std::move(table);
  if (!config.persistence.directory.empty()) {
    absl::StatusOr<std::unique_ptr<Persistence>> persistence =
        Persistence::Open(config.persistence, server->table_.get());
    if (!persistence.ok()) return persistence.status();
    server->persistence_ = *std::move(persistence);
  }
  ReplayServiceOptions options;
  options.insert_timeout = config.insert_timeout;
  options.token = config.security.token;
  options.max_message_bytes = config.max_message_bytes;
  options.max_pending_acks = config.max_pending_acks;
  server->service_ = std::make_unique<ReplayServiceImpl>(server->table_.get(), server->persistence_.get(), options);

  GrpcServerOptions server_options;
  server_options.what = "replay";
  server_options.address = config.address;
  server_options.security = config.security;
  server_options.rpc_metrics = config.rpc_metrics;
  server_options.services = {server->service_.get()};
  server_options.health_names = {kServiceName};
  server_options.max_send_bytes = config.max_message_bytes;
  server_options.max_receive_bytes = config.max_message_bytes;
  // The stream of an actor whose host vanished (no RST) ends within ~40 s and its id is free for
  // the restarted actor (see Table::OpenSession).
  server_options.ping_clients = true;
  auto started = StartGrpcServer(server_options);
  if (!started.ok()) return started.status();
  server->grpc_ = *std::move(started);
  return server;
}

ReplayServer::~ReplayServer() { Shutdown(); }

void ReplayServer::Shutdown(absl::Duration grace) {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  if (grpc_.server != nullptr) MarkNotServing(*grpc_.server);
  // Wake blocked inserts and samples; then let the calls end.
  if (table_ != nullptr) table_->Close();
  if (service_ != nullptr) service_->Shutdown();
  if (grpc_.server != nullptr) StopGrpcServer(*grpc_.server, grace);
  if (persistence_ != nullptr) {
    if (config_.snapshot_on_shutdown) {
      absl::StatusOr<proto::CheckpointResponse> snapshot = persistence_->Snapshot();
      if (!snapshot.ok()) {
        std::cerr << "[replay] final snapshot failed: " << snapshot.status().message() << std::endl;
      }
    }
    persistence_->Stop();
  }
}

namespace {

volatile std::sig_atomic_t stop_signal = 0;
void OnStopSignal(int signal) { stop_signal = signal; }

}  // namespace

absl::Status RunReplay(const ReplayServerConfig& config) {
  absl::StatusOr<std::unique_ptr<ReplayServer>> server = StartReplayServer(config);
  if (!server.ok()) return server.status();
  std::cerr << "[replay] serving on " << (*server)->address() << " (capacity " << config.table.capacity << ", obs_dim "
            << config.table.obs_dim << ", action_dim " << config.table.action_dim << ", "
            << (config.persistence.directory.empty() ? std::string("memory only")
                                                     : absl::StrCat("directory ", config.persistence.directory))
            << ")" << std::endl;
  std::unique_ptr<MetricsHttpServer> metrics;
  if (!config.metrics_address.empty()) {
    ReplayServer* raw = server->get();
    auto started = MetricsHttpServer::Start(config.metrics_address, [raw] {
      proto::InfoResponse info;
      *info.mutable_table() = raw->table()->Info();
      *info.mutable_rate_limiter() = raw->table()->RateLimiterState();
      if (raw->persistence() != nullptr) *info.mutable_persistence() = raw->persistence()->Info();
      PrometheusText text;
      AppendProtoNumbers(text, "replay", info);
      raw->rpc_metrics().AppendTo(text);
      return text.text();
    });
    if (!started.ok()) return started.status();
    metrics = *std::move(started);
  }
  stop_signal = 0;
  struct sigaction action = {};
  action.sa_handler = OnStopSignal;
  sigemptyset(&action.sa_mask);
  struct sigaction old_int = {}, old_term = {};
  sigaction(SIGINT, &action, &old_int);
  sigaction(SIGTERM, &action, &old_term);
  while (stop_signal == 0) absl::SleepFor(absl::Milliseconds(100));
  std::cerr << "[replay] signal " << stop_signal << ": shutting down" << std::endl;
  (*server)->Shutdown();
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  return absl::OkStatus();
}

}  // namespace meow
