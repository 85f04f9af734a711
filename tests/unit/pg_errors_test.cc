#include "server/pg_errors.h"

#include <exception>
#include <stdexcept>

#include <gtest/gtest.h>
#include <pqxx/except>

namespace idem {
namespace {

template <typename E>
PqxxFailure Classify(const E& e) {
  return ClassifyPqxxException(std::make_exception_ptr(e));
}

TEST(ClassifyPqxxExceptionTest, EachKindGetsItsCode) {
  struct Case {
    PqxxFailure got;
    absl::StatusCode code;
    bool lost;
  };
  const Case cases[] = {
      {Classify(pqxx::broken_connection("server closed the connection")),
       absl::StatusCode::kUnavailable, true},
      {Classify(pqxx::too_many_connections("sorry, too many clients")),
       absl::StatusCode::kUnavailable, true},
      {Classify(pqxx::deadlock_detected("deadlock detected")),
       absl::StatusCode::kAborted, false},
      {Classify(pqxx::serialization_failure("could not serialize")),
       absl::StatusCode::kAborted, false},
      {Classify(pqxx::statement_completion_unknown("connection lost")),
       absl::StatusCode::kUnavailable, true},
      {Classify(pqxx::in_doubt_error("commit in doubt")),
       absl::StatusCode::kUnavailable, true},
      {Classify(pqxx::sql_error("canceling statement due to statement timeout",
                                "SELECT secret FROM t", "57014")),
       absl::StatusCode::kDeadlineExceeded, false},
      {Classify(pqxx::sql_error("terminating connection", "SELECT 1", "57P01")),
       absl::StatusCode::kUnavailable, true},
      {Classify(pqxx::sql_error("connection failure", "SELECT 1", "08006")),
       absl::StatusCode::kUnavailable, true},
      // libpq's own error when the server dies mid-statement: no SQLSTATE.
      {Classify(pqxx::sql_error("server closed the connection unexpectedly",
                                "SELECT 1", "")),
       absl::StatusCode::kUnavailable, true},
      // A write on a server that is read-only (fenced for a switchover, or a
      // standby): the connection is replaced so libpq can find the primary.
      {Classify(pqxx::sql_error("cannot execute INSERT in a read-only transaction",
                                "INSERT INTO t", "25006")),
       absl::StatusCode::kUnavailable, true},
      {Classify(pqxx::sql_error("out of memory", "SELECT 1", "53200")),
       absl::StatusCode::kResourceExhausted, false},
      {Classify(pqxx::sql_error("syntax error", "SELEC secret", "42601")),
       absl::StatusCode::kInternal, false},
      {Classify(pqxx::conversion_error("bad int")), absl::StatusCode::kInternal, false},
      {Classify(std::runtime_error("other")), absl::StatusCode::kInternal, false},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(c.got.status.code(), c.code) << c.got.status;
    EXPECT_EQ(c.got.connection_lost, c.lost) << c.got.status;
    EXPECT_EQ(c.got.status.message().find("SELEC"), absl::string_view::npos)
        << "SQL text leaked: " << c.got.status;
    EXPECT_EQ(c.got.status.message().find("secret"), absl::string_view::npos);
  }
}

TEST(ClassifyPqxxExceptionTest, UnknownThrownValuesAreInternal) {
  const PqxxFailure f = ClassifyPqxxException(std::make_exception_ptr(42));
  EXPECT_EQ(f.status.code(), absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace idem
