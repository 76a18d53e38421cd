#include "common/address.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace meow {
namespace {

absl::Status NotHostPort(absl::string_view address, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("\"", address, "\" is not host:port (", why, ")"));
}

}  // namespace

absl::StatusOr<HostPort> ParseHostPort(absl::string_view address) {
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos) return NotHostPort(address, "no port");
  const absl::string_view host = address.substr(0, colon);
  const absl::string_view port = address.substr(colon + 1);
  if (host.empty()) return NotHostPort(address, "no host");
  if (host.front() == '[' && host.back() != ']') return NotHostPort(address, "unclosed [ of an IPv6 host");
  int value = -1;
  if (port.empty() || port.find_first_not_of("0123456789") != absl::string_view::npos ||
      !absl::SimpleAtoi(port, &value) || value > 65535) {
    return NotHostPort(address, "the port must be a number from 0 to 65535");
  }
  return HostPort{std::string(host), value};
}

absl::Status ValidateAddress(absl::string_view what, absl::string_view address) {
  auto parsed = ParseHostPort(address);
  if (parsed.ok()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(what, " ", parsed.status().message()));
}

}  // namespace meow
