// IdempotencyStore: where idempotency records live.
//
// The service layer (idempotency_service.h) validates requests and calls one
// store method per RPC; the store owns every state transition and answers
// with the contract's status codes (see proto/idem/v1/idempotency.proto):
//
//   FAILED_PRECONDITION  Begin with another request_hash on a live key, or a
//                        write that would change a finished record.
//   ABORTED              a lease_token that is not the key's current lease.
//   NOT_FOUND            a missing or expired key.
//   UNAVAILABLE          the database cannot be reached.
//   DEADLINE_EXCEEDED    the deadline passed (waiting for a connection, or
//                        the database's statement timeout).
//
// Requests reach the store already validated, with defaults resolved.
//
// Thread safety: implementations are safe for concurrent use from many
// threads without external synchronization. Methods block (they do I/O), so
// they must never be called from a gRPC callback thread; the server runs
// them on its WorkerPool.
//
// Every method is one independent operation, so a batching implementation
// (group commit) can gather concurrent calls into one statement.
#ifndef IDEM_SERVER_STORE_H_
#define IDEM_SERVER_STORE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "idem/v1/idempotency.pb.h"

namespace idem {

struct BeginParams {
  absl::string_view scope;
  absl::string_view key;
  absl::string_view request_hash;
  absl::Duration lease_ttl;
  absl::Duration retention;
  // May be empty; see BeginRequest.owner.
  absl::string_view owner;
};

struct BeginResult {
  idem::v1::BeginResponse::Outcome outcome =
      idem::v1::BeginResponse::OUTCOME_UNSPECIFIED;
  idem::v1::Record record;
  // With IN_PROGRESS: the time left on the current lease.
  absl::Duration retry_after = absl::ZeroDuration();
  // With ACQUIRED: the caller's owner re-entered its live lease (same token,
  // nothing written).
  bool reentered = false;
};

// What the metrics report about the stored records (Stats()).
struct StoreStats {
  // Age of the oldest expired record the sweeper has not deleted yet; zero
  // when there is none.
  absl::Duration oldest_expired_age = absl::ZeroDuration();
  // Live records in progress whose lease ran out (nobody took them over).
  int64_t in_progress_past_lease = 0;
};

// The name of one record: its scope and key.
struct RecordId {
  std::string scope;
  std::string key;
};

struct ExtendLeaseParams {
  absl::string_view scope;
  absl::string_view key;
  int64_t lease_token = 0;
  absl::Duration lease_ttl;
};

class IdempotencyStore {
 public:
  virtual ~IdempotencyStore() = default;

  // Begins every key of `params` (no two with the same scope and key) in
  // one operation: acquires it (new, expired, lease run out, released by a
  // retryable Fail, or re-entered by the live lease's owner), or reports its
  // state. The outer status is the whole batch's (UNAVAILABLE, ...); each
  // inner one is its key's (FAILED_PRECONDITION for a request mismatch).
  virtual absl::StatusOr<std::vector<absl::StatusOr<BeginResult>>> BatchBegin(
      absl::Span<const BeginParams> params, absl::Time deadline) = 0;

  // One key: BatchBegin of one.
  absl::StatusOr<BeginResult> Begin(const BeginParams& params,
                                    absl::Time deadline) {
    auto results = BatchBegin(absl::MakeConstSpan(&params, 1), deadline);
    if (!results.ok()) return results.status();
    return std::move(results->front());
  }

  // A one-key Begin answered from memory, without I/O or waiting (a cached
  // replay), or nullopt: then call Begin. Safe on a gRPC callback thread.
  virtual std::optional<absl::StatusOr<BeginResult>> TryBeginFromMemory(
      const BeginParams& params) {
    (void)params;
    return std::nullopt;
  }

  // Receives the result of BeginAsync.
  using BeginDone = std::function<void(absl::StatusOr<BeginResult>)>;
  // Whether BeginAsync answers without blocking its caller (safe on a gRPC
  // callback thread). False: BeginAsync blocks (it calls Begin).
  virtual bool BeginsAsync() const { return false; }
  // A one-key Begin whose result goes to `done`, maybe on another thread.
  // Whatever `params` points to must outlive the call of `done`.
  virtual void BeginAsync(const BeginParams& params, absl::Time deadline,
                          BeginDone done) {
    done(Begin(params, deadline));
  }

  // Stores the result if request.lease_token is the current lease.
  virtual absl::StatusOr<idem::v1::Record> Complete(
      const idem::v1::CompleteRequest& request, absl::Time deadline) = 0;

  // Completes several keys (no two with the same scope and key) in one
  // operation: one result per request, in order, each what Complete would
  // answer. The outer status is the whole batch's. By default, one Complete
  // after another.
  virtual absl::StatusOr<std::vector<absl::StatusOr<idem::v1::Record>>> BatchComplete(
      absl::Span<const idem::v1::CompleteRequest* const> requests,
      absl::Time deadline) {
    std::vector<absl::StatusOr<idem::v1::Record>> results;
    results.reserve(requests.size());
    for (const idem::v1::CompleteRequest* r : requests) {
      results.push_back(Complete(*r, deadline));
    }
    return results;
  }

  // Stores the failure (or releases the key, when retryable).
  virtual absl::StatusOr<idem::v1::Record> Fail(
      const idem::v1::FailRequest& request, absl::Time deadline) = 0;

  // Moves locked_until to now + lease_ttl for the lease holder.
  virtual absl::StatusOr<idem::v1::Record> ExtendLease(
      const ExtendLeaseParams& params, absl::Time deadline) = 0;

  // The live record of (scope, key), or NOT_FOUND.
  virtual absl::StatusOr<idem::v1::Record> Get(absl::string_view scope,
                                               absl::string_view key,
                                               absl::Time deadline) = 0;

  // The live records of `ids` in one operation: one entry per id, in order,
  // empty where the key is missing or expired. The status is the whole
  // read's. By default, one Get after another.
  virtual absl::StatusOr<std::vector<std::optional<idem::v1::Record>>> BatchGet(
      absl::Span<const RecordId> ids, absl::Time deadline) {
    std::vector<std::optional<idem::v1::Record>> records;
    records.reserve(ids.size());
    for (const RecordId& id : ids) {
      absl::StatusOr<idem::v1::Record> record = Get(id.scope, id.key, deadline);
      if (record.ok()) {
        records.push_back(*std::move(record));
      } else if (absl::IsNotFound(record.status())) {
        records.push_back(std::nullopt);
      } else {
        return record.status();
      }
    }
    return records;
  }

  // Deletes up to `limit` expired records; returns how many it deleted.
  // Safe to run from several replicas at once.
  virtual absl::StatusOr<int64_t> DeleteExpired(int64_t limit,
                                                absl::Time deadline) = 0;

  // OK while the database answers.
  virtual absl::Status Ping(absl::Time deadline) = 0;

  // Counts for metrics; may read the whole table (see the implementation),
  // so it belongs on a background thread, not on a scrape or an RPC.
  virtual absl::StatusOr<StoreStats> Stats(absl::Time deadline) = 0;
};

}  // namespace idem

#endif  // IDEM_SERVER_STORE_H_
