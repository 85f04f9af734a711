// Status propagation helpers. Abseil 20220623 (Debian 12) ships no status
// macros, so idem carries these two.
//
// Example:
//   absl::StatusOr<Record> Load() {
//     IDEM_RETURN_IF_ERROR(ValidateKey(key));
//     IDEM_ASSIGN_OR_RETURN(Record record, store->Get(...));
//     return record;
//   }
#ifndef IDEM_SERVER_STATUS_MACROS_H_
#define IDEM_SERVER_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define IDEM_RETURN_IF_ERROR(expr)                  \
  do {                                              \
    ::absl::Status idem_status_ = (expr);           \
    if (!idem_status_.ok()) return idem_status_;    \
  } while (false)

#define IDEM_STATUS_CONCAT_INNER_(a, b) a##b
#define IDEM_STATUS_CONCAT_(a, b) IDEM_STATUS_CONCAT_INNER_(a, b)

#define IDEM_ASSIGN_OR_RETURN(lhs, expr) \
  IDEM_ASSIGN_OR_RETURN_IMPL_(IDEM_STATUS_CONCAT_(idem_statusor_, __LINE__), lhs, expr)

#define IDEM_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // IDEM_SERVER_STATUS_MACROS_H_
