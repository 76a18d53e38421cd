// Conversion between absl::Status and grpc::Status, in one place for every replay endpoint (the
// codes have the same numbers). Thread-safe: pure functions.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace meow {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);
// "UNAVAILABLE: <message>", for logs and stats.
std::string DescribeGrpcStatus(const grpc::Status& status);

}  // namespace meow
