#include "learner/parameter_server.h"

#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/address.h"
#include "common/grpc_server.h"
#include "common/grpc_status.h"
#include "common/rpc_metrics.h"
#include "common/tensor_codec.h"
#include "grpcpp/health_check_service_interface.h"

namespace meow {
namespace {
constexpr char kServiceName[] = "meow.proto.ParameterService";

uint64_t NewIncarnation() {
  std::random_device device;
  uint64_t id = 0;
  while (id == 0) id = (static_cast<uint64_t>(device()) << 32) ^ device();
  return id;
}

// The version a request waits for: its min_version when it counts in this incarnation, else any.
int64_t MinVersionFor(const proto::GetParametersRequest& request, uint64_t incarnation) {
  return request.incarnation() == 0 || request.incarnation() == incarnation ? request.min_version() : 0;
}
}  // namespace

ParameterStore::ParameterStore() : incarnation_(NewIncarnation()) {}

absl::Status ParameterStore::Publish(int64_t version, const SafetensorsFile& weights) {
  auto response = std::make_shared<proto::GetParametersResponse>();
  response->set_version(version);
  response->set_incarnation(incarnation_);
  for (const auto& [key, value] : weights.metadata) (*response->mutable_metadata())[key] = value;
  for (const auto& [name, raw] : weights.tensors) {
    if (raw.dtype != "F32") {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor \"", name, "\" has dtype ", raw.dtype, "; weights are float32"));
    }
    proto::NamedTensor* named = response->add_tensors();
    named->set_name(name);
    *named->mutable_tensor() = EncodeTensor(proto::DTYPE_FLOAT32, raw.shape, raw.data.data(), raw.data.size());
  }
  absl::MutexLock lock(&mu_);
  const int64_t current = latest_ == nullptr ? 0 : latest_->version();
  if (version <= current) {
    return absl::FailedPreconditionError(
        absl::StrCat("weight version ", version, " is not above the published ", current));
  }
  latest_ = std::move(response);
  return absl::OkStatus();
}

std::shared_ptr<const proto::GetParametersResponse> ParameterStore::Latest() const {
  absl::MutexLock lock(&mu_);
  return latest_;
}

std::shared_ptr<const proto::GetParametersResponse> ParameterStore::WaitFor(int64_t min_version, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return closed_ || (latest_ != nullptr && latest_->version() >= min_version);
  };
  mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
  if (closed_ || latest_ == nullptr || latest_->version() < min_version) return nullptr;
  return latest_;
}

void ParameterStore::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
}

bool ParameterStore::closed() const {
  absl::MutexLock lock(&mu_);
  return closed_;
}

int64_t ParameterStore::version() const {
  absl::MutexLock lock(&mu_);
  return latest_ == nullptr ? 0 : latest_->version();
}

grpc::Status ParameterServiceImpl::GetParameters(grpc::ServerContext* context,
                                                 const proto::GetParametersRequest* request,
                                                 proto::GetParametersResponse* response) {
  if (grpc::Status s = CheckToken(*context, token_); !s.ok()) return s;
  if (request->min_version() < 0) {
    return ToGrpcStatus(absl::InvalidArgumentError(
        absl::StrCat("GetParametersRequest.min_version must be >= 0, got ", request->min_version())));
  }
  auto latest = store_->Latest();
  if (latest == nullptr || latest->version() < MinVersionFor(*request, store_->incarnation())) {
    response->set_not_newer(true);
    response->set_incarnation(store_->incarnation());
    return grpc::Status::OK;
  }
  *response = *latest;
  return grpc::Status::OK;
}

grpc::Status ParameterServiceImpl::WatchParameters(grpc::ServerContext* context,
                                                   const proto::GetParametersRequest* request,
                                                   grpc::ServerWriter<proto::GetParametersResponse>* writer) {
  if (grpc::Status s = CheckToken(*context, token_); !s.ok()) return s;
  if (request->min_version() < 0) {
    return ToGrpcStatus(absl::InvalidArgumentError(
        absl::StrCat("GetParametersRequest.min_version must be >= 0, got ", request->min_version())));
  }
  int64_t next = MinVersionFor(*request, store_->incarnation());
  while (!context->IsCancelled()) {
    // Short waits so that a cancelled call is noticed promptly.
    auto latest = store_->WaitFor(next, absl::Now() + absl::Milliseconds(200));
    if (latest == nullptr) {
      if (store_->closed()) {
        return grpc::Status(grpc::StatusCode::CANCELLED, "the parameter server is shutting down");
      }
      continue;
    }
    if (!writer->Write(*latest)) break;  // the client went away
    next = latest->version() + 1;
  }
  return grpc::Status::OK;
}

absl::Status ParameterServerConfig::Validate() const {
  if (absl::Status s = ValidateAddress("address", address); !s.ok()) return s;
  if (max_message_bytes < (1 << 20) || max_message_bytes > (1ll << 31) - 1) {
    return absl::InvalidArgumentError("max_message_bytes must be in [1 MiB, 2 GiB)");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ParameterServer>> StartParameterServer(const ParameterServerConfig& config) {
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  std::unique_ptr<ParameterServer> server(new ParameterServer(config.security.token, config.evaluated_weight_shapes));
  GrpcServerOptions server_options;
  server_options.what = "parameter server";
  server_options.address = config.address;
  server_options.security = config.security;
  server_options.rpc_metrics = config.rpc_metrics;
  server_options.services = {&server->service_, &server->learner_service_};
  server_options.health_names = {kServiceName, "meow.proto.LearnerService"};
  server_options.max_send_bytes = config.max_message_bytes;
  auto started = StartGrpcServer(server_options);
  if (!started.ok()) return started.status();
  server->grpc_ = *std::move(started);
  return server;
}

ParameterServer::~ParameterServer() { Shutdown(); }

void ParameterServer::Shutdown(absl::Duration grace) {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  store_.Close();
  if (grpc_.server != nullptr) {
    MarkNotServing(*grpc_.server);
    StopGrpcServer(*grpc_.server, grace);
  }
}

}  // namespace meow
