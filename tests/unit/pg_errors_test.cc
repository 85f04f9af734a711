#include "server/pg_errors.h"

#include <string>

#include <gtest/gtest.h>
#include <pqxx/except>

namespace idem {
namespace {

PqxxFailure ClassifySqlState(const char* state) {
  try {
    throw pqxx::sql_error("ERROR:  something", "SELECT secret", state);
  } catch (...) {
    return ClassifyPqxxException(std::current_exception());
  }
}

TEST(PgErrorsTest, ClassifiesBySqlState) {
  struct Case {
    const char* state;
    absl::StatusCode code;
    bool connection_lost;
  };
  const Case cases[] = {
      {"08006", absl::StatusCode::kUnavailable, true},  // connection failure
      {"57P01", absl::StatusCode::kUnavailable, true},  // admin shutdown
      {"57P03", absl::StatusCode::kUnavailable, true},  // cannot connect now
      // A write on a server that is read-only (fenced, or a standby): the
      // connection is replaced so libpq can find the primary.
      {"25006", absl::StatusCode::kUnavailable, true},
      {"40001", absl::StatusCode::kAborted, false},
      {"40P01", absl::StatusCode::kAborted, false},
      {"57014", absl::StatusCode::kDeadlineExceeded, false},
      {"53300", absl::StatusCode::kResourceExhausted, false},
      {"23505", absl::StatusCode::kInternal, false},
      {"42P01", absl::StatusCode::kInternal, false},
  };
  for (const Case& c : cases) {
    const PqxxFailure failure = ClassifySqlState(c.state);
    EXPECT_EQ(failure.status.code(), c.code) << c.state << ": " << failure.status;
    EXPECT_EQ(failure.connection_lost, c.connection_lost) << c.state;
    EXPECT_EQ(failure.status.message().find("SELECT"), std::string::npos) << c.state;
  }
}

TEST(PgErrorsTest, BrokenConnectionIsUnavailableAndLost) {
  try {
    throw pqxx::broken_connection("server closed the connection unexpectedly");
  } catch (...) {
    const PqxxFailure failure = ClassifyPqxxException(std::current_exception());
    EXPECT_EQ(failure.status.code(), absl::StatusCode::kUnavailable);
    EXPECT_TRUE(failure.connection_lost);
  }
}

}  // namespace
}  // namespace idem
