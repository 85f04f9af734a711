// IdempotencyService: the transport-free core of every RPC.
//
// Each method validates its request (INVALID_ARGUMENT naming the field),
// calls the store once, and fills the response. It never blocks except in
// the store, holds no state of its own, and knows nothing of gRPC, so it is
// tested with a fake store (tests/fake_store.h) and served by GrpcService.
//
// Example:
//   PostgresStore store(options);
//   IdempotencyService service(&store, RequestLimits{});
//   idem::v1::BeginResponse response;
//   absl::Status s = service.Begin(request, absl::Now() + absl::Seconds(5),
//                                  &response);
//
// Besides two counters for metrics (atomics), it holds no state.
//
// Thread safety: safe for concurrent use if the store is.
#ifndef IDEM_SERVER_IDEMPOTENCY_SERVICE_H_
#define IDEM_SERVER_IDEMPOTENCY_SERVICE_H_

#include <atomic>
#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "idem/v1/idempotency.pb.h"
#include "server/request_validation.h"
#include "server/store.h"

namespace idem {

class IdempotencyService {
 public:
  // `store` must outlive the service.
  IdempotencyService(IdempotencyStore* store, RequestLimits limits);

  absl::Status Begin(const idem::v1::BeginRequest& request, absl::Time deadline,
                     idem::v1::BeginResponse* response);
  // A Begin answered at once without blocking, when validation refuses it
  // or the store has the answer in memory (a cached replay): true, with
  // *status (and *response) set. False: call Begin. Safe on gRPC's threads.
  bool TryBeginWithoutBlocking(const idem::v1::BeginRequest& request,
                               idem::v1::BeginResponse* response, absl::Status* status);
  // Whether BeginAsync answers without blocking (the store batches Begins).
  bool BeginsAsync() const { return store_->BeginsAsync(); }
  // Begin, with the status going to `done` (maybe on another thread);
  // `request` and `response` must live until then.
  void BeginAsync(const idem::v1::BeginRequest& request, absl::Time deadline,
                  idem::v1::BeginResponse* response,
                  std::function<void(absl::Status)> done);
  absl::Status BatchBegin(const idem::v1::BatchBeginRequest& request,
                          absl::Time deadline,
                          idem::v1::BatchBeginResponse* response);
  absl::Status Complete(const idem::v1::CompleteRequest& request,
                        absl::Time deadline, idem::v1::CompleteResponse* response);
  absl::Status Fail(const idem::v1::FailRequest& request, absl::Time deadline,
                    idem::v1::FailResponse* response);
  absl::Status Get(const idem::v1::GetRequest& request, absl::Time deadline,
                   idem::v1::GetResponse* response);
  absl::Status ExtendLease(const idem::v1::ExtendLeaseRequest& request,
                           absl::Time deadline,
                           idem::v1::ExtendLeaseResponse* response);

  // Keys acquired (Begin and BatchBegin items) that were held before: a
  // lease that ran out or a retryable Fail (ACQUIRED with attempt > 1, not a
  // re-entry).
  int64_t takeovers() const { return takeovers_.load(std::memory_order_relaxed); }
  // ACQUIRED answers that re-entered the caller's own live lease (owner).
  int64_t reentries() const { return reentries_.load(std::memory_order_relaxed); }

 private:
  void FillBeginResponse(BeginResult result, idem::v1::BeginResponse* response);

  IdempotencyStore* const store_;
  const RequestLimits limits_;
  std::atomic<int64_t> takeovers_{0};
  std::atomic<int64_t> reentries_{0};
};

}  // namespace idem

#endif  // IDEM_SERVER_IDEMPOTENCY_SERVICE_H_
