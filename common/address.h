// The one parser of network addresses: every server's listening address, every client's target
// and every --flag that names a peer go through ParseHostPort, so all of them accept and refuse the
// same strings with the same words.
// Thread-safe: free functions.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meow {

struct HostPort {
  std::string host;  // as given ("[::1]" keeps its brackets; gRPC and httplib take it so)
  int port = 0;      // 0: the server picks a free one
};

// "host:port", "[ipv6]:port" or a gRPC target with a scheme ("dns:///host:port"): the host is all
// before the last colon and must not be empty, the port is decimal in [0, 65535].
// INVALID_ARGUMENT `"<address>" is not host:port (<why>)`.
absl::StatusOr<HostPort> ParseHostPort(absl::string_view address);

// ParseHostPort's verdict alone, with `what` (e.g. "replay address") before the message.
absl::Status ValidateAddress(absl::string_view what, absl::string_view address);

}  // namespace meow
