// Server: idemd's parts wired together.
//
//   gRPC (callback API) -> GrpcService -> WorkerPool -> IdempotencyService
//        -> PostgresStore -> ConnectionPool -> PostgreSQL
//   plus KeyWaiters and the KeyChangeListener (waiting Begins), the
//   Sweeper, the HealthMonitor, health and reflection services, and (with
//   metrics_listen) Prometheus metrics over HTTP with the collector behind
//   them.
//
// Example (what idemd's main does):
//   Server::Options options;
//   options.postgres_url = "postgresql:///idem";
//   absl::StatusOr<std::unique_ptr<Server>> server =
//       Server::BuildAndStart(options);
//   ...
//   (*server)->Shutdown();
//
// Thread safety: Shutdown() may be called from any one thread, once.
#ifndef IDEM_SERVER_SERVER_H_
#define IDEM_SERVER_SERVER_H_

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "server/authorizer.h"
#include "server/cache_refresher.h"
#include "server/caching_store.h"
#include "server/grpc_service.h"
#include "server/group_commit_store.h"
#include "server/health_monitor.h"
#include "server/health_service.h"
#include "server/idempotency_service.h"
#include "server/key_change_listener.h"
#include "server/key_waiters.h"
#include "server/metrics.h"
#include "server/metrics_http.h"
#include "server/postgres_store.h"
#include "server/record_cache.h"
#include "server/rpc_metrics.h"
#include "server/store_stats_collector.h"
#include "server/sweeper.h"
#include "server/worker_pool.h"

namespace idem {

class Server {
 public:
  struct Options {
    // host:port; port 0 picks a free port (see port()).
    std::string listen = "127.0.0.1:50051";
    std::string postgres_url;
    // Database connections for calls; the sweeper, health checks and
    // metrics collector have three more.
    int pool_size = 8;
    // Threads running calls. More than pool_size, so that concurrent Begins
    // and Completes can wait together to be batched (group commit).
    int worker_threads = 64;
    // gRPC completion queues, each served by one thread (GrpcService::Serve).
    int grpc_threads = 1;
    // Group commit: concurrent Begins (and Completes) share one statement
    // and one commit; at most batch_statements batches of each kind run at
    // once (0: a quarter of pool_size, at least 1).
    bool group_commit = true;
    int batch_statements = 0;
    // Cache of final records answering replays without the database
    // (record_cache.h); 0 bytes: off. An entry is served at most
    // record_cache_ttl after it was stored, which bounds how long a record
    // deleted by idemctl (release, purge) can still be replayed.
    int64_t record_cache_bytes = 32 << 20;
    absl::Duration record_cache_ttl = absl::Seconds(5);
    // Calls waiting for a worker beyond which RESOURCE_EXHAUSTED is answered.
    int max_queued_calls = 4096;
    absl::Duration statement_timeout = absl::Seconds(10);
    int64_t max_response_bytes = 1 << 20;
    absl::Duration sweep_interval = absl::Seconds(60);
    int64_t sweep_batch = 1000;
    absl::Duration health_check_interval = absl::Seconds(2);
    // How long start-up waits for PostgreSQL to become reachable.
    absl::Duration startup_timeout = absl::Seconds(30);
    // How long Shutdown() lets in-flight calls finish.
    absl::Duration shutdown_grace = absl::Seconds(10);
    // Begin calls parked waiting (BeginRequest.wait); past this, a waiting
    // Begin answers IN_PROGRESS at once.
    int max_waiters = 10000;
    // host:port of the Prometheus endpoint (HTTP GET /metrics); empty: off.
    // Port 0 picks a free port (see metrics_port()).
    std::string metrics_listen;
    // How often the metrics that need a database query (sweeper lag, keys
    // in progress past their lease) are refreshed.
    absl::Duration metrics_collect_interval = absl::Seconds(15);
    // TLS: PEM files of the server's certificate chain and private key (both
    // or neither; neither: plaintext). tls_client_ca (needs both): PEM CA
    // certificates; clients must then present a certificate it signed
    // (mutual TLS).
    std::string tls_cert;
    std::string tls_key;
    std::string tls_client_ca;
    // Per-scope authorization (server/authorizer.h for the format); empty:
    // every caller may use every scope.
    std::string auth_file;
    // When notified, start-up stops waiting for PostgreSQL (CANCELLED).
    const absl::Notification* cancel_startup = nullptr;
  };

  // Checks the options (INVALID_ARGUMENT naming the flag) and the schema
  // (FAILED_PRECONDITION when it is behind; UNAVAILABLE when PostgreSQL stays
  // unreachable for startup_timeout), then serves.
  static absl::StatusOr<std::unique_ptr<Server>> BuildAndStart(
      const Options& options);

  ~Server();

  // Stops accepting calls, drains in-flight ones (up to shutdown_grace),
  // then stops the sweeper and health checks. Idempotent.
  void Shutdown();

  // Blocks until Shutdown() completes.
  void Wait();

  int port() const { return port_; }
  // The metrics endpoint's port; 0 when metrics are off.
  int metrics_port() const;
  // Begin calls parked waiting on a key right now.
  size_t waiting_calls() const { return waiters_.size(); }

 private:
  Server(const Options& options, std::unique_ptr<const Authorizer> authorizer);
  // Adds the metrics that read the parts' own counters and sizes.
  void RegisterMetrics();

  const Options options_;
  int port_ = 0;
  bool shut_down_ = false;

  // Declared in dependency order: destroyed bottom-up.
  MetricsRegistry metrics_;
  RpcMetrics rpc_metrics_;
  const std::unique_ptr<const Authorizer> authorizer_;
  PostgresStore store_;
  // Calls go: service_ -> caching_store_ -> group_commit_store_ (if on) ->
  // store_; background work uses store_ directly.
  GroupCommitStore group_commit_store_;
  RecordCache record_cache_;
  CacheRefresher cache_refresher_;
  CachingStore caching_store_;
  IdempotencyService service_;
  WorkerPool workers_;
  KeyWaiters waiters_;
  KeyChangeListener listener_;
  GrpcService grpc_service_;
  Sweeper sweeper_;
  HealthService health_service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  // One per completion queue, each running GrpcService::Serve.
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> queues_;
  std::vector<std::thread> queue_threads_;
  std::unique_ptr<HealthMonitor> health_;
  std::unique_ptr<StoreStatsCollector> stats_collector_;
  std::unique_ptr<MetricsHttpServer> metrics_http_;
};

// INVALID_ARGUMENT naming the first option (flag) out of range.
absl::Status ValidateOptions(const Server::Options& options);

// The gRPC server credentials the options ask for: insecure, TLS or mutual
// TLS. INVALID_ARGUMENT naming the flag when a file cannot be read or holds
// no PEM certificate / private key.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const Server::Options& options);

}  // namespace idem

#endif  // IDEM_SERVER_SERVER_H_
