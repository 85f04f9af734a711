// GrpcService: serves idem.v1.Idempotency with the gRPC callback API.
//
// Every method is registered raw (request and response as bytes): the
// handler parses the request itself, so bytes that are not the method's
// request (malformed protobuf, or invalid UTF-8 in a string field, which
// proto3's parser refuses) are answered INVALID_ARGUMENT naming the message
// type, where gRPC's typed handler would answer UNIMPLEMENTED with no
// message. The typed request and response live in the call's reactor until
// gRPC is done with the call; the response is serialized just before
// Finish. Reflection is unaffected (it reads the descriptor pool).
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

#include <optional>

#include <grpcpp/support/byte_buffer.h>

#include "idem/v1/idempotency.grpc.pb.h"
#include "server/authorizer.h"
#include "server/idempotency_service.h"
#include "server/key_waiters.h"
#include "server/rpc_metrics.h"
#include "server/worker_pool.h"

namespace idem {

// idem.v1.Idempotency with every method raw (ByteBuffer in and out).
using RawIdempotencyService = idem::v1::Idempotency::WithRawCallbackMethod_Begin<
    idem::v1::Idempotency::WithRawCallbackMethod_BatchBegin<
        idem::v1::Idempotency::WithRawCallbackMethod_Complete<
            idem::v1::Idempotency::WithRawCallbackMethod_Fail<
                idem::v1::Idempotency::WithRawCallbackMethod_Get<
                    idem::v1::Idempotency::WithRawCallbackMethod_ExtendLease<
                        idem::v1::Idempotency::Service>>>>>>;

class GrpcService final : public RawIdempotencyService {
 public:
  // All must outlive the gRPC server. `authorizer` null: every caller may
  // use every scope.
  GrpcService(IdempotencyService* service, WorkerPool* workers,
              KeyWaiters* waiters, RpcMetrics* metrics,
              const Authorizer* authorizer = nullptr);

  // Each parses its request from `request` and, when answering OK, writes
  // the serialized response to `response`.
  grpc::ServerUnaryReactor* Begin(grpc::CallbackServerContext* context,
                                  const grpc::ByteBuffer* request,
                                  grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* BatchBegin(grpc::CallbackServerContext* context,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Complete(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Fail(grpc::CallbackServerContext* context,
                                 const grpc::ByteBuffer* request,
                                 grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* context,
                                const grpc::ByteBuffer* request,
                                grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* ExtendLease(grpc::CallbackServerContext* context,
                                        const grpc::ByteBuffer* request,
                                        grpc::ByteBuffer* response) override;

 private:
  template <typename Request, typename Response>
  class UnaryCall;
  class WaitingBeginReactor;

  // Answers INVALID_ARGUMENT naming the type when `request` (the parsed
  // bytes) is empty; otherwise, once authorized, runs `method_fn` on a
  // worker with a UnaryCall owning request and response.
  template <typename Request, typename Response>
  grpc::ServerUnaryReactor* Dispatch(
      const char* method, grpc::CallbackServerContext* context,
      std::optional<Request> request, grpc::ByteBuffer* response_bytes,
      absl::Status (IdempotencyService::*method_fn)(const Request&, absl::Time,
                                                    Response*));

  // OK when the caller may use every scope `request` names.
  template <typename Request>
  absl::Status Authorize(const grpc::CallbackServerContext& context,
                         const Request& request) const;

  // Ends a call's work: serializes `response` into `response_bytes` when
  // `status` is OK (INTERNAL if it cannot), records the call in metrics_
  // and the log, and returns the status to finish the call with.
  template <typename Request, typename Response>
  grpc::Status Conclude(const char* method, absl::Time start, const Request& request,
                        grpc::Status status, const Response& response,
                        grpc::ByteBuffer* response_bytes);

  IdempotencyService* const service_;
  WorkerPool* const workers_;
  KeyWaiters* const waiters_;
  RpcMetrics* const metrics_;
  const Authorizer* const authorizer_;
};

}  // namespace idem

#endif  // IDEM_SERVER_GRPC_SERVICE_H_
