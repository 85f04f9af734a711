// TLS, mutual TLS and per-scope authorization (idemd --tls_cert, --tls_key,
// --tls_client_ca, --auth_file) against in-process idemds. Certificates are
// made at test time with the openssl command-line tool in a temp directory.
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "server/authorizer.h"
#include "tests/integration/test_env.h"

namespace idem {
namespace {

using idem::v1::BeginResponse;
using idem::v1::Record;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

// A throwaway CA, a server certificate for 127.0.0.1 / localhost and a
// client certificate, all signed by the CA; plus a second CA that signed
// nothing the server trusts.
class Pki {
 public:
  Pki() {
    char dir_template[] = "/tmp/idem-tls-XXXXXX";
    dir_ = mkdtemp(dir_template);
    WriteFile(Path("server.ext"),
              "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
              "extendedKeyUsage=serverAuth\n");
    WriteFile(Path("client.ext"), "extendedKeyUsage=clientAuth\n");
    const std::string key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    Run(absl::StrCat("openssl req -x509 ", key, " -keyout ca.key -out ca.pem "
                     "-days 1 -subj /CN=idem-test-ca"));
    Run(absl::StrCat("openssl req -x509 ", key, " -keyout other-ca.key "
                     "-out other-ca.pem -days 1 -subj /CN=idem-other-ca"));
    for (const char* name : {"server", "client"}) {
      Run(absl::StrCat("openssl req ", key, " -keyout ", name, ".key -out ", name,
                       ".csr -subj /CN=idem-test-", name));
      Run(absl::StrCat("openssl x509 -req -in ", name, ".csr -CA ca.pem "
                       "-CAkey ca.key -CAcreateserial -days 1 -out ",
                       name, ".pem -extfile ", name, ".ext"));
    }
  }
  ~Pki() { std::system(absl::StrCat("rm -rf ", dir_).c_str()); }

  std::string Path(const std::string& name) const { return absl::StrCat(dir_, "/", name); }
  std::string Pem(const std::string& name) const { return ReadFile(Path(name)); }

 private:
  void Run(const std::string& command) {
    const std::string cmd =
        absl::StrCat("cd ", dir_, " && ", command, " >/dev/null 2>&1");
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  std::string dir_;
};

// Made once per test process; its directory goes at exit.
Pki& TestPki() {
  static Pki pki;
  return pki;
}

ClientOptions QuickFail() {
  ClientOptions options;
  options.deadline = absl::Seconds(3);
  options.wait_for_ready = false;
  return options;
}

std::unique_ptr<Client> TlsClient(int port, bool with_client_cert,
                                  ClientOptions options = QuickFail()) {
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = TestPki().Pem("ca.pem");
  if (with_client_cert) {
    tls.pem_cert_chain = TestPki().Pem("client.pem");
    tls.pem_private_key = TestPki().Pem("client.key");
  }
  return std::make_unique<Client>(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::SslCredentials(tls)),
      options);
}

std::unique_ptr<Client> PlainClient(int port, ClientOptions options = QuickFail()) {
  return std::make_unique<Client>(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                          grpc::InsecureChannelCredentials()),
      options);
}

Server::Options TlsOptions() {
  Server::Options options = testenv::TestServerOptions();
  options.tls_cert = TestPki().Path("server.pem");
  options.tls_key = TestPki().Path("server.key");
  return options;
}

TEST(TlsTest, TlsClientWorksAndPlaintextClientFails) {
  testenv::InProcessIdemd idemd(TlsOptions());
  ASSERT_NE(idemd.server, nullptr);
  const std::string scope = testenv::UniqueScope();

  absl::StatusOr<BeginResponse> begun =
      TlsClient(idemd.server->port(), false)->Begin(scope, "k", "req");
  ASSERT_TRUE(begun.ok()) << begun.status();
  EXPECT_EQ(begun->outcome(), BeginResponse::ACQUIRED);

  absl::StatusOr<Record> plain = PlainClient(idemd.server->port())->Get(scope, "k");
  EXPECT_EQ(plain.status().code(), absl::StatusCode::kUnavailable) << plain.status();
}

TEST(TlsTest, ClientThatDoesNotTrustTheServerFails) {
  testenv::InProcessIdemd idemd(TlsOptions());
  ASSERT_NE(idemd.server, nullptr);
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = TestPki().Pem("other-ca.pem");
  Client client(grpc::CreateChannel(absl::StrCat("127.0.0.1:", idemd.server->port()),
                                    grpc::SslCredentials(tls)),
                QuickFail());
  EXPECT_EQ(client.Get(testenv::UniqueScope(), "k").status().code(),
            absl::StatusCode::kUnavailable);
}

TEST(TlsTest, MutualTlsNeedsAClientCertificateFromTheCa) {
  Server::Options options = TlsOptions();
  options.tls_client_ca = TestPki().Path("ca.pem");
  testenv::InProcessIdemd idemd(options);
  ASSERT_NE(idemd.server, nullptr);
  const std::string scope = testenv::UniqueScope();
  const int port = idemd.server->port();

  EXPECT_FALSE(TlsClient(port, /*with_client_cert=*/false)->Get(scope, "k").ok());
  EXPECT_FALSE(PlainClient(port)->Get(scope, "k").ok());

  absl::StatusOr<BeginResponse> begun =
      TlsClient(port, /*with_client_cert=*/true)->Begin(scope, "k", "req");
  ASSERT_TRUE(begun.ok()) << begun.status();
  EXPECT_EQ(begun->outcome(), BeginResponse::ACQUIRED);
}

TEST(TlsTest, StartUpFailsNamingTheFlag) {
  struct Case {
    const char* flag;
    void (*mutate)(Server::Options*);
  };
  const Case cases[] = {
      {"--tls_key", [](Server::Options* o) { o->tls_key = ""; }},
      {"--tls_cert", [](Server::Options* o) { o->tls_cert = "/nonexistent/cert.pem"; }},
      {"--tls_key", [](Server::Options* o) { o->tls_key = "/nonexistent/key.pem"; }},
      // A certificate is no private key, and the other way round.
      {"--tls_key", [](Server::Options* o) { o->tls_key = o->tls_cert; }},
      {"--tls_cert", [](Server::Options* o) { o->tls_cert = o->tls_key; }},
      {"--tls_client_ca",
       [](Server::Options* o) { o->tls_client_ca = "/nonexistent/ca.pem"; }},
      {"--auth_file", [](Server::Options* o) { o->auth_file = "/nonexistent/auth"; }},
  };
  for (const Case& c : cases) {
    Server::Options options = TlsOptions();
    options.postgres_url = "postgresql:///no-such-db?host=/nonexistent";
    c.mutate(&options);
    absl::StatusOr<std::unique_ptr<Server>> server = Server::BuildAndStart(options);
    ASSERT_FALSE(server.ok()) << c.flag;
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument) << c.flag;
    EXPECT_NE(server.status().message().find(c.flag), absl::string_view::npos)
        << server.status();
  }
}

// Authorization: tenant-a's token may use scopes under tenant-a/<run>,
// tenant-b's under tenant-b/<run>; "admin" both. Over TLS, as tokens should.
class AuthTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    run_ = testenv::UniqueScope();
    for (char& c : run_) {
      if (c == '/') c = '_';
    }
    WriteFile(TestPki().Path("auth"),
              absl::StrCat("# test callers\n",
                           Authorizer::TokenHash("token-a"), " tenant-a/", run_, "\n",
                           Authorizer::TokenHash("token-b"), " tenant-b/", run_, "\n",
                           Authorizer::TokenHash("admin"), " tenant-a/", run_,
                           ",tenant-b/", run_, "\n"));
    Server::Options options = TlsOptions();
    options.auth_file = TestPki().Path("auth");
    idemd_ = new testenv::InProcessIdemd(options);
  }
  static void TearDownTestSuite() {
    delete idemd_;
    idemd_ = nullptr;
  }

  void SetUp() override { ASSERT_NE(idemd_->server, nullptr); }

  static std::unique_ptr<Client> As(const std::string& token) {
    ClientOptions options = QuickFail();
    options.bearer_token = token;
    return TlsClient(idemd_->server->port(), false, options);
  }
  static std::string ScopeA() { return absl::StrCat("tenant-a/", run_); }
  static std::string ScopeB() { return absl::StrCat("tenant-b/", run_); }

  static testenv::InProcessIdemd* idemd_;
  static std::string run_;
};

testenv::InProcessIdemd* AuthTest::idemd_ = nullptr;
std::string AuthTest::run_;

TEST_F(AuthTest, NoOrUnknownTokenIsUnauthenticated) {
  for (const std::string& token : {std::string(), std::string("wrong-token")}) {
    absl::StatusOr<BeginResponse> begun = As(token)->Begin(ScopeA(), "k0", "req");
    EXPECT_EQ(begun.status().code(), absl::StatusCode::kUnauthenticated)
        << begun.status();
    if (!token.empty()) {
      EXPECT_EQ(begun.status().message().find(token), std::string::npos);
    }
  }
  // Nothing was stored.
  EXPECT_EQ(As("admin")->Get(ScopeA(), "k0").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(AuthTest, AllowedScopeWorksEndToEnd) {
  std::unique_ptr<Client> a = As("token-a");
  absl::StatusOr<RunOnceResult> done = a->RunOnce(
      absl::StrCat(ScopeA(), "/orders"), "k1", "req",
      [](const Lease&) -> absl::StatusOr<WorkResult> {
        WorkResult result;
        result.response = "charged";
        return result;
      });
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_TRUE(done->executed);
  absl::StatusOr<Record> got = a->Get(absl::StrCat(ScopeA(), "/orders"), "k1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->response(), "charged");
  EXPECT_EQ(done->record.response(), "charged");
}

TEST_F(AuthTest, CannotTouchAnotherTenantsKey) {
  std::unique_ptr<Client> a = As("token-a");
  std::unique_ptr<Client> b = As("token-b");
  // tenant-b holds a key.
  absl::StatusOr<BeginResponse> held = b->Begin(ScopeB(), "k2", "secret-req");
  ASSERT_TRUE(held.ok()) << held.status();
  ASSERT_EQ(held->outcome(), BeginResponse::ACQUIRED);
  const int64_t token = held->lease_token();
  absl::StatusOr<Record> before = b->Get(ScopeB(), "k2");
  ASSERT_TRUE(before.ok()) << before.status();

  auto expect_denied = [&](const absl::Status& status, const char* what) {
    EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << what << status;
    EXPECT_NE(status.message().find(ScopeB()), std::string::npos) << what << status;
    EXPECT_EQ(status.message().find("token-a"), std::string::npos) << what;
    EXPECT_EQ(status.message().find(ScopeA()), std::string::npos) << what;
  };
  expect_denied(a->Begin(ScopeB(), "k2", "secret-req").status(), "Begin");
  {
    idem::v1::BeginRequest waiting;
    waiting.set_scope(ScopeB());
    waiting.set_key("k2");
    waiting.set_request_hash(Client::RequestHash("secret-req"));
    waiting.mutable_wait()->set_seconds(1);
    expect_denied(a->Begin(waiting).status(), "waiting Begin");
  }
  expect_denied(a->Get(ScopeB(), "k2").status(), "Get");
  {
    idem::v1::CompleteRequest c;
    c.set_scope(ScopeB());
    c.set_key("k2");
    c.set_lease_token(token);
    c.set_response("forged");
    expect_denied(a->Complete(c).status(), "Complete");
  }
  {
    idem::v1::FailRequest f;
    f.set_scope(ScopeB());
    f.set_key("k2");
    f.set_lease_token(token);
    f.set_error("forged");
    expect_denied(a->Fail(f).status(), "Fail");
  }
  {
    idem::v1::ExtendLeaseRequest e;
    e.set_scope(ScopeB());
    e.set_key("k2");
    e.set_lease_token(token);
    e.mutable_lease_ttl()->set_seconds(3600);
    expect_denied(a->ExtendLease(e).status(), "ExtendLease");
  }
  {
    // Refused whole: the allowed tenant-a request is not begun either.
    idem::v1::BatchBeginRequest batch;
    for (const std::string& scope : {ScopeA(), ScopeB()}) {
      idem::v1::BeginRequest* r = batch.add_requests();
      r->set_scope(scope);
      r->set_key("k2");
      r->set_request_hash(Client::RequestHash("req"));
    }
    expect_denied(a->BatchBegin(batch).status(), "BatchBegin");
    EXPECT_EQ(a->Get(ScopeA(), "k2").status().code(), absl::StatusCode::kNotFound);
  }
  // Prefix boundary: tenant-a/<run> does not cover tenant-a/<run>x.
  EXPECT_EQ(a->Get(absl::StrCat(ScopeA(), "x"), "k2").status().code(),
            absl::StatusCode::kPermissionDenied);

  // tenant-b's key is as it was, and its holder can still complete it.
  absl::StatusOr<Record> after = b->Get(ScopeB(), "k2");
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->SerializeAsString(), before->SerializeAsString());
  idem::v1::CompleteRequest c;
  c.set_scope(ScopeB());
  c.set_key("k2");
  c.set_lease_token(token);
  c.set_response("real");
  absl::StatusOr<Record> completed = b->Complete(c);
  ASSERT_TRUE(completed.ok()) << completed.status();
  EXPECT_EQ(completed->response(), "real");
}

TEST_F(AuthTest, HealthStaysOpen) {
  auto channel = grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", idemd_->server->port()),
      grpc::SslCredentials([] {
        grpc::SslCredentialsOptions tls;
        tls.pem_root_certs = TestPki().Pem("ca.pem");
        return tls;
      }()));
  auto health = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = health->Check(&context, request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
}

}  // namespace
}  // namespace idem
