// The SQL migrations compiled into idemd and idemctl (from migrations/).
#ifndef IDEM_SERVER_MIGRATION_LIST_H_
#define IDEM_SERVER_MIGRATION_LIST_H_

#include <vector>

namespace idem {

struct Migration {
  int version;       // NNNN of NNNN_name.sql.
  const char* name;  // File name without .sql.
  const char* sql;
};

// In ascending version order. Defined in the generated
// embedded_migrations.cc (migrations/embed_migrations.cmake).
const std::vector<Migration>& EmbeddedMigrations();

}  // namespace idem

#endif  // IDEM_SERVER_MIGRATION_LIST_H_
