// Policy weights on the wire: the validated decoding of the named float32 tensors that
// ParameterService serves and LearnerService.Report carries with an evaluation, into the same
// in-memory form a safetensors file has. Errors are INVALID_ARGUMENT naming the field and tensor.
// Thread-safe: pure functions.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "common/safetensors.h"
#include "proto/parameters.pb.h"
#include "proto/tensor.pb.h"

namespace meow {

struct PolicyWeights {
  int64_t version = 0;
  uint64_t incarnation = 0;  // the learner process that published them
  SafetensorsFile weights;   // float32 tensors under the reference names
};

// Decodes a response's tensors (each validated: float32, byte count matching the shape).
absl::StatusOr<PolicyWeights> DecodePolicyWeights(const proto::GetParametersResponse& response);
// Decodes named float32 tensors; errors name `field`["name"].
absl::StatusOr<SafetensorsFile> DecodeNamedTensors(
    const google::protobuf::RepeatedPtrField<proto::NamedTensor>& tensors, const std::string& field);

}  // namespace meow
