#include "common/grpc_server.h"

#include "absl/strings/str_cat.h"
#include "common/rpc_metrics.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"

namespace meow {

absl::StatusOr<GrpcServerHandle> StartGrpcServer(const GrpcServerOptions& options) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  GrpcServerHandle handle;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.address, MakeServerCredentials(options.security), &handle.port);
  // A port already taken is an error, not shared with another process (gRPC's default SO_REUSEPORT).
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  handle.rpc_metrics = options.rpc_metrics != nullptr ? options.rpc_metrics : std::make_shared<RpcMetrics>();
  builder.experimental().SetInterceptorCreators(RpcMetricsInterceptors(handle.rpc_metrics));
  for (grpc::Service* service : options.services) builder.RegisterService(service);
  builder.SetMaxSendMessageSize(static_cast<int>(options.max_send_bytes));
  if (options.max_receive_bytes > 0) builder.SetMaxReceiveMessageSize(static_cast<int>(options.max_receive_bytes));
  // Clients send keepalive pings every 30 s to notice a dead server; allow them.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  if (options.ping_clients) {
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  }
  handle.server = builder.BuildAndStart();
  if (handle.server == nullptr || handle.port == 0) {
    return absl::UnavailableError(
        absl::StrCat(options.what, " cannot listen on ", options.address, " (address in use or not local?)"));
  }
  const std::string host = options.address.substr(0, options.address.rfind(':'));
  handle.address = absl::StrCat(host == "0.0.0.0" || host == "[::]" ? "127.0.0.1" : host, ":", handle.port);
  if (grpc::HealthCheckServiceInterface* health = handle.server->GetHealthCheckService()) {
    health->SetServingStatus(true);
    for (const std::string& name : options.health_names) health->SetServingStatus(name, true);
  }
  return handle;
}

void MarkNotServing(grpc::Server& server) {
  if (grpc::HealthCheckServiceInterface* health = server.GetHealthCheckService()) health->Shutdown();
}

void StopGrpcServer(grpc::Server& server, absl::Duration grace) {
  server.Shutdown(absl::ToChronoTime(absl::Now() + grace));
  server.Wait();
}

}  // namespace meow
