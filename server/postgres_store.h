// PostgresStore: the IdempotencyStore on PostgreSQL (schema in migrations/).
//
// Every RPC is one prepared statement, one round trip, in autocommit: the
// change is tried under the row's lock (INSERT ... ON CONFLICT DO UPDATE
// ... WHERE, or UPDATE ... WHERE) and, when it does not apply, the same
// statement returns the row so record_decisions.h can name the outcome. No
// read-then-write races, whatever the number of callers or idemd replicas;
// all times come from the database's clock.
//
// Thread safety: safe for concurrent use; each call holds one pooled
// connection while it runs.
#ifndef IDEM_SERVER_POSTGRES_STORE_H_
#define IDEM_SERVER_POSTGRES_STORE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "server/connection_pool.h"
#include "server/store.h"

namespace idem {

// The sweeper's statement for a batch of `limit` rows, as PostgresStore
// runs it: not prepared, the limit a literal, so PostgreSQL plans each batch
// for its real size. (A generic plan of `LIMIT $1` assumes a tenth of the
// expired rows and joins them by scanning the whole table: at 10M rows the
// sweeper fell behind.) Exposed for the plan test.
std::string DeleteExpiredSql(int64_t limit);

class PostgresStore final : public IdempotencyStore {
 public:
  struct Options {
    std::string url;
    int pool_size = 8;
    // The longest a statement may run; each call's statements are also
    // bounded by its deadline (ConnectionPool::Options::statement_timeout).
    absl::Duration statement_timeout = absl::Seconds(10);
    // Connections re-plan their prepared statements this often
    // (ConnectionPool::Options::replan_interval): they run on generic plans
    // (plan_cache_mode = force_generic_plan), which must follow the table
    // as it grows. Measured on a new, empty table: begin at 8 callers did
    // 1,200-1,800 ops/s for its first 9 s with 10 s, 4,200-4,800 with 1 s;
    // the cost is one DISCARD PLANS and a re-plan per connection a second.
    absl::Duration replan_interval = absl::Seconds(1);
  };

  explicit PostgresStore(Options options);
  PostgresStore(const PostgresStore&) = delete;
  PostgresStore& operator=(const PostgresStore&) = delete;

  absl::StatusOr<std::vector<absl::StatusOr<BeginResult>>> BatchBegin(
      absl::Span<const BeginParams> params, absl::Time deadline) override;
  absl::StatusOr<idem::v1::Record> Complete(
      const idem::v1::CompleteRequest& request, absl::Time deadline) override;
  // One array-based UPDATE for every request (idem_complete_batch), one
  // commit; keys whose snapshot was stale run again.
  absl::StatusOr<std::vector<absl::StatusOr<idem::v1::Record>>> BatchComplete(
      absl::Span<const idem::v1::CompleteRequest* const> requests,
      absl::Time deadline) override;
  absl::StatusOr<idem::v1::Record> Fail(const idem::v1::FailRequest& request,
                                        absl::Time deadline) override;
  absl::StatusOr<idem::v1::Record> ExtendLease(const ExtendLeaseParams& params,
                                               absl::Time deadline) override;
  absl::StatusOr<idem::v1::Record> Get(absl::string_view scope,
                                       absl::string_view key,
                                       absl::Time deadline) override;
  // One statement for every id.
  absl::StatusOr<std::vector<std::optional<idem::v1::Record>>> BatchGet(
      absl::Span<const RecordId> ids, absl::Time deadline) override;
  absl::StatusOr<int64_t> DeleteExpired(int64_t limit,
                                        absl::Time deadline) override;
  absl::Status Ping(absl::Time deadline) override;
  // The oldest expired record comes from the expires_at index (cheap); the
  // count of in-progress records past their lease scans the table (no index
  // on locked_until), bounded by statement_timeout.
  absl::StatusOr<StoreStats> Stats(absl::Time deadline) override;

  const ConnectionPool& pool() const { return pool_; }

 private:
  ConnectionPool pool_;
};

}  // namespace idem

#endif  // IDEM_SERVER_POSTGRES_STORE_H_
