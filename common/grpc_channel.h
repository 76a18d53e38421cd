// The one way every meow client dials a server (replay, learner): its own connection, message
// limits as given, keepalive pings (so a dead server is noticed), a reconnect schedule that finds a
// restarted server within seconds, and the process's TLS and token settings (grpc_security.h).
// Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "grpcpp/grpcpp.h"

namespace meow {

std::shared_ptr<grpc::Channel> CreateChannel(const std::string& address, int64_t max_message_bytes);

}  // namespace meow
