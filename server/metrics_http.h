// MetricsHttpServer: serves a MetricsRegistry over HTTP for Prometheus.
//
// GET /metrics answers the registry's text rendering (Content-Type
// "text/plain; version=0.0.4"); any other path is 404. It runs on its own
// threads (cpp-httplib's listener plus a small pool), apart from gRPC's and
// the workers', so a scrape never holds up an RPC beyond the registry's
// short locks.
//
// Example:
//   absl::StatusOr<std::unique_ptr<MetricsHttpServer>> http =
//       MetricsHttpServer::Start("0.0.0.0:9464", &registry);
//   if (!http.ok()) return http.status();  // UNAVAILABLE: cannot bind.
//   ...
//   (*http)->Stop();
//
// Thread safety: Start and Stop from one owning thread.
#ifndef IDEM_SERVER_METRICS_HTTP_H_
#define IDEM_SERVER_METRICS_HTTP_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/metrics.h"

namespace httplib {
class Server;
}  // namespace httplib

namespace idem {

// Splits "host:port", "[v6]:port" or ":port" (host 0.0.0.0); port 0..65535.
// INVALID_ARGUMENT naming --metrics_listen otherwise.
absl::StatusOr<std::pair<std::string, int>> ParseHostPort(absl::string_view address);

class MetricsHttpServer {
 public:
  // Binds `address` (host:port; port 0 picks a free port, see port()) and
  // serves `registry`, which must outlive the server. UNAVAILABLE when the
  // address cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      absl::string_view address, const MetricsRegistry* registry);

  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;
  // Calls Stop().
  ~MetricsHttpServer();

  // Stops listening and joins the threads. Idempotent.
  void Stop();

  int port() const { return port_; }

 private:
  MetricsHttpServer();

  std::unique_ptr<httplib::Server> http_;
  int port_ = 0;
  std::thread thread_;
};

}  // namespace idem

#endif  // IDEM_SERVER_METRICS_HTTP_H_
