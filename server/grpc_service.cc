#include "server/grpc_service.h"

#include <chrono>

#include "absl/time/clock.h"
#include "server/grpc_status.h"

namespace idem {

namespace {

// A call without a deadline still gets one: no store call waits forever.
constexpr absl::Duration kDefaultCallDeadline = absl::Seconds(30);

absl::Time CallDeadline(const grpc::CallbackServerContext& context) {
  const auto deadline = context.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) {
    return absl::Now() + kDefaultCallDeadline;
  }
  return absl::FromChrono(deadline);
}

}  // namespace

GrpcService::GrpcService(IdempotencyService* service, WorkerPool* workers)
    : service_(service), workers_(workers) {}

template <typename Request, typename Response>
grpc::ServerUnaryReactor* GrpcService::Dispatch(
    grpc::CallbackServerContext* context, const Request* request,
    Response* response,
    absl::Status (IdempotencyService::*method)(const Request&, absl::Time,
                                               Response*)) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const absl::Time deadline = CallDeadline(*context);
  const bool queued = workers_->TrySchedule([=] {
    if (context->IsCancelled()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::CANCELLED,
                                   "call cancelled before it ran"));
      return;
    }
    if (absl::Now() >= deadline) {
      reactor->Finish(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                                   "deadline passed while the call was queued"));
      return;
    }
    reactor->Finish(ToGrpcStatus((service_->*method)(*request, deadline, response)));
  });
  if (!queued) {
    reactor->Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                 "idemd is overloaded (work queue full); retry "
                                 "with backoff"));
  }
  return reactor;
}

grpc::ServerUnaryReactor* GrpcService::Begin(grpc::CallbackServerContext* context,
                                             const idem::v1::BeginRequest* request,
                                             idem::v1::BeginResponse* response) {
  return Dispatch(context, request, response, &IdempotencyService::Begin);
}

grpc::ServerUnaryReactor* GrpcService::BatchBegin(
    grpc::CallbackServerContext* context,
    const idem::v1::BatchBeginRequest* request,
    idem::v1::BatchBeginResponse* response) {
  return Dispatch(context, request, response, &IdempotencyService::BatchBegin);
}

grpc::ServerUnaryReactor* GrpcService::Complete(
    grpc::CallbackServerContext* context, const idem::v1::CompleteRequest* request,
    idem::v1::CompleteResponse* response) {
  return Dispatch(context, request, response, &IdempotencyService::Complete);
}

grpc::ServerUnaryReactor* GrpcService::Fail(grpc::CallbackServerContext* context,
                                            const idem::v1::FailRequest* request,
                                            idem::v1::FailResponse* response) {
  return Dispatch(context, request, response, &IdempotencyService::Fail);
}

grpc::ServerUnaryReactor* GrpcService::Get(grpc::CallbackServerContext* context,
                                           const idem::v1::GetRequest* request,
                                           idem::v1::GetResponse* response) {
  return Dispatch(context, request, response, &IdempotencyService::Get);
}

grpc::ServerUnaryReactor* GrpcService::ExtendLease(
    grpc::CallbackServerContext* context,
    const idem::v1::ExtendLeaseRequest* request,
    idem::v1::ExtendLeaseResponse* response) {
  return Dispatch(context, request, response, &IdempotencyService::ExtendLease);
}

}  // namespace idem
