// The record columns idem's statements select, and how a row of them becomes
// an idem::v1::Record. Shared by PostgresStore (the RPCs) and AdminStore
// (idemctl), so both read a row the same way.
//
// Example:
//   tx.exec_params(absl::StrCat("SELECT ", kRecordColumns,
//                               " FROM idempotency_keys k WHERE ..."), ...);
//   RecordRow r = ParseRecordRow(result[0], /*first_column=*/0);
//
// Thread safety: stateless.
#ifndef IDEM_SERVER_RECORD_ROW_H_
#define IDEM_SERVER_RECORD_ROW_H_

#include <pqxx/row>

#include "absl/time/time.h"
#include "idem/v1/idempotency.pb.h"

namespace idem {

// The columns of one record, in the order ParseRecordRow() reads them; the
// statement names its row `k`. Times are microseconds since the epoch; the
// 16th column is the database's now().
inline constexpr char kRecordColumns[] = R"sql(
  k.scope, k.key, k.request_hash, k.status, k.response, k.response_code,
  jsonb_build_object('response_metadata', k.response_metadata)::text,
  k.error, k.retryable, k.lease_token, k.attempt,
  (extract(epoch FROM k.created_at) * 1000000)::int8,
  (extract(epoch FROM k.updated_at) * 1000000)::int8,
  (extract(epoch FROM k.locked_until) * 1000000)::int8,
  (extract(epoch FROM k.expires_at) * 1000000)::int8,
  (extract(epoch FROM now()) * 1000000)::int8,
  k.owner)sql";

// How many columns kRecordColumns has.
inline constexpr int kRecordColumnCount = 17;

struct RecordRow {
  idem::v1::Record record;
  // The database's now() when the statement ran.
  absl::Time db_now;
};

// Reads kRecordColumns starting at column `first_column` of `row`.
RecordRow ParseRecordRow(const pqxx::row& row, int first_column);

// "in_progress" -> IN_PROGRESS, ...; STATUS_UNSPECIFIED for anything else.
idem::v1::Record::Status StatusFromColumn(const std::string& s);

}  // namespace idem

#endif  // IDEM_SERVER_RECORD_ROW_H_
