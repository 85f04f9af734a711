// PostgresStore under concurrency, and the sweeper, on the test PostgreSQL.
#include <atomic>
#include <cstdio>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "server/connection_pool.h"
#include "server/group_commit_store.h"
#include "server/postgres_store.h"
#include "server/sweeper.h"
#include "server/worker_pool.h"
#include "tests/integration/test_env.h"

namespace idem {
namespace {

using idem::v1::BeginResponse;

absl::Time Soon() { return absl::Now() + absl::Seconds(20); }

PostgresStore::Options StoreOptions(const std::string& url, int pool_size = 8) {
  PostgresStore::Options options;
  options.url = url;
  options.pool_size = pool_size;
  return options;
}

BeginParams Params(const std::string& scope, const std::string& key,
                   absl::Duration lease = absl::Seconds(30),
                   absl::Duration retention = absl::Hours(1)) {
  static const std::string kHash = "hash";
  return BeginParams{scope, key, kHash, lease, retention, /*owner=*/""};
}

// Starts `n` threads that each call Begin once, all released together.
std::vector<absl::StatusOr<BeginResult>> RaceBegin(PostgresStore& store, int n,
                                                   const BeginParams& params) {
  std::vector<absl::StatusOr<BeginResult>> results(n, absl::UnknownError("unset"));
  absl::Notification go;
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      go.WaitForNotification();
      results[i] = store.Begin(params, Soon());
    });
  }
  go.Notify();
  for (std::thread& t : threads) t.join();
  return results;
}

TEST(StoreRaceTest, FiftyThreadsRacingOneNewKeyAcquireItExactlyOnce) {
  PostgresStore store(StoreOptions(testenv::SharedDatabaseUrl(), 50));
  const std::string scope = testenv::UniqueScope();
  for (int round = 0; round < 3; ++round) {
    const std::string key = "key-" + std::to_string(round);
    int acquired = 0, in_progress = 0;
    for (const auto& r : RaceBegin(store, 50, Params(scope, key))) {
      ASSERT_TRUE(r.ok()) << r.status();
      if (r->outcome == BeginResponse::ACQUIRED) ++acquired;
      if (r->outcome == BeginResponse::IN_PROGRESS) ++in_progress;
    }
    EXPECT_EQ(acquired, 1) << key;
    EXPECT_EQ(in_progress, 49) << key;
  }
}

TEST(StoreRaceTest, RacingTakeoverOfALapsedLeaseHasOneWinner) {
  PostgresStore store(StoreOptions(testenv::SharedDatabaseUrl(), 20));
  const std::string scope = testenv::UniqueScope();
  absl::StatusOr<BeginResult> first =
      store.Begin(Params(scope, "k", absl::Seconds(1)), Soon());
  ASSERT_TRUE(first.ok());
  absl::SleepFor(absl::Milliseconds(1200));
  int acquired = 0;
  int64_t winner_token = 0;
  for (const auto& r : RaceBegin(store, 20, Params(scope, "k"))) {
    ASSERT_TRUE(r.ok()) << r.status();
    if (r->outcome == BeginResponse::ACQUIRED) {
      ++acquired;
      winner_token = r->record.lease_token();
      EXPECT_EQ(r->record.attempt(), 2);
    }
  }
  EXPECT_EQ(acquired, 1);
  EXPECT_GT(winner_token, first->record.lease_token());
}

TEST(StoreRaceTest, RacingCompletesWithOneTokenStoreOneOutcome) {
  PostgresStore store(StoreOptions(testenv::SharedDatabaseUrl(), 16));
  const std::string scope = testenv::UniqueScope();
  absl::StatusOr<BeginResult> begun = store.Begin(Params(scope, "k"), Soon());
  ASSERT_TRUE(begun.ok());
  std::atomic<int> ok{0}, refused{0};
  absl::Notification go;
  std::vector<std::thread> threads;
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([&, i] {
      idem::v1::CompleteRequest c;
      c.set_scope(scope);
      c.set_key("k");
      c.set_lease_token(begun->record.lease_token());
      c.set_response(i % 2 == 0 ? "even" : "odd");
      go.WaitForNotification();
      absl::StatusOr<idem::v1::Record> r = store.Complete(c, Soon());
      if (r.ok()) {
        ok.fetch_add(1);
      } else {
        EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
        refused.fetch_add(1);
      }
    });
  }
  go.Notify();
  for (std::thread& t : threads) t.join();
  // One outcome wins; the 7 identical repeats of it are OK, the 8 others
  // are refused.
  EXPECT_EQ(ok.load(), 8);
  EXPECT_EQ(refused.load(), 8);
}

TEST(StoreFencingTest, TokensStrictlyIncreaseAcrossTakeoversAndReuse) {
  PostgresStore store(StoreOptions(testenv::SharedDatabaseUrl(), 2));
  const std::string scope = testenv::UniqueScope();
  int64_t last = 0;
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<BeginResult> r = store.Begin(Params(scope, "k"), Soon());
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->outcome, BeginResponse::ACQUIRED);
    EXPECT_GT(r->record.lease_token(), last);
    EXPECT_EQ(r->record.attempt(), i + 1);
    last = r->record.lease_token();
    idem::v1::FailRequest f;
    f.set_scope(scope);
    f.set_key("k");
    f.set_lease_token(last);
    f.set_retryable(true);
    ASSERT_TRUE(store.Fail(f, Soon()).ok());
  }
}

TEST(StoreAvailabilityTest, UnreachableDatabaseIsUnavailableNotInternal) {
  PostgresStore store(StoreOptions(
      "postgresql:///idem?host=/nonexistent-socket-dir&user=postgres&connect_timeout=2", 1));
  absl::StatusOr<BeginResult> r = store.Begin(Params("s", "k"), Soon());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_EQ(store.Ping(Soon()).code(), absl::StatusCode::kUnavailable);
}

TEST(StorePoolTest, FullPoolWaitsOnlyUntilTheDeadline) {
  PostgresStore store(StoreOptions(testenv::SharedDatabaseUrl(), 1));
  ASSERT_TRUE(store.Ping(Soon()).ok());
  absl::Notification release;
  absl::Notification holding;
  // Hold the only connection by a Begin blocked on a row lock taken here.
  const std::string scope = testenv::UniqueScope();
  ASSERT_TRUE(store.Begin(Params(scope, "k"), Soon()).ok());
  pqxx::connection locker(testenv::SharedDatabaseUrl());
  pqxx::work tx(locker);
  tx.exec_params("SELECT 1 FROM idempotency_keys WHERE scope = $1 AND key = 'k' FOR UPDATE",
                 scope);
  std::thread blocked([&] { (void)store.Begin(Params(scope, "k"), Soon()); });
  absl::SleepFor(absl::Milliseconds(300));
  const absl::Time start = absl::Now();
  absl::StatusOr<idem::v1::Record> r =
      store.Get(scope, "k", absl::Now() + absl::Milliseconds(200));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  tx.abort();
  blocked.join();
}

// Generic plans follow the table: a plan made while the table was empty
// (and ANALYZEd so) scans it; after replan_interval the pool discards the
// connection's plans, and the same prepared statement is planned again for
// the table as it is, by its primary key.
TEST(StorePoolTest, PlansAreMadeAgainForTheTableAsItGrows) {
  const std::string url = testenv::CreateMigratedDatabase();
  {
    pqxx::connection c(url);
    pqxx::nontransaction tx(c);
    tx.exec("VACUUM ANALYZE idempotency_keys");
  }
  ConnectionPool::Options options;
  options.url = url;
  options.size = 1;  // One connection: every Acquire gets the same one.
  options.on_connect = [](pqxx::connection& c) {
    c.set_variable("plan_cache_mode", "force_generic_plan");
    c.prepare("lookup", "SELECT status FROM idempotency_keys WHERE scope = $1 AND key = $2");
  };
  options.replan_interval = absl::Seconds(2);
  ConnectionPool pool(options);
  auto plan = [&pool]() -> std::string {
    absl::StatusOr<PooledConnection> c = pool.Acquire(Soon());
    EXPECT_TRUE(c.ok()) << c.status();
    if (!c.ok()) return "";
    pqxx::nontransaction tx(c->get());
    tx.exec_prepared("lookup", "s", "k");  // libpqxx prepares on first use.
    std::string text;
    for (const pqxx::row& row : tx.exec("EXPLAIN EXECUTE lookup('s', 'k')")) {
      text += row[0].as<std::string>() + "\n";
    }
    return text;
  };
  const std::string empty = plan();
  EXPECT_NE(empty.find("Seq Scan"), std::string::npos) << empty;
  {
    pqxx::connection c(url);
    pqxx::work fill(c);
    fill.exec(R"sql(
      INSERT INTO idempotency_keys (scope, key, request_hash, status, lease_token,
        attempt, created_at, updated_at, locked_until, expires_at)
      SELECT 'grown', lpad(i::text, 12, '0'), '\x5a', 'in_progress', i + 1, 1,
             now(), now(), now() + interval '1 hour', now() + interval '1 day'
      FROM generate_series(0, 9999) i)sql");
    fill.exec("SELECT setval('idempotency_lease_token_seq', 10001)");
    fill.commit();
  }
  // Not yet: the plan stays until it is discarded (or ANALYZE runs).
  const std::string before = plan();
  EXPECT_NE(before.find("Seq Scan"), std::string::npos) << before;
  absl::SleepFor(absl::Milliseconds(2100));
  const std::string after = plan();
  EXPECT_EQ(after.find("Seq Scan"), std::string::npos) << after;
  EXPECT_NE(after.find("idempotency_keys_pkey"), std::string::npos) << after;
}

// A replay (Begin on a live final record) takes no row lock and writes
// nothing: it answers while another transaction holds the row FOR UPDATE,
// where a locking statement would wait out the statement timeout. A request
// mismatch and a permanently failed key are answered the same way; an
// in-progress key still goes through the locking insert.
TEST(StoreReplayTest, ReplaysOfFinalRecordsTakeNoRowLock) {
  PostgresStore::Options options = StoreOptions(testenv::SharedDatabaseUrl(), 2);
  options.statement_timeout = absl::Seconds(2);
  PostgresStore store(options);
  const std::string scope = testenv::UniqueScope();
  absl::StatusOr<BeginResult> done = store.Begin(Params(scope, "done"), Soon());
  ASSERT_TRUE(done.ok()) << done.status();
  idem::v1::CompleteRequest c;
  c.set_scope(scope);
  c.set_key("done");
  c.set_lease_token(done->record.lease_token());
  c.set_response("the answer");
  ASSERT_TRUE(store.Complete(c, Soon()).ok());
  absl::StatusOr<BeginResult> failed = store.Begin(Params(scope, "failed"), Soon());
  ASSERT_TRUE(failed.ok()) << failed.status();
  idem::v1::FailRequest f;
  f.set_scope(scope);
  f.set_key("failed");
  f.set_lease_token(failed->record.lease_token());
  f.set_error("permanent");
  ASSERT_TRUE(store.Fail(f, Soon()).ok());
  ASSERT_TRUE(store.Begin(Params(scope, "held"), Soon()).ok());

  pqxx::connection locker(testenv::SharedDatabaseUrl());
  pqxx::work tx(locker);
  tx.exec_params("SELECT 1 FROM idempotency_keys WHERE scope = $1 FOR UPDATE", scope);

  absl::StatusOr<BeginResult> replay = store.Begin(Params(scope, "done"), Soon());
  ASSERT_TRUE(replay.ok()) << replay.status();
  EXPECT_EQ(replay->outcome, BeginResponse::COMPLETED);
  EXPECT_EQ(replay->record.response(), "the answer");
  EXPECT_EQ(replay->record.lease_token(), done->record.lease_token());

  const std::string other_hash = "other";
  absl::StatusOr<BeginResult> mismatch = store.Begin(
      BeginParams{scope, "done", other_hash, absl::Seconds(30), absl::Hours(1), ""},
      Soon());
  EXPECT_EQ(mismatch.status().code(), absl::StatusCode::kFailedPrecondition)
      << mismatch.status();

  absl::StatusOr<BeginResult> failed_replay = store.Begin(Params(scope, "failed"), Soon());
  ASSERT_TRUE(failed_replay.ok()) << failed_replay.status();
  EXPECT_EQ(failed_replay->outcome, BeginResponse::FAILED);
  EXPECT_EQ(failed_replay->record.error(), "permanent");

  // The in-progress key still locks: it waits for the row and times out.
  absl::StatusOr<BeginResult> held = store.Begin(Params(scope, "held"), Soon());
  EXPECT_FALSE(held.ok());
  tx.abort();
  held = store.Begin(Params(scope, "held"), Soon());
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_EQ(held->outcome, BeginResponse::IN_PROGRESS);
}

idem::v1::CompleteRequest CompleteOf(const std::string& scope, const std::string& key,
                                     int64_t token, const std::string& response) {
  idem::v1::CompleteRequest c;
  c.set_scope(scope);
  c.set_key(key);
  c.set_lease_token(token);
  c.set_response(response);
  (*c.mutable_response_metadata())["content-type"] = "text/plain";
  return c;
}

// One BatchComplete statement answers each key what Complete would.
TEST(StoreBatchCompleteTest, EachKeyGetsCompletesOwnAnswer) {
  PostgresStore store(StoreOptions(testenv::SharedDatabaseUrl(), 2));
  const std::string scope = testenv::UniqueScope();
  std::vector<int64_t> tokens;
  for (const char* key : {"fresh", "stolen", "repeat", "changed"}) {
    absl::StatusOr<BeginResult> r = store.Begin(Params(scope, key), Soon());
    ASSERT_TRUE(r.ok()) << r.status();
    tokens.push_back(r->record.lease_token());
  }
  ASSERT_TRUE(store.Complete(CompleteOf(scope, "repeat", tokens[2], "same"), Soon()).ok());
  ASSERT_TRUE(store.Complete(CompleteOf(scope, "changed", tokens[3], "first"), Soon()).ok());
  const std::vector<idem::v1::CompleteRequest> requests = {
      CompleteOf(scope, "fresh", tokens[0], std::string("bin\0\"\xff", 7)),
      CompleteOf(scope, "stolen", tokens[1] + 1000000, "x"),
      CompleteOf(scope, "repeat", tokens[2], "same"),
      CompleteOf(scope, "changed", tokens[3], "second"),
      CompleteOf(scope, "never-begun", 1, "x")};
  std::vector<const idem::v1::CompleteRequest*> pointers;
  for (const auto& r : requests) pointers.push_back(&r);
  auto results = store.BatchComplete(pointers, Soon());
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), 5u);
  ASSERT_TRUE((*results)[0].ok()) << (*results)[0].status();
  EXPECT_EQ((*results)[0]->status(), idem::v1::Record::COMPLETED);
  EXPECT_EQ((*results)[0]->response(), std::string("bin\0\"\xff", 7));
  EXPECT_EQ((*results)[0]->response_metadata().at("content-type"), "text/plain");
  EXPECT_EQ((*results)[1].status().code(), absl::StatusCode::kAborted);
  ASSERT_TRUE((*results)[2].ok()) << (*results)[2].status();
  EXPECT_EQ((*results)[2]->response(), "same");
  EXPECT_EQ((*results)[3].status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*results)[4].status().code(), absl::StatusCode::kNotFound);
  // Stored: a replay sees the batch's response.
  absl::StatusOr<idem::v1::Record> got = store.Get(scope, "fresh", Soon());
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->response(), std::string("bin\0\"\xff", 7));
}

// One BatchGet statement answers each id what Get would, in order: the
// live record (the same one Get reads), or nothing for a key that is
// missing or expired; keys with array-literal syntax in them come back
// intact.
TEST(StoreBatchGetTest, EachIdGetsTheRecordGetWouldRead) {
  PostgresStore store(StoreOptions(testenv::SharedDatabaseUrl(), 2));
  const std::string scope = testenv::UniqueScope();
  const std::string odd_key = "a\"b\\c,{d} e";
  absl::StatusOr<BeginResult> done = store.Begin(Params(scope, "done"), Soon());
  ASSERT_TRUE(done.ok()) << done.status();
  ASSERT_TRUE(store.Complete(CompleteOf(scope, "done", done->record.lease_token(),
                                        std::string("bin\0\xff", 5)),
                             Soon())
                  .ok());
  ASSERT_TRUE(store.Begin(Params(scope, "held"), Soon()).ok());
  ASSERT_TRUE(store.Begin(Params(scope, odd_key), Soon()).ok());
  ASSERT_TRUE(store.Begin(Params(scope, "expired", absl::Milliseconds(1),
                                 absl::Milliseconds(1)),
                          Soon())
                  .ok());
  absl::SleepFor(absl::Milliseconds(50));  // "expired" is past its expiry.

  const std::vector<RecordId> ids = {{scope, "done"},    {scope, "missing"},
                                     {scope, odd_key},   {scope, "expired"},
                                     {scope, "held"},    {scope, "done"},
                                     {"other-scope", "done"}};
  auto records = store.BatchGet(ids, Soon());
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    absl::StatusOr<idem::v1::Record> one = store.Get(ids[i].scope, ids[i].key, Soon());
    ASSERT_EQ((*records)[i].has_value(), one.ok()) << "id " << i << ": " << one.status();
    if (one.ok()) {
      EXPECT_EQ((*records)[i]->SerializeAsString(), one->SerializeAsString()) << "id " << i;
    } else {
      EXPECT_EQ(one.status().code(), absl::StatusCode::kNotFound);
    }
  }
  // Not vacuous: found where expected, with the stored fields.
  EXPECT_EQ((*records)[0]->status(), idem::v1::Record::COMPLETED);
  EXPECT_EQ((*records)[0]->response(), std::string("bin\0\xff", 5));
  EXPECT_FALSE((*records)[1].has_value());
  EXPECT_EQ((*records)[2]->key(), odd_key);
  EXPECT_FALSE((*records)[3].has_value());
  EXPECT_EQ((*records)[4]->status(), idem::v1::Record::IN_PROGRESS);
  EXPECT_FALSE((*records)[6].has_value());

  auto none = store.BatchGet({}, Soon());
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

// Through group commit: 50 callers racing one key still give it to exactly
// one, and 40 callers on their own keys each acquire and complete theirs.
TEST(GroupCommitStoreTest, RacesAndManyKeysKeepEveryRule) {
  PostgresStore inner(StoreOptions(testenv::SharedDatabaseUrl(), 4));
  GroupCommitOptions batches;
  batches.max_running = 2;
  batches.max_batch = 64;
  GroupCommitStore store(&inner, GroupCommitStore::Options{batches});
  const std::string scope = testenv::UniqueScope();
  std::vector<absl::StatusOr<BeginResult>> race(50, absl::UnknownError("unset"));
  std::vector<absl::StatusOr<idem::v1::Record>> completed(40, absl::UnknownError("unset"));
  absl::Notification go;
  std::vector<std::thread> threads;
  for (int i = 0; i < 50; ++i) {
    threads.emplace_back([&, i] {
      go.WaitForNotification();
      race[i] = store.Begin(Params(scope, "shared"), Soon());
    });
  }
  for (int i = 0; i < 40; ++i) {
    threads.emplace_back([&, i] {
      const std::string key = "own-" + std::to_string(i);
      go.WaitForNotification();
      absl::StatusOr<BeginResult> r = store.Begin(Params(scope, key), Soon());
      ASSERT_TRUE(r.ok()) << r.status();
      ASSERT_EQ(r->outcome, BeginResponse::ACQUIRED);
      completed[i] = store.Complete(
          CompleteOf(scope, key, r->record.lease_token(), "r" + std::to_string(i)), Soon());
    });
  }
  go.Notify();
  for (std::thread& t : threads) t.join();
  int acquired = 0;
  for (const auto& r : race) {
    ASSERT_TRUE(r.ok()) << r.status();
    acquired += r->outcome == BeginResponse::ACQUIRED;
  }
  EXPECT_EQ(acquired, 1);
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(completed[i].ok()) << completed[i].status();
    EXPECT_EQ(completed[i]->response(), "r" + std::to_string(i));
    absl::StatusOr<idem::v1::Record> got =
        inner.Get(scope, "own-" + std::to_string(i), Soon());
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(got->status(), idem::v1::Record::COMPLETED);
  }
  // Figures, not assertions: how much batching there was.
  const GroupCommitCounters& b = store.begin_counters();
  const GroupCommitCounters& c = store.complete_counters();
  std::printf("begin: %lld calls in %lld batches; complete: %lld calls in %lld batches\n",
              static_cast<long long>(b.calls.load()), static_cast<long long>(b.batches.load()),
              static_cast<long long>(c.calls.load()), static_cast<long long>(c.batches.load()));
}

// Async Begins (leaders on a worker pool), all submitted from one thread
// that never waits: 50 on one key give it to exactly one, 40 on their own
// keys each acquire theirs, and every call is answered once.
TEST(GroupCommitStoreTest, AsyncBeginsFromOneThreadKeepEveryRule) {
  PostgresStore inner(StoreOptions(testenv::SharedDatabaseUrl(), 4));
  WorkerPool workers(4, 64);
  GroupCommitOptions batches;
  batches.max_running = 2;
  batches.max_batch = 64;
  batches.schedule = [&workers](std::function<void()> task) {
    return workers.TrySchedule(std::move(task));
  };
  GroupCommitStore store(&inner, GroupCommitStore::Options{batches});
  ASSERT_TRUE(store.BeginsAsync());
  const std::string scope = testenv::UniqueScope();
  std::vector<std::string> keys;
  for (int i = 0; i < 90; ++i) keys.push_back(i < 50 ? "shared" : "own-" + std::to_string(i));
  absl::Mutex mu;
  std::vector<absl::StatusOr<BeginResult>> results(90, absl::UnknownError("unset"));
  int answered = 0;
  for (int i = 0; i < 90; ++i) {
    store.BeginAsync(Params(scope, keys[i]), Soon(), [&, i](absl::StatusOr<BeginResult> r) {
      absl::MutexLock lock(&mu);
      results[i] = std::move(r);
      ++answered;
    });
  }
  {
    absl::MutexLock lock(&mu);
    auto all = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return answered == 90; };
    mu.Await(absl::Condition(&all));
  }
  int acquired = 0;
  for (int i = 0; i < 90; ++i) {
    ASSERT_TRUE(results[i].ok()) << i << " " << results[i].status();
    if (i < 50) {
      acquired += results[i]->outcome == BeginResponse::ACQUIRED;
    } else {
      EXPECT_EQ(results[i]->outcome, BeginResponse::ACQUIRED) << keys[i];
    }
  }
  EXPECT_EQ(acquired, 1);
  const GroupCommitCounters& b = store.begin_counters();
  std::printf("async begin: %lld calls in %lld batches\n",
              static_cast<long long>(b.calls.load()), static_cast<long long>(b.batches.load()));
}

class SweeperTest : public testing::Test {
 protected:
  // A database of its own, so counts are exact.
  SweeperTest() : url_(testenv::CreateMigratedDatabase()), store_(StoreOptions(url_, 4)) {}

  void BeginMany(const std::string& scope, int n, absl::Duration retention) {
    for (int i = 0; i < n; ++i) {
      ASSERT_TRUE(store_.Begin(Params(scope, "k" + std::to_string(i),
                                      absl::Seconds(1), retention),
                               Soon())
                      .ok());
    }
  }

  const std::string url_;
  PostgresStore store_;
};

// The plan of a sweeper batch on a big table, in a session set up as
// idemd's store connections are (plan_cache_mode = force_generic_plan):
// the expired rows come from the expires_at index and are deleted by
// primary key, never by scanning the table. The same statement prepared
// with `LIMIT $1` (as it was) is planned for a tenth of the expired rows
// and does scan it: the control below shows the test tells them apart.
TEST_F(SweeperTest, ABatchOnABigTableLooksUpItsRowsInsteadOfScanningTheTable) {
  pqxx::connection c(url_);
  {
    pqxx::work fill(c);
    fill.exec(R"sql(
      INSERT INTO idempotency_keys (scope, key, request_hash, status, response,
        response_code, lease_token, attempt, created_at, updated_at, locked_until,
        expires_at)
      SELECT 'big', lpad(i::text, 12, '0'), '\x5a', 'completed', '\x72', 200, i + 1, 1,
             now() - interval '2 days', now() - interval '2 days', NULL,
             CASE WHEN i < 50000 THEN now() - interval '1 hour' + i * interval '1 microsecond'
                  ELSE now() + interval '1 day' END
      FROM generate_series(0, 99999) i)sql");
    fill.exec("SELECT setval('idempotency_lease_token_seq', 100001)");
    fill.commit();
  }
  {
    pqxx::nontransaction analyze(c);
    analyze.exec("ANALYZE idempotency_keys");
  }
  pqxx::nontransaction tx(c);
  tx.exec("SET plan_cache_mode = force_generic_plan");
  const std::string plan =
      tx.exec1("EXPLAIN (FORMAT JSON) " + DeleteExpiredSql(10))[0].as<std::string>();
  EXPECT_EQ(plan.find("Seq Scan"), std::string::npos) << plan;
  EXPECT_NE(plan.find("idempotency_keys_expires_at_idx"), std::string::npos) << plan;
  EXPECT_NE(plan.find("Nested Loop"), std::string::npos) << plan;

  std::string prepared = DeleteExpiredSql(10);
  prepared.replace(prepared.find("LIMIT 10"), 8, "LIMIT $1");
  tx.exec("PREPARE delete_expired_param(int8) AS " + prepared);
  const std::string control =
      tx.exec1("EXPLAIN (FORMAT JSON) EXECUTE delete_expired_param(10)")[0].as<std::string>();
  EXPECT_NE(control.find("Seq Scan"), std::string::npos) << control;

  absl::StatusOr<int64_t> swept = store_.DeleteExpired(10, Soon());
  ASSERT_TRUE(swept.ok()) << swept.status();
  EXPECT_EQ(*swept, 10);
  // The oldest ten went first.
  EXPECT_EQ(tx.exec1("SELECT min(key) FROM idempotency_keys")[0].as<std::string>(),
            "000000000010");
}

TEST_F(SweeperTest, DeletesOnlyExpiredRecordsInBatches) {
  BeginMany("short", 25, absl::Seconds(1));
  BeginMany("long", 5, absl::Hours(1));
  absl::SleepFor(absl::Milliseconds(1200));
  // Batches are bounded by the limit.
  absl::StatusOr<int64_t> batch = store_.DeleteExpired(10, Soon());
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_EQ(*batch, 10);
  Sweeper sweeper(&store_, Sweeper::Options{absl::Hours(1), 4});
  absl::StatusOr<int64_t> swept = sweeper.SweepOnce();
  ASSERT_TRUE(swept.ok());
  EXPECT_EQ(*swept, 15);
  EXPECT_EQ(*sweeper.SweepOnce(), 0);
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(store_.Get("long", "k" + std::to_string(i), Soon()).ok());
  }
}

TEST_F(SweeperTest, ConcurrentSweepersDeleteEachRowOnce) {
  BeginMany("short", 60, absl::Seconds(1));
  absl::SleepFor(absl::Milliseconds(1200));
  std::atomic<int64_t> total{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&] {
      Sweeper sweeper(&store_, Sweeper::Options{absl::Hours(1), 5});
      absl::StatusOr<int64_t> n = sweeper.SweepOnce();
      EXPECT_TRUE(n.ok()) << n.status();
      if (n.ok()) total.fetch_add(*n);
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(total.load(), 60);
}

TEST_F(SweeperTest, BackgroundThreadSweepsAndStopsCleanly) {
  BeginMany("short", 3, absl::Seconds(1));
  Sweeper sweeper(&store_, Sweeper::Options{absl::Milliseconds(100), 100});
  sweeper.Start();
  absl::SleepFor(absl::Milliseconds(1600));
  sweeper.Stop();
  pqxx::connection c(testenv::DatabaseUrl("postgres"));
  EXPECT_EQ(store_.DeleteExpired(100, Soon()).value_or(-1), 0)
      << "the background sweeper left expired rows";
}

}  // namespace
}  // namespace idem
