// InMemoryStore: the IdempotencyStore contract (store.h) over a map, with a
// clock the caller moves. For fuzzing the service layer's pure logic only:
// no concurrency beyond a mutex, no persistence; PostgresStore's behaviour
// is tested against PostgreSQL (tests/integration/).
//
// It counts every call, so a test can check that a request validation
// refused never reached the store.
//
// Thread safety: safe for concurrent use (one mutex).
#ifndef IDEM_TESTS_FUZZ_IN_MEMORY_STORE_H_
#define IDEM_TESTS_FUZZ_IN_MEMORY_STORE_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/record_decisions.h"
#include "server/store.h"

namespace idem {

class InMemoryStore final : public IdempotencyStore {
 public:
  // Every store call so far (BatchBegin counts once).
  int64_t calls() const ABSL_LOCKS_EXCLUDED(mu_);
  // Records held, expired ones included.
  size_t size() const ABSL_LOCKS_EXCLUDED(mu_);
  // Moves the store's clock (it starts at 2026-01-01T00:00:00Z).
  void Advance(absl::Duration d) ABSL_LOCKS_EXCLUDED(mu_);

  absl::StatusOr<std::vector<absl::StatusOr<BeginResult>>> BatchBegin(
      absl::Span<const BeginParams> params, absl::Time deadline) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<idem::v1::Record> Complete(const idem::v1::CompleteRequest& request,
                                            absl::Time deadline) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<idem::v1::Record> Fail(const idem::v1::FailRequest& request,
                                        absl::Time deadline) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<idem::v1::Record> ExtendLease(const ExtendLeaseParams& params,
                                               absl::Time deadline) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<idem::v1::Record> Get(absl::string_view scope, absl::string_view key,
                                       absl::Time deadline) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<int64_t> DeleteExpired(int64_t limit, absl::Time deadline) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Ping(absl::Time deadline) override { return absl::OkStatus(); }
  absl::StatusOr<StoreStats> Stats(absl::Time deadline) override {
    return StoreStats{};
  }

 private:
  using Id = std::pair<std::string, std::string>;
  struct Entry {
    idem::v1::Record record;
    absl::Time locked_until;
    absl::Time expires_at;
  };

  absl::StatusOr<BeginResult> BeginOne(const BeginParams& p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The live entry of (scope, key), or nullptr.
  Entry* Live(absl::string_view scope, absl::string_view key)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The entry a token holder may write, or the status saying why not.
  absl::StatusOr<Entry*> Writable(WriteKind kind, absl::string_view scope,
                                  absl::string_view key, int64_t lease_token)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Touch(Entry* e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  // State below is protected by mu_.
  std::map<Id, Entry> entries_ ABSL_GUARDED_BY(mu_);
  absl::Time now_ ABSL_GUARDED_BY(mu_) = absl::FromUnixSeconds(1767225600);
  int64_t next_token_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t calls_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace idem

#endif  // IDEM_TESTS_FUZZ_IN_MEMORY_STORE_H_
