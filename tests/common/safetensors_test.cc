// The safetensors codec: bit-exact round trips and clear errors (never a crash) on malformed files.
#include "common/safetensors.h"

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meow {
namespace {

using ::testing::HasSubstr;

std::string Bytes(std::initializer_list<float> values) {
  std::string s(values.size() * sizeof(float), '\0');
  std::memcpy(s.data(), values.begin(), s.size());
  return s;
}

SafetensorsFile Sample() {
  SafetensorsFile f;
  f.tensors["a.weight"] = {"F32", {2, 3}, Bytes({1, 2, 3, 4, 5, -0.0f})};
  f.tensors["b"] = {"F32", {0}, ""};
  f.tensors["c.bias"] = {"F64", {1}, std::string(8, '\x7f')};
  f.tensors["mask"] = {"U8", {3}, std::string("\x01\x00\x01", 3)};
  f.metadata["format"] = "pt";
  f.metadata["note"] = "quote \" and \\ and \n";
  return f;
}

// A header + data file from raw JSON, for hand-made malformed inputs.
std::string RawFile(const std::string& json, const std::string& data) {
  std::string out(8, '\0');
  const uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + json + data;
}

void ExpectInvalid(const std::string& bytes, const std::string& message) {
  auto parsed = ParseSafetensors(bytes, "test.safetensors");
  ASSERT_FALSE(parsed.ok()) << "accepted a file that should fail with: " << message;
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("test.safetensors"));
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr(message));
}

TEST(SafetensorsTest, RoundTripIsBitExact) {
  const SafetensorsFile f = Sample();
  auto bytes = SerializeSafetensors(f);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  // The header is padded so that the data starts 8-byte aligned, as the reference writer does.
  uint64_t header = 0;
  std::memcpy(&header, bytes->data(), 8);
  EXPECT_EQ(header % 8, 0u);
  auto parsed = ParseSafetensors(*bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->metadata, f.metadata);
  ASSERT_EQ(parsed->tensors.size(), f.tensors.size());
  for (const auto& [name, t] : f.tensors) {
    const RawTensor& u = parsed->tensors.at(name);
    EXPECT_EQ(u.dtype, t.dtype) << name;
    EXPECT_EQ(u.shape, t.shape) << name;
    EXPECT_EQ(u.data, t.data) << name;  // byte for byte, -0.0 included
  }
  EXPECT_EQ(*SerializeSafetensors(*parsed), *bytes);
}

TEST(SafetensorsTest, ReadsAHandWrittenReferenceFile) {
  // As written by the reference library: keys in any order, metadata, offsets into the data.
  const std::string json = R"({"__metadata__":{"format":"pt"},"y":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},)"
                           R"("x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  auto parsed = ParseSafetensors(RawFile(json, Bytes({1.5f, -2.0f, 3.25f})), "ref");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->tensors.at("x").data, Bytes({1.5f, -2.0f}));
  EXPECT_EQ(parsed->tensors.at("y").data, Bytes({3.25f}));
  EXPECT_EQ(parsed->metadata.at("format"), "pt");
}

TEST(SafetensorsTest, FileRoundTripLeavesNoTemporary) {
  const std::string dir = ::testing::TempDir() + "/safetensors_" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/w.safetensors";
  ASSERT_TRUE(WriteSafetensors(path, Sample()).ok());
  auto read = ReadSafetensors(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->tensors.at("a.weight").data, Sample().tensors.at("a.weight").data);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  EXPECT_EQ(ReadSafetensors(dir + "/absent").status().code(), absl::StatusCode::kNotFound);
  std::filesystem::remove_all(dir);
}

TEST(SafetensorsTest, EveryTruncationIsAnErrorNotACrash) {
  auto bytes = SerializeSafetensors(Sample());
  ASSERT_TRUE(bytes.ok());
  for (size_t len = 0; len < bytes->size(); ++len) {
    auto parsed = ParseSafetensors(bytes->substr(0, len), "cut");
    // Cutting only trailing zero-length data could leave a valid file; none here ends that way.
    EXPECT_FALSE(parsed.ok()) << "prefix of " << len << " bytes was accepted";
  }
}

TEST(SafetensorsTest, MalformedHeadersNameTheProblem) {
  ExpectInvalid("short", "shorter than the 8-byte header length");
  ExpectInvalid(RawFile("{", ""), "header is not a JSON object");
  ExpectInvalid(RawFile("[1,2]", ""), "header is not a JSON object");
  std::string huge(8, '\xff');
  ExpectInvalid(huge + "{}", "exceeds the limit");
  std::string past(8, '\0');
  past[0] = 100;
  ExpectInvalid(past + "{}", "runs past the end");
  ExpectInvalid(RawFile(R"({"x":5})", ""), "tensor \"x\" is not an object");
  ExpectInvalid(RawFile(R"({"x":{"shape":[1],"data_offsets":[0,4]}})", Bytes({1})), "tensor \"x\" has no \"dtype\"");
  ExpectInvalid(RawFile(R"({"x":{"dtype":"F32","data_offsets":[0,4]}})", Bytes({1})), "tensor \"x\" has no \"shape\"");
  ExpectInvalid(RawFile(R"({"x":{"dtype":"F32","shape":[1]}})", Bytes({1})), "tensor \"x\" has no \"data_offsets\"");
  ExpectInvalid(RawFile(R"({"x":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}})", Bytes({1})),
                "tensor \"x\" has an unknown dtype");
  ExpectInvalid(RawFile(R"({"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", Bytes({1})),
                "tensor \"x\" shape[0]");
  ExpectInvalid(RawFile(R"({"x":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", Bytes({1})),
                "not a non-negative integer");
  ExpectInvalid(RawFile(R"({"x":{"dtype":"F32","shape":"1","data_offsets":[0,4]}})", Bytes({1})),
                "shape is not a list");
  ExpectInvalid(RawFile(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", Bytes({1})),
                "data_offsets is not a [begin, end] pair");
  ExpectInvalid(RawFile(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", Bytes({1})), "fall outside");
  ExpectInvalid(RawFile(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", Bytes({1})),
                "fall outside the 4-byte data section");
  ExpectInvalid(RawFile(R"({"x":{"dtype":"F64","shape":[1],"data_offsets":[0,4]}})", Bytes({1})),
                "tensor \"x\" holds 4 bytes but dtype F64 and shape [1] need 8");
  ExpectInvalid(RawFile(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                        R"("y":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})",
                        Bytes({1, 2})),
                "overlap");
  ExpectInvalid(RawFile(R"({"__metadata__":{"k":1}})", ""), "__metadata__[\"k\"] is not a string");
  ExpectInvalid(RawFile(R"({"x":{"dtype":"F32","shape":[99999999999,99999999999,99999999999],)"
                        R"("data_offsets":[0,4]}})",
                        Bytes({1})),
                "too large");
}

TEST(SafetensorsTest, SerializeRefusesInconsistentTensors) {
  SafetensorsFile f;
  f.tensors["x"] = {"F32", {3}, Bytes({1, 2})};
  EXPECT_THAT(std::string(SerializeSafetensors(f).status().message()), HasSubstr("\"x\" has 8 bytes, expected 12"));
  f.tensors["x"] = {"F17", {1}, Bytes({1})};
  EXPECT_THAT(std::string(SerializeSafetensors(f).status().message()), HasSubstr("unknown dtype"));
}

TEST(SafetensorsTest, RandomCorruptionNeverCrashes) {
  auto bytes = SerializeSafetensors(Sample());
  ASSERT_TRUE(bytes.ok());
  std::mt19937 rng(7);
  int rejected = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::string mutated = *bytes;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int i = 0; i < flips; ++i) mutated[rng() % mutated.size()] = static_cast<char>(rng());
    auto parsed = ParseSafetensors(mutated, "fuzz");
    if (!parsed.ok()) {
      ++rejected;
      EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    }
  }
  EXPECT_GT(rejected, 1000);  // most corruptions of the header are caught
}

}  // namespace
}  // namespace meow
