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

// Calls of each method kept requested on each queue: more arriving at once
// wait in gRPC (for the next request) a moment longer, none is refused.
constexpr int kRequestedBegins = 32;
constexpr int kRequestedCalls = 4;  // Of each other method.

// A call without a deadline still gets one: no store call waits forever.
constexpr absl::Duration kDefaultCallDeadline = absl::Seconds(30);

// A waiting Begin stops waiting this long before the caller's deadline, so
// its last try (which may take a lapsed lease over) is answered in time.
constexpr absl::Duration kWaitAnswerMargin = absl::Milliseconds(250);
// Wake this long after the holder's lease ends, so the retry can take over.
constexpr absl::Duration kLeaseEndSlack = absl::Milliseconds(5);

absl::Time CallDeadline(const grpc::ServerContextBase& context) {
  const auto deadline = context.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) {
    return absl::Now() + kDefaultCallDeadline;
  }
  return absl::FromChrono(deadline);
}

const grpc::Status kOverloaded(grpc::StatusCode::RESOURCE_EXHAUSTED,
                               "idemd is overloaded (work queue full); retry "
                               "with backoff");

// Parses `bytes` into `request`; false when they are not a Request
// (malformed protobuf, or invalid UTF-8 in a string field: proto3's parser
// refuses it). Deserialize consumes `bytes`.
template <typename Request>
bool ParseRequest(grpc::ByteBuffer* bytes, Request* request) {
  return grpc::SerializationTraits<Request>::Deserialize(bytes, request).ok();
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
absl::Status GrpcService::Authorize(const grpc::ServerContextBase& context,
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

// One call on a completion queue, from being requested until gRPC is done
// with it. Its three tags come back on its queue, so every event of a call
// is handled on that queue's one thread: kArrived (the call came, or with
// !ok the server is shutting down and none will), kFinished (the answer
// was sent or could not be) and kDone (the call ended; IsCancelled() may be
// asked from then on). The call deletes itself after both kFinished and
// kDone. A derived call requests itself in its constructor (RequestCall()),
// requests its successor when it arrives (RequestNext()), and answers once,
// from any thread, with Finish(); nothing may touch it after Finish.
class GrpcService::Call {
 public:
  using RequestFn = void (GrpcService::*)(grpc::ServerContext*, grpc::ByteBuffer*,
                                         grpc::ServerAsyncResponseWriter<grpc::ByteBuffer>*,
                                         grpc::CompletionQueue*,
                                         grpc::ServerCompletionQueue*, void*);

  virtual ~Call() = default;

  // Handles the event `tag` (a Call's tag) returned from a queue with `ok`.
  static void HandleEvent(void* tag, bool ok) {
    Tag* t = static_cast<Tag*>(tag);
    t->call->OnEvent(t->event, ok);
  }

 protected:
  Call(GrpcService* service, grpc::ServerCompletionQueue* queue)
      : service_(service), queue_(queue) {}

  void RequestCall(RequestFn request) {
    context_.AsyncNotifyWhenDone(&done_);
    (service_->*request)(&context_, &request_bytes_, &responder_, queue_, queue_,
                         &arrived_);
  }

  // Requests a new call of the same method on queue_.
  virtual void RequestNext() = 0;
  // The call has arrived: parse request_bytes_ and answer (here or later).
  virtual void Arrived() = 0;
  // The caller cancelled (or the deadline passed) before the answer.
  virtual void Cancelled() {}

  // Sends `status`, with response_bytes_ when OK. Once; `this` may be
  // deleted by the time it returns.
  void Finish(const grpc::Status& status) {
    if (status.ok()) {
      responder_.Finish(response_bytes_, status, &finished_);
    } else {
      responder_.FinishWithError(status, &finished_);
    }
  }

  bool cancelled() const { return cancelled_.load(std::memory_order_acquire); }

  // What a call taken off the worker queue answers instead of running:
  // CANCELLED when it was cancelled, DEADLINE_EXCEEDED when `deadline`
  // passed while it was queued; nullopt when it should run.
  std::optional<grpc::Status> StaleWhenRun(absl::Time deadline) const {
    if (cancelled()) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "call cancelled before it ran");
    }
    if (absl::Now() >= deadline) {
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                          "deadline passed while the call was queued");
    }
    return std::nullopt;
  }

  GrpcService* const service_;
  grpc::ServerCompletionQueue* const queue_;
  grpc::ServerContext context_;
  grpc::ByteBuffer request_bytes_;
  grpc::ByteBuffer response_bytes_;

 private:
  enum class Event { kArrived, kFinished, kDone };
  struct Tag {
    Call* call;
    Event event;
  };

  void OnEvent(Event event, bool ok) {
    switch (event) {
      case Event::kArrived:
        // Not ok: the server is shutting down; no call came and kDone
        // will not come either.
        if (!ok) {
          delete this;
          return;
        }
        RequestNext();
        Arrived();
        return;
      case Event::kDone:
        if (context_.IsCancelled()) {
          cancelled_.store(true, std::memory_order_release);
          Cancelled();
        }
        break;
      case Event::kFinished:
        break;
    }
    if (--events_left_ == 0) delete this;
  }

  grpc::ServerAsyncResponseWriter<grpc::ByteBuffer> responder_{&context_};
  Tag arrived_{this, Event::kArrived};
  Tag finished_{this, Event::kFinished};
  Tag done_{this, Event::kDone};
  int events_left_ = 2;  // kFinished and kDone; only queue_'s thread counts.
  std::atomic<bool> cancelled_{false};
};

// What a unary method other than Begin is: its name, how to request its
// calls, and what runs it on a worker.
template <typename Request, typename Response>
struct GrpcService::UnaryMethod {
  const char* name;
  Call::RequestFn request;
  absl::Status (IdempotencyService::*run)(const Request&, absl::Time, Response*);
};

// A call of a method other than Begin: parsed and authorized on the
// queue's thread, then run on a worker (IdempotencyService blocks on the
// store), which answers.
template <typename Request, typename Response>
class GrpcService::UnaryCall final : public Call {
 public:
  UnaryCall(GrpcService* service, grpc::ServerCompletionQueue* queue,
            const UnaryMethod<Request, Response>* method)
      : Call(service, queue), method_(method) {
    RequestCall(method->request);
  }

 private:
  void RequestNext() override { new UnaryCall(service_, queue_, method_); }

  void Arrived() override {
    start_ = absl::Now();
    if (!ParseRequest(&request_bytes_, &request_)) {
      Answer(UnparsableRequest<Request>());
      return;
    }
    // Before any store work (a SHA-256, no I/O).
    if (const absl::Status allowed = service_->Authorize(context_, request_);
        !allowed.ok()) {
      Answer(ToGrpcStatus(allowed));
      return;
    }
    const absl::Time deadline = CallDeadline(context_);
    if (!service_->workers_->TrySchedule([this, deadline] { Run(deadline); })) {
      Answer(kOverloaded);
    }
  }

  void Run(absl::Time deadline) {
    if (std::optional<grpc::Status> stale = StaleWhenRun(deadline)) {
      Answer(*std::move(stale));
      return;
    }
    Answer(ToGrpcStatus(
        (service_->service_->*method_->run)(request_, deadline, &response_)));
  }

  void Answer(grpc::Status status) {
    Finish(service_->Conclude(method_->name, start_, request_, std::move(status),
                              response_, &response_bytes_));
  }

  const UnaryMethod<Request, Response>* const method_;
  absl::Time start_;
  Request request_;
  Response response_;
};

// A Begin. Answered on the queue's thread when that needs no I/O (bad
// input, a cached replay); with group commit, queued for the next batch
// and answered by the thread that runs it; otherwise run on a worker.
//
// A Begin with `wait` runs until it has an answer: each try runs on a
// worker; between tries it is parked in KeyWaiters and holds no thread. It
// answers exactly once: from a try, from Cancelled() when it removed the
// waiter (so no try is pending), or from a wake-up that cannot be queued.
class GrpcService::BeginCall final : public Call {
 public:
  BeginCall(GrpcService* service, grpc::ServerCompletionQueue* queue)
      : Call(service, queue) {
    RequestCall(&GrpcService::RequestBegin);
  }

 private:
  void RequestNext() override { new BeginCall(service_, queue_); }

  void Arrived() override {
    start_ = absl::Now();
    deadline_ = CallDeadline(context_);
    if (!ParseRequest(&request_bytes_, &request_)) {
      Answer(UnparsableRequest<idem::v1::BeginRequest>());
      return;
    }
    if (const absl::Status allowed = service_->Authorize(context_, request_);
        !allowed.ok()) {
      Answer(ToGrpcStatus(allowed));
      return;
    }
    IdempotencyService* const idem = service_->service_;
    if (request_.has_wait() && RequestedWait(request_) > absl::ZeroDuration()) {
      answer_by_ = std::min(absl::Now() + RequestedWait(request_),
                            deadline_ - kWaitAnswerMargin);
      if (!service_->workers_->TrySchedule([this] { Try(); })) Answer(kOverloaded);
      return;
    }
    if (idem->BeginsAsync()) {
      // The callback runs exactly once, perhaps before BeginAsync returns
      // (bad input, a cached replay).
      idem->BeginAsync(request_, deadline_, &response_,
                       [this](absl::Status status) { Answer(ToGrpcStatus(status)); });
      return;
    }
    absl::Status status;
    if (idem->TryBeginWithoutBlocking(request_, &response_, &status)) {
      Answer(ToGrpcStatus(status));
      return;
    }
    if (!service_->workers_->TrySchedule([this] { RunOnce(); })) Answer(kOverloaded);
  }

  void RunOnce() {
    if (std::optional<grpc::Status> stale = StaleWhenRun(deadline_)) {
      Answer(*std::move(stale));
      return;
    }
    Answer(ToGrpcStatus(service_->service_->Begin(request_, deadline_, &response_)));
  }

  // Answer() is never called under mu_: the call may be deleted soon after.
  void Cancelled() override {
    bool removed = false;
    {
      absl::MutexLock lock(&mu_);
      removed = waiter_ != 0 && service_->waiters_->Cancel(waiter_);
      if (removed) waiter_ = 0;
    }
    if (removed) {
      Answer(grpc::Status(grpc::StatusCode::CANCELLED, "call cancelled while waiting"));
    }
  }

  void Try() {
    if (cancelled()) {
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
    KeyWaiters::ParkResult parked = KeyWaiters::ParkResult::kNotified;
    bool cancelled_now;
    {
      absl::MutexLock lock(&mu_);
      // Read under mu_: Cancelled() sets the flag before it takes mu_, so
      // either it sees this waiter or this sees the flag.
      cancelled_now = cancelled();
      if (!cancelled_now) {
        parked = service_->waiters_->Park(
            id, std::min(lease_end_ + kLeaseEndSlack, answer_by_), [this] { Wake(); });
        if (parked == KeyWaiters::ParkResult::kParked) waiter_ = id;
      }
    }
    if (cancelled_now) {
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

  // Serializes the response (when OK), records the answer, then sends it.
  void Answer(grpc::Status status) {
    Finish(service_->Conclude("Begin", start_, request_, std::move(status), response_,
                              &response_bytes_));
  }

  absl::Time start_;
  absl::Time deadline_;
  idem::v1::BeginRequest request_;
  idem::v1::BeginResponse response_;
  // A waiting Begin: when the wait ends (IN_PROGRESS is answered from then on).
  absl::Time answer_by_;
  // Used by one try at a time (tries never overlap).
  bool tried_ = false;
  absl::Time lease_end_;  // Of the holder, as last seen (local clock).

  absl::Mutex mu_;
  KeyWaiters::Id waiter_ ABSL_GUARDED_BY(mu_) = 0;
};

GrpcService::GrpcService(IdempotencyService* service, WorkerPool* workers,
                         KeyWaiters* waiters, RpcMetrics* metrics,
                         const Authorizer* authorizer)
    : service_(service),
      workers_(workers),
      waiters_(waiters),
      metrics_(metrics),
      authorizer_(authorizer) {}

void GrpcService::RequestCalls(grpc::ServerCompletionQueue* queue) {
  namespace v1 = idem::v1;
  static const UnaryMethod<v1::BatchBeginRequest, v1::BatchBeginResponse> kBatchBegin{
      "BatchBegin", &GrpcService::RequestBatchBegin, &IdempotencyService::BatchBegin};
  static const UnaryMethod<v1::CompleteRequest, v1::CompleteResponse> kComplete{
      "Complete", &GrpcService::RequestComplete, &IdempotencyService::Complete};
  static const UnaryMethod<v1::FailRequest, v1::FailResponse> kFail{
      "Fail", &GrpcService::RequestFail, &IdempotencyService::Fail};
  static const UnaryMethod<v1::GetRequest, v1::GetResponse> kGet{
      "Get", &GrpcService::RequestGet, &IdempotencyService::Get};
  static const UnaryMethod<v1::ExtendLeaseRequest, v1::ExtendLeaseResponse> kExtendLease{
      "ExtendLease", &GrpcService::RequestExtendLease, &IdempotencyService::ExtendLease};
  for (int i = 0; i < kRequestedBegins; ++i) new BeginCall(this, queue);
  for (int i = 0; i < kRequestedCalls; ++i) {
    new UnaryCall(this, queue, &kBatchBegin);
    new UnaryCall(this, queue, &kComplete);
    new UnaryCall(this, queue, &kFail);
    new UnaryCall(this, queue, &kGet);
    new UnaryCall(this, queue, &kExtendLease);
  }
}

void GrpcService::Serve(grpc::ServerCompletionQueue* queue) {
  RequestCalls(queue);
  void* tag;
  bool ok;
  while (queue->Next(&tag, &ok)) Call::HandleEvent(tag, ok);
}

}  // namespace idem
