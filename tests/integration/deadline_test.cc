// Deadlines bound every store call: a statement stuck behind a row lock is
// cancelled by PostgreSQL when the call's deadline passes (not only after
// --statement_timeout), and a call that finds every pooled connection busy
// waits for one only until its deadline. Each suite has its own database,
// so the lock waits it looks for in pg_stat_activity are its own.
//
// Nothing here asserts a duration; the times are printed. What is asserted
// is what can only hold if the bound works: the cancelled statement stops
// waiting although --statement_timeout is an hour, and a Complete whose
// call ended DEADLINE_EXCEEDED never lands once the lock is released.
#include <cstdio>
#include <string>
#include <thread>

#include <grpcpp/create_channel.h>
#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include "absl/time/clock.h"
#include "server/postgres_store.h"
#include "tests/integration/test_env.h"

namespace idem {
namespace {

using idem::v1::BeginResponse;
using idem::v1::Record;

// Backends of `url`'s database waiting for a lock.
int LockWaiters(const std::string& url) {
  pqxx::connection c(url);
  pqxx::nontransaction tx(c);
  return tx
      .exec1("SELECT count(*) FROM pg_stat_activity WHERE datname = "
             "current_database() AND wait_event_type = 'Lock'")[0]
      .as<int>();
}

// Polls until `url`'s database has `n` lock waiters; false after 30 s (a
// liveness bound, far above anything expected).
bool AwaitLockWaiters(const std::string& url, int n) {
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  while (absl::Now() < give_up) {
    if (LockWaiters(url) == n) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

// Holds the row lock of every key of `scope` until destroyed or Release().
class RowLocker {
 public:
  RowLocker(const std::string& url, const std::string& scope)
      : connection_(url), tx_(connection_) {
    tx_.exec_params("SELECT 1 FROM idempotency_keys WHERE scope = $1 FOR UPDATE",
                    scope);
  }
  void Release() { tx_.abort(); }

 private:
  pqxx::connection connection_;
  pqxx::work tx_;
};

class CallDeadlineTest : public testenv::SharedIdemdTest {
 protected:
  static void SetUpTestSuite() {
    url_ = new std::string(testenv::CreateMigratedDatabase());
    Server::Options options = testenv::TestServerOptions(*url_);
    // Only the calls' deadlines can cancel a statement in time.
    options.statement_timeout = absl::Hours(1);
    StartIdemd(options);
  }
  static void TearDownTestSuite() {
    SharedIdemdTest::TearDownTestSuite();
    delete url_;
    url_ = nullptr;
  }

  static Client Impatient(absl::Duration deadline) {
    ClientOptions options;
    options.deadline = deadline;
    return Client(grpc::CreateChannel(idemd_->address, grpc::InsecureChannelCredentials()),
                  options);
  }

  static std::string* url_;
};

std::string* CallDeadlineTest::url_ = nullptr;

TEST_F(CallDeadlineTest, CompleteStuckOnARowLockIsCancelledAtItsDeadline) {
  absl::StatusOr<BeginResponse> begun = client().Begin(scope_, "k", "request");
  ASSERT_TRUE(begun.ok()) << begun.status();
  RowLocker locker(*url_, scope_);
  idem::v1::CompleteRequest complete;
  complete.set_scope(scope_);
  complete.set_key("k");
  complete.set_lease_token(begun->lease_token());
  complete.set_response("done");
  const absl::Time start = absl::Now();
  absl::StatusOr<Record> r = Impatient(absl::Milliseconds(500)).Complete(complete);
  const absl::Duration answered = absl::Now() - start;
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  // The statement stops waiting although statement_timeout is an hour.
  ASSERT_TRUE(AwaitLockWaiters(*url_, 0));
  std::printf("Complete with a 500 ms deadline: answered after %s, statement gone "
              "after %s\n",
              absl::FormatDuration(answered).c_str(),
              absl::FormatDuration(absl::Now() - start).c_str());
  locker.Release();
  // It never landed: the record is still in progress, and the holder can
  // complete it now.
  absl::StatusOr<Record> after = client().Get(scope_, "k");
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->status(), Record::IN_PROGRESS);
  absl::StatusOr<Record> completed = client().Complete(complete);
  ASSERT_TRUE(completed.ok()) << completed.status();
  EXPECT_EQ(completed->status(), Record::COMPLETED);
}

TEST_F(CallDeadlineTest, BeginStuckOnARowLockIsCancelledAtItsDeadline) {
  absl::StatusOr<BeginResponse> begun =
      client().Begin(scope_, "k", "request", BeginOptions{absl::Seconds(1)});
  ASSERT_TRUE(begun.ok()) << begun.status();
  RowLocker locker(*url_, scope_);
  absl::SleepFor(absl::Seconds(1));  // The lease runs out: a Begin would take over.
  const absl::Time start = absl::Now();
  absl::StatusOr<BeginResponse> r =
      Impatient(absl::Milliseconds(500)).Begin(scope_, "k", "request");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  ASSERT_TRUE(AwaitLockWaiters(*url_, 0));
  std::printf("Begin with a 500 ms deadline: statement gone after %s\n",
              absl::FormatDuration(absl::Now() - start).c_str());
  locker.Release();
  // The takeover never happened: still the first attempt.
  absl::StatusOr<Record> after = client().Get(scope_, "k");
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->attempt(), 1);
  absl::StatusOr<BeginResponse> again = client().Begin(scope_, "k", "request");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->outcome(), BeginResponse::ACQUIRED);
  EXPECT_EQ(again->record().attempt(), 2);
}

// idemd with one worker (and so one request connection): a call stuck in
// the database holds the only worker only until its own deadline, so the
// calls queued behind it get the worker back instead of waiting forever.
class OneWorkerTest : public CallDeadlineTest {
 protected:
  static void SetUpTestSuite() {
    url_ = new std::string(testenv::CreateMigratedDatabase());
    Server::Options options = testenv::TestServerOptions(*url_);
    options.statement_timeout = absl::Hours(1);
    options.pool_size = 1;
    // Workers are no longer tied to the pool size (group commit wants more).
    options.worker_threads = 1;
    StartIdemd(options);
  }
};

TEST_F(OneWorkerTest, AStuckCallFreesTheOnlyWorkerAtItsDeadline) {
  absl::StatusOr<BeginResponse> begun = client().Begin(scope_, "k", "request");
  ASSERT_TRUE(begun.ok()) << begun.status();
  RowLocker locker(*url_, scope_);
  idem::v1::CompleteRequest complete;
  complete.set_scope(scope_);
  complete.set_key("k");
  complete.set_lease_token(begun->lease_token());
  absl::StatusOr<Record> stuck = absl::UnknownError("not run");
  const absl::Time start = absl::Now();
  std::thread holder([&] { stuck = Impatient(absl::Seconds(2)).Complete(complete); });
  ASSERT_TRUE(AwaitLockWaiters(*url_, 1));
  // Queued behind the stuck call: its own deadline ends it.
  absl::StatusOr<Record> queued = Impatient(absl::Milliseconds(300)).Get(scope_, "k");
  EXPECT_EQ(queued.status().code(), absl::StatusCode::kDeadlineExceeded) << queued.status();
  holder.join();
  EXPECT_EQ(stuck.status().code(), absl::StatusCode::kDeadlineExceeded) << stuck.status();
  ASSERT_TRUE(AwaitLockWaiters(*url_, 0));
  std::printf("the only worker was free again after %s (stuck call's deadline 2 s)\n",
              absl::FormatDuration(absl::Now() - start).c_str());
  // The worker serves again while the lock is still held elsewhere.
  absl::StatusOr<Record> got = client().Get(scope_, "k");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->status(), Record::IN_PROGRESS);
  locker.Release();
}

// The store directly, with one connection: the pool itself.
class FullPoolTest : public testing::Test {
 protected:
  static PostgresStore::Options OneConnection(const std::string& url) {
    PostgresStore::Options options;
    options.url = url;
    options.pool_size = 1;
    options.statement_timeout = absl::Hours(1);
    return options;
  }
};

TEST_F(FullPoolTest, ACallWaitsForABusyPoolOnlyUntilItsDeadline) {
  const std::string url = testenv::CreateMigratedDatabase();
  PostgresStore store(OneConnection(url));
  const std::string scope = testenv::UniqueScope();
  const std::string hash = "hash";
  const BeginParams params{scope, "k", hash, absl::Seconds(30), absl::Hours(1), ""};
  absl::StatusOr<BeginResult> begun = store.Begin(params, absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(begun.ok()) << begun.status();
  RowLocker locker(url, scope);
  // The pool's only connection is held by a Complete waiting for the lock.
  idem::v1::CompleteRequest complete;
  complete.set_scope(scope);
  complete.set_key("k");
  complete.set_lease_token(begun->record.lease_token());
  absl::StatusOr<Record> held = absl::UnknownError("not run");
  std::thread holder([&] { held = store.Complete(complete, absl::Now() + absl::Seconds(60)); });
  ASSERT_TRUE(AwaitLockWaiters(url, 1));
  const absl::Time start = absl::Now();
  absl::StatusOr<Record> waited = store.Get(scope, "k", absl::Now() + absl::Milliseconds(300));
  EXPECT_EQ(waited.status().code(), absl::StatusCode::kDeadlineExceeded) << waited.status();
  EXPECT_NE(waited.status().message().find("waiting for a database connection"),
            absl::string_view::npos)
      << waited.status();
  std::printf("Get with a 300 ms deadline on a busy pool answered after %s\n",
              absl::FormatDuration(absl::Now() - start).c_str());
  EXPECT_EQ(store.pool().waits(), 1);
  locker.Release();
  holder.join();
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_EQ(held->status(), Record::COMPLETED);
  // The pool is free again.
  absl::StatusOr<Record> got = store.Get(scope, "k", absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->status(), Record::COMPLETED);
}

TEST_F(FullPoolTest, ACallPastItsDeadlineStartsNoStatement) {
  PostgresStore store(OneConnection(testenv::SharedDatabaseUrl()));
  absl::StatusOr<Record> r =
      store.Get(testenv::UniqueScope(), "k", absl::Now() - absl::Seconds(1));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  // The connection is fine for the next call.
  EXPECT_EQ(store.Get(testenv::UniqueScope(), "k", absl::Now() + absl::Seconds(10))
                .status()
                .code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace idem
