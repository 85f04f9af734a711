// The environment of the integration tests: the PostgreSQL cluster that the
// pg_cluster ctest fixture started (tests/CMakeLists.txt), fresh databases
// and unique scopes, so tests running in parallel never share a key.
#ifndef IDEM_TESTS_INTEGRATION_TEST_ENV_H_
#define IDEM_TESTS_INTEGRATION_TEST_ENV_H_

#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "idem/client.h"
#include "server/server.h"

namespace idem::testenv {

// libpq URL of database `db` in the test cluster.
std::string DatabaseUrl(const std::string& db);
// The migrated database the fixture made; tests keep apart by scope.
std::string SharedDatabaseUrl();
// A new, empty (unmigrated) database; returns its URL.
std::string CreateDatabase();
// A new database with every migration applied; returns its URL.
std::string CreateMigratedDatabase();
// "test/<suite>.<test>/<random>": unique per call.
std::string UniqueScope();
// Runs `pg-cluster COMMAND <test cluster dir>` (stop, start, restart).
void PgCluster(const std::string& command);
// Path of the idemd binary under test.
std::string IdemdPath();

// An in-process idemd on a free port, with a client connected to it.
struct InProcessIdemd {
  explicit InProcessIdemd(Server::Options options);
  std::unique_ptr<Server> server;
  std::string address;
  std::unique_ptr<Client> client;
};

// Options for an in-process idemd on `url` (default: the shared database).
Server::Options TestServerOptions(const std::string& url = SharedDatabaseUrl());

// A test suite sharing one in-process idemd, started once for the suite;
// each test gets a scope of its own. A suite that needs other options
// defines its own static SetUpTestSuite() calling StartIdemd(options).
class SharedIdemdTest : public testing::Test {
 protected:
  static void SetUpTestSuite() { StartIdemd(TestServerOptions()); }
  static void TearDownTestSuite();
  static void StartIdemd(const Server::Options& options);
  void SetUp() override;

  static Client& client() { return *idemd_->client; }

  static InProcessIdemd* idemd_;
  std::string scope_;
};

}  // namespace idem::testenv

#endif  // IDEM_TESTS_INTEGRATION_TEST_ENV_H_
