// The Prometheus text rendering of MetricsRegistry, and the HTTP endpoint.
#include <httplib.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "server/metrics.h"
#include "server/metrics_http.h"
#include "server/rpc_metrics.h"

namespace idem {
namespace {

using metrics_text::EscapeHelp;
using metrics_text::EscapeLabelValue;
using metrics_text::FormatValue;

TEST(MetricsTextTest, EscapesLabelValuesAndHelp) {
  EXPECT_EQ(EscapeLabelValue("plain"), "plain");
  EXPECT_EQ(EscapeLabelValue("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
  // HELP escapes backslash and newline, not quotes.
  EXPECT_EQ(EscapeHelp("say \"hi\"\\\n"), "say \"hi\"\\\\\\n");
}

TEST(MetricsTextTest, FormatsValues) {
  struct Case {
    double value;
    const char* text;
  };
  const Case cases[] = {
      {0, "0"},
      {3, "3"},
      {-2, "-2"},
      {0.25, "0.25"},
      {0.0005, "0.0005"},
      {0.1, "0.1"},
      {1e20, "1e+20"},
      {std::numeric_limits<double>::infinity(), "+Inf"},
      {-std::numeric_limits<double>::infinity(), "-Inf"},
      {std::nan(""), "NaN"},
  };
  for (const Case& c : cases) EXPECT_EQ(FormatValue(c.value), c.text) << c.text;
}

TEST(MetricsRegistryTest, RendersCountersWithHelpTypeAndEscapedLabels) {
  MetricsRegistry registry;
  CounterFamily* rpcs = registry.AddCounter("idem_test_total", "Calls.\nTwo lines.",
                                            {"method", "code"});
  rpcs->WithLabels({"Begin", "OK"})->Increment();
  rpcs->WithLabels({"Begin", "OK"})->Increment(2);
  rpcs->WithLabels({"we\"ird\\", "a\nb"})->Increment();
  rpcs->WithLabels({"Get", "OK"})->Increment(-5);  // Ignored: counters only rise.
  EXPECT_EQ(registry.Render(),
            "# HELP idem_test_total Calls.\\nTwo lines.\n"
            "# TYPE idem_test_total counter\n"
            "idem_test_total{method=\"Begin\",code=\"OK\"} 3\n"
            "idem_test_total{method=\"Get\",code=\"OK\"} 0\n"
            "idem_test_total{method=\"we\\\"ird\\\\\",code=\"a\\nb\"} 1\n");
}

TEST(MetricsRegistryTest, SameLabelsGiveTheSameChild) {
  MetricsRegistry registry;
  GaugeFamily* g = registry.AddGauge("g", "A gauge.", {"x"});
  EXPECT_EQ(g->WithLabels({"a"}), g->WithLabels({"a"}));
  EXPECT_NE(g->WithLabels({"a"}), g->WithLabels({"b"}));
}

TEST(MetricsRegistryTest, RendersUnlabelledGaugesAndCallbacksInOrder) {
  MetricsRegistry registry;
  registry.AddGauge("idem_b", "B.")->WithLabels({})->Set(1.5);
  int calls = 0;
  registry.AddGaugeCallback("idem_a", "A.", [&] { return ++calls * 10.0; });
  registry.AddCounterCallback("idem_c_total", "C.", [] { return 7.0; });
  const std::string expected =
      "# HELP idem_b B.\n# TYPE idem_b gauge\nidem_b 1.5\n"
      "# HELP idem_a A.\n# TYPE idem_a gauge\nidem_a 10\n"
      "# HELP idem_c_total C.\n# TYPE idem_c_total counter\nidem_c_total 7\n";
  EXPECT_EQ(registry.Render(), expected);
  EXPECT_EQ(calls, 1);
}

TEST(MetricsRegistryTest, FamilyWithoutChildrenHasOnlyHelpAndType) {
  MetricsRegistry registry;
  registry.AddCounter("idem_none_total", "Nothing yet.", {"code"});
  EXPECT_EQ(registry.Render(),
            "# HELP idem_none_total Nothing yet.\n# TYPE idem_none_total counter\n");
}

TEST(MetricsRegistryTest, HistogramBucketsAreCumulativeWithInfSumAndCount) {
  MetricsRegistry registry;
  HistogramFamily* h =
      registry.AddHistogram("idem_latency_seconds", "Latency.", {"method"}, {1, 2, 5});
  Histogram* begin = h->WithLabels({"Begin"});
  for (double v : {0.5, 1.0, 1.5, 3.0, 100.0}) begin->Observe(v);
  EXPECT_EQ(registry.Render(),
            "# HELP idem_latency_seconds Latency.\n"
            "# TYPE idem_latency_seconds histogram\n"
            "idem_latency_seconds_bucket{method=\"Begin\",le=\"1\"} 2\n"
            "idem_latency_seconds_bucket{method=\"Begin\",le=\"2\"} 3\n"
            "idem_latency_seconds_bucket{method=\"Begin\",le=\"5\"} 4\n"
            "idem_latency_seconds_bucket{method=\"Begin\",le=\"+Inf\"} 5\n"
            "idem_latency_seconds_sum{method=\"Begin\"} 106\n"
            "idem_latency_seconds_count{method=\"Begin\"} 5\n");
}

TEST(MetricsRegistryTest, UnlabelledHistogram) {
  MetricsRegistry registry;
  registry.AddHistogram("h_seconds", "H.", {}, {0.5})->WithLabels({})->Observe(0.25);
  EXPECT_EQ(registry.Render(),
            "# HELP h_seconds H.\n# TYPE h_seconds histogram\n"
            "h_seconds_bucket{le=\"0.5\"} 1\nh_seconds_bucket{le=\"+Inf\"} 1\n"
            "h_seconds_sum 0.25\nh_seconds_count 1\n");
}

TEST(MetricsRegistryTest, LatencyBucketsSpanHalfAMillisecondToTenSeconds) {
  const std::vector<double> b = LatencyBuckets();
  ASSERT_FALSE(b.empty());
  EXPECT_EQ(b.front(), 0.0005);
  EXPECT_EQ(b.back(), 10);
  EXPECT_TRUE(std::is_sorted(b.begin(), b.end()));
}

TEST(RpcMetricsTest, RecordsCodeOutcomeLatencyAndBatchItems) {
  MetricsRegistry registry;
  RpcMetrics metrics(&registry);
  metrics.Record("Begin", grpc::Status::OK, "COMPLETED", absl::Milliseconds(2));
  metrics.Record("Complete", grpc::Status(grpc::StatusCode::ABORTED, "lost"), "",
                 absl::Seconds(20));
  idem::v1::BatchBeginResponse batch;
  batch.add_results()->mutable_response()->set_outcome(
      idem::v1::BeginResponse::ACQUIRED);
  batch.add_results()->set_code(9);  // FAILED_PRECONDITION
  metrics.RecordBatchItems(batch);
  const std::string text = registry.Render();
  for (const char* line : {
           "idem_rpcs_total{method=\"Begin\",code=\"OK\",outcome=\"COMPLETED\"} 1\n",
           "idem_rpcs_total{method=\"Complete\",code=\"ABORTED\",outcome=\"\"} 1\n",
           "idem_batch_begin_items_total{code=\"OK\",outcome=\"ACQUIRED\"} 1\n",
           "idem_batch_begin_items_total{code=\"FAILED_PRECONDITION\",outcome=\"\"} 1\n",
           "idem_rpc_duration_seconds_bucket{method=\"Begin\",le=\"0.001\"} 0\n",
           "idem_rpc_duration_seconds_bucket{method=\"Begin\",le=\"0.0025\"} 1\n",
           "idem_rpc_duration_seconds_bucket{method=\"Complete\",le=\"10\"} 0\n",
           "idem_rpc_duration_seconds_bucket{method=\"Complete\",le=\"+Inf\"} 1\n",
           "idem_rpc_duration_seconds_count{method=\"Get\"} 0\n",
           "# TYPE idem_rpc_duration_seconds histogram\n",
       }) {
    EXPECT_NE(text.find(line), std::string::npos) << line << "\nnot in\n" << text;
  }
}

TEST(MetricsHttpTest, ParsesHostPort) {
  using HP = std::pair<std::string, int>;
  EXPECT_EQ(*ParseHostPort("0.0.0.0:9464"), HP("0.0.0.0", 9464));
  EXPECT_EQ(*ParseHostPort(":9464"), HP("0.0.0.0", 9464));
  EXPECT_EQ(*ParseHostPort("[::1]:0"), HP("::1", 0));
  EXPECT_EQ(*ParseHostPort("localhost:80"), HP("localhost", 80));
  for (const char* bad : {"", "9464", "host:", "host:x", "host:65536", "::1:80", "h:-1"}) {
    EXPECT_EQ(ParseHostPort(bad).status().code(), absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST(MetricsHttpTest, ServesMetricsAnd404Elsewhere) {
  MetricsRegistry registry;
  registry.AddGauge("idem_up", "Up.")->WithLabels({})->Set(1);
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server =
      MetricsHttpServer::Start("127.0.0.1:0", &registry);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->port(), 0);

  httplib::Client client("127.0.0.1", (*server)->port());
  httplib::Result metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics) << httplib::to_string(metrics.error());
  EXPECT_EQ(metrics->status, 200);
  EXPECT_EQ(metrics->get_header_value("Content-Type"),
            "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(metrics->body, "# HELP idem_up Up.\n# TYPE idem_up gauge\nidem_up 1\n");
  httplib::Result other = client.Get("/");
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 404);

  // The port is taken: a second server says so instead of starting.
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> second = MetricsHttpServer::Start(
      absl::StrCat("127.0.0.1:", (*server)->port()), &registry);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find("--metrics_listen"), absl::string_view::npos);

  (*server)->Stop();
  (*server)->Stop();  // Idempotent.
  EXPECT_FALSE(client.Get("/metrics"));
}

// Threads add children, count and observe while another renders; every
// update is in the final text. (Run under ThreadSanitizer by scripts/test.)
TEST(MetricsRegistryTest, UpdatesFromManyThreadsWhileRenderingAreAllCounted) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2000;
  MetricsRegistry registry;
  CounterFamily* calls = registry.AddCounter("idem_race_total", "Calls.", {"thread"});
  HistogramFamily* latency =
      registry.AddHistogram("idem_race_seconds", "Latency.", {}, {0.5, 1});
  std::atomic<bool> done{false};
  std::thread renderer([&] {
    while (!done.load()) EXPECT_FALSE(registry.Render().empty());
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        calls->WithLabels({absl::StrCat(t % 2)})->Increment();
        latency->WithLabels({})->Observe(i % 2 == 0 ? 0.25 : 0.75);
      }
    });
  }
  for (auto& t : threads) t.join();
  done = true;
  renderer.join();
  const std::string text = registry.Render();
  const std::string half = absl::StrCat(kThreads / 2 * kPerThread);
  const std::string all = absl::StrCat(kThreads * kPerThread);
  EXPECT_NE(text.find("idem_race_total{thread=\"0\"} " + half + "\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("idem_race_total{thread=\"1\"} " + half + "\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("idem_race_seconds_bucket{le=\"0.5\"} " +
                      absl::StrCat(kThreads * kPerThread / 2) + "\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("idem_race_seconds_count " + all + "\n"), std::string::npos) << text;
  EXPECT_NE(text.find("idem_race_seconds_sum " + absl::StrCat(kThreads * kPerThread / 2) +
                      "\n"),
            std::string::npos)
      << text;
}

}  // namespace
}  // namespace idem
