// The one place where a libpqxx exception becomes an absl::Status.
//
// libpqxx reports every failure by throwing; idem's own code does not use
// exceptions. Store code catches at its boundary and calls
// StatusFromPqxxException() inside the catch block.
#ifndef IDEM_SERVER_PG_ERRORS_H_
#define IDEM_SERVER_PG_ERRORS_H_

#include <exception>

#include "absl/status/status.h"

namespace idem {

struct PqxxFailure {
  absl::Status status;
  // The connection can no longer be used and must be replaced.
  bool connection_lost = false;
};

// Classifies `error`. Messages name the kind of failure and the SQLSTATE,
// never SQL text or values; the full libpqxx message is logged instead.
//   broken connection, SQLSTATE 08xxx, 57P01-57P03,
//   25006 read-only transaction (server is not the primary)
//                                                   -> UNAVAILABLE, lost
//   40001 serialization, 40P01 deadlock             -> ABORTED
//     (libpqxx 6 throws these as transaction_rollback, not sql_error)
//   57014 statement timeout / cancel                -> DEADLINE_EXCEEDED
//   53xxx insufficient resources                    -> RESOURCE_EXHAUSTED
//   anything else                                   -> INTERNAL
PqxxFailure ClassifyPqxxException(std::exception_ptr error);

}  // namespace idem

#endif  // IDEM_SERVER_PG_ERRORS_H_
