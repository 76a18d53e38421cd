#include "actor/parameter_client.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "replay/grpc_status.h"
#include "replay/replay_client.h"
#include "replay/tensor_codec.h"

namespace meow {

ParameterClient::ParameterClient(std::string address, int64_t max_message_bytes)
    : address_(std::move(address)), max_message_bytes_(max_message_bytes) {}

std::shared_ptr<grpc::Channel> ParameterClient::ChannelLocked() {
  if (channel_ == nullptr) {
    channel_ = CreateReplayChannel(address_, max_message_bytes_);
    stub_ = proto::ParameterService::NewStub(channel_);
    learner_stub_ = proto::LearnerService::NewStub(channel_);
  }
  return channel_;
}

void ParameterClient::FailedLocked(const grpc::Status& status) {
  // A fresh channel for the next call: the learner may come back at the same address.
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE ||
      status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    channel_.reset();
    stub_.reset();
    learner_stub_.reset();
  }
}

absl::StatusOr<std::optional<PolicyWeights>> ParameterClient::Get(int64_t min_version,
                                                                  absl::Duration timeout) {
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

absl::StatusOr<PolicyWeights> DecodePolicyWeights(const proto::GetParametersResponse& response) {
  PolicyWeights out;
  out.version = response.version();
  out.incarnation = response.incarnation();
  if (out.version <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("GetParametersResponse.version must be > 0, got ", out.version));
  }
  auto weights = DecodeNamedTensors(response.tensors(), "GetParametersResponse.tensors");
  if (!weights.ok()) return weights.status();
  out.weights = *std::move(weights);
  return out;
}

absl::StatusOr<SafetensorsFile> DecodeNamedTensors(
    const google::protobuf::RepeatedPtrField<proto::NamedTensor>& tensors, const std::string& prefix) {
  SafetensorsFile out;
  for (const proto::NamedTensor& named : tensors) {
    const std::string field = absl::StrCat(prefix, "[\"", named.name(), "\"]");
    auto view = DecodeTensor(named.tensor(), field);
    if (!view.ok()) return view.status();
    if (view->dtype != proto::DTYPE_FLOAT32) {
      return absl::InvalidArgumentError(absl::StrCat(field, " has dtype ", DTypeName(view->dtype), ", expected FLOAT32"));
    }
    RawTensor raw;
    raw.dtype = "F32";
    raw.shape.assign(view->shape.begin(), view->shape.end());
    raw.data.assign(view->data, view->num_elements * sizeof(float));
    if (!out.tensors.emplace(named.name(), std::move(raw)).second) {
      return absl::InvalidArgumentError(absl::StrCat(field, " appears twice"));
    }
  }
  return out;
}

}  // namespace meow
