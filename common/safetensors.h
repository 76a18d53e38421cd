// Reading and writing the safetensors format (https://github.com/huggingface/safetensors):
//   8-byte little-endian header length N | N bytes of JSON | raw little-endian tensor bytes.
// The JSON maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} with offsets
// relative to the end of the header; an optional "__metadata__" entry maps strings to strings.
//
// This codec is independent of LibTorch (tensors are dtype + shape + bytes), so it is cheap to
// compile and can be used by any process. Every field of a file is validated before it is trusted;
// a malformed file is answered with InvalidArgument naming the file, the key and the problem.
// Thread-safe: free functions without shared state.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace meow {

// One tensor as stored in the file: the safetensors dtype name ("F32", "F64", "I64", ...), the
// shape, and the raw little-endian bytes (size = product(shape) * element size).
struct RawTensor {
  std::string dtype;
  std::vector<int64_t> shape;
  std::string data;
};

struct SafetensorsFile {
  std::map<std::string, RawTensor> tensors;
  std::map<std::string, std::string> metadata;
};

// Element size in bytes of a safetensors dtype name, or 0 when the name is unknown.
int DtypeSize(const std::string& dtype);

// Parses a whole file held in memory. `source` names it in error messages.
absl::StatusOr<SafetensorsFile> ParseSafetensors(const std::string& bytes, const std::string& source = "<memory>");
// Serialises to the on-disk layout (header padded with spaces to a multiple of 8 bytes, tensors in
// name order, contiguous). Fails if a tensor's byte count does not match its dtype and shape.
absl::StatusOr<std::string> SerializeSafetensors(const SafetensorsFile& file);

absl::StatusOr<SafetensorsFile> ReadSafetensors(const std::string& path);
// Writes atomically (WriteFileAtomically), so a crash never leaves a torn file.
absl::Status WriteSafetensors(const std::string& path, const SafetensorsFile& file);

}  // namespace meow
