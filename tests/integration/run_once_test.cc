// Client::RunOnce (client/include/idem/run_once.h), outcome by outcome,
// against a real in-process idemd on the test PostgreSQL.
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "tests/integration/idemd_process.h"
#include "tests/integration/test_env.h"

namespace idem {
namespace {

using idem::v1::BeginResponse;
using idem::v1::Record;
using testenv::InProcessIdemd;

// Work that counts its runs and returns `response`.
Work Counting(std::atomic<int>* runs, std::string response,
              absl::Duration sleep = absl::ZeroDuration()) {
  return [runs, response, sleep](const Lease& lease) -> absl::StatusOr<WorkResult> {
    runs->fetch_add(1);
    absl::SleepFor(sleep);
    return WorkResult{response, 201, {{"content-type", "text/plain"}}};
  };
}

// Short backoff so the tests do not wait on it.
RunOnceOptions FastOptions() {
  RunOnceOptions options;
  options.initial_backoff = absl::Milliseconds(20);
  options.max_backoff = absl::Milliseconds(200);
  options.deadline = absl::Seconds(10);
  return options;
}

class RunOnceTest : public testenv::SharedIdemdTest {
 protected:

  absl::StatusOr<RunOnceResult> RunOnce(const std::string& key, const std::string& request,
                                        const Work& work,
                                        const RunOnceOptions& options = FastOptions()) {
    return client().RunOnce(scope_, key, request, work, options);
  }

};


TEST_F(RunOnceTest, FirstRunCompletes) {
  std::atomic<int> runs{0};
  int64_t token = 0;
  int32_t attempt = 0;
  absl::StatusOr<RunOnceResult> r =
      RunOnce("k", "request", [&](const Lease& lease) -> absl::StatusOr<WorkResult> {
        ++runs;
        token = lease.token;
        attempt = lease.attempt;
        return WorkResult{"receipt-1", 201, {{"content-type", "text/plain"}}};
      });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->executed);
  EXPECT_EQ(runs, 1);
  EXPECT_GT(token, 0);
  EXPECT_EQ(attempt, 1);
  EXPECT_EQ(r->record.status(), Record::COMPLETED);
  EXPECT_EQ(r->record.response(), "receipt-1");
  EXPECT_EQ(r->record.response_code(), 201);
  EXPECT_EQ(r->record.response_metadata().at("content-type"), "text/plain");
  EXPECT_EQ(r->record.lease_token(), token);
}

TEST_F(RunOnceTest, SecondCallReplaysWithoutRunningWork) {
  std::atomic<int> runs{0};
  ASSERT_TRUE(RunOnce("k", "request", Counting(&runs, "receipt")).ok());
  absl::StatusOr<RunOnceResult> again = RunOnce("k", "request", Counting(&runs, "other"));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->executed);
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(again->record.status(), Record::COMPLETED);
  EXPECT_EQ(again->record.response(), "receipt");
  EXPECT_EQ(again->record.response_code(), 201);
}

TEST_F(RunOnceTest, PermanentFailureIsStoredAndReplayed) {
  std::atomic<int> runs{0};
  const Work declined = [&](const Lease&) -> absl::StatusOr<WorkResult> {
    ++runs;
    return absl::InvalidArgumentError("card declined");
  };
  absl::StatusOr<RunOnceResult> first = RunOnce("k", "request", declined);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->executed);
  EXPECT_EQ(first->record.status(), Record::FAILED);
  EXPECT_EQ(first->record.error(), "card declined");
  EXPECT_EQ(first->record.response_code(),
            static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_FALSE(first->record.retryable());

  absl::StatusOr<RunOnceResult> again = RunOnce("k", "request", declined);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->executed);
  EXPECT_EQ(again->record.status(), Record::FAILED);
  EXPECT_EQ(again->record.error(), "card declined");
  EXPECT_EQ(runs, 1);
}

TEST_F(RunOnceTest, RetryableFailureReleasesTheKeyForTheNextRun) {
  absl::StatusOr<RunOnceResult> first =
      RunOnce("k", "request", [](const Lease&) -> absl::StatusOr<WorkResult> {
        return absl::UnavailableError("provider down");
      });
  EXPECT_EQ(first.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(first.status().message(), "provider down");
  absl::StatusOr<Record> released = client().Get(scope_, "k");
  ASSERT_TRUE(released.ok()) << released.status();
  EXPECT_EQ(released->status(), Record::FAILED);
  EXPECT_TRUE(released->retryable());

  int32_t attempt = 0;
  absl::StatusOr<RunOnceResult> second =
      RunOnce("k", "request", [&](const Lease& lease) -> absl::StatusOr<WorkResult> {
        attempt = lease.attempt;
        return WorkResult{"receipt", 200, {}};
      });
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(second->executed);
  EXPECT_EQ(attempt, 2);
  EXPECT_EQ(second->record.status(), Record::COMPLETED);
  EXPECT_EQ(second->record.attempt(), 2);
}

TEST_F(RunOnceTest, SameKeyOtherRequestIsFailedPreconditionWithoutRunningWork) {
  std::atomic<int> runs{0};
  ASSERT_TRUE(RunOnce("k", "request A", Counting(&runs, "a")).ok());
  absl::StatusOr<RunOnceResult> other = RunOnce("k", "request B", Counting(&runs, "b"));
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition) << other.status();
  EXPECT_NE(other.status().message().find("Begin"), absl::string_view::npos)
      << other.status();
  EXPECT_EQ(runs, 1);
}

TEST_F(RunOnceTest, TenConcurrentCallersRunWorkOnceAndAllGetTheResponse) {
  constexpr int kCallers = 10;
  std::atomic<int> runs{0};
  absl::Mutex mu;
  std::vector<absl::StatusOr<RunOnceResult>> results;
  std::vector<std::thread> threads;
  for (int i = 0; i < kCallers; ++i) {
    threads.emplace_back([&, i] {
      absl::StatusOr<RunOnceResult> r = RunOnce(
          "k", "request", Counting(&runs, absl::StrCat("receipt from ", i),
                                   absl::Milliseconds(300)));
      absl::MutexLock lock(&mu);
      results.push_back(std::move(r));
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(runs, 1);
  ASSERT_EQ(results.size(), static_cast<size_t>(kCallers));
  int executed = 0;
  for (const absl::StatusOr<RunOnceResult>& r : results) {
    ASSERT_TRUE(r.ok()) << r.status();
    executed += r->executed ? 1 : 0;
    EXPECT_EQ(r->record.status(), Record::COMPLETED);
    EXPECT_EQ(r->record.response(), results[0]->record.response());
  }
  EXPECT_EQ(executed, 1);
}

TEST_F(RunOnceTest, HeartbeatKeepsTheLeaseWhileWorkOutlivesIt) {
  RunOnceOptions options = FastOptions();
  options.lease_ttl = absl::Seconds(1);
  std::vector<BeginResponse::Outcome> seen;
  absl::StatusOr<RunOnceResult> r = RunOnce(
      "k", "request",
      [&](const Lease& lease) -> absl::StatusOr<WorkResult> {
        for (int i = 0; i < 2; ++i) {
          absl::SleepFor(absl::Milliseconds(1250));  // past the 1 s lease
          absl::StatusOr<BeginResponse> other = client().Begin(scope_, "k", "request");
          seen.push_back(other.ok() ? other->outcome() : BeginResponse::OUTCOME_UNSPECIFIED);
        }
        EXPECT_FALSE(lease.lost());
        return WorkResult{"slow receipt", 200, {}};
      },
      options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->executed);
  EXPECT_EQ(r->record.response(), "slow receipt");
  EXPECT_EQ(r->record.attempt(), 1) << "nobody took over";
  EXPECT_EQ(seen, std::vector<BeginResponse::Outcome>(2, BeginResponse::IN_PROGRESS));
}

TEST_F(RunOnceTest, LeaseTakenOverWithoutHeartbeatIsAbortedAndNotStored) {
  RunOnceOptions options = FastOptions();
  options.lease_ttl = absl::Seconds(1);
  options.heartbeat_interval = absl::InfiniteDuration();
  int64_t successor = 0;
  absl::StatusOr<RunOnceResult> r = RunOnce(
      "k", "request",
      [&](const Lease&) -> absl::StatusOr<WorkResult> {
        absl::SleepFor(absl::Milliseconds(1200));
        absl::StatusOr<BeginResponse> other = client().Begin(scope_, "k", "request");
        EXPECT_TRUE(other.ok()) << other.status();
        if (other.ok()) {
          EXPECT_EQ(other->outcome(), BeginResponse::ACQUIRED);
          successor = other->lease_token();
        }
        return WorkResult{"stale result", 200, {}};
      },
      options);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAborted) << r.status();
  absl::StatusOr<Record> record = client().Get(scope_, "k");
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->status(), Record::IN_PROGRESS);
  EXPECT_EQ(record->attempt(), 2);
  EXPECT_EQ(record->response(), "");

  // The successor's result is the one stored.
  idem::v1::CompleteRequest done;
  done.set_scope(scope_);
  done.set_key("k");
  done.set_lease_token(successor);
  done.set_response("successor result");
  ASSERT_TRUE(client().Complete(done).ok());
  std::atomic<int> runs{0};
  absl::StatusOr<RunOnceResult> replay = RunOnce("k", "request", Counting(&runs, "x"));
  ASSERT_TRUE(replay.ok()) << replay.status();
  EXPECT_EQ(replay->record.response(), "successor result");
  EXPECT_EQ(runs, 0);
}

TEST_F(RunOnceTest, HeartbeatMarksALostLeaseAndRunOnceDoesNotComplete) {
  RunOnceOptions options = FastOptions();
  options.lease_ttl = absl::Seconds(1);
  options.heartbeat_interval = absl::Milliseconds(1500);  // stalls past the lease
  bool noticed = false;
  absl::StatusOr<RunOnceResult> r = RunOnce(
      "k", "request",
      [&](const Lease& lease) -> absl::StatusOr<WorkResult> {
        absl::SleepFor(absl::Milliseconds(1100));
        absl::StatusOr<BeginResponse> other = client().Begin(scope_, "k", "request");
        EXPECT_TRUE(other.ok() && other->outcome() == BeginResponse::ACQUIRED);
        const absl::Time give_up = absl::Now() + absl::Seconds(5);
        while (!lease.lost() && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(20));
        noticed = lease.lost();
        return WorkResult{"stale result", 200, {}};
      },
      options);
  EXPECT_TRUE(noticed) << "the heartbeat's ExtendLease should have been ABORTED";
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAborted) << r.status();
  absl::StatusOr<Record> record = client().Get(scope_, "k");
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->status(), Record::IN_PROGRESS);
  EXPECT_EQ(record->attempt(), 2);
}

TEST_F(RunOnceTest, KeyHeldPastTheDeadlineIsDeadlineExceeded) {
  BeginOptions hold;
  hold.lease_ttl = absl::Seconds(30);
  absl::StatusOr<BeginResponse> holder = client().Begin(scope_, "k", "request", hold);
  ASSERT_TRUE(holder.ok() && holder->outcome() == BeginResponse::ACQUIRED);

  RunOnceOptions options = FastOptions();
  options.deadline = absl::Milliseconds(800);
  std::atomic<int> runs{0};
  const absl::Time start = absl::Now();
  absl::StatusOr<RunOnceResult> r = RunOnce("k", "request", Counting(&runs, "x"), options);
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_NE(r.status().message().find("IN_PROGRESS"), absl::string_view::npos)
      << r.status();
  EXPECT_EQ(runs, 0);
  EXPECT_GE(took, absl::Milliseconds(700));
  EXPECT_LT(took, absl::Seconds(5)) << "RunOnce must give up at its deadline";
}

TEST_F(RunOnceTest, NoServerGivesUpAtTheDeadline) {
  ClientOptions client_options;
  client_options.deadline = absl::Milliseconds(300);
  Client nobody(testenv::FastReconnectChannel(
                    absl::StrCat("127.0.0.1:", testenv::PickFreePort())),
                client_options);
  RunOnceOptions options = FastOptions();
  options.deadline = absl::Seconds(1);
  std::atomic<int> runs{0};
  const absl::Time start = absl::Now();
  absl::StatusOr<RunOnceResult> r =
      nobody.RunOnce(scope_, "k", "request", Counting(&runs, "x"), options);
  EXPECT_TRUE(r.status().code() == absl::StatusCode::kUnavailable ||
              r.status().code() == absl::StatusCode::kDeadlineExceeded)
      << r.status();
  EXPECT_EQ(runs, 0);
  EXPECT_LT(absl::Now() - start, absl::Seconds(6)) << "no hang";
}

TEST_F(RunOnceTest, ServerThatComesUpWithinTheDeadlineIsUsed) {
  const int port = testenv::PickFreePort();
  Client late_client(testenv::FastReconnectChannel(absl::StrCat("127.0.0.1:", port)));
  std::unique_ptr<InProcessIdemd> late;
  std::thread starter([&] {
    absl::SleepFor(absl::Milliseconds(700));
    Server::Options server_options = testenv::TestServerOptions();
    server_options.listen = absl::StrCat("127.0.0.1:", port);
    late = std::make_unique<InProcessIdemd>(server_options);
  });
  std::atomic<int> runs{0};
  absl::StatusOr<RunOnceResult> r =
      late_client.RunOnce(scope_, "k", "request", Counting(&runs, "late receipt"),
                          FastOptions());
  starter.join();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->executed);
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(r->record.response(), "late receipt");
}

}  // namespace
}  // namespace idem
