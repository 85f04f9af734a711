#include "server/server.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <glog/logging.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/migration_list.h"
#include "server/migrator.h"

namespace idem {

namespace {

// Requests may exceed --max_response_bytes by this much before gRPC itself
// refuses them (RESOURCE_EXHAUSTED); up to there, validation answers
// INVALID_ARGUMENT naming the field.
constexpr int64_t kReceiveSlackBytes = 16 << 20;

// Connections beyond the workers': one each for the sweeper, health checks
// and the metrics collector, so none waits behind request traffic. (The
// record cache's refresher shares them: a few short reads a second.)
constexpr int kBackgroundConnections = 3;

// Calls in one group-commit batch (the Begin statement takes any number).
constexpr int kMaxBatch = 256;

// How far idemd's clock may be from PostgreSQL's before the record cache
// could serve a record past its expiry (record_cache.h).
constexpr absl::Duration kRecordCacheClockMargin = absl::Seconds(1);

// How long the cache's refresher gathers due keys into one read: a small
// part of the last quarter of max_age, in which a refresh is due.
absl::Duration RefreshGather(absl::Duration record_cache_ttl) {
  return std::clamp(record_cache_ttl / 16, absl::Milliseconds(1), absl::Milliseconds(100));
}

int BatchStatements(const Server::Options& options) {
  if (options.batch_statements > 0) return options.batch_statements;
  return std::max(1, options.pool_size / 4);
}

GroupCommitOptions GroupCommitBatches(
    const Server::Options& options,
    std::function<bool(std::function<void()>)> schedule) {
  GroupCommitOptions batches;
  batches.max_running = BatchStatements(options);
  batches.max_batch = kMaxBatch;
  batches.schedule = std::move(schedule);
  batches.max_queued = static_cast<size_t>(std::max(1, options.max_queued_calls));
  return batches;
}

// Waits for the database, then for an up-to-date schema.
absl::Status AwaitSchema(const Server::Options& options) {
  const Migrator migrator(options.postgres_url, EmbeddedMigrations());
  const absl::Time give_up = absl::Now() + options.startup_timeout;
  while (true) {
    absl::Status status = migrator.CheckUpToDate();
    if (status.code() != absl::StatusCode::kUnavailable) return status;
    if (absl::Now() >= give_up) {
      return absl::UnavailableError(absl::StrCat(
          "PostgreSQL not reachable within ", absl::FormatDuration(options.startup_timeout),
          ": ", status.message()));
    }
    LOG(WARNING) << "waiting for PostgreSQL: " << status;
    if (options.cancel_startup == nullptr) {
      absl::SleepFor(absl::Seconds(1));
    } else if (options.cancel_startup->WaitForNotificationWithTimeout(
                   absl::Seconds(1))) {
      return absl::CancelledError("start-up cancelled while waiting for PostgreSQL");
    }
  }
}

// The contents of the file `flag` names.
absl::StatusOr<std::string> ReadFlagFile(const char* flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": cannot read ", path, ": ", std::strerror(errno)));
  }
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read ", path));
  }
  return text.str();
}

// Whether `pem` holds at least one certificate (want_key false) or a
// private key (want_key true) that OpenSSL can parse.
bool PemHolds(const std::string& pem, bool want_key) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return false;
  bool ok = false;
  if (want_key) {
    EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
    ok = key != nullptr;
    EVP_PKEY_free(key);
  } else {
    X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
    ok = cert != nullptr;
    X509_free(cert);
  }
  BIO_free(bio);
  ERR_clear_error();  // A failed read leaves errors behind on this thread.
  return ok;
}

absl::StatusOr<std::string> ReadPem(const char* flag, const std::string& path,
                                    bool want_key) {
  absl::StatusOr<std::string> pem = ReadFlagFile(flag, path);
  if (!pem.ok()) return pem.status();
  if (!PemHolds(*pem, want_key)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": ", path, " holds no PEM ",
                     want_key ? "private key" : "certificate"));
  }
  return pem;
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const Server::Options& options) {
  if (options.tls_cert.empty()) return grpc::InsecureServerCredentials();
  absl::StatusOr<std::string> cert = ReadPem("--tls_cert", options.tls_cert, false);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadPem("--tls_key", options.tls_key, true);
  if (!key.ok()) return key.status();
  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  ssl.pem_key_cert_pairs.push_back({*std::move(key), *std::move(cert)});
  if (!options.tls_client_ca.empty()) {
    absl::StatusOr<std::string> ca =
        ReadPem("--tls_client_ca", options.tls_client_ca, false);
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *std::move(ca);
    ssl.client_certificate_request =
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

Server::Server(const Options& options, std::unique_ptr<const Authorizer> authorizer)
    : options_(options),
      rpc_metrics_(&metrics_),
      authorizer_(std::move(authorizer)),
      store_(PostgresStore::Options{options.postgres_url,
                                    options.pool_size + kBackgroundConnections,
                                    options.statement_timeout}),
      group_commit_store_(&store_, GroupCommitStore::Options{GroupCommitBatches(
                                       options, [this](std::function<void()> task) {
                                         // Async Begins' batch leaders run on the workers.
                                         return workers_.TrySchedule(std::move(task));
                                       })}),
      record_cache_(RecordCache::Options{options.record_cache_bytes,
                                         options.record_cache_ttl,
                                         kRecordCacheClockMargin, nullptr}),
      cache_refresher_(&store_, &record_cache_,
                       CacheRefresher::Options{RefreshGather(options.record_cache_ttl)}),
      caching_store_(options.group_commit
                         ? static_cast<IdempotencyStore*>(&group_commit_store_)
                         : &store_,
                     &record_cache_, &cache_refresher_),
      service_(&caching_store_, RequestLimits{options.max_response_bytes}),
      workers_(options.worker_threads, options.max_queued_calls),
      waiters_(options.max_waiters),
      listener_(options.postgres_url, &waiters_),
      grpc_service_(&service_, &workers_, &waiters_, &rpc_metrics_,
                    authorizer_.get()),
      sweeper_(&store_, Sweeper::Options{options.sweep_interval, options.sweep_batch}) {
  RegisterMetrics();
}

void Server::RegisterMetrics() {
  metrics_.AddCounterCallback(
      "idem_lease_takeovers_total",
      "Keys acquired that were held before: a lease that ran out, or a "
      "retryable Fail (ACQUIRED with attempt > 1, re-entries excluded).",
      [this] { return static_cast<double>(service_.takeovers()); });
  metrics_.AddCounterCallback(
      "idem_lease_reentries_total",
      "ACQUIRED answers that re-entered the caller's own live lease (owner).",
      [this] { return static_cast<double>(service_.reentries()); });
  const ConnectionPool* pool = &store_.pool();
  metrics_.AddGaugeCallback("idem_db_pool_connections",
                            "Database connections in the pool (open or not).",
                            [pool] { return static_cast<double>(pool->size()); });
  metrics_.AddGaugeCallback("idem_db_pool_connections_in_use",
                            "Database connections handed out right now.",
                            [pool] { return static_cast<double>(pool->in_use()); });
  metrics_.AddCounterCallback(
      "idem_db_pool_waits_total",
      "Connection requests that found no free connection and waited.",
      [pool] { return static_cast<double>(pool->waits()); });
  metrics_.AddCounterCallback(
      "idem_db_pool_wait_seconds_total",
      "Time spent waiting for a free database connection.",
      [pool] { return absl::ToDoubleSeconds(pool->wait_time()); });
  metrics_.AddCounterCallback("idem_sweeper_runs_total", "Sweeper rounds run.",
                              [this] { return static_cast<double>(sweeper_.runs()); });
  metrics_.AddCounterCallback(
      "idem_sweeper_errors_total", "Sweeper rounds that ended in an error.",
      [this] { return static_cast<double>(sweeper_.errors()); });
  metrics_.AddCounterCallback(
      "idem_sweeper_rows_removed_total", "Expired records the sweeper deleted.",
      [this] { return static_cast<double>(sweeper_.rows_removed()); });
  metrics_.AddCounterCallback(
      "idem_record_cache_hits_total",
      "Lookups answered by the cache of final records (replays, Get).",
      [this] { return static_cast<double>(record_cache_.hits()); });
  metrics_.AddCounterCallback(
      "idem_record_cache_misses_total",
      "Lookups the cache of final records could not answer.",
      [this] { return static_cast<double>(record_cache_.misses()); });
  metrics_.AddGaugeCallback(
      "idem_record_cache_bytes", "Bytes charged by the cached final records.",
      [this] { return static_cast<double>(record_cache_.bytes()); });
  metrics_.AddCounterCallback(
      "idem_record_cache_refreshes_total",
      "Cached final records read again ahead of their entry's end.",
      [this] { return static_cast<double>(cache_refresher_.refreshed()); });
  metrics_.AddCounterCallback(
      "idem_record_cache_refresh_errors_total",
      "Refresh reads that failed (their entries lived out their time).",
      [this] { return static_cast<double>(cache_refresher_.errors()); });
  for (const auto& [kind, counters] :
       {std::pair{"begin", &group_commit_store_.begin_counters()},
        std::pair{"complete", &group_commit_store_.complete_counters()}}) {
    const GroupCommitCounters* c = counters;
    metrics_.AddCounterCallback(
        absl::StrCat("idem_group_commit_", kind, "_batches_total"),
        absl::StrCat("Group-commit batches of ", kind, " calls run (one statement each)."),
        [c] { return static_cast<double>(c->batches.load(std::memory_order_relaxed)); });
    metrics_.AddCounterCallback(
        absl::StrCat("idem_group_commit_", kind, "_calls_total"),
        absl::StrCat(kind, " calls run in group-commit batches (calls / batches = mean batch size)."),
        [c] { return static_cast<double>(c->calls.load(std::memory_order_relaxed)); });
    metrics_.AddCounterCallback(
        absl::StrCat("idem_group_commit_", kind, "_fallbacks_total"),
        absl::StrCat("Group-commit ", kind, " batches that failed as a whole and ran call by call."),
        [c] { return static_cast<double>(c->fallbacks.load(std::memory_order_relaxed)); });
  }
  metrics_.AddGaugeCallback(
      "idem_waiting_begins", "Begin calls parked waiting on a key (BeginRequest.wait).",
      [this] { return static_cast<double>(waiters_.size()); });
  metrics_.AddGaugeCallback(
      "idem_worker_queue_depth", "Calls queued for a worker thread.",
      [this] { return static_cast<double>(workers_.queued()); });
}

int Server::metrics_port() const {
  return metrics_http_ ? metrics_http_->port() : 0;
}

absl::Status ValidateOptions(const Server::Options& options) {
  if (options.postgres_url.empty()) {
    return absl::InvalidArgumentError(
        "no PostgreSQL URL: set --postgres or IDEM_POSTGRES_URL");
  }
  if (options.pool_size < 1) {
    return absl::InvalidArgumentError("--pool_size must be at least 1");
  }
  if (options.worker_threads < 1 || options.worker_threads > 4096) {
    return absl::InvalidArgumentError("--worker_threads must be 1 to 4096");
  }
  if (options.grpc_threads < 1 || options.grpc_threads > 64) {
    return absl::InvalidArgumentError("--grpc_threads must be 1 to 64");
  }
  if (options.batch_statements < 0) {
    return absl::InvalidArgumentError("--batch_statements must not be negative");
  }
  if (options.record_cache_bytes < 0) {
    return absl::InvalidArgumentError("--record_cache_bytes must not be negative");
  }
  if (options.record_cache_ttl <= absl::ZeroDuration() &&
      options.record_cache_bytes > 0) {
    return absl::InvalidArgumentError(
        "--record_cache_ttl must be positive (or --record_cache_bytes=0)");
  }
  if (options.max_waiters < 0) {
    return absl::InvalidArgumentError("--max_waiters must not be negative");
  }
  if (options.max_queued_calls < 1) {
    return absl::InvalidArgumentError("--max_queued_calls must be at least 1");
  }
  if (options.sweep_batch < 1) {
    return absl::InvalidArgumentError("--sweep_batch must be at least 1");
  }
  if (options.max_response_bytes < 0 ||
      options.max_response_bytes > (int64_t{1} << 30)) {
    return absl::InvalidArgumentError(
        "--max_response_bytes must be between 0 and 1 GiB");
  }
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return absl::InvalidArgumentError(
        options.tls_cert.empty() ? "--tls_key needs --tls_cert (both or neither)"
                                 : "--tls_cert needs --tls_key (both or neither)");
  }
  if (!options.tls_client_ca.empty() && options.tls_cert.empty()) {
    return absl::InvalidArgumentError(
        "--tls_client_ca needs --tls_cert and --tls_key");
  }
  if (!options.metrics_listen.empty()) {
    if (absl::Status s = ParseHostPort(options.metrics_listen).status(); !s.ok()) {
      return s;
    }
  }
  for (const auto& [flag, value] :
       {std::pair{"--metrics_collect_interval", options.metrics_collect_interval},
        std::pair{"--sweep_interval", options.sweep_interval},
        std::pair{"--health_check_interval", options.health_check_interval},
        std::pair{"--statement_timeout", options.statement_timeout}}) {
    if (value <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(absl::StrCat(flag, " must be positive"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Server>> Server::BuildAndStart(const Options& options) {
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  // Files first: a bad one stops start-up before any wait for PostgreSQL.
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      MakeServerCredentials(options);
  if (!credentials.ok()) return credentials.status();
  std::unique_ptr<const Authorizer> authorizer;
  if (!options.auth_file.empty()) {
    absl::StatusOr<std::unique_ptr<Authorizer>> loaded =
        Authorizer::LoadFile(options.auth_file);
    if (!loaded.ok()) return loaded.status();
    LOG(INFO) << "authorization on: " << (*loaded)->callers() << " caller(s) in "
              << options.auth_file;
    authorizer = *std::move(loaded);
  }
  if (absl::Status s = AwaitSchema(options); !s.ok()) return s;

  std::unique_ptr<Server> server(new Server(options, std::move(authorizer)));
  if (!options.metrics_listen.empty()) {
    // Before gRPC: a metrics port that cannot be bound stops start-up.
    absl::StatusOr<std::unique_ptr<MetricsHttpServer>> http =
        MetricsHttpServer::Start(options.metrics_listen, &server->metrics_);
    if (!http.ok()) return http.status();
    server->metrics_http_ = *std::move(http);
    server->stats_collector_ = std::make_unique<StoreStatsCollector>(
        &server->store_, &server->metrics_, options.metrics_collect_interval);
  }
  // Our own health service (health_service.h says why not gRPC's).
  grpc::EnableDefaultHealthCheckService(false);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, *credentials, &server->port_);
  builder.RegisterService(&server->grpc_service_);
  builder.RegisterService(&server->health_service_);
  for (int i = 0; i < options.grpc_threads; ++i) {
    server->queues_.push_back(builder.AddCompletionQueue());
  }
  const int64_t max_message = std::min<int64_t>(
      options.max_response_bytes + kReceiveSlackBytes, INT32_MAX);
  builder.SetMaxReceiveMessageSize(static_cast<int>(max_message));
  builder.SetMaxSendMessageSize(static_cast<int>(max_message));
  server->grpc_server_ = builder.BuildAndStart();
  if (server->grpc_server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.listen));
  }
  for (const auto& queue : server->queues_) {
    server->queue_threads_.emplace_back(
        [s = server.get(), q = queue.get()] { s->grpc_service_.Serve(q); });
  }
  server->health_ = std::make_unique<HealthMonitor>(
      &server->store_, &server->health_service_, options.health_check_interval);
  server->health_->Start();
  server->listener_.Start();
  server->sweeper_.Start();
  server->cache_refresher_.Start();
  if (server->stats_collector_) server->stats_collector_->Start();
  LOG(INFO) << "idemd serving idem.v1.Idempotency on " << options.listen
            << " (port " << server->port_ << "), pool " << options.pool_size
            << (options.tls_cert.empty()         ? ", plaintext"
                : options.tls_client_ca.empty() ? ", TLS"
                                                : ", mutual TLS")
            << (server->authorizer_ ? ", per-scope authorization" : "");
  return server;
}

Server::~Server() { Shutdown(); }

void Server::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  LOG(INFO) << "shutting down: draining in-flight calls";
  if (health_) health_->Stop();
  // NOT_SERVING for good; open Watches end rather than hold up the drain.
  health_service_.Shutdown();
  // Parked Begins answer now (IN_PROGRESS) instead of holding up the drain.
  waiters_.Shutdown();
  if (grpc_server_) {
    grpc_server_->Shutdown(absl::ToChronoTime(absl::Now() + options_.shutdown_grace));
  }
  workers_.Shutdown();
  listener_.Stop();
  sweeper_.Stop();
  cache_refresher_.Stop();
  if (grpc_server_) grpc_server_->Wait();
  // Every call has been answered and deleted (Server::Shutdown waits for
  // that): nothing starts on the queues any more.
  for (const auto& queue : queues_) queue->Shutdown();
  for (std::thread& thread : queue_threads_) thread.join();
  if (queue_threads_.empty()) {  // Start-up failed before serving: drain here.
    for (const auto& queue : queues_) {
      void* tag;
      bool ok;
      while (queue->Next(&tag, &ok)) {
      }
    }
  }
  // Metrics last: they can be scraped while calls drain.
  if (stats_collector_) stats_collector_->Stop();
  if (metrics_http_) metrics_http_->Stop();
  LOG(INFO) << "shut down";
}

void Server::Wait() {
  if (grpc_server_) grpc_server_->Wait();
}

}  // namespace idem
