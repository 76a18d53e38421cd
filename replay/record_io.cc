#include "replay/record_io.h"


#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/crc32c.h"

namespace meow {
namespace {

void PutU32(char* p, uint32_t v) { std::memcpy(p, &v, 4); }
uint32_t GetU32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

absl::Status ErrnoError(absl::string_view what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

}  // namespace

void AppendRecord(const google::protobuf::MessageLite& message, std::string* out) {
  const size_t size = message.ByteSizeLong();
  const size_t start = out->size();
  out->resize(start + kRecordHeaderBytes + size);
  char* header = out->data() + start;
  char* payload = header + kRecordHeaderBytes;
  message.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(payload));
  PutU32(header, kRecordMagic);
  PutU32(header + 4, static_cast<uint32_t>(size));
  PutU32(header + 8, MaskCrc32c(Crc32c(payload, size)));
}

void AppendRecord(absl::string_view payload, std::string* out) {
  char header[kRecordHeaderBytes];
  PutU32(header, kRecordMagic);
  PutU32(header + 4, static_cast<uint32_t>(payload.size()));
  PutU32(header + 8, MaskCrc32c(Crc32c(payload.data(), payload.size())));
  out->append(header, kRecordHeaderBytes);
  out->append(payload.data(), payload.size());
}

absl::StatusOr<std::unique_ptr<RecordReader>> RecordReader::Open(const std::string& path) {
  FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat("no file ", path));
    return ErrnoError("cannot open", path);
  }
  std::setvbuf(file, nullptr, _IOFBF, 1 << 20);
  return std::unique_ptr<RecordReader>(new RecordReader(path, file));
}

RecordReader::~RecordReader() { std::fclose(file_); }

absl::StatusOr<std::optional<std::string>> RecordReader::Next() {
  auto fail = [this](absl::string_view why) {
    failed_ = true;
    return absl::DataLossError(
        absl::StrCat(path_, ": ", why, " at offset ", offset_, "; records after it are dropped"));
  };
  if (failed_) return fail("already failed");
  char header[kRecordHeaderBytes];
  const size_t got = std::fread(header, 1, kRecordHeaderBytes, file_);
  if (got == 0 && std::feof(file_)) return std::optional<std::string>();
  if (got < kRecordHeaderBytes) {
    return fail(absl::StrCat("truncated record header (", got, " of ", kRecordHeaderBytes, " bytes)"));
  }
  if (GetU32(header) != kRecordMagic) return fail("bad record magic (corrupt record)");
  const uint32_t size = GetU32(header + 4);
  if (size > kMaxRecordBytes) return fail(absl::StrCat("implausible record length ", size));
  std::string payload(size, '\0');
  const size_t payload_got = std::fread(payload.data(), 1, size, file_);
  if (payload_got < size) {
    return fail(absl::StrCat("truncated record (", payload_got, " of ", size, " bytes)"));
  }
  if (UnmaskCrc32c(GetU32(header + 8)) != Crc32c(payload.data(), size)) {
    return fail("checksum mismatch (corrupt record)");
  }
  offset_ += static_cast<int64_t>(kRecordHeaderBytes + size);
  return std::optional<std::string>(std::move(payload));
}

}  // namespace meow
