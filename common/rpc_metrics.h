// Counts of the RPCs gRPC servers answered, by method and status code, kept by a server
// interceptor every server installs into the registry it is given (a process that serves a
// metrics page makes one and hands it to its servers and its page); and the numeric fields of a
// status message (e.g. replay's InfoResponse) as Prometheus gauges. Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/metrics_http.h"
#include "google/protobuf/message.h"
#include "grpcpp/support/server_interceptor.h"

namespace meow {

class RpcMetrics {
 public:
  void Record(const std::string& method, int code) ABSL_LOCKS_EXCLUDED(mu_);
  // (method, status code name) -> calls.
  std::map<std::pair<std::string, std::string>, int64_t> Snapshot() const ABSL_LOCKS_EXCLUDED(mu_);
  // meow_rpc_total{method,code} and meow_rpc_errors_total{method}.
  void AppendTo(PrometheusText& text) const;

 private:
  mutable absl::Mutex mu_;
  std::map<std::pair<std::string, int>, int64_t> counts_ ABSL_GUARDED_BY(mu_);
};

// For ServerBuilder::experimental().SetInterceptorCreators: counts every RPC into `metrics`, which
// the interceptors share (it outlives the server).
std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> RpcMetricsInterceptors(
    std::shared_ptr<RpcMetrics> metrics);

// Every numeric and bool field of `message` (nested messages flattened with '_') as a gauge
// named meow_<prefix>_<field>.
void AppendProtoNumbers(PrometheusText& text, const std::string& prefix, const google::protobuf::Message& message);

}  // namespace meow
