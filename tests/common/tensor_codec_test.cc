#include "common/tensor_codec.h"

#include <cmath>
#include <limits>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/transition_batches.h"

namespace meow {
namespace {

using ::testing::HasSubstr;
using testing::MakeBatch;

TEST(DecodeTensorTest, AcceptsMatchingByteCount) {
  const float values[6] = {1, 2, 3, 4, 5, 6};
  proto::Tensor tensor = EncodeFloat32({2, 3}, values);
  absl::StatusOr<TensorView> view = DecodeTensor(tensor, "t");
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->num_elements, 6);
  EXPECT_EQ(view->shape.size(), 2u);
  EXPECT_TRUE(ExpectTensor(*view, "t", proto::DTYPE_FLOAT32, {-1, 3}).ok());
}

TEST(DecodeTensorTest, RefusesWrongByteCount) {
  const float values[5] = {1, 2, 3, 4, 5};
  proto::Tensor tensor = EncodeFloat32({2, 3}, values);
  absl::StatusOr<TensorView> view = DecodeTensor(tensor, "Foo.bar");
  EXPECT_EQ(view.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(view.status().message(), HasSubstr("Foo.bar.data: expected 24 bytes for FLOAT32 [2, 3], got 20"));
}

TEST(DecodeTensorTest, RefusesUnknownDtypeNegativeDimAndOverflow) {
  proto::Tensor tensor;
  tensor.set_dtype(static_cast<proto::DType>(42));
  EXPECT_THAT(DecodeTensor(tensor, "x").status().message(),
              HasSubstr("x.dtype: expected a known dtype, got unknown dtype 42"));
  tensor.set_dtype(proto::DTYPE_UNSPECIFIED);
  EXPECT_THAT(DecodeTensor(tensor, "x").status().message(), HasSubstr("x.dtype"));
  tensor.set_dtype(proto::DTYPE_FLOAT32);
  tensor.add_shape(3);
  tensor.add_shape(-1);
  EXPECT_THAT(DecodeTensor(tensor, "x").status().message(), HasSubstr("x.shape[1]: expected a size >= 0, got -1"));
  tensor.clear_shape();
  tensor.add_shape(int64_t{1} << 40);
  tensor.add_shape(int64_t{1} << 40);
  EXPECT_THAT(DecodeTensor(tensor, "x").status().message(), HasSubstr("too many elements"));
}

TEST(DecodeTensorTest, ScalarHasOneElement) {
  const int64_t value = 7;
  proto::Tensor tensor = EncodeInt64({}, absl::MakeConstSpan(&value, 1));
  absl::StatusOr<TensorView> view = DecodeTensor(tensor, "s");
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->num_elements, 1);
}

TEST(ExpectTensorTest, NamesExpectedAndActual) {
  const float values[4] = {0, 0, 0, 0};
  absl::StatusOr<TensorView> view = DecodeTensor(EncodeFloat32({4}, values), "v");
  ASSERT_TRUE(view.ok());
  EXPECT_THAT(ExpectTensor(*view, "v", proto::DTYPE_INT64, {4}).message(),
              HasSubstr("v.dtype: expected INT64, got FLOAT32"));
  EXPECT_THAT(ExpectTensor(*view, "v", proto::DTYPE_FLOAT32, {-1, 2}).message(),
              HasSubstr("v.shape: expected [*, 2], got [4]"));
}

TEST(TransitionBatchTest, ValidBatchGivesViewsOfEachColumn) {
  proto::TransitionBatch batch = MakeBatch(/*actor=*/3, /*sequence=*/9, /*rows=*/5);
  absl::StatusOr<TransitionBatchView> view = ValidateTransitionBatch(batch, BatchSignature{11, 3, 100});
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->rows, 5);
  EXPECT_EQ(view->obs_dim, 11);
  EXPECT_EQ(view->action_dim, 3);
  EXPECT_EQ(view->policy_version, 9);
  float reward4;
  std::memcpy(&reward4, view->reward + 4 * sizeof(float), sizeof(float));
  EXPECT_EQ(reward4, 4.0f);
}

TEST(TransitionBatchTest, TheTruncatedColumnIsOptionalAndCheckedWhenPresent) {
  proto::TransitionBatch batch = MakeBatch(1, 1, /*rows=*/3);
  absl::StatusOr<TransitionBatchView> view = ValidateTransitionBatch(batch, BatchSignature{11, 3, 100});
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->truncated, nullptr);  // a batch of an earlier version: nothing truncated

  const uint8_t flags[] = {0, 1, 0};
  *batch.mutable_truncated() = EncodeTensor(proto::DTYPE_BOOL, {3}, flags, 3);
  view = ValidateTransitionBatch(batch, BatchSignature{11, 3, 100});
  ASSERT_TRUE(view.ok()) << view.status();
  ASSERT_NE(view->truncated, nullptr);
  EXPECT_EQ(view->truncated[1], 1);
  EXPECT_EQ(view->truncated[2], 0);

  const uint8_t two[] = {0, 2, 0};
  *batch.mutable_truncated() = EncodeTensor(proto::DTYPE_BOOL, {3}, two, 3);
  EXPECT_THAT(ValidateTransitionBatch(batch, BatchSignature{11, 3, 100}).status().message(),
              HasSubstr("TransitionBatch.truncated[1]: expected 0 or 1, got 2"));
  *batch.mutable_truncated() = EncodeTensor(proto::DTYPE_BOOL, {2}, flags, 2);
  EXPECT_THAT(ValidateTransitionBatch(batch, BatchSignature{11, 3, 100}).status().message(),
              HasSubstr("TransitionBatch.truncated"));

  // MakeTransitionBatch writes the column only when given.
  const std::vector<float> obs(2, 0.0f), action(1, 0.0f), reward(2, 0.0f);
  const std::vector<uint8_t> terminated(2, 0), truncated = {0, 1};
  EXPECT_FALSE(MakeTransitionBatch(1, 1, obs, {0.0f, 0.0f}, reward, obs, terminated, 0).has_truncated());
  proto::TransitionBatch made = MakeTransitionBatch(1, 1, obs, {0.0f, 0.0f}, reward, obs, terminated, 0, truncated);
  view = ValidateTransitionBatch(made, BatchSignature{1, 1, 100});
  ASSERT_TRUE(view.ok()) << view.status();
  ASSERT_NE(view->truncated, nullptr);
  EXPECT_EQ(view->truncated[1], 1);
}

TEST(TransitionBatchTest, OpenSignatureChecksOnlyConsistency) {
  proto::TransitionBatch batch = MakeBatch(1, 1, 2, /*obs_dim=*/5, /*action_dim=*/2);
  EXPECT_TRUE(ValidateTransitionBatch(batch, BatchSignature{}).ok());
  EXPECT_THAT(ValidateTransitionBatch(batch, BatchSignature{11, 2}).status().message(),
              HasSubstr("TransitionBatch.obs.shape: expected [*, 11], got [2, 5]"));
}

TEST(SampleResponseTest, DecodesColumnsAndVersions) {
  proto::SampleResponse response;
  *response.mutable_batch() = MakeBatch(2, 4, 3);
  const int64_t versions[3] = {7, 8, 9};
  *response.mutable_policy_version() = EncodeInt64({3}, versions);
  response.set_table_size(10);
  absl::StatusOr<SampledBatch> batch = DecodeSampleResponse(response, BatchSignature{11, 3}, /*expected_rows=*/3);
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_EQ(batch->rows, 3);
  EXPECT_EQ(batch->obs.size(), 33u);
  EXPECT_EQ(batch->obs[11 + 2], 1.0f);  // row 1's obs[2] is its row index
  EXPECT_EQ(batch->terminated[0], 1.0f);
  EXPECT_EQ(batch->terminated[1], 0.0f);
  EXPECT_EQ(batch->policy_version[2], 9);
  EXPECT_EQ(batch->table_size, 10);
}

TEST(SampleResponseTest, RefusesWrongRowCountAndMissingVersions) {
  proto::SampleResponse response;
  *response.mutable_batch() = MakeBatch(2, 4, 3);
  EXPECT_THAT(DecodeSampleResponse(response, BatchSignature{}, 3).status().message(),
              HasSubstr("SampleResponse.policy_version.dtype"));
  const int64_t versions[3] = {7, 8, 9};
  *response.mutable_policy_version() = EncodeInt64({3}, versions);
  EXPECT_THAT(DecodeSampleResponse(response, BatchSignature{}, 4).status().message(),
              HasSubstr("expected 4 rows, got 3"));
}

}  // namespace
}  // namespace meow
