// Torch-free encoding and validated decoding of the wire types in proto/tensor.proto and
// proto/transition.proto. Everything read from the network goes through these checks; each error
// is INVALID_ARGUMENT (RESOURCE_EXHAUSTED for too many rows) with a message naming the field and
// the expected value. Views point into the decoded message's bytes and live as long as it does.
// Thread-safe: pure functions.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "proto/replay.pb.h"
#include "proto/tensor.pb.h"
#include "proto/transition.pb.h"

namespace meow {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "tensor bytes on the wire are little-endian; a big-endian host needs byte swaps");

// Bytes per element; 0 for DTYPE_UNSPECIFIED and unknown values.
int DTypeSize(proto::DType dtype);
// "FLOAT32", "INT64", ... (the enum name without the DTYPE_ prefix).
std::string DTypeName(proto::DType dtype);

// A validated tensor: known dtype, non-negative dims, byte count = elements x element size.
struct TensorView {
  proto::DType dtype = proto::DTYPE_UNSPECIFIED;
  absl::InlinedVector<int64_t, 4> shape;
  int64_t num_elements = 0;
  const char* data = nullptr;  // into the message; may be unaligned, read with memcpy
};

// Checks `tensor`; `field` names it in errors (e.g. "TransitionBatch.obs").
absl::StatusOr<TensorView> DecodeTensor(const proto::Tensor& tensor, absl::string_view field);

// Checks dtype and shape of a decoded tensor; -1 in `shape` matches any size.
absl::Status ExpectTensor(const TensorView& view, absl::string_view field, proto::DType dtype,
                          absl::Span<const int64_t> shape);

// "[64, 11]"
std::string ShapeString(absl::Span<const int64_t> shape);

proto::Tensor EncodeTensor(proto::DType dtype, absl::Span<const int64_t> shape, const void* data, size_t bytes);
proto::Tensor EncodeFloat32(absl::Span<const int64_t> shape, absl::Span<const float> values);
proto::Tensor EncodeInt64(absl::Span<const int64_t> shape, absl::Span<const int64_t> values);

// What a TransitionBatch must match. A negative dim accepts any size (then only the columns'
// agreement with each other is checked).
struct BatchSignature {
  int obs_dim = -1;
  int action_dim = -1;
  int64_t max_rows = std::numeric_limits<int64_t>::max();  // more rows: RESOURCE_EXHAUSTED
};

// The validated columns of a TransitionBatch: float32 row-major obs [rows, obs_dim], action
// [rows, action_dim] within [-1, 1], reward [rows], next_obs [rows, obs_dim], all finite, and
// terminated [rows] bytes of 0 or 1, and the optional truncated [rows] bytes of 0 or 1.
struct TransitionBatchView {
  int64_t rows = 0;
  int obs_dim = 0;
  int action_dim = 0;
  const char* obs = nullptr;
  const char* action = nullptr;
  const char* reward = nullptr;
  const char* next_obs = nullptr;
  const uint8_t* terminated = nullptr;
  const uint8_t* truncated = nullptr;  // null when the batch has no truncated column (none was)
  int64_t policy_version = 0;
};

// Validates the columns of `batch` (not its actor id or sequence number).
absl::StatusOr<TransitionBatchView> ValidateTransitionBatch(const proto::TransitionBatch& batch,
                                                            const BatchSignature& signature);

// Builds a batch from row-major columns; actor id and sequence number stay unset (the inserter
// sets them). Sizes must agree: obs and next_obs rows*obs_dim, action rows*action_dim, reward and
// terminated (0 or 1) rows, truncated (0 or 1) rows or empty (then the column is left out).
// Validation happens when the batch is inserted.
proto::TransitionBatch MakeTransitionBatch(int obs_dim, int action_dim, absl::Span<const float> obs,
                                           absl::Span<const float> action, absl::Span<const float> reward,
                                           absl::Span<const float> next_obs, absl::Span<const uint8_t> terminated,
                                           int64_t policy_version, absl::Span<const uint8_t> truncated = {});

// A sampled batch decoded for the learner: row-major float columns (terminated as 0.0 / 1.0, ready
// for y = r + gamma * (1 - terminated) * V) and the policy version of each row.
struct SampledBatch {
  int64_t rows = 0;
  int obs_dim = 0;
  int action_dim = 0;
  std::vector<float> obs, action, reward, next_obs, terminated;
  std::vector<int64_t> policy_version;
  int64_t table_size = 0;  // rows in the table it came from, when drawn
};

// Validates and copies a SampleResponse; the batch must hold `expected_rows` rows when >= 0.
absl::StatusOr<SampledBatch> DecodeSampleResponse(const proto::SampleResponse& response,
                                                  const BatchSignature& signature, int64_t expected_rows);

}  // namespace meow
