#include "tests/integration/test_env.h"

#include <cstdlib>
#include <cctype>
#include <random>

#include <grpcpp/create_channel.h>
#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/migration_list.h"
#include "server/migrator.h"

namespace idem::testenv {

namespace {

std::string RandomSuffix() {
  static std::mt19937_64 rng(std::random_device{}());
  static absl::Mutex mu;
  absl::MutexLock lock(&mu);
  return absl::StrCat(absl::Hex(rng(), absl::kZeroPad16));
}

}  // namespace

std::string DatabaseUrl(const std::string& db) {
  return absl::StrCat("postgresql:///", db, "?host=", IDEM_TEST_PG_DIR,
                      "/socket&user=postgres");
}

std::string SharedDatabaseUrl() { return DatabaseUrl("idem_test"); }

std::string CreateDatabase() {
  const std::string name = absl::StrCat("idem_t_", RandomSuffix());
  pqxx::connection c(DatabaseUrl("postgres"));
  pqxx::nontransaction(c).exec("CREATE DATABASE " + c.quote_name(name));
  return DatabaseUrl(name);
}

std::string CreateMigratedDatabase() {
  const std::string url = CreateDatabase();
  absl::StatusOr<std::vector<int>> applied =
      Migrator(url, EmbeddedMigrations()).Migrate();
  EXPECT_TRUE(applied.ok()) << applied.status();
  return url;
}

std::string UniqueScope() {
  const testing::TestInfo* info = testing::UnitTest::GetInstance()->current_test_info();
  std::string name = info == nullptr
                         ? "none"
                         : absl::StrCat(info->test_suite_name(), ".", info->name());
  for (char& c : name) {
    if (!isalnum(static_cast<unsigned char>(c)) && c != '.') c = '_';
  }
  return absl::StrCat("test/", name.substr(0, 80), "/", RandomSuffix());
}

void PgCluster(const std::string& command) {
  const std::string cmd = absl::StrCat(IDEM_TEST_PG_CLUSTER, " ", command,
                                       " ", IDEM_TEST_PG_DIR, " >/dev/null");
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

std::string IdemdPath() { return IDEM_TEST_IDEMD; }

Server::Options TestServerOptions(const std::string& url) {
  Server::Options options;
  options.listen = "127.0.0.1:0";
  options.postgres_url = url;
  options.pool_size = 4;
  options.health_check_interval = absl::Milliseconds(200);
  options.startup_timeout = absl::Seconds(5);
  options.shutdown_grace = absl::Seconds(2);
  return options;
}

InProcessIdemd::InProcessIdemd(Server::Options options) {
  absl::StatusOr<std::unique_ptr<Server>> started = Server::BuildAndStart(options);
  if (!started.ok()) {
    ADD_FAILURE() << "idemd did not start: " << started.status();
    return;
  }
  server = *std::move(started);
  address = absl::StartsWith(options.listen, "unix:")
                ? options.listen
                : absl::StrCat("127.0.0.1:", server->port());
  client = std::make_unique<Client>(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
}

InProcessIdemd* SharedIdemdTest::idemd_ = nullptr;

void SharedIdemdTest::StartIdemd(const Server::Options& options) {
  idemd_ = new InProcessIdemd(options);
}

void SharedIdemdTest::TearDownTestSuite() {
  delete idemd_;
  idemd_ = nullptr;
}

void SharedIdemdTest::SetUp() {
  ASSERT_NE(idemd_->client, nullptr);
  scope_ = UniqueScope();
}

}  // namespace idem::testenv
