// Prometheus metrics of an in-process idemd, scraped over HTTP after RPCs
// whose outcomes are known: each counter must have moved by exactly what
// the test did (every test has its own idemd and database).
#include <httplib.h>

#include <map>
#include <string>

#include <gtest/gtest.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "tests/integration/test_env.h"

namespace idem {
namespace {

using idem::v1::BeginResponse;
using testenv::InProcessIdemd;

// Series ("name{labels}") to value, from one scrape.
using Scrape = std::map<std::string, double>;

class MetricsIntegrationTest : public testing::Test {
 protected:
  void Start(absl::Duration sweep_interval) {
    Server::Options options = testenv::TestServerOptions(testenv::CreateMigratedDatabase());
    options.metrics_listen = "127.0.0.1:0";
    options.metrics_collect_interval = absl::Milliseconds(100);
    options.sweep_interval = sweep_interval;
    idemd_ = std::make_unique<InProcessIdemd>(options);
    ASSERT_NE(idemd_->client, nullptr);
    ASSERT_GT(idemd_->server->metrics_port(), 0);
    scope_ = testenv::UniqueScope();
  }

  Client& client() { return *idemd_->client; }

  httplib::Result Get(const std::string& path) {
    httplib::Client http("127.0.0.1", idemd_->server->metrics_port());
    return http.Get(path.c_str());
  }

  Scrape ScrapeMetrics() {
    httplib::Result r = Get("/metrics");
    Scrape scrape;
    EXPECT_TRUE(r) << httplib::to_string(r.error());
    if (!r) return scrape;
    EXPECT_EQ(r->status, 200);
    for (absl::string_view line : absl::StrSplit(r->body, '\n', absl::SkipEmpty())) {
      if (line[0] == '#') continue;
      const size_t space = line.rfind(' ');
      double value = 0;
      EXPECT_TRUE(absl::SimpleAtod(line.substr(space + 1), &value)) << line;
      scrape[std::string(line.substr(0, space))] = value;
    }
    return scrape;
  }

  // The value of `series`, or -1 when it is absent.
  static double Value(const Scrape& scrape, const std::string& series) {
    auto it = scrape.find(series);
    return it == scrape.end() ? -1 : it->second;
  }

  // Scrapes until `series` reaches at least `at_least` or 10 s pass.
  Scrape AwaitAtLeast(const std::string& series, double at_least) {
    const absl::Time give_up = absl::Now() + absl::Seconds(10);
    Scrape scrape = ScrapeMetrics();
    while (Value(scrape, series) < at_least && absl::Now() < give_up) {
      absl::SleepFor(absl::Milliseconds(50));
      scrape = ScrapeMetrics();
    }
    return scrape;
  }

  idem::v1::BeginRequest BeginRequest(const std::string& key,
                                      const std::string& request = "request",
                                      absl::Duration lease = absl::ZeroDuration(),
                                      const std::string& owner = "") {
    idem::v1::BeginRequest r;
    r.set_scope(scope_);
    r.set_key(key);
    r.set_request_hash(Client::RequestHash(request));
    if (lease > absl::ZeroDuration()) {
      r.mutable_lease_ttl()->set_seconds(absl::ToInt64Seconds(lease));
    }
    r.set_owner(owner);
    return r;
  }

  BeginResponse::Outcome BeginOutcome(const idem::v1::BeginRequest& request) {
    absl::StatusOr<BeginResponse> r = client().Begin(request);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->outcome() : BeginResponse::OUTCOME_UNSPECIFIED;
  }

  absl::StatusCode Complete(const std::string& key, int64_t token) {
    idem::v1::CompleteRequest c;
    c.set_scope(scope_);
    c.set_key(key);
    c.set_lease_token(token);
    c.set_response("done");
    return client().Complete(c).status().code();
  }

  std::unique_ptr<InProcessIdemd> idemd_;
  std::string scope_;
};

std::string Rpcs(const std::string& method, const std::string& code,
                 const std::string& outcome = "") {
  return "idem_rpcs_total{method=\"" + method + "\",code=\"" + code +
         "\",outcome=\"" + outcome + "\"}";
}

TEST_F(MetricsIntegrationTest, CountsEachOutcomeAndTimesEveryCall) {
  Start(absl::Hours(1));

  // A replay.
  absl::StatusOr<BeginResponse> first = client().Begin(BeginRequest("paid"));
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->outcome(), BeginResponse::ACQUIRED);
  ASSERT_EQ(Complete("paid", first->lease_token()), absl::StatusCode::kOk);
  EXPECT_EQ(BeginOutcome(BeginRequest("paid")), BeginResponse::COMPLETED);
  // A request mismatch.
  EXPECT_EQ(client().Begin(BeginRequest("paid", "another request")).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // An in-progress conflict, then a takeover once the 1 s lease ran out,
  // then the first holder's Complete loses.
  absl::StatusOr<BeginResponse> lapsed =
      client().Begin(BeginRequest("slow", "request", absl::Seconds(1)));
  ASSERT_TRUE(lapsed.ok()) << lapsed.status();
  EXPECT_EQ(BeginOutcome(BeginRequest("slow")), BeginResponse::IN_PROGRESS);
  absl::SleepFor(absl::Milliseconds(1100));
  absl::StatusOr<BeginResponse> taken = client().Begin(BeginRequest("slow"));
  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_EQ(taken->outcome(), BeginResponse::ACQUIRED);
  EXPECT_EQ(taken->record().attempt(), 2);
  EXPECT_EQ(Complete("slow", lapsed->lease_token()), absl::StatusCode::kAborted);
  // A re-entry by the same owner.
  EXPECT_EQ(BeginOutcome(BeginRequest("mine", "request", absl::Seconds(30), "owner-1")),
            BeginResponse::ACQUIRED);
  EXPECT_EQ(BeginOutcome(BeginRequest("mine", "request", absl::Seconds(30), "owner-1")),
            BeginResponse::ACQUIRED);
  // A batch: one replay, one new key, one mismatch.
  idem::v1::BatchBeginRequest batch;
  *batch.add_requests() = BeginRequest("paid");
  *batch.add_requests() = BeginRequest("batched");
  *batch.add_requests() = BeginRequest("mine", "another request");
  ASSERT_TRUE(client().BatchBegin(batch).ok());
  // A Get that finds nothing.
  EXPECT_EQ(client().Get(scope_, "nothing").status().code(), absl::StatusCode::kNotFound);

  const Scrape s = ScrapeMetrics();
  // Begin: paid, slow, slow (takeover), mine, mine (re-entry).
  EXPECT_EQ(Value(s, Rpcs("Begin", "OK", "ACQUIRED")), 5);
  EXPECT_EQ(Value(s, Rpcs("Begin", "OK", "COMPLETED")), 1);
  EXPECT_EQ(Value(s, Rpcs("Begin", "OK", "IN_PROGRESS")), 1);
  EXPECT_EQ(Value(s, Rpcs("Begin", "FAILED_PRECONDITION")), 1);
  EXPECT_EQ(Value(s, Rpcs("Complete", "OK")), 1);
  EXPECT_EQ(Value(s, Rpcs("Complete", "ABORTED")), 1);
  EXPECT_EQ(Value(s, Rpcs("BatchBegin", "OK")), 1);
  EXPECT_EQ(Value(s, Rpcs("Get", "NOT_FOUND")), 1);
  EXPECT_EQ(Value(s, "idem_batch_begin_items_total{code=\"OK\",outcome=\"COMPLETED\"}"), 1);
  EXPECT_EQ(Value(s, "idem_batch_begin_items_total{code=\"OK\",outcome=\"ACQUIRED\"}"), 1);
  EXPECT_EQ(Value(s, "idem_batch_begin_items_total{code=\"FAILED_PRECONDITION\",outcome=\"\"}"), 1);
  EXPECT_EQ(Value(s, "idem_lease_takeovers_total"), 1);
  EXPECT_EQ(Value(s, "idem_lease_reentries_total"), 1);

  // Every call is timed once: the histogram counts match the calls.
  for (const auto& [method, calls] : std::map<std::string, double>{
           {"Begin", 8}, {"Complete", 2}, {"BatchBegin", 1}, {"Get", 1},
           {"Fail", 0}, {"ExtendLease", 0}}) {
    const std::string labels = "{method=\"" + method + "\"}";
    EXPECT_EQ(Value(s, "idem_rpc_duration_seconds_count" + labels), calls) << method;
    EXPECT_EQ(Value(s, "idem_rpc_duration_seconds_bucket{method=\"" + method +
                           "\",le=\"+Inf\"}"),
              calls)
        << method;
    EXPECT_GE(Value(s, "idem_rpc_duration_seconds_bucket{method=\"" + method +
                           "\",le=\"10\"}"),
              Value(s, "idem_rpc_duration_seconds_bucket{method=\"" + method +
                           "\",le=\"0.0005\"}"))
        << method;
    EXPECT_GE(Value(s, "idem_rpc_duration_seconds_sum" + labels), 0) << method;
  }

  // The parts' own numbers.
  EXPECT_EQ(Value(s, "idem_db_pool_connections"), 4 + 3);
  EXPECT_GE(Value(s, "idem_db_pool_connections_in_use"), 0);
  EXPECT_GE(Value(s, "idem_db_pool_waits_total"), 0);
  EXPECT_GE(Value(s, "idem_db_pool_wait_seconds_total"), 0);
  EXPECT_EQ(Value(s, "idem_waiting_begins"), 0);
  EXPECT_EQ(Value(s, "idem_worker_queue_depth"), 0);
  EXPECT_EQ(Value(s, "idem_sweeper_runs_total"), 0);
  EXPECT_EQ(Value(s, "idem_store_stats_errors_total"), 0);

  // Anything but /metrics is 404.
  httplib::Result other = Get("/metrics/extra");
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 404);
}

TEST_F(MetricsIntegrationTest, ReportsLapsedLeasesAndSweeperLag) {
  Start(absl::Hours(1));
  // In progress with a lapsed lease (retention 24 h): counted.
  ASSERT_EQ(BeginOutcome(BeginRequest("lapsed", "request", absl::Seconds(1))),
            BeginResponse::ACQUIRED);
  // Expired (lease and retention 1 s): part of the lag, not counted above.
  idem::v1::BeginRequest expiring = BeginRequest("expiring", "request", absl::Seconds(1));
  expiring.mutable_retention()->set_seconds(1);
  ASSERT_EQ(BeginOutcome(expiring), BeginResponse::ACQUIRED);

  const Scrape s = AwaitAtLeast("idem_sweeper_lag_seconds", 0.5);
  EXPECT_GE(Value(s, "idem_sweeper_lag_seconds"), 0.5);
  EXPECT_LT(Value(s, "idem_sweeper_lag_seconds"), 30);
  EXPECT_EQ(Value(s, "idem_keys_in_progress_past_lease"), 1);
}

TEST_F(MetricsIntegrationTest, CountsSweptRowsAndTheLagGoesBackToZero) {
  Start(absl::Seconds(2));
  idem::v1::BeginRequest expiring = BeginRequest("expiring", "request", absl::Seconds(1));
  expiring.mutable_retention()->set_seconds(1);
  ASSERT_EQ(BeginOutcome(expiring), BeginResponse::ACQUIRED);

  Scrape s = AwaitAtLeast("idem_sweeper_rows_removed_total", 1);
  EXPECT_EQ(Value(s, "idem_sweeper_rows_removed_total"), 1);
  EXPECT_GE(Value(s, "idem_sweeper_runs_total"), 1);
  EXPECT_EQ(Value(s, "idem_sweeper_errors_total"), 0);
  // The collector runs every 100 ms: give it a few rounds.
  absl::SleepFor(absl::Milliseconds(500));
  s = ScrapeMetrics();
  EXPECT_EQ(Value(s, "idem_sweeper_lag_seconds"), 0);
  EXPECT_EQ(Value(s, "idem_keys_in_progress_past_lease"), 0);
}

TEST_F(MetricsIntegrationTest, StartFailsWhenTheMetricsPortIsTaken) {
  Start(absl::Hours(1));
  Server::Options options = testenv::TestServerOptions();
  options.metrics_listen = "127.0.0.1:" + std::to_string(idemd_->server->metrics_port());
  absl::StatusOr<std::unique_ptr<Server>> second = Server::BuildAndStart(options);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find("--metrics_listen"), absl::string_view::npos)
      << second.status();
}

}  // namespace
}  // namespace idem
