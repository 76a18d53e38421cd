// The Prometheus text page and its HTTP server: exact format (HELP/TYPE once per family, escaped
// label values, NaN), /metrics and /healthz over real HTTP on 127.0.0.1, bad addresses refused.
#include "common/metrics_http.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "httplib.h"

namespace meow {
namespace {

using ::testing::HasSubstr;

TEST(PrometheusTextTest, FamiliesLabelsAndSpecialValues) {
  PrometheusText text;
  text.Counter("rpc_total", "Calls.", 3, {{"method", "/a/B"}, {"code", "OK"}});
  text.Counter("rpc_total", "Calls.", 1, {{"method", "say \"hi\"\\\n"}, {"code", "INTERNAL"}});
  text.Gauge("loss", "Loss.", std::nan(""));
  text.Gauge("steps", "Steps.", 1e6);
  EXPECT_EQ(text.text(),
            "# HELP meow_rpc_total Calls.\n# TYPE meow_rpc_total counter\n"
            "meow_rpc_total{code=\"OK\",method=\"/a/B\"} 3\n"
            "meow_rpc_total{code=\"INTERNAL\",method=\"say \\\"hi\\\"\\\\\\n\"} 1\n"
            "# HELP meow_loss Loss.\n# TYPE meow_loss gauge\nmeow_loss NaN\n"
            "# HELP meow_steps Steps.\n# TYPE meow_steps gauge\nmeow_steps 1000000\n");
}

TEST(MetricsHttpServerTest, ServesMetricsAndHealth) {
  int scrapes = 0;
  auto server = MetricsHttpServer::Start("127.0.0.1:0", [&scrapes] {
    PrometheusText text;
    text.Counter("scrapes_total", "Scrapes.", ++scrapes);
    return text.text();
  });
  ASSERT_TRUE(server.ok()) << server.status();
  httplib::Client client("127.0.0.1", (*server)->port());
  auto metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_THAT(metrics->body, HasSubstr("meow_scrapes_total 1\n"));
  EXPECT_THAT(metrics->get_header_value("Content-Type"), HasSubstr("text/plain; version=0.0.4"));
  EXPECT_THAT(client.Get("/metrics")->body, HasSubstr("meow_scrapes_total 2\n"));
  // Every page also carries this process's memory and CPU time, read from /proc.
  for (const char* family :
       {"meow_process_resident_memory_bytes", "meow_process_virtual_memory_bytes", "meow_process_cpu_seconds_total"}) {
    const size_t at = metrics->body.find(absl::StrCat("\n", family, " "));
    ASSERT_NE(at, std::string::npos) << family << " missing from\n" << metrics->body;
    const double value = std::strtod(metrics->body.c_str() + at + std::strlen(family) + 2, nullptr);
    if (std::string(family) != "meow_process_cpu_seconds_total") EXPECT_GT(value, 1 << 20) << family;
  }
  auto health = client.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->body, "ok\n");
  EXPECT_EQ(client.Get("/other")->status, 404);
}

TEST(MetricsHttpServerTest, BadAddressesAreRefused) {
  auto no_port = MetricsHttpServer::Start("localhost", [] { return std::string(); });
  EXPECT_THAT(std::string(no_port.status().message()), HasSubstr("\"localhost\" is not host:port"));
  auto first = MetricsHttpServer::Start("127.0.0.1:0", [] { return std::string(); });
  ASSERT_TRUE(first.ok());
  auto taken = MetricsHttpServer::Start("127.0.0.1:" + std::to_string((*first)->port()), [] { return std::string(); });
  EXPECT_EQ(taken.status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace meow
