#include "common/rpc_metrics.h"

#include <map>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/reflection.h"
#include "grpcpp/support/status.h"

namespace meow {
namespace {

const char* CodeName(int code) {
  static const char* const kNames[] = {
      "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
      "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
      "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
      "DATA_LOSS", "UNAUTHENTICATED"};
  return code >= 0 && code <= 16 ? kNames[code] : "UNKNOWN";
}

class RpcMetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  RpcMetricsInterceptor(grpc::experimental::ServerRpcInfo* info, RpcMetrics* metrics)
      : method_(info->method() == nullptr ? "" : info->method()), metrics_(metrics) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      metrics_->Record(method_, methods->GetSendStatus().error_code());
    }
    methods->Proceed();
  }

 private:
  std::string method_;
  RpcMetrics* metrics_;  // owned by the factory
};

class RpcMetricsFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RpcMetricsFactory(std::shared_ptr<RpcMetrics> metrics) : metrics_(std::move(metrics)) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(grpc::experimental::ServerRpcInfo* info) override {
    return new RpcMetricsInterceptor(info, metrics_.get());
  }

 private:
  std::shared_ptr<RpcMetrics> metrics_;
};

}  // namespace

void RpcMetrics::Record(const std::string& method, int code) {
  absl::MutexLock lock(&mu_);
  ++counts_[{method, code}];
}

std::map<std::pair<std::string, std::string>, int64_t> RpcMetrics::Snapshot() const {
  absl::MutexLock lock(&mu_);
  std::map<std::pair<std::string, std::string>, int64_t> out;
  for (const auto& [key, n] : counts_) out[{key.first, CodeName(key.second)}] += n;
  return out;
}

void RpcMetrics::AppendTo(PrometheusText& text) const {
  std::map<std::string, int64_t> errors;
  for (const auto& [key, n] : Snapshot()) {
    text.Counter("rpc_total",
                 "RPCs this process's gRPC servers finished (streams when they end), by method and status code.",
                 static_cast<double>(n), {{"method", key.first}, {"code", key.second}});
    errors[key.first] += key.second == "OK" ? 0 : n;
  }
  for (const auto& [method, n] : errors) {
    text.Counter("rpc_errors_total", "RPCs answered with a status other than OK, by method.", static_cast<double>(n),
                 {{"method", method}});
  }
}

std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> RpcMetricsInterceptors(
    std::shared_ptr<RpcMetrics> metrics) {
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> out;
  out.push_back(std::make_unique<RpcMetricsFactory>(std::move(metrics)));
  return out;
}

namespace {

// A map field named NAME_by_LABEL with numeric keys and values: one sample of NAME per entry,
// labelled LABEL="key". Other maps are left out.
void AppendMapNumbers(PrometheusText& text, const std::string& prefix, const google::protobuf::Message& message,
                      const google::protobuf::FieldDescriptor* f) {
  using FD = google::protobuf::FieldDescriptor;
  const size_t by = f->name().rfind("_by_");
  if (by == std::string::npos) return;
  const FD* key = f->message_type()->map_key();
  const FD* value = f->message_type()->map_value();
  auto number = [](const google::protobuf::Message& entry, const FD* field) -> std::optional<double> {
    const google::protobuf::Reflection* r = entry.GetReflection();
    switch (field->cpp_type()) {
      case FD::CPPTYPE_INT32:
        return r->GetInt32(entry, field);
      case FD::CPPTYPE_INT64:
        return static_cast<double>(r->GetInt64(entry, field));
      case FD::CPPTYPE_UINT32:
        return r->GetUInt32(entry, field);
      case FD::CPPTYPE_UINT64:
        return static_cast<double>(r->GetUInt64(entry, field));
      case FD::CPPTYPE_DOUBLE:
        return r->GetDouble(entry, field);
      default:
        return std::nullopt;
    }
  };
  const std::string name = absl::StrCat(prefix, "_", f->name().substr(0, by));
  const std::string label = f->name().substr(by + 4);
  const std::string help = absl::StrCat(message.GetDescriptor()->name(), ".", f->name());
  // Integer keys as written (ids can exceed a double's precision), sorted so pages are stable.
  auto key_text = [key](const google::protobuf::Message& entry) -> std::optional<std::string> {
    const google::protobuf::Reflection* r = entry.GetReflection();
    switch (key->cpp_type()) {
      case FD::CPPTYPE_INT32:
        return absl::StrCat(r->GetInt32(entry, key));
      case FD::CPPTYPE_INT64:
        return absl::StrCat(r->GetInt64(entry, key));
      case FD::CPPTYPE_UINT32:
        return absl::StrCat(r->GetUInt32(entry, key));
      case FD::CPPTYPE_UINT64:
        return absl::StrCat(r->GetUInt64(entry, key));
      case FD::CPPTYPE_STRING:
        return r->GetString(entry, key);
      default:
        return std::nullopt;
    }
  };
  std::map<std::string, double> samples;
  for (const auto& entry : message.GetReflection()->GetRepeatedFieldRef<google::protobuf::Message>(message, f)) {
    auto k = key_text(entry);
    auto v = number(entry, value);
    if (k.has_value() && v.has_value()) samples[*k] = *v;
  }
  for (const auto& [k, v] : samples) text.Gauge(name, help, v, {{label, k}});
}

}  // namespace

void AppendProtoNumbers(PrometheusText& text, const std::string& prefix, const google::protobuf::Message& message) {
  const google::protobuf::Descriptor* d = message.GetDescriptor();
  const google::protobuf::Reflection* r = message.GetReflection();
  using FD = google::protobuf::FieldDescriptor;
  for (int i = 0; i < d->field_count(); ++i) {
    const FD* f = d->field(i);
    if (f->is_map()) {
      AppendMapNumbers(text, prefix, message, f);
      continue;
    }
    if (f->is_repeated()) continue;
    const std::string name = absl::StrCat(prefix, "_", f->name());
    const std::string help = absl::StrCat(d->name(), ".", f->name());
    double v;
    switch (f->cpp_type()) {
      case FD::CPPTYPE_INT32:
        v = r->GetInt32(message, f);
        break;
      case FD::CPPTYPE_INT64:
        v = static_cast<double>(r->GetInt64(message, f));
        break;
      case FD::CPPTYPE_UINT32:
        v = r->GetUInt32(message, f);
        break;
      case FD::CPPTYPE_UINT64:
        v = static_cast<double>(r->GetUInt64(message, f));
        break;
      case FD::CPPTYPE_DOUBLE:
        v = r->GetDouble(message, f);
        break;
      case FD::CPPTYPE_FLOAT:
        v = r->GetFloat(message, f);
        break;
      case FD::CPPTYPE_BOOL:
        v = r->GetBool(message, f) ? 1 : 0;
        break;
      case FD::CPPTYPE_MESSAGE:
        AppendProtoNumbers(text, name, r->GetMessage(message, f));
        continue;
      default:
        continue;
    }
    text.Gauge(name, help, v);
  }
}

}  // namespace meow
