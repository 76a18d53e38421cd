// The actor's side of the ParameterService: fetches versioned policy weights from the learner.
// Every call has a deadline; after a failure the next call dials a fresh channel when the
// reconnect policy of grpc_channel.h says so (RedialNeeded), so a restarted learner is picked up
// by the next fetch. Its callers retry on their own schedule (the actor's refresh interval). Thread-safe (calls are
// serialised).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/grpc_security.h"
#include "common/safetensors.h"
#include "common/weights_codec.h"
#include "grpcpp/grpcpp.h"
#include "proto/learner.grpc.pb.h"
#include "proto/parameters.grpc.pb.h"

namespace meow {

class ParameterClient {
 public:
  // `security`: TLS and token (grpc_security.h; the default is plaintext without a token).
  explicit ParameterClient(std::string address, GrpcSecurity security = {}, int64_t max_message_bytes = 256 << 20);

  // The newest weights when their version is >= min_version; nullopt when the server has nothing
  // newer. min_version counts in the learner incarnation of the last weights this client
  // received: a different learner (restarted without its run dir, counting from 1 again) answers
  // its newest weights whatever their version. UNAVAILABLE / DEADLINE_EXCEEDED when the learner cannot be reached in
  // `timeout`; InvalidArgument (naming the tensor) for a malformed response.
  absl::StatusOr<std::optional<PolicyWeights>> Get(int64_t min_version, absl::Duration timeout)
      ABSL_LOCKS_EXCLUDED(mu_);
  // One LearnerService.Report call (finished episodes, an evaluation); the answer carries the
  // learner's progress and whether training is over. Errors as for Get.
  absl::StatusOr<proto::ReportResponse> Report(const proto::ReportRequest& request, absl::Duration timeout)
      ABSL_LOCKS_EXCLUDED(mu_);
  const std::string& address() const { return address_; }

 private:
  // The channel, dialled again after a failure that RedialNeeded names.
  std::shared_ptr<grpc::Channel> ChannelLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FailedLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::string address_;
  GrpcSecurity security_;
  int64_t max_message_bytes_;
  absl::Mutex mu_;
  std::shared_ptr<grpc::Channel> channel_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<proto::ParameterService::Stub> stub_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<proto::LearnerService::Stub> learner_stub_ ABSL_GUARDED_BY(mu_);
  uint64_t incarnation_ ABSL_GUARDED_BY(mu_) = 0;  // of the last weights received
};

}  // namespace meow
