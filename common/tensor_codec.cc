#include "common/tensor_codec.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace meow {
namespace {

constexpr uint32_t kExponentMask = 0x7f800000u;
constexpr uint32_t kAbsMask = 0x7fffffffu;
constexpr uint32_t kOneBits = 0x3f800000u;  // 1.0f

float LoadFloat(const char* p, int64_t i) {
  float v;
  std::memcpy(&v, p + 4 * i, 4);
  return v;
}

uint32_t LoadBits(const char* p, int64_t i) {
  uint32_t v;
  std::memcpy(&v, p + 4 * i, 4);
  return v;
}

// Index of the first element violating the bound, or -1. With `unit_range` an element must lie in
// [-1, 1] (which also excludes NaN and infinities); otherwise it must be finite. Blocks of 64 are
// checked without branches so that the common, valid case vectorises.
int64_t FirstBad(const char* p, int64_t n, bool unit_range) {
  constexpr int64_t kBlock = 64;
  for (int64_t start = 0; start < n; start += kBlock) {
    const int64_t end = std::min(n, start + kBlock);
    uint32_t bad = 0;
    if (unit_range) {
      for (int64_t i = start; i < end; ++i) bad |= (LoadBits(p, i) & kAbsMask) > kOneBits;
    } else {
      for (int64_t i = start; i < end; ++i) bad |= (LoadBits(p, i) & kExponentMask) == kExponentMask;
    }
    if (bad == 0) continue;
    for (int64_t i = start; i < end; ++i) {
      const uint32_t bits = LoadBits(p, i);
      if (unit_range ? (bits & kAbsMask) > kOneBits : (bits & kExponentMask) == kExponentMask) {
        return i;
      }
    }
  }
  return -1;
}

// "[3, 5]" for element `i` of a [rows, cols] column, "[3]" for a vector.
std::string ElementIndex(int64_t i, int64_t cols) {
  if (cols <= 0) return absl::StrCat("[", i, "]");
  return absl::StrCat("[", i / cols, ", ", i % cols, "]");
}

absl::Status CheckFloats(const char* data, int64_t n, int64_t cols, absl::string_view field, bool unit_range) {
  const int64_t bad = FirstBad(data, n, unit_range);
  if (bad < 0) return absl::OkStatus();
  const float v = LoadFloat(data, bad);
  if (!std::isfinite(v)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ElementIndex(bad, cols), ": expected a finite value, got ", absl::StrFormat("%g", v)));
  }
  return absl::InvalidArgumentError(
      absl::StrCat(field, ElementIndex(bad, cols), ": expected a value in [-1, 1], got ", absl::StrFormat("%g", v)));
}

}  // namespace

int DTypeSize(proto::DType dtype) {
  switch (dtype) {
    case proto::DTYPE_FLOAT32:
    case proto::DTYPE_INT32:
      return 4;
    case proto::DTYPE_FLOAT64:
    case proto::DTYPE_INT64:
      return 8;
    case proto::DTYPE_UINT8:
    case proto::DTYPE_BOOL:
      return 1;
    case proto::DTYPE_FLOAT16:
    case proto::DTYPE_BFLOAT16:
      return 2;
    default:
      return 0;
  }
}

std::string DTypeName(proto::DType dtype) {
  const std::string& name = proto::DType_Name(dtype);
  if (name.empty()) return absl::StrCat("unknown dtype ", static_cast<int>(dtype));
  return name.rfind("DTYPE_", 0) == 0 ? name.substr(6) : name;
}

std::string ShapeString(absl::Span<const int64_t> shape) { return absl::StrCat("[", absl::StrJoin(shape, ", "), "]"); }

absl::StatusOr<TensorView> DecodeTensor(const proto::Tensor& tensor, absl::string_view field) {
  TensorView view;
  view.dtype = tensor.dtype();
  const int size = DTypeSize(view.dtype);
  if (size == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".dtype: expected a known dtype, got ", DTypeName(view.dtype)));
  }
  view.shape.assign(tensor.shape().begin(), tensor.shape().end());
  // Element count with an overflow guard: no valid message holds more than 2^62 bytes.
  constexpr int64_t kMaxElements = int64_t{1} << 58;
  int64_t elements = 1;
  for (int d = 0; d < static_cast<int>(view.shape.size()); ++d) {
    const int64_t dim = view.shape[d];
    if (dim < 0) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".shape[", d, "]: expected a size >= 0, got ", dim));
    }
    if (dim != 0 && elements > kMaxElements / dim) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".shape: ", ShapeString(view.shape), " has too many elements"));
    }
    elements *= dim;
  }
  const int64_t expected_bytes = elements * size;
  if (static_cast<int64_t>(tensor.data().size()) != expected_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".data: expected ", expected_bytes, " bytes for ",
                                                   DTypeName(view.dtype), " ", ShapeString(view.shape), ", got ",
                                                   tensor.data().size()));
  }
  view.num_elements = elements;
  view.data = tensor.data().data();
  return view;
}

absl::Status ExpectTensor(const TensorView& view, absl::string_view field, proto::DType dtype,
                          absl::Span<const int64_t> shape) {
  if (view.dtype != dtype) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".dtype: expected ", DTypeName(dtype), ", got ", DTypeName(view.dtype)));
  }
  bool match = view.shape.size() == shape.size();
  for (size_t d = 0; match && d < shape.size(); ++d) {
    match = shape[d] < 0 || shape[d] == view.shape[d];
  }
  if (!match) {
    std::vector<std::string> want;
    for (int64_t d : shape) want.push_back(d < 0 ? std::string("*") : absl::StrCat(d));
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".shape: expected [", absl::StrJoin(want, ", "), "], got ", ShapeString(view.shape)));
  }
  return absl::OkStatus();
}

proto::Tensor EncodeTensor(proto::DType dtype, absl::Span<const int64_t> shape, const void* data, size_t bytes) {
  proto::Tensor tensor;
  tensor.set_dtype(dtype);
  tensor.mutable_shape()->Add(shape.begin(), shape.end());
  tensor.set_data(static_cast<const char*>(data), bytes);
  return tensor;
}

proto::Tensor EncodeFloat32(absl::Span<const int64_t> shape, absl::Span<const float> values) {
  return EncodeTensor(proto::DTYPE_FLOAT32, shape, values.data(), values.size() * sizeof(float));
}

proto::Tensor EncodeInt64(absl::Span<const int64_t> shape, absl::Span<const int64_t> values) {
  return EncodeTensor(proto::DTYPE_INT64, shape, values.data(), values.size() * sizeof(int64_t));
}

absl::StatusOr<TransitionBatchView> ValidateTransitionBatch(const proto::TransitionBatch& batch,
                                                            const BatchSignature& signature) {
  // Every column must be present; decode each (dtype known, byte count matches shape).
  struct Column {
    const char* name;
    bool present;
    const proto::Tensor& tensor;
  };
  const Column columns[] = {
      {"TransitionBatch.obs", batch.has_obs(), batch.obs()},
      {"TransitionBatch.action", batch.has_action(), batch.action()},
      {"TransitionBatch.reward", batch.has_reward(), batch.reward()},
      {"TransitionBatch.next_obs", batch.has_next_obs(), batch.next_obs()},
      {"TransitionBatch.terminated", batch.has_terminated(), batch.terminated()},
  };
  TensorView views[5];
  for (int c = 0; c < 5; ++c) {
    if (!columns[c].present) {
      return absl::InvalidArgumentError(absl::StrCat(columns[c].name, ": missing"));
    }
    auto view = DecodeTensor(columns[c].tensor, columns[c].name);
    if (!view.ok()) return view.status();
    views[c] = *std::move(view);
  }
  const TensorView& obs = views[0];
  const TensorView& action = views[1];
  const TensorView& reward = views[2];
  const TensorView& next_obs = views[3];
  const TensorView& terminated = views[4];

  // obs fixes the row count and (when the signature leaves it open) the observation size.
  absl::Status status =
      ExpectTensor(obs, columns[0].name, proto::DTYPE_FLOAT32, {-1, static_cast<int64_t>(signature.obs_dim)});
  if (!status.ok()) return status;
  const int64_t rows = obs.shape[0];
  const int64_t obs_dim = obs.shape[1];
  if (rows == 0) {
    return absl::InvalidArgumentError("TransitionBatch.obs.shape: expected at least one row, got 0");
  }
  if (rows > signature.max_rows) {
    return absl::ResourceExhaustedError(absl::StrCat("TransitionBatch.obs.shape: ", rows, " rows exceed the limit of ",
                                                     signature.max_rows, " per batch"));
  }
  // The other columns must agree with obs on the row count.
  if (status = ExpectTensor(action, columns[1].name, proto::DTYPE_FLOAT32,
                            {rows, static_cast<int64_t>(signature.action_dim)});
      !status.ok()) {
    return status;
  }
  if (status = ExpectTensor(reward, columns[2].name, proto::DTYPE_FLOAT32, {rows}); !status.ok()) {
    return status;
  }
  if (status = ExpectTensor(next_obs, columns[3].name, proto::DTYPE_FLOAT32, {rows, obs_dim}); !status.ok()) {
    return status;
  }
  if (status = ExpectTensor(terminated, columns[4].name, proto::DTYPE_BOOL, {rows}); !status.ok()) {
    return status;
  }
  const int64_t action_dim = action.shape[1];
  if (obs_dim == 0 || action_dim == 0) {
    return absl::InvalidArgumentError(absl::StrCat(obs_dim == 0 ? "TransitionBatch.obs" : "TransitionBatch.action",
                                                   ".shape: expected at least one column, got 0"));
  }

  // Values: finite everywhere, actions in [-1, 1], terminated 0 or 1.
  if (status = CheckFloats(obs.data, obs.num_elements, obs_dim, columns[0].name, false); !status.ok()) {
    return status;
  }
  if (status = CheckFloats(action.data, action.num_elements, action_dim, columns[1].name, true); !status.ok()) {
    return status;
  }
  if (status = CheckFloats(reward.data, reward.num_elements, 0, columns[2].name, false); !status.ok()) {
    return status;
  }
  if (status = CheckFloats(next_obs.data, next_obs.num_elements, obs_dim, columns[3].name, false); !status.ok()) {
    return status;
  }
  const auto* done = reinterpret_cast<const uint8_t*>(terminated.data);
  for (int64_t i = 0; i < rows; ++i) {
    if (done[i] > 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("TransitionBatch.terminated[", i, "]: expected 0 or 1, got ", static_cast<int>(done[i])));
    }
  }
  // truncated is optional (batches of earlier versions have none).
  const uint8_t* cut = nullptr;
  if (batch.has_truncated()) {
    auto truncated = DecodeTensor(batch.truncated(), "TransitionBatch.truncated");
    if (!truncated.ok()) return truncated.status();
    if (status = ExpectTensor(*truncated, "TransitionBatch.truncated", proto::DTYPE_BOOL, {rows}); !status.ok()) {
      return status;
    }
    cut = reinterpret_cast<const uint8_t*>(truncated->data);
    for (int64_t i = 0; i < rows; ++i) {
      if (cut[i] > 1) {
        return absl::InvalidArgumentError(
            absl::StrCat("TransitionBatch.truncated[", i, "]: expected 0 or 1, got ", static_cast<int>(cut[i])));
      }
    }
  }

  TransitionBatchView out;
  out.rows = rows;
  out.obs_dim = static_cast<int>(obs_dim);
  out.action_dim = static_cast<int>(action_dim);
  out.obs = obs.data;
  out.action = action.data;
  out.reward = reward.data;
  out.next_obs = next_obs.data;
  out.terminated = done;
  out.truncated = cut;
  out.policy_version = batch.policy_version();
  return out;
}

proto::TransitionBatch MakeTransitionBatch(int obs_dim, int action_dim, absl::Span<const float> obs,
                                           absl::Span<const float> action, absl::Span<const float> reward,
                                           absl::Span<const float> next_obs, absl::Span<const uint8_t> terminated,
                                           int64_t policy_version, absl::Span<const uint8_t> truncated) {
  const int64_t rows = static_cast<int64_t>(reward.size());
  proto::TransitionBatch batch;
  *batch.mutable_obs() = EncodeFloat32({rows, obs_dim}, obs);
  *batch.mutable_action() = EncodeFloat32({rows, action_dim}, action);
  *batch.mutable_reward() = EncodeFloat32({rows}, reward);
  *batch.mutable_next_obs() = EncodeFloat32({rows, obs_dim}, next_obs);
  *batch.mutable_terminated() = EncodeTensor(proto::DTYPE_BOOL, {rows}, terminated.data(), terminated.size());
  if (!truncated.empty()) {
    *batch.mutable_truncated() = EncodeTensor(proto::DTYPE_BOOL, {rows}, truncated.data(), truncated.size());
  }
  batch.set_policy_version(policy_version);
  return batch;
}

absl::StatusOr<SampledBatch> DecodeSampleResponse(const proto::SampleResponse& response,
                                                  const BatchSignature& signature, int64_t expected_rows) {
  auto view = ValidateTransitionBatch(response.batch(), signature);
  if (!view.ok()) return view.status();
  if (expected_rows >= 0 && view->rows != expected_rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("SampleResponse.batch.obs.shape: expected ", expected_rows, " rows, got ", view->rows));
  }
  auto versions = DecodeTensor(response.policy_version(), "SampleResponse.policy_version");
  if (!versions.ok()) return versions.status();
  if (absl::Status s = ExpectTensor(*versions, "SampleResponse.policy_version", proto::DTYPE_INT64, {view->rows});
      !s.ok()) {
    return s;
  }
  SampledBatch out;
  out.rows = view->rows;
  out.obs_dim = view->obs_dim;
  out.action_dim = view->action_dim;
  auto copy = [](const char* src, int64_t n, std::vector<float>& dst) {
    dst.resize(static_cast<size_t>(n));
    std::memcpy(dst.data(), src, static_cast<size_t>(n) * sizeof(float));
  };
  copy(view->obs, out.rows * out.obs_dim, out.obs);
  copy(view->action, out.rows * out.action_dim, out.action);
  copy(view->reward, out.rows, out.reward);
  copy(view->next_obs, out.rows * out.obs_dim, out.next_obs);
  out.terminated.resize(static_cast<size_t>(out.rows));
  for (int64_t i = 0; i < out.rows; ++i) out.terminated[i] = view->terminated[i] ? 1.0f : 0.0f;
  out.policy_version.resize(static_cast<size_t>(out.rows));
  std::memcpy(out.policy_version.data(), versions->data, static_cast<size_t>(out.rows) * sizeof(int64_t));
  out.table_size = response.table_size();
  return out;
}

}  // namespace meow
