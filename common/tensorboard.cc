#include "common/tensorboard.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/crc32c.h"
#include "common/file_util.h"
#include "common/tensorboard_event.pb.h"

namespace meow {
namespace {

void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t GetLE(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TensorBoardWriter>> TensorBoardWriter::Create(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  char host[256] = "localhost";
  gethostname(host, sizeof(host) - 1);
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  const std::string path = absl::StrCat(dir, "/events.out.tfevents.", static_cast<int64_t>(now), ".", host);
  std::FILE* file = std::fopen(path.c_str(), "ab");
  if (file == nullptr) return absl::PermissionDeniedError(absl::StrCat("cannot create ", path));
  std::unique_ptr<TensorBoardWriter> writer(new TensorBoardWriter(path, file));
  tensorboard::Event first;
  first.set_wall_time(now);
  first.set_file_version("brain.Event:2");
  if (absl::Status s = writer->WriteRecord(first.SerializeAsString()); !s.ok()) return s;
  if (absl::Status s = writer->Flush(); !s.ok()) return s;
  return writer;
}

TensorBoardWriter::~TensorBoardWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

absl::Status TensorBoardWriter::WriteRecord(const std::string& payload) {
  std::string record;
  record.reserve(payload.size() + 16);
  PutU64(&record, payload.size());
  PutU32(&record, MaskCrc32c(Crc32c(record.data(), 8)));
  record += payload;
  PutU32(&record, MaskCrc32c(Crc32c(payload.data(), payload.size())));
  if (std::fwrite(record.data(), 1, record.size(), file_) != record.size()) {
    return absl::DataLossError(absl::StrCat("cannot write ", path_));
  }
  return absl::OkStatus();
}

absl::Status TensorBoardWriter::AddScalars(int64_t step, double wall_time,
                                           const std::map<std::string, double>& scalars) {
  tensorboard::Event event;
  event.set_wall_time(wall_time);
  event.set_step(step);
  for (const auto& [tag, value] : scalars) {
    if (!std::isfinite(value)) continue;
    auto* v = event.mutable_summary()->add_value();
    v->set_tag(tag);
    v->set_simple_value(static_cast<float>(value));
  }
  return WriteRecord(event.SerializeAsString());
}

absl::Status TensorBoardWriter::Flush() {
  if (std::fflush(file_) != 0) return absl::DataLossError(absl::StrCat("cannot flush ", path_));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ScalarEvent>> ReadTensorBoardScalars(const std::string& path) {
  auto bytes = ReadFile(path);
  if (!bytes.ok()) return bytes.status();
  std::vector<ScalarEvent> scalars;
  size_t offset = 0;
  while (offset < bytes->size()) {
    auto corrupt = [&](const std::string& what) {
      return absl::DataLossError(absl::StrCat(path, ": record at byte ", offset, " ", what));
    };
    if (bytes->size() - offset < 12) return corrupt("is torn (no room for its header)");
    const char* p = bytes->data() + offset;
    const uint64_t length = GetLE(p, 8);
    if (UnmaskCrc32c(static_cast<uint32_t>(GetLE(p + 8, 4))) != Crc32c(p, 8)) {
      return corrupt("has a bad length checksum");
    }
    if (length > bytes->size() - offset - 16) return corrupt("is torn (payload runs past the end)");
    const std::string payload(p + 12, length);
    if (UnmaskCrc32c(static_cast<uint32_t>(GetLE(p + 12 + length, 4))) != Crc32c(payload.data(), payload.size())) {
      return corrupt("has a bad payload checksum");
    }
    tensorboard::Event event;
    if (!event.ParseFromString(payload)) return corrupt("is not an Event");
    for (const auto& v : event.summary().value()) {
      scalars.push_back({event.step(), event.wall_time(), v.tag(), v.simple_value()});
    }
    offset += 16 + length;
  }
  return scalars;
}

}  // namespace meow
