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
// Thread safety: safe for concurrent use if the store is.
#ifndef IDEM_SERVER_IDEMPOTENCY_SERVICE_H_
#define IDEM_SERVER_IDEMPOTENCY_SERVICE_H_

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

 private:
  IdempotencyStore* const store_;
  const RequestLimits limits_;
};

}  // namespace idem

#endif  // IDEM_SERVER_IDEMPOTENCY_SERVICE_H_
