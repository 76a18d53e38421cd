#include "common/grpc_security.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "grpcpp/support/client_interceptor.h"

namespace meow {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& file, const char* flag) {
  auto text = ReadFile(file);
  if (!text.ok())
    return absl::Status(text.status().code(), absl::StrCat("--", flag, "=", file, ": ", text.status().message()));
  if (text->find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, "=", file, ": not a PEM file"));
  }
  return text;
}

// Adds "authorization: Bearer <token>" to every call of the channel.
class TokenInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit TokenInterceptor(const std::string* value) : value_(value) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->insert({"authorization", *value_});
    }
    methods->Proceed();
  }

 private:
  const std::string* value_;  // owned by the factory, which the channel keeps
};

class TokenInterceptorFactory final : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit TokenInterceptorFactory(const std::string& token) : value_(absl::StrCat("Bearer ", token)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(grpc::experimental::ClientRpcInfo* info) override {
    return new TokenInterceptor(&value_);
  }

 private:
  const std::string value_;
};

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

absl::StatusOr<GrpcSecurity> LoadGrpcSecurity(const std::string& cert_file, const std::string& key_file,
                                              const std::string& ca_file, const std::string& token_file,
                                              const std::string& server_name) {
  GrpcSecurity s;
  if (cert_file.empty() != key_file.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together: give both or neither");
  }
  if (!cert_file.empty()) {
    auto cert = ReadPem(cert_file, "tls_cert");
    if (!cert.ok()) return cert.status();
    auto key = ReadPem(key_file, "tls_key");
    if (!key.ok()) return key.status();
    s.cert_pem = *std::move(cert);
    s.key_pem = *std::move(key);
  }
  if (!ca_file.empty()) {
    auto ca = ReadPem(ca_file, "tls_ca");
    if (!ca.ok()) return ca.status();
    s.ca_pem = *std::move(ca);
  }
  if (!token_file.empty()) {
    auto token = ReadFile(token_file);
    if (!token.ok()) {
      return absl::Status(token.status().code(),
                          absl::StrCat("--auth_token_file=", token_file, ": ", token.status().message()));
    }
    s.token = std::string(absl::StripAsciiWhitespace(*token));
    if (s.token.empty()) return absl::InvalidArgumentError(absl::StrCat("--auth_token_file=", token_file, " is empty"));
    for (char c : s.token) {
      if (c < 0x21 || c > 0x7e) {
        return absl::InvalidArgumentError(
            absl::StrCat("--auth_token_file=", token_file, ": the token must be printable ASCII without spaces"));
      }
    }
  }
  s.server_name = server_name;
  return s;
}

std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(const GrpcSecurity& security) {
  if (!security.server_tls()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions options;
  options.pem_key_cert_pairs.push_back({security.key_pem, security.cert_pem});
  return grpc::SslServerCredentials(options);
}

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address, const GrpcSecurity& security,
                                           grpc::ChannelArguments args) {
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (security.client_tls()) {
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = security.ca_pem;
    credentials = grpc::SslCredentials(options);
    if (!security.server_name.empty()) args.SetSslTargetNameOverride(security.server_name);
  }
  if (security.token.empty()) return grpc::CreateCustomChannel(address, credentials, args);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<TokenInterceptorFactory>(security.token));
  return grpc::experimental::CreateCustomChannelWithInterceptors(address, credentials, args, std::move(interceptors));
}

grpc::Status CheckToken(const grpc::ServerContext& context, const std::string& token) {
  if (token.empty()) return grpc::Status::OK;
  const std::string expected = absl::StrCat("Bearer ", token);
  auto [begin, end] = context.client_metadata().equal_range("authorization");
  for (auto it = begin; it != end; ++it) {
    if (ConstantTimeEquals(std::string_view(it->second.data(), it->second.size()), expected)) {
      return grpc::Status::OK;
    }
  }
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                      begin == end ? "this server requires a bearer token (--auth_token_file)" : "wrong bearer token");
}

}  // namespace meow
