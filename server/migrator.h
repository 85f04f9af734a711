// Migrator: brings a database's schema up to date, and reports where it is.
//
// Applied migrations are recorded in schema_migrations. Migrate() holds a
// PostgreSQL advisory lock for its whole run, so two migrators started at
// once apply each migration exactly once; each migration runs in its own
// transaction, together with its schema_migrations row.
//
// Thread safety: each call opens its own connection.
#ifndef IDEM_SERVER_MIGRATOR_H_
#define IDEM_SERVER_MIGRATOR_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/migration_list.h"

namespace idem {

struct SchemaState {
  // Highest applied version; 0 when none is.
  int current_version = 0;
  // Highest version this binary knows.
  int latest_version = 0;
  // Known migrations not applied yet, in order.
  std::vector<Migration> pending;
};

class Migrator {
 public:
  // `migrations` in ascending version order; EmbeddedMigrations() in the
  // binaries, other lists in tests.
  Migrator(std::string url, std::vector<Migration> migrations);

  // Applies every pending migration; returns the versions applied (none when
  // already up to date). FAILED_PRECONDITION for a database not in UTF8.
  absl::StatusOr<std::vector<int>> Migrate() const;

  absl::StatusOr<SchemaState> State() const;

  // OK when nothing is pending and the database is UTF8;
  // FAILED_PRECONDITION saying what to do otherwise.
  absl::Status CheckUpToDate() const;

 private:
  const std::string url_;
  const std::vector<Migration> migrations_;
};

}  // namespace idem

#endif  // IDEM_SERVER_MIGRATOR_H_
