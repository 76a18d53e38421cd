// The learner's ParameterService (proto/parameters.proto): versioned policy weights for actors
// and evaluators. GetParameters(min_version) answers the newest weights when their version is at
// least min_version, else not_newer; WatchParameters streams each newer version as it appears.
//
// ParameterStore holds the newest published version as one immutable, pre-encoded response that
// every reader shares: publishing encodes the weights once, and each answer copies that encoded
// message into its reply (about 0.7 MB for Hopper-v4) without encoding anything again.
// Versions must increase (across learner restarts too: the learner resumes its counter from its
// checkpoint). Each store draws a random non-zero incarnation id that every answer carries, so a
// client that last saw another incarnation (a learner restarted without its run dir, whose
// versions start again at 1) gets the newest weights instead of waiting for a version that may
// never come. Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/grpc_security.h"
#include "common/grpc_server.h"
#include "common/rpc_metrics.h"
#include "common/safetensors.h"
#include "grpcpp/grpcpp.h"
#include "learner/learner_service.h"
#include "proto/parameters.grpc.pb.h"

namespace meow {

class ParameterStore {
 public:
  ParameterStore();
  // Publishes `weights` (float32 tensors under the reference names) as `version`.
  // InvalidArgument for a non-float32 tensor; FailedPrecondition when `version` is not above the
  // current one.
  absl::Status Publish(int64_t version, const SafetensorsFile& weights) ABSL_LOCKS_EXCLUDED(mu_);
  // The newest response, or null before the first Publish.
  std::shared_ptr<const proto::GetParametersResponse> Latest() const ABSL_LOCKS_EXCLUDED(mu_);
  // Blocks until a version >= min_version is published (returned), the deadline passes or the
  // store is closed (null).
  std::shared_ptr<const proto::GetParametersResponse> WaitFor(int64_t min_version, absl::Time deadline)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Wakes every waiter; later waits return at once.
  void Close() ABSL_LOCKS_EXCLUDED(mu_);
  int64_t version() const ABSL_LOCKS_EXCLUDED(mu_);  // 0 before the first Publish
  bool closed() const ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t incarnation() const { return incarnation_; }

 private:
  const uint64_t incarnation_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const proto::GetParametersResponse> latest_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

// The gRPC service: validates requests and delegates to the store.
class ParameterServiceImpl final : public proto::ParameterService::Service {
 public:
  ParameterServiceImpl(ParameterStore* store, std::string token) : store_(store), token_(std::move(token)) {}
  grpc::Status GetParameters(grpc::ServerContext* context, const proto::GetParametersRequest* request,
                             proto::GetParametersResponse* response) override;
  grpc::Status WatchParameters(grpc::ServerContext* context, const proto::GetParametersRequest* request,
                               grpc::ServerWriter<proto::GetParametersResponse>* writer) override;

 private:
  ParameterStore* store_;  // not owned
  const std::string token_;
};

struct ParameterServerConfig {
  std::string address = "127.0.0.1:0";    // host:port; port 0 picks a free one
  int64_t max_message_bytes = 256 << 20;  // Humanoid-size weights are about 2 MB
  GrpcSecurity security;                  // TLS and token; default: plaintext, no token
  // Where its RPCs are counted (e.g. shared with the process's replay server); null: its own.
  std::shared_ptr<RpcMetrics> rpc_metrics;
  // The tensor names and shapes an evaluation's weights must have (the policy's); empty: reports
  // with weights are refused.
  WeightShapes evaluated_weight_shapes;
  absl::Status Validate() const;
};

// A running learner server: ParameterService with its store, LearnerService with its board,
// health checking and reflection. Thread-safe.
class ParameterServer {
 public:
  ~ParameterServer();  // Shutdown()
  ParameterStore* store() { return &store_; }
  TrainingBoard* board() { return &board_; }
  int port() const { return grpc_.port; }
  const std::string& address() const { return grpc_.address; }  // host:port for clients
  RpcMetrics& rpc_metrics() { return *grpc_.rpc_metrics; }
  // Closes the store (watchers end), marks health NOT_SERVING and stops. Idempotent.
  void Shutdown(absl::Duration grace = absl::Milliseconds(500));

 private:
  friend absl::StatusOr<std::unique_ptr<ParameterServer>> StartParameterServer(const ParameterServerConfig& config);
  ParameterServer(const std::string& token, WeightShapes weight_shapes)
      : service_(&store_, token),
        learner_service_(&board_, token, std::move(weight_shapes), [this] { return store_.version(); }) {}

  ParameterStore store_;
  ParameterServiceImpl service_;
  TrainingBoard board_;
  LearnerServiceImpl learner_service_;
  GrpcServerHandle grpc_;  // the gRPC server, its port and address, its RPC counts
  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

absl::StatusOr<std::unique_ptr<ParameterServer>> StartParameterServer(const ParameterServerConfig& config);

}  // namespace meow
