// Transport security and authentication for every gRPC server and client of meow: TLS when a
// certificate is configured, and a shared bearer token checked on every RPC of our services when
// one is set (grpc.health.v1 stays open, so that probes work without the token).
//
// Settings are values passed in, never process state: servers take a GrpcSecurity in their config,
// clients in theirs (every CreateChannel names one). The `meow` binary loads them from its flags
// once and hands them to the subcommand; a default GrpcSecurity is plaintext without a token.
// Thread-safe: pure functions.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"

namespace meow {

struct GrpcSecurity {
  std::string token;        // empty: no token sent or required
  std::string cert_pem;     // server: its certificate chain (TLS on when set)
  std::string key_pem;      // server: its private key
  std::string ca_pem;       // client: roots that verify servers (TLS on when set)
  std::string server_name;  // client: expected name in the server's certificate (optional)

  bool server_tls() const { return !cert_pem.empty(); }
  bool client_tls() const { return !ca_pem.empty(); }
};

// Reads the PEM files and the token file named (empty names are skipped); an empty token file or
// a certificate without its key is an error naming the file or flag.
absl::StatusOr<GrpcSecurity> LoadGrpcSecurity(const std::string& cert_file, const std::string& key_file,
                                              const std::string& ca_file, const std::string& token_file,
                                              const std::string& server_name);

std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(const GrpcSecurity& security);

// A channel with `args`, TLS when the security has a CA, and the token attached to every call.
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address, const GrpcSecurity& security,
                                           grpc::ChannelArguments args);

// OK when no token is required or the call carries "authorization: Bearer <token>";
// UNAUTHENTICATED otherwise. Call first in every handler, before touching any data.
grpc::Status CheckToken(const grpc::ServerContext& context, const std::string& token);

}  // namespace meow
