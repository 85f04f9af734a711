#include "server/group_commit_store.h"

#include <string>
#include <utility>
#include <vector>

namespace idem {

using idem::v1::CompleteRequest;
using idem::v1::Record;

GroupCommitStore::GroupCommitStore(IdempotencyStore* inner, Options options)
    : inner_(inner),
      begins_async_(static_cast<bool>(options.batches.schedule)),
      begins_(
          options.batches,
          [](const BeginParams& p) {
            return std::make_pair(std::string(p.scope), std::string(p.key));
          },
          [inner](absl::Span<const BeginParams* const> batch, absl::Time deadline) {
            std::vector<BeginParams> params;
            params.reserve(batch.size());
            for (const BeginParams* p : batch) params.push_back(*p);
            return inner->BatchBegin(params, deadline);
          },
          [inner](const BeginParams& p, absl::Time deadline) {
            return inner->Begin(p, deadline);
          }),
      completes_(
          options.batches,
          [](const CompleteRequest& r) { return std::make_pair(r.scope(), r.key()); },
          [inner](absl::Span<const CompleteRequest* const> batch, absl::Time deadline)
              -> absl::StatusOr<std::vector<absl::StatusOr<Record>>> {
            // A lone Complete takes the simpler one-key statement.
            if (batch.size() == 1) {
              absl::StatusOr<Record> one = inner->Complete(*batch.front(), deadline);
              if (absl::IsUnavailable(one.status()) ||
                  absl::IsDeadlineExceeded(one.status())) {
                return one.status();
              }
              std::vector<absl::StatusOr<Record>> results;
              results.push_back(std::move(one));
              return results;
            }
            return inner->BatchComplete(batch, deadline);
          },
          [inner](const CompleteRequest& r, absl::Time deadline) {
            return inner->Complete(r, deadline);
          }) {}

absl::StatusOr<std::vector<absl::StatusOr<BeginResult>>> GroupCommitStore::BatchBegin(
    absl::Span<const BeginParams> params, absl::Time deadline) {
  if (params.size() != 1) return inner_->BatchBegin(params, deadline);
  std::vector<absl::StatusOr<BeginResult>> results;
  results.push_back(begins_.Submit(params.front(), deadline));
  return results;
}

bool GroupCommitStore::BeginsAsync() const { return begins_async_; }

void GroupCommitStore::BeginAsync(const BeginParams& params, absl::Time deadline,
                                  BeginDone done) {
  if (!begins_async_) {
    done(begins_.Submit(params, deadline));
    return;
  }
  begins_.SubmitAsync(params, deadline, std::move(done));
}

absl::StatusOr<Record> GroupCommitStore::Complete(const CompleteRequest& request,
                                                  absl::Time deadline) {
  return completes_.Submit(request, deadline);
}

absl::StatusOr<std::vector<absl::StatusOr<Record>>> GroupCommitStore::BatchComplete(
    absl::Span<const CompleteRequest* const> requests, absl::Time deadline) {
  return inner_->BatchComplete(requests, deadline);
}

absl::StatusOr<Record> GroupCommitStore::Fail(const idem::v1::FailRequest& request,
                                              absl::Time deadline) {
  return inner_->Fail(request, deadline);
}

absl::StatusOr<Record> GroupCommitStore::ExtendLease(const ExtendLeaseParams& params,
                                                     absl::Time deadline) {
  return inner_->ExtendLease(params, deadline);
}

absl::StatusOr<Record> GroupCommitStore::Get(absl::string_view scope,
                                             absl::string_view key,
                                             absl::Time deadline) {
  return inner_->Get(scope, key, deadline);
}

absl::StatusOr<std::vector<std::optional<Record>>> GroupCommitStore::BatchGet(
    absl::Span<const RecordId> ids, absl::Time deadline) {
  return inner_->BatchGet(ids, deadline);
}

absl::StatusOr<int64_t> GroupCommitStore::DeleteExpired(int64_t limit,
                                                        absl::Time deadline) {
  return inner_->DeleteExpired(limit, deadline);
}

absl::Status GroupCommitStore::Ping(absl::Time deadline) { return inner_->Ping(deadline); }

absl::StatusOr<StoreStats> GroupCommitStore::Stats(absl::Time deadline) {
  return inner_->Stats(deadline);
}

}  // namespace idem
