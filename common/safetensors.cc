#include "common/safetensors.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace meow {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

// Headers larger than this are refused before allocating (the reference library uses 100 MB).
constexpr uint64_t kMaxHeaderBytes = 100u << 20;

absl::Status Malformed(const std::string& source, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("safetensors file ", source, ": ", what));
}

// A JSON number that must be a non-negative integer representable exactly in a double.
absl::StatusOr<uint64_t> NonNegativeInteger(const Value& v, const std::string& source, const std::string& where) {
  if (v.kind_case() != Value::kNumberValue) {
    return Malformed(source, absl::StrCat(where, " is not a number"));
  }
  const double d = v.number_value();
  if (!(d >= 0) || d > 9007199254740992.0 || std::floor(d) != d) {
    return Malformed(source, absl::StrCat(where, " = ", d, " is not a non-negative integer"));
  }
  return static_cast<uint64_t>(d);
}

// JSON string escaping for names and metadata (control characters, quote, backslash).
std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
  return out;
}

}  // namespace

int DtypeSize(const std::string& dtype) {
  if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
  if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
  if (dtype == "I8" || dtype == "U8" || dtype == "BOOL" || dtype == "F8_E4M3" || dtype == "F8_E5M2") {
    return 1;
  }
  return 0;
}

absl::StatusOr<SafetensorsFile> ParseSafetensors(const std::string& bytes, const std::string& source) {
  if (bytes.size() < 8) {
    return Malformed(source, absl::StrCat("file is ", bytes.size(), " bytes, shorter than the 8-byte header length"));
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) {
    header_len = (header_len << 8) | static_cast<unsigned char>(bytes[i]);
  }
  if (header_len > kMaxHeaderBytes) {
    return Malformed(source,
                     absl::StrCat("header length ", header_len, " exceeds the limit of ", kMaxHeaderBytes, " bytes"));
  }
  if (header_len > bytes.size() - 8) {
    return Malformed(source, absl::StrCat("header length ", header_len, " runs past the end of the ", bytes.size(),
                                          "-byte file (truncated?)"));
  }
  const std::string header = bytes.substr(8, header_len);
  const uint64_t data_begin = 8 + header_len;
  const uint64_t data_size = bytes.size() - data_begin;

  Struct root;
  google::protobuf::util::JsonParseOptions options;
  const auto parsed = google::protobuf::util::JsonStringToMessage(header, &root, options);
  if (!parsed.ok()) {
    return Malformed(source, absl::StrCat("header is not a JSON object: ", std::string(parsed.message())));
  }

  SafetensorsFile file;
  // (begin, end, name) of every tensor, to check that the data regions tile the data section.
  std::vector<std::tuple<uint64_t, uint64_t, std::string>> regions;
  for (const auto& [name, entry] : root.fields()) {
    if (name == "__metadata__") {
      if (entry.kind_case() != Value::kStructValue) {
        return Malformed(source, "__metadata__ is not an object");
      }
      for (const auto& [key, value] : entry.struct_value().fields()) {
        if (value.kind_case() != Value::kStringValue) {
          return Malformed(source, absl::StrCat("__metadata__[\"", key, "\"] is not a string"));
        }
        file.metadata[key] = value.string_value();
      }
      continue;
    }
    const std::string where = absl::StrCat("tensor \"", name, "\"");
    if (entry.kind_case() != Value::kStructValue) {
      return Malformed(source, absl::StrCat(where, " is not an object"));
    }
    const auto& fields = entry.struct_value().fields();
    for (const char* required : {"dtype", "shape", "data_offsets"}) {
      if (!fields.contains(required)) {
        return Malformed(source, absl::StrCat(where, " has no \"", required, "\""));
      }
    }
    RawTensor tensor;
    const Value& dtype = fields.at("dtype");
    if (dtype.kind_case() != Value::kStringValue || DtypeSize(dtype.string_value()) == 0) {
      return Malformed(source, absl::StrCat(where, " has an unknown dtype"));
    }
    tensor.dtype = dtype.string_value();
    const Value& shape = fields.at("shape");
    if (shape.kind_case() != Value::kListValue) {
      return Malformed(source, absl::StrCat(where, " shape is not a list"));
    }
    uint64_t numel = 1;
    for (int i = 0; i < shape.list_value().values_size(); ++i) {
      auto dim = NonNegativeInteger(shape.list_value().values(i), source, absl::StrCat(where, " shape[", i, "]"));
      if (!dim.ok()) return dim.status();
      if (*dim != 0 && numel > std::numeric_limits<uint64_t>::max() / 16 / *dim) {
        return Malformed(source, absl::StrCat(where, " shape is too large"));
      }
      numel *= *dim;
      tensor.shape.push_back(static_cast<int64_t>(*dim));
    }
    const Value& offsets = fields.at("data_offsets");
    if (offsets.kind_case() != Value::kListValue || offsets.list_value().values_size() != 2) {
      return Malformed(source, absl::StrCat(where, " data_offsets is not a [begin, end] pair"));
    }
    auto begin = NonNegativeInteger(offsets.list_value().values(0), source, absl::StrCat(where, " data_offsets[0]"));
    if (!begin.ok()) return begin.status();
    auto end = NonNegativeInteger(offsets.list_value().values(1), source, absl::StrCat(where, " data_offsets[1]"));
    if (!end.ok()) return end.status();
    if (*begin > *end || *end > data_size) {
      return Malformed(source, absl::StrCat(where, " data_offsets [", *begin, ", ", *end, "] fall outside the ",
                                            data_size, "-byte data section (truncated?)"));
    }
    const uint64_t expected = numel * DtypeSize(tensor.dtype);
    if (*end - *begin != expected) {
      return Malformed(source, absl::StrCat(where, " holds ", *end - *begin, " bytes but dtype ", tensor.dtype,
                                            " and shape [", absl::StrJoin(tensor.shape, ","), "] need ", expected));
    }
    tensor.data = bytes.substr(data_begin + *begin, *end - *begin);
    regions.emplace_back(*begin, *end, name);
    file.tensors.emplace(name, std::move(tensor));
  }
  // Regions may not overlap (the format also forbids holes; a hole is harmless, so it is allowed).
  std::sort(regions.begin(), regions.end());
  for (size_t i = 1; i < regions.size(); ++i) {
    if (std::get<0>(regions[i]) < std::get<1>(regions[i - 1])) {
      return Malformed(source, absl::StrCat("tensors \"", std::get<2>(regions[i - 1]), "\" and \"",
                                            std::get<2>(regions[i]), "\" overlap"));
    }
  }
  return file;
}

absl::StatusOr<std::string> SerializeSafetensors(const SafetensorsFile& file) {
  std::string header = "{";
  bool first = true;
  if (!file.metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first_meta = true;
    for (const auto& [key, value] : file.metadata) {
      if (!first_meta) header += ",";
      first_meta = false;
      header += JsonString(key) + ":" + JsonString(value);
    }
    header += "}";
    first = false;
  }
  uint64_t offset = 0;
  for (const auto& [name, tensor] : file.tensors) {
    if (name == "__metadata__") {
      return absl::InvalidArgumentError("a tensor may not be named __metadata__");
    }
    const int elem = DtypeSize(tensor.dtype);
    if (elem == 0) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\" has unknown dtype \"", tensor.dtype, "\""));
    }
    uint64_t numel = 1;
    for (int64_t d : tensor.shape) {
      if (d < 0) {
        return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\" has a negative dim"));
      }
      numel *= static_cast<uint64_t>(d);
    }
    if (numel * elem != tensor.data.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor \"", name, "\" has ", tensor.data.size(), " bytes, expected ", numel * elem));
    }
    if (!first) header += ",";
    first = false;
    header += absl::StrCat(JsonString(name), ":{\"dtype\":\"", tensor.dtype, "\",\"shape\":[",
                           absl::StrJoin(tensor.shape, ","), "],\"data_offsets\":[", offset, ",",
                           offset + tensor.data.size(), "]}");
    offset += tensor.data.size();
  }
  header += "}";
  // The reference writer pads the header with spaces so that tensor data is 8-byte aligned.
  header.append((8 - header.size() % 8) % 8, ' ');

  std::string out;
  out.reserve(8 + header.size() + offset);
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out += static_cast<char>((n >> (8 * i)) & 0xff);
  out += header;
  for (const auto& [name, tensor] : file.tensors) out += tensor.data;
  return out;
}

absl::StatusOr<SafetensorsFile> ReadSafetensors(const std::string& path) {
  auto bytes = ReadFile(path);
  if (!bytes.ok()) return bytes.status();
  return ParseSafetensors(*bytes, path);
}

absl::Status WriteSafetensors(const std::string& path, const SafetensorsFile& file) {
  auto bytes = SerializeSafetensors(file);
  if (!bytes.ok()) return bytes.status();
  return WriteFileAtomically(path, *bytes);
}

}  // namespace meow
