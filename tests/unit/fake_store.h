// FakeStore: a scripted IdempotencyStore for tests of the service layer.
// It records what it was called with and answers what the test set; it
// implements no semantics (those are tested against PostgreSQL).
#ifndef IDEM_TESTS_UNIT_FAKE_STORE_H_
#define IDEM_TESTS_UNIT_FAKE_STORE_H_

#include <string>

#include "server/store.h"

namespace idem {

class FakeStore : public IdempotencyStore {
 public:
  absl::StatusOr<BeginResult> begin_result = absl::UnimplementedError("unset");
  absl::StatusOr<idem::v1::Record> record_result = absl::UnimplementedError("unset");

  int calls = 0;
  absl::Duration last_lease_ttl;
  absl::Duration last_retention;
  absl::Time last_deadline;
  std::string last_owner;
  size_t last_batch_size = 0;

  absl::StatusOr<std::vector<absl::StatusOr<BeginResult>>> BatchBegin(
      absl::Span<const BeginParams> params, absl::Time deadline) override {
    ++calls;
    last_lease_ttl = params.back().lease_ttl;
    last_retention = params.back().retention;
    last_owner = std::string(params.back().owner);
    last_deadline = deadline;
    last_batch_size = params.size();
    if (!begin_result.ok()) return begin_result.status();
    return std::vector<absl::StatusOr<BeginResult>>(params.size(), begin_result);
  }
  absl::StatusOr<idem::v1::Record> Complete(const idem::v1::CompleteRequest&,
                                            absl::Time deadline) override {
    ++calls;
    last_deadline = deadline;
    return record_result;
  }
  absl::StatusOr<idem::v1::Record> Fail(const idem::v1::FailRequest&,
                                        absl::Time deadline) override {
    ++calls;
    last_deadline = deadline;
    return record_result;
  }
  absl::StatusOr<idem::v1::Record> ExtendLease(const ExtendLeaseParams& params,
                                               absl::Time deadline) override {
    ++calls;
    last_lease_ttl = params.lease_ttl;
    return record_result;
  }
  absl::StatusOr<idem::v1::Record> Get(absl::string_view, absl::string_view,
                                       absl::Time) override {
    ++calls;
    return record_result;
  }
  absl::StatusOr<int64_t> DeleteExpired(int64_t, absl::Time) override {
    ++calls;
    return 0;
  }
  absl::Status Ping(absl::Time) override { return absl::OkStatus(); }
  absl::StatusOr<StoreStats> Stats(absl::Time) override { return StoreStats{}; }
};

}  // namespace idem

#endif  // IDEM_TESTS_UNIT_FAKE_STORE_H_
