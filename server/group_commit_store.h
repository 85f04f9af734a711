// GroupCommitStore: an IdempotencyStore decorator that gathers concurrent
// single-key Begins into one inner BatchBegin, and concurrent Completes
// into one inner BatchComplete (group_commit.h says how batches form).
// With PostgresStore inside, a batch is one statement in autocommit: one
// commit, one WAL flush for all its callers; each caller is answered only
// after that commit, so an acknowledged Complete is on disk as before.
//
// A BatchBegin of several keys (the RPC), Fail, ExtendLease, Get, BatchGet
// and the background calls go straight to the inner store.
//
// Thread safety: safe for concurrent use if the inner store is.
#ifndef IDEM_SERVER_GROUP_COMMIT_STORE_H_
#define IDEM_SERVER_GROUP_COMMIT_STORE_H_

#include "server/group_commit.h"
#include "server/store.h"

namespace idem {

class GroupCommitStore final : public IdempotencyStore {
 public:
  struct Options {
    // For Begins and for Completes, each (so at most 2 * max_running
    // connections are held by batches).
    GroupCommitOptions batches;
  };

  // `inner` must outlive this.
  GroupCommitStore(IdempotencyStore* inner, Options options);
  GroupCommitStore(const GroupCommitStore&) = delete;
  GroupCommitStore& operator=(const GroupCommitStore&) = delete;

  absl::StatusOr<std::vector<absl::StatusOr<BeginResult>>> BatchBegin(
      absl::Span<const BeginParams> params, absl::Time deadline) override;
  // True when options.batches.schedule is set: the Begin is queued for
  // the next batch and `done` runs on the thread that ran it.
  bool BeginsAsync() const override;
  void BeginAsync(const BeginParams& params, absl::Time deadline,
                  BeginDone done) override;
  absl::StatusOr<idem::v1::Record> Complete(
      const idem::v1::CompleteRequest& request, absl::Time deadline) override;
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
  absl::StatusOr<std::vector<std::optional<idem::v1::Record>>> BatchGet(
      absl::Span<const RecordId> ids, absl::Time deadline) override;
  absl::StatusOr<int64_t> DeleteExpired(int64_t limit,
                                        absl::Time deadline) override;
  absl::Status Ping(absl::Time deadline) override;
  absl::StatusOr<StoreStats> Stats(absl::Time deadline) override;

  const GroupCommitCounters& begin_counters() const { return begins_.counters(); }
  const GroupCommitCounters& complete_counters() const { return completes_.counters(); }

 private:
  IdempotencyStore* const inner_;
  const bool begins_async_;
  GroupCommit<BeginParams, absl::StatusOr<BeginResult>> begins_;
  GroupCommit<idem::v1::CompleteRequest, absl::StatusOr<idem::v1::Record>> completes_;
};

}  // namespace idem

#endif  // IDEM_SERVER_GROUP_COMMIT_STORE_H_
