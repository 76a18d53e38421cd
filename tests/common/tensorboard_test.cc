// TensorBoard event files: the TFRecord framing with masked CRC-32C, read back exactly; torn and
// corrupt records detected with the file and offset.
#include "common/tensorboard.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "common/crc32c.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meow {
namespace {

using ::testing::HasSubstr;

TEST(Crc32cTest, KnownVectors) {
  EXPECT_EQ(Crc32c("123456789", 9), 0xE3069283u);  // the CRC-32C check value
  EXPECT_EQ(Crc32c("", 0), 0u);
  EXPECT_EQ(Crc32cExtend(Crc32c("1234", 4), "56789", 5), 0xE3069283u);
  EXPECT_EQ(UnmaskCrc32c(MaskCrc32c(0x12345678u)), 0x12345678u);
}

class TensorBoardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/tb_" + std::to_string(getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(TensorBoardTest, ScalarsRoundTrip) {
  auto writer = TensorBoardWriter::Create(dir_ + "/tb");
  ASSERT_TRUE(writer.ok()) << writer.status();
  EXPECT_THAT((*writer)->path(), HasSubstr("/tb/events.out.tfevents."));
  ASSERT_TRUE((*writer)->AddScalars(100, 1.5, {{"eval/return", 12.5}, {"loss", 0.25}, {"nan", NAN}}).ok());
  ASSERT_TRUE((*writer)->AddScalars(200, 2.5, {{"loss", 0.125}}).ok());
  ASSERT_TRUE((*writer)->Flush().ok());
  auto scalars = ReadTensorBoardScalars((*writer)->path());
  ASSERT_TRUE(scalars.ok()) << scalars.status();
  ASSERT_EQ(scalars->size(), 3u);  // the NaN is left out
  EXPECT_EQ((*scalars)[0].tag, "eval/return");
  EXPECT_EQ((*scalars)[0].step, 100);
  EXPECT_EQ((*scalars)[0].value, 12.5f);
  EXPECT_EQ((*scalars)[1].tag, "loss");
  EXPECT_EQ((*scalars)[2].step, 200);
  EXPECT_EQ((*scalars)[2].value, 0.125f);
  EXPECT_EQ((*scalars)[2].wall_time, 2.5);
}

TEST_F(TensorBoardTest, TheFirstRecordIsTheFileVersionWithTheStandardFraming) {
  auto writer = TensorBoardWriter::Create(dir_);
  ASSERT_TRUE(writer.ok());
  auto bytes = ReadFile((*writer)->path());
  ASSERT_TRUE(bytes.ok());
  // uint64 length, masked crc of it, payload, masked crc of the payload.
  uint64_t length = 0;
  std::memcpy(&length, bytes->data(), 8);
  ASSERT_EQ(bytes->size(), 16 + length);
  uint32_t length_crc = 0;
  std::memcpy(&length_crc, bytes->data() + 8, 4);
  EXPECT_EQ(length_crc, MaskCrc32c(Crc32c(bytes->data(), 8)));
  EXPECT_THAT(bytes->substr(12, length), HasSubstr("brain.Event:2"));
}

TEST_F(TensorBoardTest, TornAndCorruptRecordsAreReportedWithTheOffset) {
  auto writer = TensorBoardWriter::Create(dir_);
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->AddScalars(1, 1.0, {{"a", 1.0}}).ok());
  ASSERT_TRUE((*writer)->Flush().ok());
  const std::string path = (*writer)->path();
  const std::string good = *ReadFile(path);
  ASSERT_TRUE(WriteFileAtomically(path, good.substr(0, good.size() - 3)).ok());
  auto torn = ReadTensorBoardScalars(path);
  EXPECT_EQ(torn.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(torn.status().message()), HasSubstr("is torn"));
  EXPECT_THAT(std::string(torn.status().message()), HasSubstr(path));
  std::string flipped = good;
  flipped[flipped.size() - 6] ^= 1;
  ASSERT_TRUE(WriteFileAtomically(path, flipped).ok());
  EXPECT_THAT(std::string(ReadTensorBoardScalars(path).status().message()), HasSubstr("bad payload checksum"));
}

}  // namespace
}  // namespace meow
