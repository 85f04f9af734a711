#include "server/postgres_store.h"

#include <optional>
#include <string>
#include <utility>

#include <google/protobuf/util/json_util.h>
#include <pqxx/pqxx>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "server/pg_errors.h"
#include "server/proto_time.h"
#include "server/record_row.h"
#include "server/record_decisions.h"

namespace idem {

using idem::v1::BeginResponse;
using idem::v1::Record;

namespace {

// A statement whose snapshot turned out stale (see record_decisions.h) runs
// again; a handful of tries is plenty, since each sees a newer snapshot.
constexpr int kMaxStatementTries = 5;

// The columns every statement returns (record_row.h). Each statement names
// its row `k` and prepends a boolean `changed` column.
constexpr const char* kColumns = kRecordColumns;

// The row returned by `changed` when the change applied, else the live row
// (or none).
std::string WithFallbackRow(const char* change_cte, const char* fallback_where) {
  return absl::StrCat("WITH changed AS (", change_cte, " RETURNING k.*)\n",
                      "SELECT true,", kColumns, " FROM changed k\nUNION ALL\n",
                      "SELECT false,", kColumns, " FROM idempotency_keys k\n",
                      "WHERE k.scope = $1 AND k.key = $2 AND ", fallback_where,
                      " AND NOT EXISTS (SELECT 1 FROM changed)");
}

// Begin, for one key or many: $1..$6 are parallel arrays (scopes, keys,
// request hashes in hex, lease and retention in microseconds, owners), so
// one prepared statement and one round trip serve Begin and BatchBegin.
//
// Everything that grants a lease is decided here, under the row's lock:
// a new or expired key, a lapsed lease, a retryable failure, and re-entry
// by the live lease's owner (which keeps its token and attempt and renews
// the lease). Rows are taken in (scope, key) order, so two batches never
// wait for each other's rows in a cycle.
//
// Tokens: a takeover draws its token in DO UPDATE SET, under the lock, so
// the token order per key is the lock order. Each key's fresh_token (drawn
// first, used by an insert) also tells re-entry apart: only a re-entry
// returns a token older than it (the last column). Lease ends use
// clock_timestamp(): a statement that waited for the lock still grants a
// full lease.
constexpr char kBeginStatement[] = "idem_begin";
constexpr char kNewLeaseEnd[] =
    "clock_timestamp() + (SELECT i.lease_us FROM input i"
    " WHERE i.scope = k.scope AND i.key = k.key) * interval '1 microsecond'";
constexpr char kReentry[] =
    "(EXCLUDED.owner <> '' AND k.owner = EXCLUDED.owner"
    " AND k.request_hash = EXCLUDED.request_hash AND k.status = 'in_progress'"
    " AND k.locked_until > now() AND k.expires_at > now())";

// Replays take no lock and write nothing: a key whose live record is final
// (completed, or failed and not retryable) in the statement's snapshot is
// left out of the insert (`settled`) and answered from that snapshot by the
// last SELECT. A final record never changes until it expires (the insert's
// WHERE could not apply to it), so the snapshot is its current state; a
// statement whose keys are all settled draws no token and changes no row,
// so it commits without a WAL flush.
std::string BeginSql() {
  return absl::StrCat(R"sql(
WITH requested AS (
  SELECT *
  FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[],
              $6::text[])
    AS i(scope, key, hash_hex, lease_us, retention_us, owner)),
settled AS (
  SELECT k.scope, k.key
  FROM idempotency_keys k JOIN requested r ON k.scope = r.scope AND k.key = r.key
  WHERE k.expires_at > now()
    AND (k.status = 'completed' OR (k.status = 'failed' AND NOT k.retryable))),
input AS (
  SELECT r.*, nextval('idempotency_lease_token_seq') AS fresh_token
  FROM requested r
  WHERE NOT EXISTS (SELECT 1 FROM settled s
                    WHERE s.scope = r.scope AND s.key = r.key)),
changed AS (
  INSERT INTO idempotency_keys AS k
    (scope, key, request_hash, status, lease_token, attempt,
     created_at, updated_at, locked_until, expires_at, owner)
  SELECT i.scope, i.key, decode(i.hash_hex, 'hex'), 'in_progress',
         i.fresh_token, 1, now(), now(),
         clock_timestamp() + i.lease_us * interval '1 microsecond',
         GREATEST(now() + i.retention_us * interval '1 microsecond',
                  clock_timestamp() + i.lease_us * interval '1 microsecond'),
         i.owner
  FROM input i
  ORDER BY i.scope, i.key
  ON CONFLICT (scope, key) DO UPDATE SET
    request_hash = EXCLUDED.request_hash,
    status = 'in_progress',
    response = ''::bytea,
    response_code = 0,
    response_metadata = '{}'::jsonb,
    error = '',
    retryable = false,
    lease_token = CASE WHEN )sql", kReentry, R"sql( THEN k.lease_token
                       ELSE nextval('idempotency_lease_token_seq') END,
    attempt = CASE WHEN k.expires_at <= now() THEN 1
                   WHEN )sql", kReentry, R"sql( THEN k.attempt
                   ELSE k.attempt + 1 END,
    created_at = CASE WHEN k.expires_at <= now() THEN now() ELSE k.created_at END,
    updated_at = now(),
    locked_until = )sql", kNewLeaseEnd, R"sql(,
    expires_at = GREATEST(
        CASE WHEN k.expires_at <= now() THEN EXCLUDED.expires_at
             ELSE k.expires_at END,
        )sql", kNewLeaseEnd, R"sql(),
    owner = EXCLUDED.owner
  WHERE k.expires_at <= now()
     OR (k.request_hash = EXCLUDED.request_hash
         AND ((k.status = 'in_progress' AND k.locked_until <= now())
              OR (k.status = 'failed' AND k.retryable)))
     OR )sql", kReentry, R"sql(
  RETURNING k.*)
SELECT true,)sql", kColumns, R"sql(, k.lease_token < i.fresh_token
FROM changed k JOIN input i ON k.scope = i.scope AND k.key = i.key
UNION ALL
SELECT false,)sql", kColumns, R"sql(, false
FROM idempotency_keys k JOIN requested i ON k.scope = i.scope AND k.key = i.key
WHERE NOT EXISTS (SELECT 1 FROM changed c WHERE c.scope = k.scope AND c.key = k.key))sql");
}

// Owner-only updates: the current token, still in progress, not expired.
#define IDEM_OWNER_WHERE                                               \
  " WHERE k.scope = $1 AND k.key = $2 AND k.lease_token = $3"          \
  " AND k.status = 'in_progress' AND k.expires_at > now()"

constexpr char kCompleteStatement[] = "idem_complete";
constexpr char kCompleteCte[] =
    "UPDATE idempotency_keys k SET status = 'completed', response = $4,"
    " response_code = $5,"
    " response_metadata = COALESCE($6::jsonb -> 'response_metadata', '{}'::jsonb),"
    " error = '', retryable = false, locked_until = NULL, updated_at = now()"
    IDEM_OWNER_WHERE;

// Complete for many keys: $1..$6 are parallel arrays (scopes, keys, tokens,
// responses in hex, response codes, metadata as JSON). Each key's update is
// Complete's; a key it does not apply to comes back as its live row.
constexpr char kCompleteBatchStatement[] = "idem_complete_batch";
std::string CompleteBatchSql() {
  return absl::StrCat(R"sql(
WITH input AS (
  SELECT *
  FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::int4[],
              $6::text[])
    AS i(scope, key, token, response_hex, response_code, metadata_json)),
changed AS (
  UPDATE idempotency_keys k SET status = 'completed',
    response = decode(i.response_hex, 'hex'), response_code = i.response_code,
    response_metadata = COALESCE(i.metadata_json::jsonb -> 'response_metadata',
                                 '{}'::jsonb),
    error = '', retryable = false, locked_until = NULL, updated_at = now()
  FROM input i
  WHERE k.scope = i.scope AND k.key = i.key AND k.lease_token = i.token
    AND k.status = 'in_progress' AND k.expires_at > now()
  RETURNING k.*)
SELECT true,)sql", kColumns, R"sql( FROM changed k
UNION ALL
SELECT false,)sql", kColumns, R"sql(
FROM idempotency_keys k JOIN input i ON k.scope = i.scope AND k.key = i.key
WHERE k.expires_at > now()
  AND NOT EXISTS (SELECT 1 FROM changed c WHERE c.scope = k.scope AND c.key = k.key))sql");
}

constexpr char kFailStatement[] = "idem_fail";
constexpr char kFailCte[] =
    "UPDATE idempotency_keys k SET status = 'failed', error = $4,"
    " retryable = $5, response = $6, response_code = $7,"
    " response_metadata = '{}'::jsonb, locked_until = NULL, updated_at = now()"
    IDEM_OWNER_WHERE;

constexpr char kExtendStatement[] = "idem_extend_lease";
constexpr char kExtendCte[] =
    "UPDATE idempotency_keys k SET"
    " locked_until = clock_timestamp() + $4::int8 * interval '1 microsecond',"
    " expires_at = GREATEST(k.expires_at,"
    "     clock_timestamp() + $4::int8 * interval '1 microsecond'),"
    " updated_at = now()"
    IDEM_OWNER_WHERE;
#undef IDEM_OWNER_WHERE

constexpr char kGetStatement[] = "idem_get";
// Get for many keys: $1 and $2 are parallel arrays of scopes and keys.
constexpr char kGetBatchStatement[] = "idem_get_batch";

}  // namespace

std::string DeleteExpiredSql(int64_t limit) {
  return absl::StrCat(R"sql(
  WITH victims AS (
    SELECT scope, key FROM idempotency_keys
    WHERE expires_at <= now()
    ORDER BY expires_at
    LIMIT )sql",
                      limit, R"sql(
    FOR UPDATE SKIP LOCKED)
  DELETE FROM idempotency_keys k USING victims v
  WHERE k.scope = v.scope AND k.key = v.key)sql");
}

namespace {

void PrepareStatements(pqxx::connection& c) {
  // The statements' plans do not depend on their parameters (arrays of
  // keys, or one key by primary key): plan each once, instead of the five
  // custom plans (and, when the generic one looks no cheaper, a custom plan
  // on every execution) PostgreSQL would make by default. Measured: most
  // of the Begin statement's database CPU was planning.
  c.set_variable("plan_cache_mode", "force_generic_plan");
  c.prepare(kBeginStatement, BeginSql());
  c.prepare(kCompleteStatement,
            WithFallbackRow(kCompleteCte, "k.expires_at > now()"));
  c.prepare(kCompleteBatchStatement, CompleteBatchSql());
  c.prepare(kFailStatement, WithFallbackRow(kFailCte, "k.expires_at > now()"));
  c.prepare(kExtendStatement, WithFallbackRow(kExtendCte, "k.expires_at > now()"));
  c.prepare(kGetStatement,
            absl::StrCat("SELECT false,", kColumns,
                         " FROM idempotency_keys k WHERE k.scope = $1 AND "
                         "k.key = $2 AND k.expires_at > now()"));
  c.prepare(kGetBatchStatement,
            absl::StrCat("SELECT false,", kColumns,
                         " FROM idempotency_keys k JOIN unnest($1::text[], $2::text[])"
                         " AS i(scope, key) ON k.scope = i.scope AND k.key = i.key"
                         " WHERE k.expires_at > now()"));
}

struct StatementRow {
  bool changed = false;
  Record record;
  absl::Time db_now;
  // Begin only: the change kept the live lease's token (owner re-entry).
  bool reentered = false;
};

StatementRow ParseRow(const pqxx::row& row) {
  RecordRow parsed = ParseRecordRow(row, /*first_column=*/1);
  StatementRow out;
  out.changed = row[0].as<bool>();
  out.record = std::move(parsed.record);
  out.db_now = parsed.db_now;
  return out;
}

std::optional<StatementRow> FirstRow(const pqxx::result& result) {
  if (result.empty()) return std::nullopt;
  return ParseRow(result[0]);
}

// A PostgreSQL array literal of quoted elements (any text without NUL).
std::string ArrayLiteral(const std::vector<std::string>& elements) {
  std::string out = "{";
  for (size_t i = 0; i < elements.size(); ++i) {
    if (i > 0) out += ',';
    out += '"';
    for (char c : elements[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

std::string MetadataJson(const idem::v1::CompleteRequest& request) {
  Record holder;
  *holder.mutable_response_metadata() = request.response_metadata();
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string json;
  // Cannot fail: a map<string,string> of valid UTF-8 (checked by validation).
  (void)google::protobuf::util::MessageToJsonString(holder, &json, options);
  return json;
}

int64_t Micros(absl::Duration d) { return absl::ToInt64Microseconds(d); }

bool SameMetadata(const google::protobuf::Map<std::string, std::string>& a,
                  const google::protobuf::Map<std::string, std::string>& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [name, value] : a) {
    auto it = b.find(name);
    if (it == b.end() || it->second != value) return false;
  }
  return true;
}

// Whether `r` already holds exactly what `request` would store.
bool SameCompleteOutcome(const Record& r, const idem::v1::CompleteRequest& request) {
  return r.status() == Record::COMPLETED && r.response() == request.response() &&
         r.response_code() == request.response_code() &&
         SameMetadata(r.response_metadata(), request.response_metadata());
}

// Runs `fn(connection)` on a pooled connection, turning libpqxx exceptions
// into a status (and a lost connection into a replaced one).
template <typename Fn>
auto WithConnection(ConnectionPool& pool, absl::Time deadline, Fn fn)
    -> decltype(fn(std::declval<pqxx::connection&>())) {
  auto conn = pool.Acquire(deadline);
  if (!conn.ok()) return conn.status();
  try {
    return fn(conn->get());
  } catch (...) {
    PqxxFailure failure = ClassifyPqxxException(std::current_exception());
    if (failure.connection_lost) conn->MarkLost();
    return failure.status;
  }
}

// Runs an owner-only write statement until its snapshot is not stale.
template <typename Exec, typename SameOutcome>
absl::StatusOr<Record> RunWrite(ConnectionPool& pool, absl::Time deadline,
                                WriteKind kind, int64_t lease_token, Exec exec,
                                SameOutcome same_outcome) {
  return WithConnection(
      pool, deadline, [&](pqxx::connection& c) -> absl::StatusOr<Record> {
        WriteDecision decision = WriteDecision::kStale;
        for (int i = 0; i < kMaxStatementTries; ++i) {
          pqxx::nontransaction tx(c);
          std::optional<StatementRow> row = FirstRow(exec(tx));
          const Record* record = row ? &row->record : nullptr;
          decision = DecideWrite(kind, row && row->changed, record, lease_token,
                                 record != nullptr && same_outcome(*record));
          if (decision == WriteDecision::kApplied ||
              decision == WriteDecision::kAlreadyApplied) {
            return std::move(row->record);
          }
          if (decision != WriteDecision::kStale) break;
        }
        return WriteDecisionStatus(kind, decision, lease_token);
      });
}

}  // namespace

PostgresStore::PostgresStore(Options options)
    : pool_(ConnectionPool::Options{options.url, options.pool_size, PrepareStatements,
                                    options.statement_timeout,
                                    options.replan_interval}) {}

absl::StatusOr<std::vector<absl::StatusOr<BeginResult>>> PostgresStore::BatchBegin(
    absl::Span<const BeginParams> params, absl::Time deadline) {
  std::vector<absl::StatusOr<BeginResult>> results(
      params.size(), BeginDecisionStatus(BeginDecision::kStale));
  std::vector<size_t> pending(params.size());
  for (size_t i = 0; i < pending.size(); ++i) pending[i] = i;
  return WithConnection(
      pool_, deadline,
      [&](pqxx::connection& c) -> absl::StatusOr<std::vector<absl::StatusOr<BeginResult>>> {
        // Keys whose snapshot was stale run again, alone, in the next try.
        for (int t = 0; t < kMaxStatementTries && !pending.empty(); ++t) {
          std::vector<std::string> scopes, keys, hashes, leases, retentions, owners;
          for (size_t i : pending) {
            const BeginParams& p = params[i];
            scopes.emplace_back(p.scope);
            keys.emplace_back(p.key);
            hashes.push_back(absl::BytesToHexString(p.request_hash));
            leases.push_back(absl::StrCat(Micros(p.lease_ttl)));
            retentions.push_back(absl::StrCat(Micros(p.retention)));
            owners.emplace_back(p.owner);
          }
          pqxx::nontransaction tx(c);
          const pqxx::result result = tx.exec_prepared(
              kBeginStatement, ArrayLiteral(scopes), ArrayLiteral(keys),
              ArrayLiteral(hashes), ArrayLiteral(leases), ArrayLiteral(retentions),
              ArrayLiteral(owners));
          absl::flat_hash_map<std::pair<std::string, std::string>, StatementRow> rows;
          for (const pqxx::row& row : result) {
            StatementRow parsed = ParseRow(row);
            parsed.reentered = row[row.size() - 1].as<bool>();
            std::pair<std::string, std::string> id(parsed.record.scope(),
                                                   parsed.record.key());
            rows.emplace(std::move(id), std::move(parsed));
          }
          std::vector<size_t> stale;
          for (size_t i : pending) {
            const BeginParams& p = params[i];
            auto it = rows.find(std::make_pair(std::string(p.scope), std::string(p.key)));
            StatementRow* row = it == rows.end() ? nullptr : &it->second;
            const BeginDecision decision = DecideBegin(
                row != nullptr && row->changed, row ? &row->record : nullptr,
                p.request_hash, row ? row->db_now : absl::InfinitePast());
            BeginResult result;
            switch (decision) {
              case BeginDecision::kAcquired:
                result.outcome = BeginResponse::ACQUIRED;
                result.reentered = row->reentered;
                break;
              case BeginDecision::kInProgress:
                result.outcome = BeginResponse::IN_PROGRESS;
                result.retry_after =
                    FromProtoTimestamp(row->record.locked_until()) - row->db_now;
                break;
              case BeginDecision::kCompleted:
                result.outcome = BeginResponse::COMPLETED;
                break;
              case BeginDecision::kFailed:
                result.outcome = BeginResponse::FAILED;
                break;
              case BeginDecision::kStale:
                stale.push_back(i);
                continue;
              case BeginDecision::kRequestMismatch:
                results[i] = BeginDecisionStatus(decision);
                continue;
            }
            result.record = std::move(row->record);
            results[i] = std::move(result);
          }
          pending = std::move(stale);
        }
        return std::move(results);
      });
}

absl::StatusOr<Record> PostgresStore::Complete(
    const idem::v1::CompleteRequest& request, absl::Time deadline) {
  const pqxx::binarystring response(request.response());
  const std::string metadata_json = MetadataJson(request);
  return RunWrite(
      pool_, deadline, WriteKind::kComplete, request.lease_token(),
      [&](pqxx::nontransaction& tx) {
        return tx.exec_prepared(kCompleteStatement, request.scope(), request.key(),
                                request.lease_token(), response,
                                request.response_code(), metadata_json);
      },
      [&](const Record& r) { return SameCompleteOutcome(r, request); });
}

absl::StatusOr<std::vector<absl::StatusOr<Record>>> PostgresStore::BatchComplete(
    absl::Span<const idem::v1::CompleteRequest* const> requests, absl::Time deadline) {
  using Results = std::vector<absl::StatusOr<Record>>;
  Results results(requests.size(), WriteDecisionStatus(WriteKind::kComplete,
                                                       WriteDecision::kStale, 0));
  std::vector<size_t> pending(requests.size());
  for (size_t i = 0; i < pending.size(); ++i) pending[i] = i;
  return WithConnection(
      pool_, deadline, [&](pqxx::connection& c) -> absl::StatusOr<Results> {
        // Keys whose snapshot was stale run again in the next try.
        for (int t = 0; t < kMaxStatementTries && !pending.empty(); ++t) {
          std::vector<std::string> scopes, keys, tokens, responses, codes, metadata;
          for (size_t i : pending) {
            const idem::v1::CompleteRequest& r = *requests[i];
            scopes.push_back(r.scope());
            keys.push_back(r.key());
            tokens.push_back(absl::StrCat(r.lease_token()));
            responses.push_back(absl::BytesToHexString(r.response()));
            codes.push_back(absl::StrCat(r.response_code()));
            metadata.push_back(MetadataJson(r));
          }
          pqxx::nontransaction tx(c);
          const pqxx::result result = tx.exec_prepared(
              kCompleteBatchStatement, ArrayLiteral(scopes), ArrayLiteral(keys),
              ArrayLiteral(tokens), ArrayLiteral(responses), ArrayLiteral(codes),
              ArrayLiteral(metadata));
          absl::flat_hash_map<std::pair<std::string, std::string>, StatementRow> rows;
          for (const pqxx::row& row : result) {
            StatementRow parsed = ParseRow(row);
            std::pair<std::string, std::string> id(parsed.record.scope(),
                                                   parsed.record.key());
            rows.emplace(std::move(id), std::move(parsed));
          }
          std::vector<size_t> stale;
          for (size_t i : pending) {
            const idem::v1::CompleteRequest& r = *requests[i];
            auto it = rows.find(std::make_pair(r.scope(), r.key()));
            StatementRow* row = it == rows.end() ? nullptr : &it->second;
            const Record* record = row ? &row->record : nullptr;
            const WriteDecision decision = DecideWrite(
                WriteKind::kComplete, row != nullptr && row->changed, record,
                r.lease_token(), record != nullptr && SameCompleteOutcome(*record, r));
            if (decision == WriteDecision::kApplied ||
                decision == WriteDecision::kAlreadyApplied) {
              results[i] = std::move(row->record);
            } else if (decision == WriteDecision::kStale) {
              stale.push_back(i);
            } else {
              results[i] = WriteDecisionStatus(WriteKind::kComplete, decision,
                                               r.lease_token());
            }
          }
          pending = std::move(stale);
        }
        for (size_t i : pending) {
          results[i] = WriteDecisionStatus(WriteKind::kComplete, WriteDecision::kStale,
                                           requests[i]->lease_token());
        }
        return std::move(results);
      });
}

absl::StatusOr<Record> PostgresStore::Fail(const idem::v1::FailRequest& request,
                                           absl::Time deadline) {
  const pqxx::binarystring response(request.response());
  return RunWrite(
      pool_, deadline, WriteKind::kFail, request.lease_token(),
      [&](pqxx::nontransaction& tx) {
        return tx.exec_prepared(kFailStatement, request.scope(), request.key(),
                                request.lease_token(), request.error(),
                                request.retryable(), response,
                                request.response_code());
      },
      [&](const Record& r) {
        return r.status() == Record::FAILED && r.error() == request.error() &&
               r.retryable() == request.retryable() &&
               r.response() == request.response() &&
               r.response_code() == request.response_code();
      });
}

absl::StatusOr<Record> PostgresStore::ExtendLease(const ExtendLeaseParams& params,
                                                  absl::Time deadline) {
  const std::string scope(params.scope), key(params.key);
  return RunWrite(
      pool_, deadline, WriteKind::kExtendLease, params.lease_token,
      [&](pqxx::nontransaction& tx) {
        return tx.exec_prepared(kExtendStatement, scope, key, params.lease_token,
                                Micros(params.lease_ttl));
      },
      [](const Record&) { return false; });
}

absl::StatusOr<Record> PostgresStore::Get(absl::string_view scope,
                                          absl::string_view key,
                                          absl::Time deadline) {
  const std::string s(scope), k(key);
  return WithConnection(pool_, deadline,
                        [&](pqxx::connection& c) -> absl::StatusOr<Record> {
                          pqxx::nontransaction tx(c);
                          std::optional<StatementRow> row =
                              FirstRow(tx.exec_prepared(kGetStatement, s, k));
                          if (!row) {
                            return WriteDecisionStatus(WriteKind::kComplete,
                                                       WriteDecision::kNotFound, 0);
                          }
                          return std::move(row->record);
                        });
}

absl::StatusOr<std::vector<std::optional<Record>>> PostgresStore::BatchGet(
    absl::Span<const RecordId> ids, absl::Time deadline) {
  if (ids.empty()) return std::vector<std::optional<Record>>();
  std::vector<std::string> scopes, keys;
  scopes.reserve(ids.size());
  keys.reserve(ids.size());
  for (const RecordId& id : ids) {
    scopes.push_back(id.scope);
    keys.push_back(id.key);
  }
  return WithConnection(
      pool_, deadline,
      [&](pqxx::connection& c) -> absl::StatusOr<std::vector<std::optional<Record>>> {
        pqxx::nontransaction tx(c);
        const pqxx::result result =
            tx.exec_prepared(kGetBatchStatement, ArrayLiteral(scopes), ArrayLiteral(keys));
        absl::flat_hash_map<std::pair<std::string, std::string>, Record> found;
        for (const pqxx::row& row : result) {
          Record record = ParseRow(row).record;
          std::pair<std::string, std::string> id(record.scope(), record.key());
          found.emplace(std::move(id), std::move(record));
        }
        std::vector<std::optional<Record>> records(ids.size());
        for (size_t i = 0; i < ids.size(); ++i) {
          auto it = found.find(std::make_pair(ids[i].scope, ids[i].key));
          if (it != found.end()) records[i] = it->second;
        }
        return records;
      });
}

absl::StatusOr<int64_t> PostgresStore::DeleteExpired(int64_t limit,
                                                     absl::Time deadline) {
  return WithConnection(pool_, deadline,
                        [&](pqxx::connection& c) -> absl::StatusOr<int64_t> {
                          pqxx::nontransaction tx(c);
                          return static_cast<int64_t>(
                              tx.exec(DeleteExpiredSql(limit)).affected_rows());
                        });
}

absl::StatusOr<StoreStats> PostgresStore::Stats(absl::Time deadline) {
  return WithConnection(
      pool_, deadline, [](pqxx::connection& c) -> absl::StatusOr<StoreStats> {
        pqxx::nontransaction tx(c);
        const pqxx::row row = tx.exec1(R"sql(
          SELECT COALESCE((SELECT (extract(epoch FROM now() - min(expires_at))
                                   * 1000000)::int8
                           FROM idempotency_keys WHERE expires_at <= now()), 0),
                 (SELECT count(*) FROM idempotency_keys
                  WHERE status = 'in_progress' AND locked_until <= now()
                    AND expires_at > now()))sql");
        StoreStats stats;
        stats.oldest_expired_age = absl::Microseconds(row[0].as<int64_t>());
        stats.in_progress_past_lease = row[1].as<int64_t>();
        return stats;
      });
}

absl::Status PostgresStore::Ping(absl::Time deadline) {
  return WithConnection(pool_, deadline, [](pqxx::connection& c) -> absl::Status {
    pqxx::nontransaction tx(c);
    tx.exec("SELECT 1");
    return absl::OkStatus();
  });
}

}  // namespace idem
