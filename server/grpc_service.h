// GrpcService: serves idem.v1.Idempotency on gRPC's completion-queue API.
//
// The server builder gives it completion queues; Serve(queue) runs on one
// thread per queue: it keeps calls of every method requested on the queue
// and handles each event (a call arrived, its answer was sent, it ended)
// on that thread. No callback-API service shares the server: gRPC runs
// callback services on threads of its own that poll the same connections
// and hand each arriving call to the queue's thread, a context switch per
// call that costs a cached replay a quarter of its throughput on two cores
// (bench/grpc-floor-server --hybrid; docs/performance.md).
//
// Every method is registered raw (request and response as bytes): the
// handler parses the request itself, so bytes that are not the method's
// request (malformed protobuf, or invalid UTF-8 in a string field, which
// proto3's parser refuses) are answered INVALID_ARGUMENT naming the message
// type, where gRPC's typed handler would answer UNIMPLEMENTED with no
// message. The typed request and response live in the call until gRPC is
// done with it; the response is serialized just before the answer is sent.
// Reflection is unaffected (it reads the descriptor pool).
//
// A Begin that needs no I/O (refused by validation, or a replay the record
// cache answers) is answered at once on the queue's thread. With group
// commit a Begin is queued for the next batch and answered by the thread
// that runs it. Otherwise each handler only queues the call on the
// WorkerPool; a worker runs IdempotencyService (which blocks on the store),
// converts the status once (grpc_status.h) and sends the answer. A full
// queue answers RESOURCE_EXHAUSTED; a call whose deadline passed or that
// was cancelled while queued is answered without touching the store.
//
// A Begin with `wait` that finds the key IN_PROGRESS parks in KeyWaiters
// (holding no thread) and runs again when the key changes (NOTIFY from any
// replica), when the holder's lease ends, or when the wait is over, until it
// gets another outcome or the wait ends (then IN_PROGRESS). Cancelling the
// call removes its waiter and answers CANCELLED.
//
// With an Authorizer, every call is checked before any store work, in one
// place (Authorize()): UNAUTHENTICATED without a known bearer token,
// PERMISSION_DENIED when a scope (any of a BatchBegin's) is not the
// caller's. Health and reflection are other services and stay open.
//
// Every call's end is recorded in RpcMetrics (method, status code, Begin
// outcome, latency) just before its answer is sent.
//
// Shutdown: grpc::Server::Shutdown returns only when every call that
// arrived has been answered and deleted (the workers must still run); then
// each queue is shut down and Serve returns once it is drained.
//
// Thread safety: Serve runs on one thread per queue; answers are sent from
// those threads, workers and group-commit threads. No mutable state of its
// own beyond the calls.
#ifndef IDEM_SERVER_GRPC_SERVICE_H_
#define IDEM_SERVER_GRPC_SERVICE_H_

#include <optional>

#include <grpcpp/completion_queue.h>
#include <grpcpp/server_context.h>
#include <grpcpp/support/byte_buffer.h>

#include "idem/v1/idempotency.grpc.pb.h"
#include "server/authorizer.h"
#include "server/idempotency_service.h"
#include "server/key_waiters.h"
#include "server/rpc_metrics.h"
#include "server/worker_pool.h"

namespace idem {

// idem.v1.Idempotency on the completion-queue API with every method raw
// (ByteBuffer in and out).
using RawIdempotencyService = idem::v1::Idempotency::WithRawMethod_Begin<
    idem::v1::Idempotency::WithRawMethod_BatchBegin<
        idem::v1::Idempotency::WithRawMethod_Complete<
            idem::v1::Idempotency::WithRawMethod_Fail<
                idem::v1::Idempotency::WithRawMethod_Get<
                    idem::v1::Idempotency::WithRawMethod_ExtendLease<
                        idem::v1::Idempotency::Service>>>>>>;

class GrpcService final : public RawIdempotencyService {
 public:
  // All must outlive the gRPC server. `authorizer` null: every caller may
  // use every scope.
  GrpcService(IdempotencyService* service, WorkerPool* workers,
              KeyWaiters* waiters, RpcMetrics* metrics,
              const Authorizer* authorizer = nullptr);

  // Handles every call arriving on `queue` (one of the server builder's)
  // until the queue is shut down and drained; call once per queue, each on
  // its own thread, after the server has started.
  void Serve(grpc::ServerCompletionQueue* queue);

 private:
  class Call;
  template <typename Request, typename Response>
  struct UnaryMethod;
  template <typename Request, typename Response>
  class UnaryCall;
  class BeginCall;

  // Requests the first calls of every method on `queue`.
  void RequestCalls(grpc::ServerCompletionQueue* queue);

  // OK when the caller may use every scope `request` names.
  template <typename Request>
  absl::Status Authorize(const grpc::ServerContextBase& context,
                         const Request& request) const;

  // Ends a call's work: serializes `response` into `response_bytes` when
  // `status` is OK (INTERNAL if it cannot), records the call in metrics_
  // and the log, and returns the status to answer with.
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
