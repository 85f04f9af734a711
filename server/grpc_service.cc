#include "server/grpc_service.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <utility>
#include <vector>

#include <grpcpp/impl/codegen/proto_utils.h>  // SerializationTraits for messages

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

// `bytes` parsed as a Request; nullopt when they are not one (malformed
// protobuf, or invalid UTF-8 in a string field: proto3's parser refuses
// it). `bytes` stays gRPC's: Deserialize consumes a reference copy.
template <typename Request>
std::optional<Request> ParseRequest(const grpc::ByteBuffer& bytes) {
  grpc::ByteBuffer copy(bytes);
  std::optional<Request> request(std::in_place);
  if (!grpc::SerializationTraits<Request>::Deserialize(&copy, &*request).ok()) {
    return std::nullopt;
  }
  return request;
}

template <typename Request>
grpc::Status UnparsableRequest() {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                      "request is not a valid " + Request::descriptor()->full_name() +
                          " (malformed protobuf or invalid UTF-8 in a string field)");
}

// Writes `response` to `bytes`: OK, or INTERNAL when it cannot.
template <typename Response>
grpc::Status SerializeResponse(const Response& response, grpc::ByteBuffer* bytes) {
  bool own_buffer;
  const grpc::Status status =
      grpc::SerializationTraits<Response>::Serialize(response, bytes, &own_buffer);
  if (status.ok()) return status;
  return grpc::Status(grpc::StatusCode::INTERNAL,
                      "could not serialize the " + Response::descriptor()->full_name() +
                          ": " + status.error_message());
}

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
grpc::Status GrpcService::Conclude(const char* method, absl::Time start,
                                   const Request& request, grpc::Status status,
                                   const Response& response,
                                   grpc::ByteBuffer* response_bytes) {
  if (status.ok()) status = SerializeResponse(response, response_bytes);
  const absl::Duration latency = absl::Now() - start;
  const std::string outcome = status.ok() ? OutcomeOf(response) : "";
  metrics_->Record(method, status, outcome, latency);
  if (status.ok()) RecordItems(metrics_, response);
  // DescribeRequest escapes the caller's strings: only for a line written.
  if (RpcLogWanted(status)) {
    LogRpc(method, DescribeRequest(request), status, outcome,
           status.ok() ? AttemptOf(response) : 0, latency);
  }
  return status;
}

// A unary call's parsed request and its response, from parsing until the
// answer. Answer() serializes the response (when OK) into gRPC's response
// bytes, records the call, deletes this, then finishes gRPC's default
// reactor: nothing reads the request or response after Finish.
template <typename Request, typename Response>
class GrpcService::UnaryCall {
 public:
  UnaryCall(GrpcService* service, const char* method, grpc::ServerUnaryReactor* reactor,
            grpc::ByteBuffer* response_bytes)
      : service_(service),
        method_(method),
        reactor_(reactor),
        response_bytes_(response_bytes),
        start_(absl::Now()) {}

  Request request;
  Response response;

  // Deletes this.
  void Answer(grpc::Status status) {
    status = service_->Conclude(method_, start_, request, std::move(status), response,
                                response_bytes_);
    grpc::ServerUnaryReactor* const reactor = reactor_;
    delete this;
    reactor->Finish(std::move(status));
  }

 private:
  GrpcService* const service_;
  const char* const method_;
  grpc::ServerUnaryReactor* const reactor_;
  grpc::ByteBuffer* const response_bytes_;
  const absl::Time start_;
};

// Runs a Begin with `wait` until it has an answer. Each try runs on a
// worker; between tries it is parked in KeyWaiters and holds no thread.
// Finish() happens exactly once: from a try, from OnCancel() when it removed
// the waiter (so no try is pending), or from a wake-up that cannot be
// queued. Owns the request and response until gRPC is done (OnDone).
class GrpcService::WaitingBeginReactor final : public grpc::ServerUnaryReactor {
 public:
  WaitingBeginReactor(GrpcService* service, grpc::CallbackServerContext* context,
                      idem::v1::BeginRequest request, grpc::ByteBuffer* response_bytes)
      : service_(service),
        context_(context),
        request_(std::move(request)),
        response_bytes_(response_bytes),
        start_(absl::Now()),
        deadline_(CallDeadline(*context)),
        answer_by_(std::min(absl::Now() + RequestedWait(request_),
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
      *response_.mutable_retry_after() =
          ToProtoDuration(std::max(lease_end_ - absl::Now(), absl::ZeroDuration()));
      Answer(grpc::Status::OK);
      return;
    }
    tried_ = true;
    // Registered before the statement looks at the key: a change that
    // lands while it runs is not lost (KeyWaiters::Park says so).
    const KeyWaiters::Id id = service_->waiters_->Prepare(request_.scope(), request_.key());
    response_.Clear();
    const absl::Status status = service_->service_->Begin(request_, deadline_, &response_);
    const absl::Time now = absl::Now();
    if (!status.ok() || response_.outcome() != idem::v1::BeginResponse::IN_PROGRESS ||
        id == 0 || now >= answer_by_) {
      // Done, or no room to wait (id 0: too many waiters, or shutting down).
      if (id != 0) service_->waiters_->Cancel(id);
      Answer(ToGrpcStatus(status));
      return;
    }
    lease_end_ = now + FromProtoDuration(response_.retry_after());
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

  // Serializes the response (when OK), records the answer, then finishes.
  void Answer(grpc::Status status) {
    Finish(service_->Conclude("Begin", start_, request_, std::move(status), response_,
                              response_bytes_));
  }

  GrpcService* const service_;
  grpc::CallbackServerContext* const context_;
  const idem::v1::BeginRequest request_;
  grpc::ByteBuffer* const response_bytes_;
  const absl::Time start_;
  const absl::Time deadline_;
  // When the wait ends: IN_PROGRESS is answered from then on.
  const absl::Time answer_by_;
  // Used by one try at a time (tries never overlap).
  bool tried_ = false;
  absl::Time lease_end_;  // Of the holder, as last seen (local clock).
  idem::v1::BeginResponse response_;

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
    std::optional<Request> request, grpc::ByteBuffer* response_bytes,
    absl::Status (IdempotencyService::*method_fn)(const Request&, absl::Time,
                                                  Response*)) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  auto* call = new UnaryCall<Request, Response>(this, method, reactor, response_bytes);
  if (!request.has_value()) {
    call->Answer(UnparsableRequest<Request>());
    return reactor;
  }
  call->request = *std::move(request);
  const absl::Time deadline = CallDeadline(*context);
  // Before any store work; on gRPC's thread (a SHA-256, no I/O).
  if (const absl::Status allowed = Authorize(*context, call->request); !allowed.ok()) {
    call->Answer(ToGrpcStatus(allowed));
    return reactor;
  }
  // After Answer() the call is gone.
  const bool queued = workers_->TrySchedule([=] {
    if (context->IsCancelled()) {
      call->Answer(grpc::Status(grpc::StatusCode::CANCELLED, "call cancelled before it ran"));
      return;
    }
    if (absl::Now() >= deadline) {
      call->Answer(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                                "deadline passed while the call was queued"));
      return;
    }
    call->Answer(
        ToGrpcStatus((service_->*method_fn)(call->request, deadline, &call->response)));
  });
  if (!queued) {
    call->Answer(kOverloaded);
  }
  return reactor;
}

grpc::ServerUnaryReactor* GrpcService::Begin(grpc::CallbackServerContext* context,
                                             const grpc::ByteBuffer* request,
                                             grpc::ByteBuffer* response) {
  std::optional<idem::v1::BeginRequest> begin =
      ParseRequest<idem::v1::BeginRequest>(*request);
  // A Begin refused by Authorize() or unparsable goes through Dispatch,
  // which answers.
  const bool allowed = begin.has_value() && Authorize(*context, *begin).ok();
  const bool waits =
      allowed && begin->has_wait() && RequestedWait(*begin) > absl::ZeroDuration();
  // Group commit on: queued for the next batch from here, answered by the
  // thread that runs it; no thread waits for this call. BeginAsync answers
  // bad input and cached replays itself, inline on this thread.
  if (allowed && !waits && service_->BeginsAsync()) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    auto* call = new UnaryCall<idem::v1::BeginRequest, idem::v1::BeginResponse>(
        this, "Begin", reactor, response);
    call->request = *std::move(begin);
    // The callback runs exactly once, perhaps before BeginAsync returns;
    // Answer() deletes the call.
    service_->BeginAsync(call->request, CallDeadline(*context), &call->response,
                         [call](absl::Status status) { call->Answer(ToGrpcStatus(status)); });
    return reactor;
  }
  // Answered here, on gRPC's thread, when that needs no I/O (a cached
  // replay, or bad input): no worker hop.
  if (allowed) {
    const absl::Time start = absl::Now();
    absl::Status status;
    idem::v1::BeginResponse answered;
    if (service_->TryBeginWithoutBlocking(*begin, &answered, &status)) {
      grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
      reactor->Finish(
          Conclude("Begin", start, *begin, ToGrpcStatus(status), answered, response));
      return reactor;
    }
  }
  if (waits) {
    auto* reactor = new WaitingBeginReactor(this, context, *std::move(begin), response);
    reactor->Start();
    return reactor;
  }
  return Dispatch("Begin", context, std::move(begin), response,
                  &IdempotencyService::Begin);
}

grpc::ServerUnaryReactor* GrpcService::BatchBegin(grpc::CallbackServerContext* context,
                                                  const grpc::ByteBuffer* request,
                                                  grpc::ByteBuffer* response) {
  return Dispatch("BatchBegin", context,
                  ParseRequest<idem::v1::BatchBeginRequest>(*request), response,
                  &IdempotencyService::BatchBegin);
}

grpc::ServerUnaryReactor* GrpcService::Complete(grpc::CallbackServerContext* context,
                                                const grpc::ByteBuffer* request,
                                                grpc::ByteBuffer* response) {
  return Dispatch("Complete", context, ParseRequest<idem::v1::CompleteRequest>(*request),
                  response, &IdempotencyService::Complete);
}

grpc::ServerUnaryReactor* GrpcService::Fail(grpc::CallbackServerContext* context,
                                            const grpc::ByteBuffer* request,
                                            grpc::ByteBuffer* response) {
  return Dispatch("Fail", context, ParseRequest<idem::v1::FailRequest>(*request),
                  response, &IdempotencyService::Fail);
}

grpc::ServerUnaryReactor* GrpcService::Get(grpc::CallbackServerContext* context,
                                           const grpc::ByteBuffer* request,
                                           grpc::ByteBuffer* response) {
  return Dispatch("Get", context, ParseRequest<idem::v1::GetRequest>(*request), response,
                  &IdempotencyService::Get);
}

grpc::ServerUnaryReactor* GrpcService::ExtendLease(grpc::CallbackServerContext* context,
                                                   const grpc::ByteBuffer* request,
                                                   grpc::ByteBuffer* response) {
  return Dispatch("ExtendLease", context,
                  ParseRequest<idem::v1::ExtendLeaseRequest>(*request), response,
                  &IdempotencyService::ExtendLease);
}

}  // namespace idem
