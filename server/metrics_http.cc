#include "server/metrics_http.h"

#include <httplib.h>
#include <sys/socket.h>

#include <utility>

#include <glog/logging.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace idem {

namespace {

// Scrapes are rare and quick: two threads serve them.
constexpr size_t kHttpThreads = 2;
// How long Start() waits for the listener thread to run.
constexpr absl::Duration kStartTimeout = absl::Seconds(5);

constexpr char kContentType[] = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace

absl::StatusOr<std::pair<std::string, int>> ParseHostPort(absl::string_view address) {
  const auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "--metrics_listen must be host:port, [v6-host]:port or :port, not \"",
        address, "\""));
  };
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos) return bad();
  std::string host(address.substr(0, colon));
  int port = 0;
  if (!absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return bad();
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string::npos) {
    return bad();  // An IPv6 address needs brackets.
  }
  if (host.empty()) host = "0.0.0.0";
  return std::make_pair(host, port);
}

MetricsHttpServer::MetricsHttpServer() : http_(std::make_unique<httplib::Server>()) {}

MetricsHttpServer::~MetricsHttpServer() { Stop(); }

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    absl::string_view address, const MetricsRegistry* registry) {
  absl::StatusOr<std::pair<std::string, int>> host_port = ParseHostPort(address);
  if (!host_port.ok()) return host_port.status();
  const auto& [host, port] = *host_port;

  std::unique_ptr<MetricsHttpServer> server(new MetricsHttpServer());
  httplib::Server& http = *server->http_;
  http.new_task_queue = [] { return new httplib::ThreadPool(kHttpThreads); };
  // cpp-httplib's default also sets SO_REUSEPORT, which would let a second
  // idemd bind the same port and split the scrapes: only SO_REUSEADDR.
  http.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  http.set_read_timeout(5, 0);
  http.set_write_timeout(5, 0);
  http.set_keep_alive_timeout(2);
  http.set_payload_max_length(64 << 10);
  http.Get("/metrics", [registry](const httplib::Request&, httplib::Response& res) {
    res.set_content(registry->Render(), kContentType);
  });

  if (port == 0) {
    server->port_ = http.bind_to_any_port(host);
    if (server->port_ <= 0) server->port_ = 0;
  } else if (http.bind_to_port(host, port)) {
    server->port_ = port;
  }
  if (server->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen for metrics on ", address,
                     " (--metrics_listen): address in use or not local?"));
  }
  server->thread_ = std::thread([&http] {
    if (!http.listen_after_bind()) LOG(ERROR) << "metrics HTTP server failed";
  });
  // stop() only takes effect once the listener runs: wait for it.
  const absl::Time give_up = absl::Now() + kStartTimeout;
  while (!http.is_running()) {
    if (absl::Now() > give_up) {
      return absl::InternalError("metrics HTTP server did not start");
    }
    absl::SleepFor(absl::Milliseconds(1));
  }
  LOG(INFO) << "serving Prometheus metrics on http://" << host << ":"
            << server->port_ << "/metrics";
  return server;
}

void MetricsHttpServer::Stop() {
  if (http_->is_running()) http_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace idem
