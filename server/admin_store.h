// AdminStore: the database side of idemctl's operator commands (get, list,
// release, purge, stats) on the idempotency_keys table.
//
// Unlike the RPCs, it also shows records whose retention has passed but
// that the sweeper has not deleted yet, marked `expired`: operators need to
// see them. Every statement is parameterized; libpqxx exceptions become an
// absl::Status through pg_errors.h. Times come from the database's clock.
//
// Example:
//   AdminStore store({url});
//   absl::StatusOr<AdminRecord> r = store.Release("payments", "order-42");
//   if (absl::IsNotFound(r.status())) ...
//
// Thread safety: each call opens, uses and closes its own connection, so an
// AdminStore may be shared; it is meant for a short-lived tool, not a server.
#ifndef IDEM_SERVER_ADMIN_STORE_H_
#define IDEM_SERVER_ADMIN_STORE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "idem/v1/idempotency.pb.h"

namespace idem {

// A stored record as an operator sees it.
struct AdminRecord {
  idem::v1::Record record;
  // The database's now() when it was read.
  absl::Time db_now;
  // Retention passed (expires_at <= now): every RPC treats the key as
  // unknown; the sweeper will delete the row.
  bool expired = false;
  // IN_PROGRESS and locked_until <= now: the next Begin takes over.
  bool lease_ran_out = false;
};

struct ListQuery {
  // Records whose scope starts with this (byte-wise; no wildcards). Empty:
  // every scope.
  std::string scope_prefix;
  // Only records in this status (STATUS_UNSPECIFIED: any).
  idem::v1::Record::Status status = idem::v1::Record::STATUS_UNSPECIFIED;
  // Only records created at least this long ago (zero: any age).
  absl::Duration older_than = absl::ZeroDuration();
  // At most this many records, oldest created first.
  int limit = 100;
};

struct AdminStats {
  absl::Time db_now;
  // Every row in the table, expired or not.
  int64_t total_rows = 0;
  // Live (not expired) records by status.
  int64_t in_progress = 0;
  int64_t completed = 0;
  int64_t failed = 0;
  // Live IN_PROGRESS records whose lease ran out (no holder is extending
  // them; the next Begin takes over).
  int64_t in_progress_past_lease = 0;
  // Rows past their retention that the sweeper has not deleted yet.
  int64_t expired_not_swept = 0;
  // The live IN_PROGRESS record created first, when there is one.
  std::optional<AdminRecord> oldest_in_progress;
  // expires_at of the oldest expired row (how far the sweeper lags).
  std::optional<absl::Time> oldest_expired_at;
};

struct ReleaseResult {
  // The record after the release.
  AdminRecord record;
  // The lease had already run out; nothing was changed.
  bool already_free = false;
};

class AdminStore {
 public:
  struct Options {
    std::string url;
    // PostgreSQL's statement_timeout for each statement.
    absl::Duration statement_timeout = absl::Seconds(10);
  };

  explicit AdminStore(Options options);
  AdminStore(const AdminStore&) = delete;
  AdminStore& operator=(const AdminStore&) = delete;

  // The record, expired or not. NOT_FOUND when there is no row.
  absl::StatusOr<AdminRecord> Get(absl::string_view scope,
                                  absl::string_view key) const;

  absl::StatusOr<std::vector<AdminRecord>> List(const ListQuery& query) const;

  // Ends a live lease now: locked_until = now(), so the next Begin with the
  // same request_hash takes the key over (attempt + 1, a new token), and the
  // 0003 trigger wakes Begins waiting on it, on every idemd. `already_free`
  // when the lease had already run out (nothing changed).
  //   NOT_FOUND            no row, or the record expired (already unknown
  //                        to every RPC)
  //   FAILED_PRECONDITION  COMPLETED or FAILED: there is no lease to end
  absl::StatusOr<ReleaseResult> Release(absl::string_view scope,
                                        absl::string_view key) const;

  // Deletes the record whatever its state; returns it as it was.
  // NOT_FOUND when there is no row.
  absl::StatusOr<AdminRecord> Purge(absl::string_view scope,
                                    absl::string_view key) const;

  absl::StatusOr<AdminStats> Stats() const;

 private:
  const Options options_;
};

}  // namespace idem

#endif  // IDEM_SERVER_ADMIN_STORE_H_
