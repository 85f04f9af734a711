#include "server/caching_store.h"

#include <memory>
#include <utility>

#include "server/record_decisions.h"

namespace idem {

using idem::v1::BeginResponse;
using idem::v1::Record;

CachingStore::CachingStore(IdempotencyStore* inner, RecordCache* cache,
                           CacheRefresher* refresher)
    : inner_(inner), cache_(cache), refresher_(refresher) {}

namespace {

// The answer a cached final record gives a Begin.
absl::StatusOr<BeginResult> FromCache(const Record& hit, const BeginParams& p) {
  if (hit.request_hash() != p.request_hash) {
    return BeginDecisionStatus(BeginDecision::kRequestMismatch);
  }
  BeginResult result;
  result.outcome = hit.status() == Record::COMPLETED ? BeginResponse::COMPLETED
                                                     : BeginResponse::FAILED;
  result.record = hit;
  return result;
}

}  // namespace

std::shared_ptr<const Record> CachingStore::Lookup(absl::string_view scope,
                                                   absl::string_view key,
                                                   bool count_miss) {
  bool refresh_due = false;
  std::shared_ptr<const Record> hit =
      cache_->Lookup(scope, key, count_miss, refresher_ ? &refresh_due : nullptr);
  // Refused (queue full): the entry lives out its time.
  if (refresh_due) refresher_->Request(scope, key);
  return hit;
}

std::optional<absl::StatusOr<BeginResult>> CachingStore::TryBeginFromMemory(
    const BeginParams& params) {
  std::shared_ptr<const Record> hit =
      Lookup(params.scope, params.key, /*count_miss=*/false);
  if (hit == nullptr) return std::nullopt;
  return FromCache(*hit, params);
}

absl::StatusOr<std::vector<absl::StatusOr<BeginResult>>> CachingStore::BatchBegin(
    absl::Span<const BeginParams> params, absl::Time deadline) {
  std::vector<absl::StatusOr<BeginResult>> results(
      params.size(), absl::UnknownError("not answered"));
  std::vector<size_t> misses;
  std::vector<BeginParams> miss_params;
  for (size_t i = 0; i < params.size(); ++i) {
    const BeginParams& p = params[i];
    std::shared_ptr<const Record> hit = Lookup(p.scope, p.key);
    if (hit == nullptr) {
      misses.push_back(i);
      miss_params.push_back(p);
      continue;
    }
    results[i] = FromCache(*hit, p);
  }
  if (misses.empty()) return results;
  absl::StatusOr<std::vector<absl::StatusOr<BeginResult>>> stored =
      inner_->BatchBegin(miss_params, deadline);
  if (!stored.ok()) return stored.status();
  for (size_t j = 0; j < misses.size(); ++j) {
    absl::StatusOr<BeginResult>& r = (*stored)[j];
    RememberBegun(r);
    results[misses[j]] = std::move(r);
  }
  return results;
}

bool CachingStore::BeginsAsync() const { return inner_->BeginsAsync(); }

void CachingStore::BeginAsync(const BeginParams& params, absl::Time deadline,
                              BeginDone done) {
  if (std::shared_ptr<const Record> hit = Lookup(params.scope, params.key)) {
    done(FromCache(*hit, params));
    return;
  }
  inner_->BeginAsync(params, deadline,
                     [this, done = std::move(done)](absl::StatusOr<BeginResult> r) {
                       RememberBegun(r);
                       done(std::move(r));
                     });
}

void CachingStore::RememberBegun(const absl::StatusOr<BeginResult>& result) {
  // Insert() keeps final records only (an ACQUIRED or IN_PROGRESS answer's
  // record is in progress).
  if (result.ok()) cache_->Insert(result->record);
}

absl::StatusOr<Record> CachingStore::Remember(absl::StatusOr<Record> record) {
  if (record.ok()) cache_->Insert(*record);
  return record;
}

absl::StatusOr<Record> CachingStore::Complete(const idem::v1::CompleteRequest& request,
                                              absl::Time deadline) {
  return Remember(inner_->Complete(request, deadline));
}

absl::StatusOr<std::vector<absl::StatusOr<Record>>> CachingStore::BatchComplete(
    absl::Span<const idem::v1::CompleteRequest* const> requests, absl::Time deadline) {
  absl::StatusOr<std::vector<absl::StatusOr<Record>>> results =
      inner_->BatchComplete(requests, deadline);
  if (results.ok()) {
    for (const absl::StatusOr<Record>& r : *results) {
      if (r.ok()) cache_->Insert(*r);
    }
  }
  return results;
}

absl::StatusOr<Record> CachingStore::Fail(const idem::v1::FailRequest& request,
                                          absl::Time deadline) {
  return Remember(inner_->Fail(request, deadline));
}

absl::StatusOr<Record> CachingStore::ExtendLease(const ExtendLeaseParams& params,
                                                 absl::Time deadline) {
  return inner_->ExtendLease(params, deadline);
}

absl::StatusOr<Record> CachingStore::Get(absl::string_view scope, absl::string_view key,
                                         absl::Time deadline) {
  if (std::shared_ptr<const Record> hit = Lookup(scope, key)) return *hit;
  return Remember(inner_->Get(scope, key, deadline));
}

absl::StatusOr<int64_t> CachingStore::DeleteExpired(int64_t limit, absl::Time deadline) {
  return inner_->DeleteExpired(limit, deadline);
}

absl::Status CachingStore::Ping(absl::Time deadline) { return inner_->Ping(deadline); }

absl::StatusOr<StoreStats> CachingStore::Stats(absl::Time deadline) {
  return inner_->Stats(deadline);
}

}  // namespace idem
