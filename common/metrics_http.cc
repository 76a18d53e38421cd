#include "common/metrics_http.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>

#include <unistd.h>

#include <sys/socket.h>

#include <httplib.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/address.h"

namespace meow {
namespace {

std::string EscapeLabel(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return absl::StrFormat("%.17g", v);
}

}  // namespace

void PrometheusText::Gauge(const std::string& name, const std::string& help, double value, const Labels& labels) {
  Add("gauge", name, help, value, labels);
}

void PrometheusText::Counter(const std::string& name, const std::string& help, double value, const Labels& labels) {
  Add("counter", name, help, value, labels);
}

void PrometheusText::Add(const std::string& type, const std::string& name, const std::string& help, double value,
                         const Labels& labels) {
  const std::string full = absl::StrCat("meow_", name);
  if (families_.emplace(full, type).second) {
    absl::StrAppend(&text_, "# HELP ", full, " ", help, "\n# TYPE ", full, " ", type, "\n");
  }
  absl::StrAppend(&text_, full);
  if (!labels.empty()) {
    text_ += '{';
    bool first = true;
    for (const auto& [key, v] : labels) {
      absl::StrAppend(&text_, first ? "" : ",", key, "=\"", EscapeLabel(v), "\"");
      first = false;
    }
    text_ += '}';
  }
  absl::StrAppend(&text_, " ", FormatValue(value), "\n");
}

namespace {

// This process's resident memory and CPU time from /proc (Linux), on every page.
std::string ProcessMetrics() {
  PrometheusText text;
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  if (std::ifstream statm("/proc/self/statm"); statm) {
    double size_pages = 0, resident_pages = 0;
    if (statm >> size_pages >> resident_pages) {
      text.Gauge("process_resident_memory_bytes", "Resident memory of this process.", resident_pages * page);
      text.Gauge("process_virtual_memory_bytes", "Virtual memory of this process.", size_pages * page);
    }
  }
  if (std::ifstream stat("/proc/self/stat"); stat) {
    std::string line;
    std::getline(stat, line);
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    const size_t close = line.rfind(')');
    if (close != std::string::npos && close + 2 < line.size()) {
      std::istringstream rest(line.substr(close + 2));
      std::string field;
      double utime = 0, stime = 0;
      for (int i = 3; i <= 15 && rest >> field; ++i) {
        if (i == 14) utime = std::strtod(field.c_str(), nullptr);
        if (i == 15) stime = std::strtod(field.c_str(), nullptr);
      }
      text.Counter("process_cpu_seconds_total", "User and system CPU time of this process.",
                   (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK)));
    }
  }
  return text.text();
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(const std::string& address,
                                                                            std::function<std::string()> render) {
  auto parsed = ParseHostPort(address);
  if (!parsed.ok()) return absl::InvalidArgumentError(absl::StrCat("metrics address ", parsed.status().message()));
  const std::string host = parsed->host;
  const int port = parsed->port;
  std::unique_ptr<MetricsHttpServer> server(new MetricsHttpServer());
  server->server_ = std::make_unique<httplib::Server>();
  // SO_REUSEADDR only: httplib's default SO_REUSEPORT would let a second process share the port.
  server->server_->set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  server->server_->Get("/metrics", [render = std::move(render)](const httplib::Request&, httplib::Response& res) {
    res.set_content(absl::StrCat(render(), ProcessMetrics()), "text/plain; version=0.0.4; charset=utf-8");
  });
  server->server_->Get("/healthz",
                       [](const httplib::Request&, httplib::Response& res) { res.set_content("ok\n", "text/plain"); });
  if (port == 0) {
    server->port_ = server->server_->bind_to_any_port(host);
  } else {
    server->port_ = server->server_->bind_to_port(host, port) ? port : -1;
  }
  if (server->port_ <= 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen for metrics on ", address, " (address in use?)"));
  }
  httplib::Server* raw = server->server_.get();
  server->thread_ = std::thread([raw] { raw->listen_after_bind(); });
  // stop() does nothing until the listen loop runs: wait for it, so destruction never hangs.
  for (int waited_ms = 0; !raw->is_running(); ++waited_ms) {
    if (waited_ms > 5000) return absl::InternalError(absl::StrCat("the metrics server on ", address, " did not start"));
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return server;
}

MetricsHttpServer::~MetricsHttpServer() {
  if (server_ != nullptr) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace meow
