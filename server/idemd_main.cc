// idemd: the idem gRPC service. See README.md and docs/design.md.
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <pthread.h>

#include <thread>

#include <glog/logging.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "server/flag_env.h"
#include "server/server.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "gRPC address: host:port, or unix:PATH for a unix socket");
ABSL_FLAG(std::string, postgres, "",
          "PostgreSQL libpq URL (also $IDEM_POSTGRES_URL)");
ABSL_FLAG(int, pool_size, 8,
          "database connections, and store calls running at once");
ABSL_FLAG(int, worker_threads, 64,
          "threads running calls; more than --pool_size so that concurrent "
          "Begins and Completes can be batched (group commit)");
ABSL_FLAG(int, grpc_threads, 1,
          "gRPC completion queues, each with one thread that receives calls, "
          "answers cached replays and sends answers (1 suits a few cores)");
ABSL_FLAG(bool, group_commit, true,
          "gather concurrent Begins (and Completes) into one statement and "
          "one commit");
ABSL_FLAG(int, batch_statements, 0,
          "group commit: batches of each kind running at once (0: a quarter of "
          "--pool_size, at least 1)");
ABSL_FLAG(int64_t, record_cache_bytes, 32 << 20,
          "memory for cached completed/failed records answering replays; 0: off");
ABSL_FLAG(absl::Duration, record_cache_ttl, absl::Seconds(5),
          "longest a cached record is served; bounds how long a record "
          "deleted by idemctl release/purge can still be replayed");
ABSL_FLAG(int, max_queued_calls, 4096,
          "calls waiting for a connection before RESOURCE_EXHAUSTED");
ABSL_FLAG(absl::Duration, statement_timeout, absl::Seconds(10),
          "longest a database statement may run; each call's statements "
          "are also cancelled at the call's deadline");
ABSL_FLAG(int64_t, max_response_bytes, 1 << 20,
          "largest response Complete/Fail accept");
ABSL_FLAG(absl::Duration, sweep_interval, absl::Seconds(60),
          "time between sweeps of expired records");
ABSL_FLAG(int64_t, sweep_batch, 1000, "rows deleted per sweeper statement");
ABSL_FLAG(absl::Duration, health_check_interval, absl::Seconds(2),
          "time between database checks behind the gRPC health service");
ABSL_FLAG(absl::Duration, startup_timeout, absl::Seconds(30),
          "how long start-up waits for PostgreSQL");
ABSL_FLAG(int, max_waiters, 10000,
          "Begin calls parked waiting on a key; past this they answer at once");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(10),
          "how long shutdown lets in-flight calls finish");
ABSL_FLAG(std::string, metrics_listen, "",
          "Prometheus metrics address, host:port (HTTP GET /metrics); empty: off");

ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain for TLS (with --tls_key); empty: plaintext");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for TLS (with --tls_cert)");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA certificates: require client certificates they signed "
          "(mutual TLS; needs --tls_cert)");
ABSL_FLAG(std::string, auth_file, "",
          "per-scope authorization: lines '<sha256-hex-of-token> "
          "<scope-prefix>[,...]'; callers send 'authorization: Bearer "
          "<token>'; empty: off");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "idemd: the idem idempotency service.\n"
      "  idemd --postgres=postgresql://user@host/db [--listen=127.0.0.1:50051]\n"
      "Every flag can also be set as IDEM_<FLAG> (IDEM_POSTGRES_URL for\n"
      "--postgres, IDEM_POOL_SIZE for --pool_size); the command line wins.\n"
      "Logging: GLOG_v, GLOG_minloglevel, GLOG_log_dir environment variables.");
  // Environment first (IDEM_<FLAG>), so the command line wins.
  const absl::Status from_env = idem::ApplyFlagsFromEnv(__FILE__);
  absl::ParseCommandLine(argc, argv);
  idem::InitLogging(argv[0]);
  // Debian's Abseil is built with Mutex deadlock detection on, which records
  // every lock acquisition in a global graph (6 % of idemd's CPU under
  // load). Off here, as in Abseil's own release builds; tests keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  if (!from_env.ok()) {
    LOG(ERROR) << "idemd cannot start: " << from_env.message();
    return 2;
  }
  LOG(INFO) << "idemd configuration: " << idem::DescribeFlags(__FILE__);

  // Signals are taken by sigwait below, never by a handler: block them in
  // every thread before any is started.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  idem::Server::Options options;
  options.listen = absl::GetFlag(FLAGS_listen);
  options.postgres_url = absl::GetFlag(FLAGS_postgres);
  options.pool_size = absl::GetFlag(FLAGS_pool_size);
  options.max_queued_calls = absl::GetFlag(FLAGS_max_queued_calls);
  options.worker_threads = absl::GetFlag(FLAGS_worker_threads);
  options.grpc_threads = absl::GetFlag(FLAGS_grpc_threads);
  options.group_commit = absl::GetFlag(FLAGS_group_commit);
  options.batch_statements = absl::GetFlag(FLAGS_batch_statements);
  options.record_cache_bytes = absl::GetFlag(FLAGS_record_cache_bytes);
  options.record_cache_ttl = absl::GetFlag(FLAGS_record_cache_ttl);
  options.statement_timeout = absl::GetFlag(FLAGS_statement_timeout);
  options.max_response_bytes = absl::GetFlag(FLAGS_max_response_bytes);
  options.sweep_interval = absl::GetFlag(FLAGS_sweep_interval);
  options.sweep_batch = absl::GetFlag(FLAGS_sweep_batch);
  options.health_check_interval = absl::GetFlag(FLAGS_health_check_interval);
  options.startup_timeout = absl::GetFlag(FLAGS_startup_timeout);
  options.shutdown_grace = absl::GetFlag(FLAGS_shutdown_grace);
  options.max_waiters = absl::GetFlag(FLAGS_max_waiters);
  options.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  options.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  options.tls_key = absl::GetFlag(FLAGS_tls_key);
  options.tls_client_ca = absl::GetFlag(FLAGS_tls_client_ca);
  options.auth_file = absl::GetFlag(FLAGS_auth_file);

  // One thread takes SIGINT/SIGTERM, during start-up as well as after.
  absl::Notification stop;
  std::thread signal_waiter([&signals, &stop] {
    int signal = 0;
    sigwait(&signals, &signal);
    LOG(INFO) << "received " << strsignal(signal);
    stop.Notify();
  });
  signal_waiter.detach();
  options.cancel_startup = &stop;

  absl::StatusOr<std::unique_ptr<idem::Server>> server =
      idem::Server::BuildAndStart(options);
  if (!server.ok()) {
    if (absl::IsCancelled(server.status())) return 0;
    LOG(ERROR) << "idemd cannot start: " << server.status();
    return 1;
  }
  stop.WaitForNotification();
  (*server)->Shutdown();
  return 0;
}
