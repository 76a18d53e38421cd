// Metrics in the Prometheus text format (version 0.0.4) on an HTTP port of each process:
// GET /metrics answers what the process's render function writes, GET /healthz answers "ok"
// (Kubernetes liveness probes of processes without a gRPC server).
//
// PrometheusText builds the page: one HELP and TYPE line per metric family, then its samples.
// Names are prefixed "meow_"; label values are escaped. Not thread-safe (one per scrape).
// MetricsHttpServer serves on its own threads until destroyed. Thread-safe.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace httplib {
class Server;
}

namespace meow {

class PrometheusText {
 public:
  using Labels = std::map<std::string, std::string>;
  // A gauge (any value) or a counter (only increases); NaN is written as NaN.
  void Gauge(const std::string& name, const std::string& help, double value, const Labels& labels = {});
  void Counter(const std::string& name, const std::string& help, double value, const Labels& labels = {});
  const std::string& text() const { return text_; }

 private:
  void Add(const std::string& type, const std::string& name, const std::string& help, double value,
           const Labels& labels);
  std::string text_;
  std::map<std::string, std::string> families_;  // name -> type, to write HELP/TYPE once
};

class MetricsHttpServer {
 public:
  // Listens on host:port (port 0 picks one). `render` is called on every scrape, from the
  // server's threads.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const std::string& address,
                                                                  std::function<std::string()> render);
  ~MetricsHttpServer();
  int port() const { return port_; }

 private:
  MetricsHttpServer() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace meow
