#include "common/weights_codec.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/tensor_codec.h"

namespace meow {

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
  for (const auto& [key, value] : response.metadata()) out.weights.metadata[key] = value;
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
      return absl::InvalidArgumentError(
          absl::StrCat(field, " has dtype ", DTypeName(view->dtype), ", expected FLOAT32"));
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
