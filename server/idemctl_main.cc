// idemctl: administration of an idem database.
//   idemctl migrate --postgres=URL   apply pending schema migrations
//   idemctl status  --postgres=URL   show the schema version and what is pending
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_join.h"
#include "server/flag_env.h"
#include "server/migration_list.h"
#include "server/migrator.h"

ABSL_FLAG(std::string, postgres, "",
          "PostgreSQL libpq URL (default: $IDEM_POSTGRES_URL)");

namespace {

constexpr char kUsage[] =
    "idemctl: administration of an idem database.\n"
    "  idemctl migrate --postgres=URL   apply pending schema migrations\n"
    "  idemctl status  --postgres=URL   schema version and pending migrations";

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "idemctl: %s\n", std::string(status.message()).c_str());
  return status.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
}

int Migrate(const idem::Migrator& migrator) {
  absl::StatusOr<std::vector<int>> applied = migrator.Migrate();
  if (!applied.ok()) return Fail(applied.status());
  if (applied->empty()) {
    std::printf("schema up to date; nothing to apply\n");
  } else {
    std::printf("applied migration(s): %s\n", absl::StrJoin(*applied, ", ").c_str());
  }
  return 0;
}

int Status(const idem::Migrator& migrator) {
  absl::StatusOr<idem::SchemaState> state = migrator.State();
  if (!state.ok()) return Fail(state.status());
  std::printf("schema version: %d\nlatest known:   %d\n", state->current_version,
              state->latest_version);
  for (const idem::Migration& m : state->pending) {
    std::printf("pending:        %s\n", m.name);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  idem::InitLogging(argv[0]);
  if (args.size() != 2) {
    std::fprintf(stderr, "%s\n", kUsage);
    return 2;
  }
  const std::string url = idem::PostgresUrlOrEnv(absl::GetFlag(FLAGS_postgres));
  if (url.empty()) {
    return Fail(absl::InvalidArgumentError(
        "no PostgreSQL URL: set --postgres or IDEM_POSTGRES_URL"));
  }
  const idem::Migrator migrator(url, idem::EmbeddedMigrations());
  const std::string command = args[1];
  if (command == "migrate") return Migrate(migrator);
  if (command == "status") return Status(migrator);
  std::fprintf(stderr, "idemctl: unknown command '%s'\n%s\n", command.c_str(), kUsage);
  return 2;
}
