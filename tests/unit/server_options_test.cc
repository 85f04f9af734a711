#include <gtest/gtest.h>

#include "server/server.h"

namespace idem {
namespace {

Server::Options Valid() {
  Server::Options options;
  options.postgres_url = "postgresql:///idem";
  return options;
}

TEST(ValidateOptionsTest, DefaultsWithAUrlAreValid) {
  EXPECT_TRUE(ValidateOptions(Valid()).ok());
  EXPECT_EQ(ValidateOptions(Server::Options()).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ValidateOptionsTest, NamesTheFlagOutOfRange) {
  struct Case {
    const char* flag;
    void (*mutate)(Server::Options*);
  };
  const Case cases[] = {
      {"--pool_size", [](Server::Options* o) { o->pool_size = 0; }},
      {"--max_queued_calls", [](Server::Options* o) { o->max_queued_calls = 0; }},
      {"--sweep_batch", [](Server::Options* o) { o->sweep_batch = 0; }},
      {"--max_response_bytes", [](Server::Options* o) { o->max_response_bytes = -1; }},
      {"--sweep_interval", [](Server::Options* o) { o->sweep_interval = absl::ZeroDuration(); }},
      {"--health_check_interval", [](Server::Options* o) { o->health_check_interval = -absl::Seconds(1); }},
      {"--statement_timeout", [](Server::Options* o) { o->statement_timeout = absl::ZeroDuration(); }},
      {"--metrics_listen", [](Server::Options* o) { o->metrics_listen = "9464"; }},
      {"--tls_key", [](Server::Options* o) { o->tls_cert = "cert.pem"; }},
      {"--tls_cert", [](Server::Options* o) { o->tls_key = "key.pem"; }},
      {"--tls_client_ca", [](Server::Options* o) { o->tls_client_ca = "ca.pem"; }},
      {"--metrics_collect_interval", [](Server::Options* o) { o->metrics_collect_interval = absl::ZeroDuration(); }},
      {"--worker_threads", [](Server::Options* o) { o->worker_threads = 0; }},
      {"--batch_statements", [](Server::Options* o) { o->batch_statements = -1; }},
      {"--record_cache_bytes", [](Server::Options* o) { o->record_cache_bytes = -1; }},
      {"--record_cache_ttl", [](Server::Options* o) { o->record_cache_ttl = absl::ZeroDuration(); }},
  };
  for (const Case& c : cases) {
    Server::Options options = Valid();
    c.mutate(&options);
    const absl::Status status = ValidateOptions(options);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.flag;
    EXPECT_NE(status.message().find(c.flag), absl::string_view::npos) << status;
  }
}

}  // namespace
}  // namespace idem
