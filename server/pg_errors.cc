#include "server/pg_errors.h"

#include <string>

#include <glog/logging.h>
#include <pqxx/except>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace idem {

namespace {

PqxxFailure FromSqlState(const std::string& state, const char* what) {
  // 25006 read_only_sql_transaction: this connection's server no longer
  // takes writes (a primary fenced read-only for a switchover, or a standby
  // reached without target_session_attrs=read-write). Another connection
  // may reach the primary, so this one is replaced like a lost one.
  // No SQLSTATE: the error came from libpq itself, not the server, i.e.
  // "server closed the connection unexpectedly" (a crash restart while the
  // statement ran); libpqxx 6.4 throws a plain sql_error for it.
  if (state.empty() || absl::StartsWith(state, "08") || state == "57P01" || state == "57P02" ||
      state == "57P03" || state == "25006") {
    LOG(WARNING) << "database connection lost (SQLSTATE " << state << "): " << what;
    return {absl::UnavailableError(
                absl::StrCat("database unavailable (SQLSTATE ", state, ")")),
            true};
  }
  if (state == "40001" || state == "40P01") {
    return {absl::AbortedError(absl::StrCat(
                "database transaction conflict (SQLSTATE ", state, "); retry")),
            false};
  }
  if (state == "57014") {
    return {absl::DeadlineExceededError(
                "database statement timed out (statement_timeout)"),
            false};
  }
  if (absl::StartsWith(state, "53")) {
    LOG(WARNING) << "database out of resources (SQLSTATE " << state << "): " << what;
    return {absl::ResourceExhaustedError(absl::StrCat(
                "database out of resources (SQLSTATE ", state, ")")),
            false};
  }
  LOG(ERROR) << "database error (SQLSTATE " << state << "): " << what;
  return {absl::InternalError(absl::StrCat("database error (SQLSTATE ", state, ")")),
          false};
}

}  // namespace

PqxxFailure ClassifyPqxxException(std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const pqxx::broken_connection& e) {
    LOG(WARNING) << "database connection lost: " << e.what();
    return {absl::UnavailableError("database unavailable (connection lost)"), true};
  } catch (const pqxx::statement_completion_unknown& e) {
    LOG(WARNING) << "database statement outcome unknown: " << e.what();
    return {absl::UnavailableError(
                "database connection lost during the statement; retry the call"),
            true};
  } catch (const pqxx::transaction_rollback& e) {
    // Deadlock (40P01) and serialization failure (40001): libpqxx 6 throws
    // these outside sql_error. Nothing was applied; the call may be retried.
    LOG(WARNING) << "database transaction rolled back: " << e.what();
    return {absl::AbortedError("database transaction conflict; retry the call"),
            false};
  } catch (const pqxx::in_doubt_error& e) {
    LOG(WARNING) << "database outcome in doubt: " << e.what();
    return {absl::UnavailableError(
                "database connection lost while committing; retry the call"),
            true};
  } catch (const pqxx::sql_error& e) {
    return FromSqlState(e.sqlstate(), e.what());
  } catch (const std::exception& e) {
    // A client-side error (a conversion, a misuse): the connection is fine.
    LOG(ERROR) << "database client error: " << e.what();
    return {absl::InternalError("database client error"), false};
  } catch (...) {
    LOG(ERROR) << "unknown exception from the database client";
    return {absl::InternalError("database client error"), true};
  }
}

}  // namespace idem
