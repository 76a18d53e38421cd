// The MJCF files under actor/mujoco/models/, compiled into the binary: CMake turns each file into
// a string constant at build time (embed_models.cmake), so nothing is read from disk at run time.
// Thread-safe: constant data.
#pragma once

#include <string_view>

#include "absl/types/span.h"

namespace meow {

struct EmbeddedFile {
  std::string_view name;      // the file name, e.g. "hopper.xml"
  std::string_view contents;  // the file's bytes
};

// Every embedded model file, sorted by name.
absl::Span<const EmbeddedFile> EmbeddedModelFiles();

}  // namespace meow
