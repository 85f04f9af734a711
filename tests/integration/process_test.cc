// idemd as real processes: two replicas on one database, kill -9, SIGTERM,
// and PostgreSQL restarting underneath. Runs alone (RUN_SERIAL): it stops
// the test cluster.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <atomic>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "tests/integration/idemd_process.h"
#include "tests/integration/test_env.h"

extern char** environ;

namespace idem {
namespace {

using idem::v1::BeginResponse;
using idem::v1::Record;
using testenv::IdemdProcess;

idem::v1::CompleteRequest Completion(const std::string& scope, const std::string& key,
                                     int64_t token, const std::string& response) {
  idem::v1::CompleteRequest c;
  c.set_scope(scope);
  c.set_key(key);
  c.set_lease_token(token);
  c.set_response(response);
  return c;
}

TEST(ProcessTest, TwoReplicasOnOneDatabaseAgree) {
  IdemdProcess a(testenv::SharedDatabaseUrl());
  IdemdProcess b(testenv::SharedDatabaseUrl());
  ASSERT_TRUE(a.serving() && b.serving());
  const std::string scope = testenv::UniqueScope();
  constexpr int kKeys = 20, kCallersPerKey = 10;
  std::vector<std::atomic<int>> acquired(kKeys);
  std::vector<std::atomic<int64_t>> tokens(kKeys);
  absl::Notification go;
  std::vector<std::thread> threads;
  for (int caller = 0; caller < kCallersPerKey; ++caller) {
    threads.emplace_back([&, caller] {
      Client& client = caller % 2 == 0 ? a.client() : b.client();
      go.WaitForNotification();
      for (int k = 0; k < kKeys; ++k) {
        absl::StatusOr<BeginResponse> r =
            client.Begin(scope, "key" + std::to_string(k), "charge");
        ASSERT_TRUE(r.ok()) << r.status();
        if (r->outcome() == BeginResponse::ACQUIRED) {
          acquired[k].fetch_add(1);
          tokens[k] = r->lease_token();
        } else {
          EXPECT_EQ(r->outcome(), BeginResponse::IN_PROGRESS);
        }
      }
    });
  }
  go.Notify();
  for (std::thread& t : threads) t.join();
  for (int k = 0; k < kKeys; ++k) {
    EXPECT_EQ(acquired[k].load(), 1) << "key" << k;
    const std::string key = "key" + std::to_string(k);
    ASSERT_TRUE(a.client().Complete(Completion(scope, key, tokens[k], "paid")).ok());
    absl::StatusOr<BeginResponse> replay = b.client().Begin(scope, key, "charge");
    ASSERT_TRUE(replay.ok());
    EXPECT_EQ(replay->outcome(), BeginResponse::COMPLETED);
    EXPECT_EQ(replay->record().response(), "paid");
  }
}

TEST(ProcessTest, AcknowledgedRecordSurvivesKill9) {
  const std::string scope = testenv::UniqueScope();
  {
    IdemdProcess idemd(testenv::SharedDatabaseUrl());
    absl::StatusOr<BeginResponse> r = idemd.client().Begin(scope, "k", "charge");
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE(idemd.client().Complete(Completion(scope, "k", r->lease_token(), "receipt")).ok());
    idemd.Signal(SIGKILL);
    const int status = idemd.Wait();
    ASSERT_TRUE(WIFSIGNALED(status));
  }
  IdemdProcess again(testenv::SharedDatabaseUrl());
  absl::StatusOr<BeginResponse> replay = again.client().Begin(scope, "k", "charge");
  ASSERT_TRUE(replay.ok()) << replay.status();
  EXPECT_EQ(replay->outcome(), BeginResponse::COMPLETED);
  EXPECT_EQ(replay->record().response(), "receipt");
}

TEST(ProcessTest, SigtermDrainsInFlightCallsThenExitsCleanly) {
  const std::string scope = testenv::UniqueScope();
  IdemdProcess idemd(testenv::SharedDatabaseUrl(), {"--shutdown_grace=10s"});
  ASSERT_TRUE(idemd.client().Begin(scope, "k", "charge").ok());
  // Hold the row's lock so the next Begin stays in flight inside idemd.
  pqxx::connection locker(testenv::SharedDatabaseUrl());
  pqxx::work tx(locker);
  tx.exec_params("SELECT 1 FROM idempotency_keys WHERE scope = $1 FOR UPDATE", scope);
  absl::StatusOr<BeginResponse> in_flight = absl::UnknownError("unset");
  std::thread caller([&] { in_flight = idemd.client().Begin(scope, "k", "charge"); });
  absl::SleepFor(absl::Milliseconds(500));
  idemd.Signal(SIGTERM);
  absl::SleepFor(absl::Milliseconds(500));
  tx.abort();  // The in-flight Begin can finish now.
  caller.join();
  ASSERT_TRUE(in_flight.ok()) << "an in-flight call was cut off: " << in_flight.status();
  EXPECT_EQ(in_flight->outcome(), BeginResponse::IN_PROGRESS);
  const int status = idemd.Wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

TEST(ProcessTest, SigtermDuringStartupExitsPromptly) {
  // PostgreSQL is unreachable at this URL: idemd waits for it at start-up.
  std::string idemd = testenv::IdemdPath();
  std::vector<std::string> args = {
      idemd, "--listen=127.0.0.1:" + std::to_string(testenv::PickFreePort()),
      "--postgres=postgresql:///x?host=/nonexistent-socket-dir&user=postgres",
      "--startup_timeout=60s"};
  const pid_t pid = testenv::SpawnProcess(std::move(args));
  ASSERT_GT(pid, 0);
  absl::SleepFor(absl::Milliseconds(1500));
  const absl::Time sent = absl::Now();
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_LT(absl::Now() - sent, absl::Seconds(3));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

TEST(ProcessTest, ConfiguredFromTheEnvironmentAlone) {
  const std::string address = "127.0.0.1:" + std::to_string(testenv::PickFreePort());
  std::vector<std::string> env = {"IDEM_POSTGRES_URL=" + testenv::SharedDatabaseUrl(),
                                  "IDEM_LISTEN=" + address, "IDEM_POOL_SIZE=2",
                                  "IDEM_HEALTH_CHECK_INTERVAL=200ms"};
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::string(*e).rfind("IDEM_", 0) != 0) env.push_back(*e);
  }
  const pid_t pid = testenv::SpawnProcess({testenv::IdemdPath()}, std::move(env));
  ASSERT_GT(pid, 0);
  const bool serving = testenv::WaitForHealth(address, /*serving=*/true, 15000);
  if (serving) {
    Client client(testenv::FastReconnectChannel(address));
    absl::StatusOr<BeginResponse> r = client.Begin(testenv::UniqueScope(), "k", "req");
    EXPECT_TRUE(r.ok()) << r.status();
  }
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(serving) << "idemd configured by IDEM_* variables did not serve";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

TEST(ProcessTest, PostgresDownIsUnavailableAndIdemdRecoversByItself) {
  const std::string scope = testenv::UniqueScope();
  IdemdProcess idemd(testenv::SharedDatabaseUrl());
  absl::StatusOr<BeginResponse> before = idemd.client().Begin(scope, "k", "charge");
  ASSERT_TRUE(before.ok());
  ASSERT_TRUE(idemd.client()
                  .Complete(Completion(scope, "k", before->lease_token(), "acked"))
                  .ok());

  testenv::PgCluster("stop");
  absl::StatusOr<BeginResponse> down = idemd.client().Begin(scope, "k2", "charge");
  EXPECT_EQ(down.status().code(), absl::StatusCode::kUnavailable) << down.status();
  EXPECT_EQ(down.status().message().find("SELECT"), absl::string_view::npos);
  // A read that needs the database (a key idemd has not cached; "k" may be
  // replayed from the record cache for up to --record_cache_ttl).
  EXPECT_EQ(idemd.client().Get(scope, "k3").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(testenv::WaitForHealth(idemd.address(), /*serving=*/false, 2000))
      << "health must stop saying SERVING while PostgreSQL is down";

  testenv::PgCluster("start");
  absl::StatusOr<BeginResponse> after = absl::UnknownError("never tried");
  const absl::Time give_up = absl::Now() + absl::Seconds(15);
  while (absl::Now() < give_up) {
    after = idemd.client().Begin(scope, "k", "charge");
    if (after.ok()) break;
    EXPECT_EQ(after.status().code(), absl::StatusCode::kUnavailable) << after.status();
    absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_TRUE(after.ok()) << "idemd did not recover: " << after.status();
  EXPECT_EQ(after->outcome(), BeginResponse::COMPLETED);
  EXPECT_EQ(after->record().response(), "acked");
  EXPECT_TRUE(testenv::WaitForHealth(idemd.address(), /*serving=*/true, 5000));
}

TEST(ProcessTest, AcknowledgedCompletesSurvivePostgresCrashMidRun) {
  const std::string scope = testenv::UniqueScope();
  IdemdProcess idemd(testenv::SharedDatabaseUrl());
  std::atomic<bool> stop{false};
  std::vector<std::string> acked;
  std::thread writer([&] {
    for (int i = 0; !stop.load(); ++i) {
      const std::string key = "k" + std::to_string(i);
      absl::StatusOr<BeginResponse> r = idemd.client().Begin(scope, key, "charge");
      if (!r.ok() || r->outcome() != BeginResponse::ACQUIRED) continue;
      if (idemd.client().Complete(Completion(scope, key, r->lease_token(), key)).ok()) {
        acked.push_back(key);
      }
    }
  });
  absl::SleepFor(absl::Milliseconds(500));
  testenv::PgCluster("restart");  // Immediate stop: a crash, then recovery.
  absl::SleepFor(absl::Milliseconds(1500));
  stop = true;
  writer.join();
  ASSERT_GT(acked.size(), 0u);
  IdemdProcess reader(testenv::SharedDatabaseUrl());
  for (const std::string& key : acked) {
    absl::StatusOr<Record> r = reader.client().Get(scope, key);
    ASSERT_TRUE(r.ok()) << key << ": " << r.status();
    EXPECT_EQ(r->status(), Record::COMPLETED);
    EXPECT_EQ(r->response(), key);
  }
}

}  // namespace
}  // namespace idem
