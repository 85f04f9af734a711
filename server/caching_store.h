// CachingStore: an IdempotencyStore decorator that answers replays of final
// records from a RecordCache (record_cache.h) without asking the inner store.
//
//   Begin / BatchBegin  a key with a cached final record is answered from it:
//                       same request hash -> COMPLETED / FAILED with the
//                       record; another hash -> FAILED_PRECONDITION, as the
//                       store would. Other keys go to the inner store in one
//                       call; final records it returns are cached.
//   TryBeginFromMemory  the same answer for a cached key, without blocking
//                       (GrpcService answers it on gRPC's thread).
//   Get                 cached record, else the inner store (a final answer
//                       is cached).
//   Complete / Fail     (and BatchComplete) always the inner store (a write
//                       is never answered from the cache); a final record
//                       returned is cached.
//   the rest            passed through.
//
// A hit that the cache says is due a refresh (record_cache.h) also hands
// its key to `refresher` (cache_refresher.h), which reads it again soon,
// with other keys due, and replaces the entry (or drops it when the record
// is gone or no longer final); the hit itself is answered at once.
//
// Authorization stays in the service layer, before the store: the cache
// never sees a call the caller may not make.
//
// Thread safety: safe for concurrent use if the inner store is.
#ifndef IDEM_SERVER_CACHING_STORE_H_
#define IDEM_SERVER_CACHING_STORE_H_

#include <memory>

#include "server/cache_refresher.h"
#include "server/record_cache.h"
#include "server/store.h"

namespace idem {

class CachingStore final : public IdempotencyStore {
 public:
  // `inner`, `cache` and `refresher` must outlive this. No `refresher`:
  // entries are not refreshed ahead.
  CachingStore(IdempotencyStore* inner, RecordCache* cache,
               CacheRefresher* refresher = nullptr);
  CachingStore(const CachingStore&) = delete;
  CachingStore& operator=(const CachingStore&) = delete;

  absl::StatusOr<std::vector<absl::StatusOr<BeginResult>>> BatchBegin(
      absl::Span<const BeginParams> params, absl::Time deadline) override;
  std::optional<absl::StatusOr<BeginResult>> TryBeginFromMemory(
      const BeginParams& params) override;
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
  absl::StatusOr<int64_t> DeleteExpired(int64_t limit,
                                        absl::Time deadline) override;
  absl::Status Ping(absl::Time deadline) override;
  absl::StatusOr<StoreStats> Stats(absl::Time deadline) override;

 private:
  // cache_->Lookup, requesting a refresh when the hit is due one.
  std::shared_ptr<const idem::v1::Record> Lookup(absl::string_view scope,
                                                 absl::string_view key,
                                                 bool count_miss = true);

  // Caches `record` if it is final; passes it on.
  absl::StatusOr<idem::v1::Record> Remember(absl::StatusOr<idem::v1::Record> record);
  // Caches a Begin's record when it is final (a replay answered by the store).
  void RememberBegun(const absl::StatusOr<BeginResult>& result);

  IdempotencyStore* const inner_;
  RecordCache* const cache_;
  CacheRefresher* const refresher_;
};

}  // namespace idem

#endif  // IDEM_SERVER_CACHING_STORE_H_
