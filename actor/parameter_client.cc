#include "actor/parameter_client.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/grpc_channel.h"
#include "common/grpc_status.h"
#include "common/tensor_codec.h"

namespace meow {

ParameterClient::ParameterClient(std::string address, GrpcSecurity security, int64_t max_message_bytes)
    : address_(std::move(address)), security_(std::move(security)), max_message_bytes_(max_message_bytes) {}

std::shared_ptr<grpc::Channel> ParameterClient::ChannelLocked() {
  if (channel_ == nullptr) {
    channel_ = CreateChannel(address_, max_message_bytes_, security_);
    stub_ = proto::ParameterService::NewStub(channel_);
    learner_stub_ = proto::LearnerService::NewStub(channel_);
  }
  return channel_;
}

void ParameterClient::FailedLocked(const grpc::Status& status) {
  // A fresh channel for the next call (grpc_channel.h): the learner may come back at the same
  // address.
  if (channel_ != nullptr && RedialNeeded(status, *channel_)) {
    channel_.reset();
    stub_.reset();
    learner_stub_.reset();
  }
}

absl::StatusOr<std::optional<PolicyWeights>> ParameterClient::Get(int64_t min_version, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  ChannelLocked();
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  proto::GetParametersRequest request;
  request.set_min_version(min_version);
  request.set_incarnation(incarnation_);
  proto::GetParametersResponse response;
  const grpc::Status status = stub_->GetParameters(&context, request, &response);
  if (!status.ok()) {
    FailedLocked(status);
    const absl::Status s = FromGrpcStatus(status);
    return absl::Status(s.code(), absl::StrCat("parameter server ", address_, ": ", s.message()));
  }
  if (response.not_newer()) return std::nullopt;
  auto weights = DecodePolicyWeights(response);
  if (!weights.ok()) return weights.status();
  // Adopted only with weights: while a new learner has published nothing, the old incarnation
  // keeps telling it that min_version does not count.
  incarnation_ = weights->incarnation;
  return std::optional<PolicyWeights>(*std::move(weights));
}

absl::StatusOr<proto::ReportResponse> ParameterClient::Report(const proto::ReportRequest& request,
                                                              absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  ChannelLocked();
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  proto::ReportResponse response;
  const grpc::Status status = learner_stub_->Report(&context, request, &response);
  if (!status.ok()) {
    FailedLocked(status);
    const absl::Status s = FromGrpcStatus(status);
    return absl::Status(s.code(), absl::StrCat("learner ", address_, ": ", s.message()));
  }
  return response;
}

}  // namespace meow
