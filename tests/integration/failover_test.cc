// Scale-out and failover on real engines: three idemd replicas behind one
// client-side round-robin gRPC channel, on a PostgreSQL primary with a
// synchronous streaming standby. Mid-load the primary is killed
// (`pg_ctl stop -m immediate`) and the standby promoted; every Complete that
// was acknowledged must still be there, and callers may only have seen
// UNAVAILABLE or DEADLINE_EXCEEDED while it switched (docs/scaling.md).
//
// The test starts its own two clusters (in a fixed directory derived from
// the build directory, so a crashed run's leftovers are removed by the next
// one) and needs no pg_cluster fixture. Runs alone (RUN_SERIAL).
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/create_channel.h>
#include <grpcpp/support/channel_arguments.h>
#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "idem/v1/idempotency.grpc.pb.h"
#include "tests/integration/idemd_process.h"

namespace idem {
namespace {

using idem::v1::BeginRequest;
using idem::v1::BeginResponse;
using idem::v1::CompleteRequest;
using idem::v1::CompleteResponse;
using idem::v1::Record;
using testenv::IdemdProcess;

std::string PgBin(const std::string& program) {
  const char* dir = std::getenv("PGBIN");
  return absl::StrCat(dir != nullptr ? dir : "/usr/lib/postgresql/15/bin", "/",
                      program);
}

// Runs a shell command (as the postgres user when we are root: PostgreSQL
// refuses to run as root) and returns its exit status.
int RunAsPostgres(const std::string& command) {
  const std::string full =
      getuid() == 0 ? absl::StrCat("runuser -u postgres -- ", command) : command;
  return std::system(full.c_str());
}

// A primary and a streaming standby made with pg_basebackup -R, with
// synchronous replication: a commit returns only once the standby has
// flushed it. The destructor stops both and deletes their directory.
class ReplicatedPostgres {
 public:
  explicit ReplicatedPostgres(std::string dir) : dir_(std::move(dir)) { Cleanup(); }
  ~ReplicatedPostgres() { Cleanup(); }

  // Creates and starts both clusters; false (with a failure added) on error.
  // initdb and pg_basebackup skip their final fsync (--no-sync): the test
  // kills PostgreSQL processes, not the machine, and saves seconds.
  bool Start() {
    primary_port_ = testenv::PickFreePort();
    standby_port_ = testenv::PickFreePort();
    if (standby_port_ == primary_port_) standby_port_ = testenv::PickFreePort();
    if (std::system(absl::StrCat("mkdir -p ", dir_, "/sock-p ", dir_, "/sock-s").c_str()) != 0 ||
        (getuid() == 0 &&
         std::system(absl::StrCat("chown -R postgres: ", dir_).c_str()) != 0)) {
      ADD_FAILURE() << "cannot create " << dir_;
      return false;
    }
    if (!Run(absl::StrCat(PgBin("initdb"), " -D ", dir_, "/primary -U postgres",
                          " --auth=trust -E UTF8 --locale=C.UTF-8 --no-sync >", dir_,
                          "/initdb.log 2>&1"))) {
      return false;
    }
    // synchronous_standby_names is given on the primary's command line, not
    // in its postgresql.conf, so pg_basebackup does not copy it: the
    // promoted standby, alone, must not wait for a standby of its own.
    if (!Run(absl::StrCat(PgBin("pg_ctl"), " -D ", dir_, "/primary -l ", dir_,
                          "/primary.log -w -t 60 start -o \"-c listen_addresses=127.0.0.1",
                          " -p ", primary_port_, " -k ", dir_, "/sock-p",
                          " -c synchronous_standby_names=idem_standby",
                          " -c synchronous_commit=on\" >/dev/null"))) {
      return false;
    }
    if (!Run(absl::StrCat(PgBin("pg_basebackup"), " -D ", dir_, "/standby -h 127.0.0.1",
                          " -p ", primary_port_, " -U postgres -R -X stream -c fast --no-sync"))) {
      return false;
    }
    // cluster_name is the standby's application_name towards the primary.
    if (!Run(absl::StrCat(PgBin("pg_ctl"), " -D ", dir_, "/standby -l ", dir_,
                          "/standby.log -w -t 60 start -o \"-c listen_addresses=127.0.0.1",
                          " -p ", standby_port_, " -k ", dir_, "/sock-s",
                          " -c cluster_name=idem_standby\" >/dev/null"))) {
      return false;
    }
    // Wait until the primary counts the standby as its synchronous one.
    const absl::Time give_up = absl::Now() + absl::Seconds(20);
    while (absl::Now() < give_up) {
      try {
        pqxx::connection c(NodeUrl(primary_port_, "postgres"));
        pqxx::nontransaction tx(c);
        const pqxx::result r = tx.exec(
            "SELECT sync_state FROM pg_stat_replication "
            "WHERE application_name = 'idem_standby' AND state = 'streaming'");
        if (!r.empty() && r[0][0].as<std::string>() == "sync") return true;
      } catch (const std::exception&) {
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
    ADD_FAILURE() << "the standby never became the primary's synchronous standby";
    return false;
  }

  // A crash: no shutdown checkpoint, connections cut.
  bool KillPrimary() {
    return Run(absl::StrCat(PgBin("pg_ctl"), " -D ", dir_,
                            "/primary -m immediate -w stop >/dev/null"));
  }

  // Fences the primary the way a planned switchover does: every session,
  // including the ones already open, becomes read-only (SQLSTATE 25006 on
  // a write), and libpq's target_session_attrs=read-write skips the host.
  void FencePrimaryReadOnly() {
    pqxx::connection c(NodeUrl(primary_port_, "postgres"));
    pqxx::nontransaction tx(c);
    tx.exec("ALTER SYSTEM SET default_transaction_read_only = on");
    tx.exec("SELECT pg_reload_conf()");
  }

  bool PromoteStandby() {
    return Run(absl::StrCat(PgBin("pg_ctl"), " -D ", dir_,
                            "/standby -w -t 30 promote >/dev/null"));
  }

  int primary_port() const { return primary_port_; }
  int standby_port() const { return standby_port_; }

  static std::string NodeUrl(int port, const std::string& db) {
    return absl::StrCat("postgresql://postgres@127.0.0.1:", port, "/", db);
  }

  // Both hosts; libpq connects to whichever accepts writes.
  std::string FollowPrimaryUrl(const std::string& db) const {
    return absl::StrCat("postgresql://postgres@127.0.0.1:", primary_port_,
                        ",127.0.0.1:", standby_port_, "/", db,
                        "?target_session_attrs=read-write");
  }

 private:
  bool Run(const std::string& command) {
    const int rc = RunAsPostgres(command);
    if (rc != 0) ADD_FAILURE() << "failed (" << rc << "): " << command;
    return rc == 0;
  }

  void Cleanup() {
    for (const char* node : {"primary", "standby"}) {
      const std::string data = absl::StrCat(dir_, "/", node);
      if (access((data + "/PG_VERSION").c_str(), F_OK) == 0) {
        RunAsPostgres(absl::StrCat(PgBin("pg_ctl"), " -D ", data,
                                   " -m immediate -w stop >/dev/null 2>&1"));
      }
    }
    std::system(absl::StrCat("rm -rf ", dir_).c_str());
  }

  const std::string dir_;
  int primary_port_ = 0;
  int standby_port_ = 0;
};

// What the load's callers saw.
struct LoadStats {
  absl::Mutex mu;
  int64_t calls ABSL_GUARDED_BY(mu) = 0;
  // Keys whose Complete was acknowledged (OK), with the response sent.
  std::vector<std::string> acknowledged ABSL_GUARDED_BY(mu);
  std::map<grpc::StatusCode, int64_t> errors ABSL_GUARDED_BY(mu);
  // Anything a correct idem must never answer here.
  std::vector<std::string> wrong ABSL_GUARDED_BY(mu);
  // Successful calls by the replica that answered (ClientContext::peer()),
  // before and after the failover began.
  std::map<std::string, int64_t> ok_by_peer_before ABSL_GUARDED_BY(mu);
  std::map<std::string, int64_t> ok_by_peer_after ABSL_GUARDED_BY(mu);
  absl::Time first_error ABSL_GUARDED_BY(mu) = absl::InfiniteFuture();
  absl::Time last_error ABSL_GUARDED_BY(mu) = absl::InfinitePast();
  // Earliest start of a successful call that began after `failover_at`.
  absl::Time failover_at ABSL_GUARDED_BY(mu) = absl::InfiniteFuture();
  absl::Time first_ok_after ABSL_GUARDED_BY(mu) = absl::InfiniteFuture();
  // Fencing tokens answered before the primary was gone, and asked for
  // after: the promoted standby's sequence must continue above every one
  // the old primary handed out.
  int64_t max_token_before ABSL_GUARDED_BY(mu) = 0;
  int64_t min_token_after ABSL_GUARDED_BY(mu) = INT64_MAX;
};

// Client threads doing Begin -> Complete on fresh keys through one channel.
// A failed Begin moves to the next key; a failed Complete is retried with
// the same token (safe by contract) until it is acknowledged. Joined on
// destruction, so a failed assertion never leaves a thread running.
class Load {
 public:
  Load(std::shared_ptr<grpc::Channel> channel, std::string scope, int threads,
       LoadStats* stats)
      : stub_(idem::v1::Idempotency::NewStub(std::move(channel))),
        scope_(std::move(scope)),
        stats_(stats),
        give_up_(absl::Now() + absl::Seconds(45)) {
    for (int t = 0; t < threads; ++t) threads_.emplace_back([this, t] { Run(t); });
  }
  ~Load() {
    abandon_ = true;
    Stop();
  }

  // No new keys; Completes in flight are still retried until acknowledged.
  void Stop() {
    stop_ = true;
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

 private:
  static constexpr absl::Duration kCallDeadline = absl::Seconds(2);
  static constexpr absl::Duration kBackoff = absl::Milliseconds(20);

  // Records one call's result; true when it succeeded.
  bool Note(const grpc::ClientContext& context, const grpc::Status& status,
            absl::Time started) {
    absl::MutexLock lock(&stats_->mu);
    ++stats_->calls;
    if (status.ok()) {
      const bool after = started >= stats_->failover_at;
      (after ? stats_->ok_by_peer_after : stats_->ok_by_peer_before)[context.peer()]++;
      if (after) stats_->first_ok_after = std::min(stats_->first_ok_after, started);
      return true;
    }
    stats_->errors[status.error_code()]++;
    stats_->first_error = std::min(stats_->first_error, started);
    stats_->last_error = std::max(stats_->last_error, absl::Now());
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE &&
        status.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
      stats_->wrong.push_back(absl::StrCat("status ", status.error_code(), ": ",
                                           status.error_message()));
    }
    return false;
  }

  void Wrong(std::string what) {
    absl::MutexLock lock(&stats_->mu);
    stats_->wrong.push_back(std::move(what));
  }

  void Run(int thread) {
    for (int i = 0; !stop_ && absl::Now() < give_up_; ++i) {
      const std::string key = absl::StrCat("t", thread, "-", i);
      BeginRequest begin;
      begin.set_scope(scope_);
      begin.set_key(key);
      begin.set_request_hash("charge " + key);
      BeginResponse begun;
      {
        grpc::ClientContext context;
        const absl::Time started = absl::Now();
        context.set_deadline(absl::ToChronoTime(started + kCallDeadline));
        if (!Note(context, stub_->Begin(&context, begin, &begun), started)) {
          absl::SleepFor(kBackoff);
          continue;  // Not acknowledged: try the next key.
        }
        const absl::Time answered = absl::Now();
        absl::MutexLock lock(&stats_->mu);
        if (started >= stats_->failover_at) {
          stats_->min_token_after = std::min(stats_->min_token_after, begun.lease_token());
        } else if (answered < stats_->failover_at) {
          stats_->max_token_before = std::max(stats_->max_token_before, begun.lease_token());
        }
      }
      if (begun.outcome() != BeginResponse::ACQUIRED) {
        Wrong(absl::StrCat(key, ": a fresh key's Begin answered ",
                           BeginResponse::Outcome_Name(begun.outcome())));
        continue;
      }
      CompleteRequest complete;
      complete.set_scope(scope_);
      complete.set_key(key);
      complete.set_lease_token(begun.lease_token());
      complete.set_response("receipt " + key);
      complete.set_response_code(201);
      // Retried through the failover, even after Stop(): an ACQUIRED lease
      // survives it, so the same Complete must succeed once idem is back.
      while (!abandon_ && absl::Now() < give_up_) {
        grpc::ClientContext context;
        const absl::Time started = absl::Now();
        context.set_deadline(absl::ToChronoTime(started + kCallDeadline));
        CompleteResponse done;
        const grpc::Status status = stub_->Complete(&context, complete, &done);
        if (Note(context, status, started)) {
          if (done.record().status() != Record::COMPLETED ||
              done.record().response() != complete.response()) {
            Wrong(absl::StrCat(key, ": Complete acknowledged a different record"));
          } else {
            absl::MutexLock lock(&stats_->mu);
            stats_->acknowledged.push_back(key);
          }
          break;
        }
        if (status.error_code() != grpc::StatusCode::UNAVAILABLE &&
            status.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
          break;  // Recorded as wrong by Note().
        }
        absl::SleepFor(kBackoff);
      }
    }
  }

  const std::unique_ptr<idem::v1::Idempotency::Stub> stub_;
  const std::string scope_;
  LoadStats* const stats_;
  const absl::Time give_up_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> abandon_{false};  // Set when the test ends early.
  std::vector<std::thread> threads_;
};

int64_t Acknowledged(LoadStats& stats) {
  absl::MutexLock lock(&stats.mu);
  return static_cast<int64_t>(stats.acknowledged.size());
}

// Creates database idem on the primary, migrates it with idemctl, and
// returns the URL that follows the primary ("" after a test failure).
std::string CreateMigratedIdemDatabase(ReplicatedPostgres& pg) {
  {
    pqxx::connection c(ReplicatedPostgres::NodeUrl(pg.primary_port(), "postgres"));
    pqxx::nontransaction(c).exec("CREATE DATABASE idem");
  }
  const std::string url = pg.FollowPrimaryUrl("idem");
  const std::string migrate =
      absl::StrCat(IDEM_TEST_IDEMCTL, " migrate --postgres='", url, "' >/dev/null");
  if (std::system(migrate.c_str()) != 0) {
    ADD_FAILURE() << "failed: " << migrate;
    return "";
  }
  return url;
}

TEST(FailoverTest, ThreeReplicasRoundRobinSurvivePrimaryFailover) {
  const absl::Time test_start = absl::Now();
  ReplicatedPostgres pg(IDEM_TEST_FAILOVER_DIR);
  ASSERT_TRUE(pg.Start());
  const std::string url = CreateMigratedIdemDatabase(pg);
  ASSERT_FALSE(url.empty());

  std::vector<std::unique_ptr<IdemdProcess>> replicas;
  std::vector<std::string> addresses;
  for (int i = 0; i < 3; ++i) {
    replicas.push_back(std::make_unique<IdemdProcess>(url, std::vector<std::string>{
                                                               "--pool_size=4"}));
    ASSERT_TRUE(replicas.back()->serving());
    addresses.push_back(replicas.back()->address());
  }

  // One channel, client-side round robin over the three replicas.
  grpc::ChannelArguments args;
  args.SetLoadBalancingPolicyName("round_robin");
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  const std::string target = absl::StrCat("ipv4:", absl::StrJoin(addresses, ","));
  auto channel =
      grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);

  const std::string scope = absl::StrCat("test/failover/", getpid());
  LoadStats stats;
  auto load = std::make_unique<Load>(channel, scope, /*threads=*/6, &stats);

  // Steady state first.
  absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (Acknowledged(stats) < 60 && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_GE(Acknowledged(stats), 60) << "no steady load before the failover";
  const int64_t acked_before = Acknowledged(stats);

  // The failover: a crash of the primary, a moment to notice, a promotion.
  // Calls that start once pg_ctl has seen the primary gone can only succeed
  // on the promoted standby.
  const absl::Time kill_at = absl::Now();
  ASSERT_TRUE(pg.KillPrimary());
  const absl::Time failover_at = absl::Now();
  {
    absl::MutexLock lock(&stats.mu);
    stats.failover_at = failover_at;
  }
  absl::SleepFor(absl::Milliseconds(500));
  const absl::Time promote_at = absl::Now();
  ASSERT_TRUE(pg.PromoteStandby());
  const absl::Time promoted_at = absl::Now();

  // Keep the load going until calls succeed on every replica again.
  give_up = absl::Now() + absl::Seconds(20);
  while (absl::Now() < give_up) {
    {
      absl::MutexLock lock(&stats.mu);
      bool all = true;
      for (const std::string& a : addresses) {
        all = all && stats.ok_by_peer_after.count("ipv4:" + a) > 0;
      }
      if (all && static_cast<int64_t>(stats.acknowledged.size()) > acked_before + 30) {
        break;
      }
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  absl::SleepFor(absl::Milliseconds(300));
  load->Stop();

  absl::MutexLock lock(&stats.mu);
  EXPECT_TRUE(stats.wrong.empty()) << absl::StrJoin(stats.wrong, "\n");
  EXPECT_GT(stats.errors.size(), 0u) << "callers never saw the failover";
  ASSERT_LT(stats.first_ok_after, absl::InfiniteFuture())
      << "no call succeeded after the failover";
  EXPECT_GT(stats.min_token_after, stats.max_token_before)
      << "a lease token went backwards across the failover";
  for (const std::string& a : addresses) {
    EXPECT_GT(stats.ok_by_peer_before["ipv4:" + a], 0) << a << " served nothing";
    EXPECT_GT(stats.ok_by_peer_after["ipv4:" + a], 0)
        << a << " served nothing after the failover";
  }

  // Every acknowledged Complete, read back through each replica in turn.
  for (size_t i = 0; i < stats.acknowledged.size(); ++i) {
    const std::string& key = stats.acknowledged[i];
    absl::StatusOr<Record> r = replicas[i % replicas.size()]->client().Get(scope, key);
    ASSERT_TRUE(r.ok()) << key << " acknowledged, then lost: " << r.status();
    EXPECT_EQ(r->status(), Record::COMPLETED) << key;
    EXPECT_EQ(r->response(), "receipt " + key) << key;
    EXPECT_EQ(r->response_code(), 201) << key;
  }

  std::vector<std::string> errors;
  int64_t error_count = 0;
  for (const auto& [code, n] : stats.errors) {
    errors.push_back(absl::StrCat(code == grpc::StatusCode::UNAVAILABLE ? "UNAVAILABLE"
                                  : code == grpc::StatusCode::DEADLINE_EXCEEDED
                                      ? "DEADLINE_EXCEEDED"
                                      : absl::StrCat("code ", code),
                                  "=", n));
    error_count += n;
  }
  auto ms = [](absl::Duration d) {
    return static_cast<long long>(absl::ToInt64Milliseconds(d));
  };
  std::fprintf(stderr,
               "failover summary: calls=%lld acknowledged=%d (%lld before the kill; all "
               "read back COMPLETED) errors=%lld [%s] outage=%lld ms (pg_ctl stop -m "
               "immediate issued at 0 and returned at %lld ms, promote issued at %lld ms "
               "and returned at %lld ms, first successful call started at %lld ms, last "
               "error at %lld ms) tokens: max before %lld, min after %lld; setup=%lld ms\n",
               static_cast<long long>(stats.calls),
               static_cast<int>(stats.acknowledged.size()),
               static_cast<long long>(acked_before), static_cast<long long>(error_count),
               absl::StrJoin(errors, " ").c_str(), ms(stats.first_ok_after - kill_at),
               ms(failover_at - kill_at), ms(promote_at - kill_at),
               ms(promoted_at - kill_at), ms(stats.first_ok_after - kill_at),
               ms(stats.last_error - kill_at),
               static_cast<long long>(stats.max_token_before),
               static_cast<long long>(stats.min_token_after), ms(kill_at - test_start));
}

// A planned switchover: the primary is fenced read-only while idemd holds
// open connections to it, then the standby is promoted. A write on a fenced
// connection fails with SQLSTATE 25006 (read_only_sql_transaction); idemd
// must answer UNAVAILABLE (retry) and replace the connection, so that libpq
// finds the new primary, not answer INTERNAL on the same connection forever.
TEST(FailoverTest, FencedReadOnlyPrimaryIsUnavailableThenTheNewPrimaryIsFound) {
  ReplicatedPostgres pg(IDEM_TEST_FAILOVER_DIR);
  ASSERT_TRUE(pg.Start());
  const std::string url = CreateMigratedIdemDatabase(pg);
  ASSERT_FALSE(url.empty());
  IdemdProcess idemd(url, {"--pool_size=2"});
  ASSERT_TRUE(idemd.serving());
  const std::string scope = absl::StrCat("test/fenced/", getpid());
  auto begin_and_complete = [&](const std::string& key) -> absl::Status {
    absl::StatusOr<BeginResponse> begun = idemd.client().Begin(scope, key, "charge");
    if (!begun.ok()) return begun.status();
    CompleteRequest complete;
    complete.set_scope(scope);
    complete.set_key(key);
    complete.set_lease_token(begun->lease_token());
    complete.set_response("receipt " + key);
    return idemd.client().Complete(complete).status();
  };
  // Open the pool's connections to the primary.
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(begin_and_complete(absl::StrCat("warm", i)).ok());
  }

  pg.FencePrimaryReadOnly();
  absl::SleepFor(absl::Milliseconds(300));  // Sessions apply the reload.
  for (int i = 0; i < 3; ++i) {
    const absl::Status fenced = begin_and_complete(absl::StrCat("fenced", i));
    EXPECT_EQ(fenced.code(), absl::StatusCode::kUnavailable) << fenced;
  }

  ASSERT_TRUE(pg.PromoteStandby());
  absl::Status after = absl::UnknownError("never tried");
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  for (int i = 0; absl::Now() < give_up; ++i) {
    after = begin_and_complete(absl::StrCat("after", i));
    if (after.ok()) break;
    EXPECT_EQ(after.code(), absl::StatusCode::kUnavailable) << after;
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_TRUE(after.ok()) << "idemd never reached the new primary: " << after;
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<Record> r = idemd.client().Get(scope, absl::StrCat("warm", i));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->status(), Record::COMPLETED);
  }
}

}  // namespace
}  // namespace idem
