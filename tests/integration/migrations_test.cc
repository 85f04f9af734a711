// idemctl's migrations and idemd's schema check, on fresh databases.
#include <unistd.h>

#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include "server/migration_list.h"
#include "server/migrator.h"
#include "server/server.h"
#include "tests/integration/test_env.h"

namespace idem {
namespace {

int CountRows(const std::string& url, const std::string& sql) {
  pqxx::connection c(url);
  return pqxx::nontransaction(c).exec(sql)[0][0].as<int>();
}

TEST(MigrationsTest, SecondRunIsANoOp) {
  const std::string url = testenv::CreateDatabase();
  const Migrator migrator(url, EmbeddedMigrations());
  absl::StatusOr<SchemaState> before = migrator.State();
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_EQ(before->current_version, 0);
  EXPECT_EQ(before->pending.size(), EmbeddedMigrations().size());

  absl::StatusOr<std::vector<int>> first = migrator.Migrate();
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->size(), EmbeddedMigrations().size());
  absl::StatusOr<std::vector<int>> second = migrator.Migrate();
  ASSERT_TRUE(second.ok());
  EXPECT_TRUE(second->empty());
  EXPECT_TRUE(migrator.CheckUpToDate().ok());
  EXPECT_EQ(migrator.State()->current_version, EmbeddedMigrations().back().version);
}

TEST(MigrationsTest, ConcurrentRunsApplyEachMigrationOnce) {
  const std::string url = testenv::CreateDatabase();
  std::vector<absl::StatusOr<std::vector<int>>> results(6, absl::UnknownError(""));
  std::vector<std::thread> threads;
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&, i] { results[i] = Migrator(url, EmbeddedMigrations()).Migrate(); });
  }
  for (std::thread& t : threads) t.join();
  size_t applied = 0;
  for (const auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status();
    applied += r->size();
  }
  EXPECT_EQ(applied, EmbeddedMigrations().size());
  EXPECT_EQ(CountRows(url, "SELECT count(*) FROM schema_migrations"),
            static_cast<int>(EmbeddedMigrations().size()));
}

TEST(MigrationsTest, FailingMigrationRollsBackAndStopsThere) {
  const std::string url = testenv::CreateDatabase();
  std::vector<Migration> list = EmbeddedMigrations();
  list.push_back({9001, "9001_half_done", "CREATE TABLE half_done (x int); SELECT 1/0;"});
  list.push_back({9002, "9002_never", "CREATE TABLE never (x int);"});
  const Migrator migrator(url, list);
  absl::StatusOr<std::vector<int>> r = migrator.Migrate();
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.status().message().find("SELECT"), absl::string_view::npos)
      << "no SQL text in messages: " << r.status();
  absl::StatusOr<SchemaState> state = migrator.State();
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(state->current_version, EmbeddedMigrations().back().version);
  EXPECT_EQ(state->pending.size(), 2u);
  EXPECT_EQ(CountRows(url, "SELECT count(*) FROM pg_tables WHERE tablename IN "
                           "('half_done', 'never')"),
            0);
}

TEST(MigrationsTest, IdemdRefusesToStartOnABehindSchema) {
  const std::string url = testenv::CreateDatabase();
  absl::StatusOr<std::unique_ptr<Server>> server =
      Server::BuildAndStart(testenv::TestServerOptions(url));
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(server.status().message().find("idemctl migrate"), absl::string_view::npos)
      << server.status();

  ASSERT_TRUE(Migrator(url, EmbeddedMigrations()).Migrate().ok());
  absl::StatusOr<std::unique_ptr<Server>> started =
      Server::BuildAndStart(testenv::TestServerOptions(url));
  EXPECT_TRUE(started.ok()) << started.status();
}

TEST(MigrationsTest, NonUtf8DatabaseIsRefusedWithAClearMessage) {
  const std::string name = "idem_latin1_" + std::to_string(::getpid());
  {
    pqxx::connection c(testenv::DatabaseUrl("postgres"));
    pqxx::nontransaction tx(c);
    tx.exec("DROP DATABASE IF EXISTS " + name);
    tx.exec("CREATE DATABASE " + name +
            " ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0");
  }
  const Migrator migrator(testenv::DatabaseUrl(name), EmbeddedMigrations());
  absl::StatusOr<std::vector<int>> r = migrator.Migrate();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("UTF8"), absl::string_view::npos) << r.status();
  EXPECT_EQ(migrator.CheckUpToDate().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(MigrationsTest, UnreachableDatabaseIsUnavailable) {
  const Migrator migrator(
      "postgresql:///x?host=/nonexistent-socket-dir&user=postgres&connect_timeout=2",
      EmbeddedMigrations());
  EXPECT_EQ(migrator.Migrate().status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace idem
