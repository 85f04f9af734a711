#include "server/grpc_service.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "absl/time/clock.h"
#include "server/grpc_status.h"
#include "server/rpc_log.h"
#include "server/proto_time.h"
#include "server/request_validation.h"

namespace idem {

namespace {

// A call without a deadline still gets one: no store call waits forever.
constexpr absl::Duration kDefaultCallDeadline = absl::Seconds(30);

// A waiting Begin stops waiting this long before the caller's deadline, so
// its last try (which may take a lapsed lease over) is answered in time.
constexpr absl::Duration kWaitAnswerMargin = absl::Milliseconds(250);
// Wake this long after the holder's lease ends, so the retry can take over.
constexpr absl::Duration kLeaseEndSlack = absl::Milliseconds(5);

absl::Time CallDeadline(const grpc::CallbackServerContext& context) {
  const auto deadline = context.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) {
    return absl::Now() + kDefaultCallDeadline;
  }
  return absl::FromChrono(deadline);
}

const grpc::Status kOverloaded(grpc::StatusCode::RESOURCE_EXHAUSTED,
                               "idemd is overloaded (work queue full); retry "
                               "with backoff");

// The attempt the answer's record is at, for the log line (0: none).
template <typename Response>
int AttemptOf(const Response& response) {
  return response.has_record() ? response.record().attempt() : 0;
}
int AttemptOf(const idem::v1::BatchBeginResponse&) { return 0; }

// The outcome label of an answered call: only Begin has one.
template <typename Response>
std::string OutcomeOf(const Response&) {
  return "";
}
std::string OutcomeOf(const idem::v1::BeginResponse& response) {
  return OutcomeLabel(response.outcome());
}

void RecordItems(RpcMetrics*, const google::protobuf::Message&) {}
void RecordItems(RpcMetrics* metrics, const idem::v1::BatchBeginResponse& response) {
  metrics->RecordBatchItems(response);
}

// The scopes a request names.
template <typename Request>
std::vector<absl::string_view> ScopesOf(const Request& request) {
  return {request.scope()};
}
std::vector<absl::string_view> ScopesOf(const idem::v1::BatchBeginRequest& request) {
  std::vector<absl::string_view> scopes;
  scopes.reserve(request.requests_size());
  for (const idem::v1::BeginRequest& r : request.requests()) scopes.push_back(r.scope());
  return scopes;
}

}  // namespace

template <typename Request>
absl::Status GrpcService::Authorize(const grpc::CallbackServerContext& context,
                                    const Request& request) const {
  if (authorizer_ == nullptr) return absl::OkStatus();
  std::vector<absl::string_view> authorization;
  const auto range = context.client_metadata().equal_range("authorization");
  for (auto it = range.first; it != range.second; ++it) {
    authorization.emplace_back(it->second.data(), it->second.size());
  }
  return authorizer_->Check(authorization, ScopesOf(request));
}

template <typename Request, typename Response>
void GrpcService::RecordFinished(const char* method, absl::Time start,
                                 const Request& request, const grpc::Status& status,
                                 const Response& response) {
  const absl::Duration latency = absl::Now() - start;
  const std::string outcome = status.ok() ? OutcomeOf(response) : "";
  metrics_->Record(method, status, outcome, latency);
  if (status.ok()) RecordItems(metrics_, response);
  LogRpc(method, DescribeRequest(request), status, outcome,
         status.ok() ? AttemptOf(response) : 0, latency);
}

// Runs a Begin with `wait` until it has an answer. Each try runs on a
// worker; between tries it is parked in KeyWaiters and holds no thread.
// Finish() happens exactly once: from a try, from OnCancel() when it removed
// the waiter (so no try is pending), or from a wake-up that cannot be
// queued.
class GrpcService::WaitingBeginReactor final : public grpc::ServerUnaryReactor {
 public:
  WaitingBeginReactor(GrpcService* service, grpc::CallbackServerContext* context,
                      const idem::v1::BeginRequest* request,
                      idem::v1::BeginResponse* response)
      : service_(service),
        context_(context),
        request_(request),
        response_(response),
        start_(absl::Now()),
        deadline_(CallDeadline(*context)),
        answer_by_(std::min(absl::Now() + RequestedWait(*request),
                            deadline_ - kWaitAnswerMargin)) {}

  void Start() {
    if (!service_->workers_->TrySchedule([this] { Try(); })) Answer(kOverloaded);
  }

  // Answer() is never called under mu_: OnDone() may delete this soon after.
  void OnCancel() override {
    bool removed = false;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      removed = waiter_ != 0 && service_->waiters_->Cancel(waiter_);
      if (removed) waiter_ = 0;
    }
    if (removed) {
      Answer(grpc::Status(grpc::StatusCode::CANCELLED, "call cancelled while waiting"));
    }
  }

  void OnDone() override { delete this; }

 private:
  void Try() {
    if (context_->IsCancelled()) {
      Answer(grpc::Status(grpc::StatusCode::CANCELLED, "call cancelled"));
      return;
    }
    // Woken when the wait is over: answer IN_PROGRESS as last seen, rather
    // than run a statement whose answer might miss the caller's deadline.
    if (tried_ && absl::Now() >= answer_by_) {
      *response_->mutable_retry_after() =
          ToProtoDuration(std::max(lease_end_ - absl::Now(), absl::ZeroDuration()));
      Answer(grpc::Status::OK);
      return;
    }
    tried_ = true;
    // Registered before the statement looks at the key: a change that
    // lands while it runs is not lost (KeyWaiters::Park says so).
    const KeyWaiters::Id id = service_->waiters_->Prepare(request_->scope(), request_->key());
    response_->Clear();
    const absl::Status status = service_->service_->Begin(*request_, deadline_, response_);
    const absl::Time now = absl::Now();
    if (!status.ok() || response_->outcome() != idem::v1::BeginResponse::IN_PROGRESS ||
        id == 0 || now >= answer_by_) {
      // Done, or no room to wait (id 0: too many waiters, or shutting down).
      if (id != 0) service_->waiters_->Cancel(id);
      Answer(ToGrpcStatus(status));
      return;
    }
    lease_end_ = now + FromProtoDuration(response_->retry_after());
    bool cancelled;
    KeyWaiters::ParkResult parked = KeyWaiters::ParkResult::kNotified;
    {
      absl::MutexLock lock(&mu_);
      cancelled = cancelled_;
      if (!cancelled) {
        parked = service_->waiters_->Park(
            id, std::min(lease_end_ + kLeaseEndSlack, answer_by_), [this] { Wake(); });
        if (parked == KeyWaiters::ParkResult::kParked) waiter_ = id;
      }
    }
    if (cancelled) {
      service_->waiters_->Cancel(id);
      Answer(grpc::Status(grpc::StatusCode::CANCELLED, "call cancelled"));
    } else if (parked == KeyWaiters::ParkResult::kNotified) {
      Wake();  // The key changed while the statement ran: look again.
    }
  }

  void Wake() {
    {
      absl::MutexLock lock(&mu_);
      waiter_ = 0;
    }
    if (!service_->workers_->TrySchedule([this] { Try(); })) Answer(kOverloaded);
  }

  // Records the answer, then finishes.
  void Answer(const grpc::Status& status) {
    service_->RecordFinished("Begin", start_, *request_, status, *response_);
    Finish(status);
  }

  GrpcService* const service_;
  grpc::CallbackServerContext* const context_;
  const idem::v1::BeginRequest* const request_;
  idem::v1::BeginResponse* const response_;
  const absl::Time start_;
  const absl::Time deadline_;
  // When the wait ends: IN_PROGRESS is answered from then on.
  const absl::Time answer_by_;
  // Used by one try at a time (tries never overlap).
  bool tried_ = false;
  absl::Time lease_end_;  // Of the holder, as last seen (local clock).

  absl::Mutex mu_;
  KeyWaiters::Id waiter_ ABSL_GUARDED_BY(mu_) = 0;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

GrpcService::GrpcService(IdempotencyService* service, WorkerPool* workers,
                         KeyWaiters* waiters, RpcMetrics* metrics,
                         const Authorizer* authorizer)
    : service_(service),
      workers_(workers),
      waiters_(waiters),
      metrics_(metrics),
      authorizer_(authorizer) {}

template <typename Request, typename Response>
grpc::ServerUnaryReactor* GrpcService::Dispatch(
    const char* method, grpc::CallbackServerContext* context,
    const Request* request, Response* response,
    absl::Status (IdempotencyService::*method_fn)(const Request&, absl::Time,
                                                  Response*)) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const absl::Time start = absl::Now();
  const absl::Time deadline = CallDeadline(*context);
  // Records the answer, then finishes (after which `response` is gone).
  auto answer = [this, reactor, method, start, request, response](
                    const grpc::Status& status) {
    RecordFinished(method, start, *request, status, *response);
    reactor->Finish(status);
  };
  // Before any store work; on gRPC's thread (a SHA-256, no I/O).
  if (const absl::Status allowed = Authorize(*context, *request); !allowed.ok()) {
    answer(ToGrpcStatus(allowed));
    return reactor;
  }
  const bool queued = workers_->TrySchedule([=] {
    if (context->IsCancelled()) {
      answer(grpc::Status(grpc::StatusCode::CANCELLED, "call cancelled before it ran"));
      return;
    }
    if (absl::Now() >= deadline) {
      answer(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                          "deadline passed while the call was queued"));
      return;
    }
    answer(ToGrpcStatus((service_->*method_fn)(*request, deadline, response)));
  });
  if (!queued) {
    answer(kOverloaded);
  }
  return reactor;
}

grpc::ServerUnaryReactor* GrpcService::Begin(grpc::CallbackServerContext* context,
                                             const idem::v1::BeginRequest* request,
                                             idem::v1::BeginResponse* response) {
  // A Begin refused by Authorize() goes through Dispatch, which answers.
  const bool allowed = Authorize(*context, *request).ok();
  // Answered here, on gRPC's thread, when that needs no I/O (a cached
  // replay, or bad input): no worker hop.
  if (allowed) {
    const absl::Time start = absl::Now();
    absl::Status status;
    if (service_->TryBeginWithoutBlocking(*request, response, &status)) {
      grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
      const grpc::Status answer = ToGrpcStatus(status);
      RecordFinished("Begin", start, *request, answer, *response);
      reactor->Finish(answer);
      return reactor;
    }
  }
  if (allowed && request->has_wait() && RequestedWait(*request) > absl::ZeroDuration()) {
    auto* reactor = new WaitingBeginReactor(this, context, request, response);
    reactor->Start();
    return reactor;
  }
  // Group commit on: queued for the next batch from here, answered by the
  // thread that runs it; no thread waits for this call.
  if (allowed && service_->BeginsAsync()) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    const absl::Time start = absl::Now();
    service_->BeginAsync(*request, CallDeadline(*context), response,
                         [this, reactor, start, request, response](absl::Status status) {
                           const grpc::Status answer = ToGrpcStatus(status);
                           RecordFinished("Begin", start, *request, answer, *response);
                           reactor->Finish(answer);
                         });
    return reactor;
  }
  return Dispatch("Begin", context, request, response,
                  &IdempotencyService::Begin);
}

grpc::ServerUnaryReactor* GrpcService::BatchBegin(
    grpc::CallbackServerContext* context,
    const idem::v1::BatchBeginRequest* request,
    idem::v1::BatchBeginResponse* response) {
  return Dispatch("BatchBegin", context, request, response,
                  &IdempotencyService::BatchBegin);
}

grpc::ServerUnaryReactor* GrpcService::Complete(
    grpc::CallbackServerContext* context, const idem::v1::CompleteRequest* request,
    idem::v1::CompleteResponse* response) {
  return Dispatch("Complete", context, request, response,
                  &IdempotencyService::Complete);
}

grpc::ServerUnaryReactor* GrpcService::Fail(grpc::CallbackServerContext* context,
                                            const idem::v1::FailRequest* request,
                                            idem::v1::FailResponse* response) {
  return Dispatch("Fail", context, request, response,
                  &IdempotencyService::Fail);
}

grpc::ServerUnaryReactor* GrpcService::Get(grpc::CallbackServerContext* context,
                                           const idem::v1::GetRequest* request,
                                           idem::v1::GetResponse* response) {
  return Dispatch("Get", context, request, response,
                  &IdempotencyService::Get);
}

grpc::ServerUnaryReactor* GrpcService::ExtendLease(
    grpc::CallbackServerContext* context,
    const idem::v1::ExtendLeaseRequest* request,
    idem::v1::ExtendLeaseResponse* response) {
  return Dispatch("ExtendLease", context, request, response,
                  &IdempotencyService::ExtendLease);
}

}  // namespace idem
