// GrpcService: serves idem.v1.Idempotency with the gRPC callback API.
//
// A Begin that needs no I/O (refused by validation, or a replay the record
// cache answers) is answered at once on gRPC's thread. Otherwise each
// handler only queues the call on the WorkerPool and returns; a worker
// runs IdempotencyService (which blocks on the store), converts the status
// once (grpc_status.h) and finishes the reactor. A full queue answers
// RESOURCE_EXHAUSTED; a call whose deadline passed or that was cancelled
// while queued is finished without touching the store.
//
// A Begin with `wait` that finds the key IN_PROGRESS parks in KeyWaiters
// (holding no thread) and runs again when the key changes (NOTIFY from any
// replica), when the holder's lease ends, or when the wait is over, until it
// gets another outcome or the wait ends (then IN_PROGRESS). Cancelling the
// call removes its waiter.
//
// With an Authorizer, every call is checked before any store work, in one
// place (Authorize(), called by Dispatch and by Begin before it parks):
// UNAUTHENTICATED without a known bearer token, PERMISSION_DENIED when a
// scope (any of a BatchBegin's) is not the caller's. Health and reflection
// are other services and stay open.
//
// Every call's end is recorded in RpcMetrics (method, status code, Begin
// outcome, latency) just before the reactor finishes.
//
// Thread safety: called by gRPC from many threads; holds no mutable state.
#ifndef IDEM_SERVER_GRPC_SERVICE_H_
#define IDEM_SERVER_GRPC_SERVICE_H_

#include "idem/v1/idempotency.grpc.pb.h"
#include "server/authorizer.h"
#include "server/idempotency_service.h"
#include "server/key_waiters.h"
#include "server/rpc_metrics.h"
#include "server/worker_pool.h"

namespace idem {

class GrpcService final : public idem::v1::Idempotency::CallbackService {
 public:
  // All must outlive the gRPC server. `authorizer` null: every caller may
  // use every scope.
  GrpcService(IdempotencyService* service, WorkerPool* workers,
              KeyWaiters* waiters, RpcMetrics* metrics,
              const Authorizer* authorizer = nullptr);

  grpc::ServerUnaryReactor* Begin(grpc::CallbackServerContext* context,
                                  const idem::v1::BeginRequest* request,
                                  idem::v1::BeginResponse* response) override;
  grpc::ServerUnaryReactor* BatchBegin(
      grpc::CallbackServerContext* context,
      const idem::v1::BatchBeginRequest* request,
      idem::v1::BatchBeginResponse* response) override;
  grpc::ServerUnaryReactor* Complete(grpc::CallbackServerContext* context,
                                     const idem::v1::CompleteRequest* request,
                                     idem::v1::CompleteResponse* response) override;
  grpc::ServerUnaryReactor* Fail(grpc::CallbackServerContext* context,
                                 const idem::v1::FailRequest* request,
                                 idem::v1::FailResponse* response) override;
  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* context,
                                const idem::v1::GetRequest* request,
                                idem::v1::GetResponse* response) override;
  grpc::ServerUnaryReactor* ExtendLease(
      grpc::CallbackServerContext* context,
      const idem::v1::ExtendLeaseRequest* request,
      idem::v1::ExtendLeaseResponse* response) override;

 private:
  template <typename Request, typename Response>
  grpc::ServerUnaryReactor* Dispatch(
      const char* method, grpc::CallbackServerContext* context,
      const Request* request, Response* response,
      absl::Status (IdempotencyService::*method_fn)(const Request&, absl::Time,
                                                    Response*));

  // OK when the caller may use every scope `request` names.
  template <typename Request>
  absl::Status Authorize(const grpc::CallbackServerContext& context,
                         const Request& request) const;

  // Records the call's end in metrics_; `response` is read only when
  // `status` is OK.
  template <typename Request, typename Response>
  void RecordFinished(const char* method, absl::Time start, const Request& request,
                      const grpc::Status& status, const Response& response);

  class WaitingBeginReactor;

  IdempotencyService* const service_;
  WorkerPool* const workers_;
  KeyWaiters* const waiters_;
  RpcMetrics* const metrics_;
  const Authorizer* const authorizer_;
};

}  // namespace idem

#endif  // IDEM_SERVER_GRPC_SERVICE_H_
