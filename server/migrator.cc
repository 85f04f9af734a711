#include "server/migrator.h"

#include <set>
#include <utility>

#include <glog/logging.h>
#include <pqxx/pqxx>

#include "absl/strings/str_cat.h"
#include "server/pg_errors.h"

namespace idem {

namespace {

// pg_advisory_lock key shared by every idem migrator ("idem" in ASCII).
constexpr int64_t kMigrationLockKey = 0x6964656d;

constexpr char kCreateSchemaMigrations[] = R"sql(
  CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()))sql";

std::set<int> AppliedVersions(pqxx::connection& c) {
  pqxx::nontransaction tx(c);
  pqxx::result exists =
      tx.exec("SELECT to_regclass('schema_migrations') IS NOT NULL");
  std::set<int> versions;
  if (!exists[0][0].as<bool>()) return versions;
  for (const pqxx::row& row : tx.exec("SELECT version FROM schema_migrations")) {
    versions.insert(row[0].as<int>());
  }
  return versions;
}

// idem stores text and jsonb that may hold any Unicode character.
absl::Status CheckEncoding(pqxx::connection& c) {
  const std::string encoding =
      pqxx::nontransaction(c).exec("SHOW server_encoding")[0][0].c_str();
  if (encoding == "UTF8") return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "idem needs a database with UTF8 encoding; this one is ", encoding,
      ". Create one with: CREATE DATABASE idem ENCODING 'UTF8' TEMPLATE template0"));
}

template <typename Fn>
auto Guard(Fn fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (...) {
    return ClassifyPqxxException(std::current_exception()).status;
  }
}

}  // namespace

Migrator::Migrator(std::string url, std::vector<Migration> migrations)
    : url_(std::move(url)), migrations_(std::move(migrations)) {}

absl::StatusOr<std::vector<int>> Migrator::Migrate() const {
  return Guard([&]() -> absl::StatusOr<std::vector<int>> {
    pqxx::connection c(url_);
    if (absl::Status s = CheckEncoding(c); !s.ok()) return s;
    {
      pqxx::nontransaction tx(c);
      tx.exec_params("SELECT pg_advisory_lock($1)", kMigrationLockKey);
      tx.exec(kCreateSchemaMigrations);
    }
    const std::set<int> applied = AppliedVersions(c);
    std::vector<int> done;
    for (const Migration& m : migrations_) {
      if (applied.count(m.version)) continue;
      LOG(INFO) << "applying migration " << m.name;
      pqxx::work tx(c);
      tx.exec(m.sql);
      tx.exec_params("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                     m.version, m.name);
      tx.commit();
      done.push_back(m.version);
    }
    pqxx::nontransaction(c).exec_params("SELECT pg_advisory_unlock($1)",
                                        kMigrationLockKey);
    return done;
  });
}

absl::StatusOr<SchemaState> Migrator::State() const {
  return Guard([&]() -> absl::StatusOr<SchemaState> {
    pqxx::connection c(url_);
    const std::set<int> applied = AppliedVersions(c);
    SchemaState state;
    if (!applied.empty()) state.current_version = *applied.rbegin();
    if (!migrations_.empty()) state.latest_version = migrations_.back().version;
    for (const Migration& m : migrations_) {
      if (!applied.count(m.version)) state.pending.push_back(m);
    }
    return state;
  });
}

absl::Status Migrator::CheckUpToDate() const {
  absl::Status encoding = Guard([&]() -> absl::Status {
    pqxx::connection c(url_);
    return CheckEncoding(c);
  });
  if (!encoding.ok()) return encoding;
  absl::StatusOr<SchemaState> state = State();
  if (!state.ok()) return state.status();
  if (state->pending.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "database schema is behind: at version ", state->current_version,
      ", this idemd needs version ", state->latest_version, " (",
      state->pending.size(),
      " migration(s) pending). Run: idemctl migrate --postgres=<url>"));
}

}  // namespace idem
