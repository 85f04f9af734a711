#include "server/admin_store.h"

#include <string>
#include <utility>

#include <pqxx/pqxx>

#include "absl/strings/str_cat.h"
#include "server/conninfo.h"
#include "server/pg_errors.h"
#include "server/proto_time.h"
#include "server/record_row.h"

namespace idem {

using idem::v1::Record;

namespace {

// A record as read by one of the statements below: kRecordColumns.
AdminRecord ToAdminRecord(const pqxx::row& row) {
  RecordRow parsed = ParseRecordRow(row, /*first_column=*/0);
  AdminRecord out;
  out.record = std::move(parsed.record);
  out.db_now = parsed.db_now;
  out.expired = FromProtoTimestamp(out.record.expires_at()) <= out.db_now;
  out.lease_ran_out = out.record.status() == Record::IN_PROGRESS &&
                      FromProtoTimestamp(out.record.locked_until()) <= out.db_now;
  return out;
}

std::string SelectRecordSql(const char* where_and_rest) {
  return absl::StrCat("SELECT ", kRecordColumns, " FROM idempotency_keys k ",
                      where_and_rest);
}

const char* StatusColumnValue(Record::Status status) {
  switch (status) {
    case Record::IN_PROGRESS:
      return "in_progress";
    case Record::COMPLETED:
      return "completed";
    case Record::FAILED:
      return "failed";
    default:
      return nullptr;
  }
}

absl::Status NotFound(absl::string_view scope, absl::string_view key) {
  return absl::NotFoundError(
      absl::StrCat("no record for scope '", scope, "' key '", key, "'"));
}

std::optional<absl::Time> OptionalMicros(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return absl::FromUnixMicros(f.as<int64_t>());
}

}  // namespace

AdminStore::AdminStore(Options options) : options_(std::move(options)) {}

// Runs `fn(connection)` on a new connection, turning libpqxx exceptions into
// a status.
template <typename Fn>
static auto WithConnection(const AdminStore::Options& options, Fn fn)
    -> decltype(fn(std::declval<pqxx::connection&>())) {
  try {
    pqxx::connection c(WithConnectionDefaults(options.url));
    c.set_variable("statement_timeout",
                   std::to_string(absl::ToInt64Milliseconds(options.statement_timeout)));
    return fn(c);
  } catch (...) {
    return ClassifyPqxxException(std::current_exception()).status;
  }
}

absl::StatusOr<AdminRecord> AdminStore::Get(absl::string_view scope,
                                            absl::string_view key) const {
  const std::string s(scope), k(key);
  return WithConnection(options_, [&](pqxx::connection& c) -> absl::StatusOr<AdminRecord> {
    pqxx::nontransaction tx(c);
    const pqxx::result result =
        tx.exec_params(SelectRecordSql("WHERE k.scope = $1 AND k.key = $2"), s, k);
    if (result.empty()) return NotFound(scope, key);
    return ToAdminRecord(result[0]);
  });
}

absl::StatusOr<std::vector<AdminRecord>> AdminStore::List(const ListQuery& query) const {
  // starts_with() compares bytes: '%' and '_' in the prefix are no wildcards.
  // An empty status matches any status.
  static const std::string sql = SelectRecordSql(R"sql(
    WHERE starts_with(k.scope, $1)
      AND ($2::text = '' OR k.status = $2::text)
      AND k.created_at <= now() - $3::int8 * interval '1 microsecond'
    ORDER BY k.created_at, k.scope, k.key
    LIMIT $4)sql");
  const char* status = StatusColumnValue(query.status);
  const std::string status_param = status == nullptr ? "" : status;
  const int64_t older_than_us = absl::ToInt64Microseconds(query.older_than);
  return WithConnection(
      options_, [&](pqxx::connection& c) -> absl::StatusOr<std::vector<AdminRecord>> {
        pqxx::nontransaction tx(c);
        const pqxx::result result = tx.exec_params(sql, query.scope_prefix, status_param,
                                                   older_than_us, query.limit);
        std::vector<AdminRecord> records;
        records.reserve(result.size());
        for (const pqxx::row& row : result) records.push_back(ToAdminRecord(row));
        return records;
      });
}

absl::StatusOr<ReleaseResult> AdminStore::Release(absl::string_view scope,
                                                  absl::string_view key) const {
  const std::string s(scope), k(key);
  static const std::string lock_sql =
      SelectRecordSql("WHERE k.scope = $1 AND k.key = $2 FOR UPDATE");
  // locked_until moves earlier, so the 0003 trigger notifies waiters when
  // this transaction commits. now() is this transaction's start, when the
  // lease was checked live, so the new locked_until is in the past for every
  // later Begin.
  static const std::string release_sql = absl::StrCat(
      "UPDATE idempotency_keys k SET locked_until = now(), updated_at = now()"
      " WHERE k.scope = $1 AND k.key = $2 RETURNING ",
      kRecordColumns);
  return WithConnection(options_, [&](pqxx::connection& c) -> absl::StatusOr<ReleaseResult> {
    pqxx::work tx(c);
    const pqxx::result locked = tx.exec_params(lock_sql, s, k);
    if (locked.empty()) return NotFound(scope, key);
    ReleaseResult out;
    out.record = ToAdminRecord(locked[0]);
    const Record& r = out.record.record;
    if (out.record.expired) {
      return absl::NotFoundError(absl::StrCat(
          "record for scope '", scope, "' key '", key,
          "' expired (retention passed); it is already unknown to every RPC and "
          "waits for the sweeper (purge deletes it now)"));
    }
    if (r.status() != Record::IN_PROGRESS) {
      return absl::FailedPreconditionError(absl::StrCat(
          "record for scope '", scope, "' key '", key, "' is ",
          Record::Status_Name(r.status()),
          ": it holds no lease to release (purge deletes the record)"));
    }
    if (out.record.lease_ran_out) {
      out.already_free = true;
      return out;  // The transaction rolls back; nothing changed.
    }
    const pqxx::result released = tx.exec_params(release_sql, s, k);
    out.record = ToAdminRecord(released[0]);
    tx.commit();
    return out;
  });
}

absl::StatusOr<AdminRecord> AdminStore::Purge(absl::string_view scope,
                                              absl::string_view key) const {
  const std::string s(scope), k(key);
  static const std::string sql = absl::StrCat(
      "DELETE FROM idempotency_keys k WHERE k.scope = $1 AND k.key = $2 RETURNING ",
      kRecordColumns);
  return WithConnection(options_, [&](pqxx::connection& c) -> absl::StatusOr<AdminRecord> {
    pqxx::nontransaction tx(c);
    const pqxx::result result = tx.exec_params(sql, s, k);
    if (result.empty()) return NotFound(scope, key);
    return ToAdminRecord(result[0]);
  });
}

absl::StatusOr<AdminStats> AdminStore::Stats() const {
  constexpr char kCountsSql[] = R"sql(
    SELECT count(*),
      count(*) FILTER (WHERE expires_at > now() AND status = 'in_progress'),
      count(*) FILTER (WHERE expires_at > now() AND status = 'completed'),
      count(*) FILTER (WHERE expires_at > now() AND status = 'failed'),
      count(*) FILTER (WHERE expires_at > now() AND status = 'in_progress'
                         AND locked_until <= now()),
      count(*) FILTER (WHERE expires_at <= now()),
      (extract(epoch FROM min(expires_at) FILTER (WHERE expires_at <= now()))
         * 1000000)::int8,
      (extract(epoch FROM now()) * 1000000)::int8
    FROM idempotency_keys)sql";
  static const std::string oldest_sql = SelectRecordSql(R"sql(
    WHERE k.status = 'in_progress' AND k.expires_at > now()
    ORDER BY k.created_at LIMIT 1)sql");
  return WithConnection(options_, [&](pqxx::connection& c) -> absl::StatusOr<AdminStats> {
    // One snapshot for both statements, so the numbers agree.
    pqxx::read_transaction tx(c);
    const pqxx::row counts = tx.exec(kCountsSql)[0];
    AdminStats stats;
    stats.total_rows = counts[0].as<int64_t>();
    stats.in_progress = counts[1].as<int64_t>();
    stats.completed = counts[2].as<int64_t>();
    stats.failed = counts[3].as<int64_t>();
    stats.in_progress_past_lease = counts[4].as<int64_t>();
    stats.expired_not_swept = counts[5].as<int64_t>();
    stats.oldest_expired_at = OptionalMicros(counts[6]);
    stats.db_now = absl::FromUnixMicros(counts[7].as<int64_t>());
    const pqxx::result oldest = tx.exec(oldest_sql);
    if (!oldest.empty()) stats.oldest_in_progress = ToAdminRecord(oldest[0]);
    tx.commit();
    return stats;
  });
}

}  // namespace idem
