// Client::RunOnce: Begin -> work (under a heartbeat) -> Complete or Fail,
// with waiting, backoff and retries inside one deadline. The rules are in
// include/idem/run_once.h.
#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "client/backoff.h"
#include "client/error_text.h"
#include "client/heartbeat.h"
#include "client/proto_duration.h"
#include "idem/client.h"

namespace idem {

namespace {

using idem::v1::BeginResponse;

// The contract's ceiling on BeginRequest.wait.
constexpr absl::Duration kMaxServerWait = absl::Seconds(60);
// The shortest pause after IN_PROGRESS, whatever retry_after says.
constexpr absl::Duration kMinInProgressPause = absl::Milliseconds(10);
// The server's lease when the request sets none.
constexpr absl::Duration kDefaultLeaseTtl = absl::Seconds(30);

// An idem answer after which the same call may simply be sent again.
// CANCELLED too: RunOnce never cancels its own calls, so a CANCELLED comes
// from the server side, where gRPC answers it to a call that reached an
// idemd as it began shutting down (SIGTERM), before any handler ran
// (grpc/grpc#41785). Another replica, or the restarted one, can take it.
bool IsTransientRpcStatus(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable ||
         code == absl::StatusCode::kResourceExhausted ||
         code == absl::StatusCode::kDeadlineExceeded ||
         code == absl::StatusCode::kCancelled;
}

// 128 random bits as 32 hex digits: this invocation's BeginRequest.owner.
std::string NewOwnerId() {
  absl::BitGen random;
  return absl::StrCat(absl::Hex(absl::Uniform<uint64_t>(random), absl::kZeroPad16),
                      absl::Hex(absl::Uniform<uint64_t>(random), absl::kZeroPad16));
}

}  // namespace

bool IsRetryableWorkStatus(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable ||
         code == absl::StatusCode::kDeadlineExceeded ||
         code == absl::StatusCode::kAborted ||
         code == absl::StatusCode::kResourceExhausted;
}

// One RunOnce invocation. Lives on the calling thread's stack; only the
// Heartbeat it starts runs on another thread.
class RunOnceCall {
 public:
  RunOnceCall(Client* client, absl::string_view scope, absl::string_view key,
              absl::string_view request_bytes, const Work& work,
              const RunOnceOptions& options)
      : client_(client),
        scope_(scope),
        key_(key),
        work_(work),
        options_(options),
        deadline_(absl::Now() + options.deadline),
        backoff_(options.initial_backoff, options.max_backoff) {
    begin_.set_scope(scope_);
    begin_.set_key(key_);
    begin_.set_request_hash(Client::RequestHash(request_bytes));
    if (options_.lease_ttl > absl::ZeroDuration()) {
      *begin_.mutable_lease_ttl() = ToProtoDuration(options_.lease_ttl);
    }
    if (options_.retention > absl::ZeroDuration()) {
      *begin_.mutable_retention() = ToProtoDuration(options_.retention);
    }
    begin_.set_owner(NewOwnerId());
  }

  absl::StatusOr<RunOnceResult> Run() {
    // For the DEADLINE_EXCEEDED message: what kept us, and idem's last error.
    std::string waiting_for = "before Begin got an answer";
    absl::Status last_error;
    while (true) {
      const absl::Time now = absl::Now();
      if (now >= deadline_) return DeadlineExceeded(waiting_for, last_error);
      const absl::Duration wait = std::max(
          absl::ZeroDuration(), std::min({options_.wait, deadline_ - now, kMaxServerWait}));
      *begin_.mutable_wait() = ToProtoDuration(wait);
      absl::StatusOr<BeginResponse> begun = client_->BeginUntil(
          begin_, std::min(deadline_, now + wait + client_->options_.deadline));
      if (!begun.ok()) {
        // A Begin answers ABORTED only for "retry the call" (the key changed
        // too often under it); unlike Complete's ABORTED, no lease is lost.
        if (!IsTransientRpcStatus(begun.status().code()) &&
            begun.status().code() != absl::StatusCode::kAborted) {
          return Error("Begin", begun.status());
        }
        last_error = begun.status();
        Pause(absl::InfiniteDuration());
        continue;
      }
      last_error = absl::OkStatus();
      switch (begun->outcome()) {
        case BeginResponse::ACQUIRED:
          return RunWork(*begun);
        case BeginResponse::COMPLETED:
        case BeginResponse::FAILED:
          return RunOnceResult{/*executed=*/false, std::move(*begun->mutable_record())};
        case BeginResponse::IN_PROGRESS: {
          waiting_for = "while another caller held the key (IN_PROGRESS)";
          // Once the holder's lease has run out, the next Begin takes over:
          // no need to sleep longer than that (but never spin).
          const absl::Duration retry_after =
              absl::Seconds(begun->retry_after().seconds()) +
              absl::Nanoseconds(begun->retry_after().nanos());
          Pause(retry_after > absl::ZeroDuration()
                    ? std::max(retry_after, kMinInProgressPause)
                    : absl::InfiniteDuration());
          continue;
        }
        default:
          return Error("Begin", absl::InternalError(absl::StrCat(
                                    "unexpected outcome ", begun->outcome())));
      }
    }
  }

 private:
  // We hold the key: run work under a heartbeat, then record its outcome.
  absl::StatusOr<RunOnceResult> RunWork(const BeginResponse& begun) {
    const int64_t token = begun.lease_token();
    if (token <= 0) {
      return Error("Begin", absl::InternalError(absl::StrCat(
                                "ACQUIRED came with lease_token ", token)));
    }
    Lease lease(token, begun.record().attempt());
    const absl::Time work_start = absl::Now();
    absl::StatusOr<WorkResult> result = RunUnderHeartbeat(&lease);
    // The deadline does not count work's own time, and recording what work
    // did always gets at least one full call's time.
    const absl::Time record_deadline =
        std::max(deadline_ + (absl::Now() - work_start),
                 absl::Now() + client_->options_.deadline);
    if (lease.lost()) return LeaseLost(token, "while work ran");

    if (result.ok()) {
      idem::v1::CompleteRequest complete;
      complete.set_scope(scope_);
      complete.set_key(key_);
      complete.set_lease_token(token);
      complete.set_response(std::move(result->response));
      complete.set_response_code(result->response_code);
      for (auto& [name, value] : result->response_metadata) {
        (*complete.mutable_response_metadata())[name] = value;
      }
      absl::StatusOr<idem::v1::Record> record = RetryTransient(
          [&](absl::Time d) { return client_->CompleteUntil(complete, d); },
          record_deadline);
      if (!record.ok()) {
        if (record.status().code() == absl::StatusCode::kAborted) {
          return LeaseLost(token, "before Complete");
        }
        return Error("Complete", record.status());
      }
      return RunOnceResult{/*executed=*/true, *std::move(record)};
    }

    const absl::Status& failure = result.status();
    const bool retryable = IsRetryableWorkStatus(failure.code());
    idem::v1::FailRequest fail;
    fail.set_scope(scope_);
    fail.set_key(key_);
    fail.set_lease_token(token);
    fail.set_error(ToStorableError(failure.message()));
    fail.set_retryable(retryable);
    fail.set_response_code(static_cast<int32_t>(failure.code()));
    absl::StatusOr<idem::v1::Record> record = RetryTransient(
        [&](absl::Time d) { return client_->FailUntil(fail, d); }, record_deadline);
    if (retryable) {
      // The caller retries at its level either way; if the key could not be
      // released, it frees itself when the lease runs out.
      return failure;
    }
    if (!record.ok()) {
      if (record.status().code() == absl::StatusCode::kAborted) {
        return LeaseLost(token, "before Fail");
      }
      return Error("Fail", record.status());
    }
    return RunOnceResult{/*executed=*/true, *std::move(record)};
  }

  absl::StatusOr<WorkResult> RunUnderHeartbeat(Lease* lease) {
    const absl::Duration ttl =
        options_.lease_ttl > absl::ZeroDuration() ? options_.lease_ttl : kDefaultLeaseTtl;
    const absl::Duration interval = options_.heartbeat_interval > absl::ZeroDuration()
                                        ? options_.heartbeat_interval
                                        : ttl / 2;
    idem::v1::ExtendLeaseRequest extend;
    extend.set_scope(scope_);
    extend.set_key(key_);
    extend.set_lease_token(lease->token);
    *extend.mutable_lease_ttl() = ToProtoDuration(ttl);
    // Heartbeats run as long as work does, past the RunOnce deadline too;
    // each call is bounded by the heartbeat interval instead.
    Heartbeat heartbeat(
        [this, &extend](absl::Time d) {
          return client_
              ->ExtendLeaseUntil(extend,
                                 std::min(d, absl::Now() + client_->options_.deadline))
              .status();
        },
        interval, lease);
    return work_(*lease);
  }  // ~Heartbeat stops and joins its thread, on every path.

  // Calls rpc(call_deadline) until it answers anything but a transient
  // error, or `deadline` passes (then the last answer).
  template <typename Rpc>
  auto RetryTransient(const Rpc& rpc, absl::Time deadline) -> decltype(rpc(deadline)) {
    Backoff backoff(options_.initial_backoff, options_.max_backoff);
    while (true) {
      auto answer = rpc(std::min(deadline, absl::Now() + client_->options_.deadline));
      const absl::Duration left = deadline - absl::Now();
      if (answer.ok() || !IsTransientRpcStatus(answer.status().code()) ||
          left <= absl::ZeroDuration()) {
        return answer;
      }
      absl::SleepFor(std::min(backoff.Next(), left));
    }
  }

  // Sleeps the next backoff delay, at most `cap`, never past the deadline.
  void Pause(absl::Duration cap) {
    absl::SleepFor(std::max(absl::ZeroDuration(),
                            std::min({backoff_.Next(), cap, deadline_ - absl::Now()})));
  }

  std::string Where() const { return absl::StrCat("idem RunOnce(", scope_, ", ", key_, ")"); }

  absl::Status Error(absl::string_view step, const absl::Status& status) const {
    return absl::Status(status.code(), absl::StrCat(Where(), ": ", step, " failed: ",
                                                    status.message()));
  }

  absl::Status DeadlineExceeded(absl::string_view waiting_for,
                                const absl::Status& last_error) const {
    return absl::DeadlineExceededError(absl::StrCat(
        Where(), ": deadline of ", absl::FormatDuration(options_.deadline), " passed ",
        waiting_for,
        last_error.ok() ? "" : absl::StrCat("; last Begin error: ", last_error.ToString())));
  }

  absl::Status LeaseLost(int64_t token, absl::string_view when) const {
    return absl::AbortedError(absl::StrCat(
        Where(), ": lease ", token, " was lost ", when,
        " (it ran out and another caller took over, or the key expired); the "
        "work's result was not recorded"));
  }

  // Constant after construction.
  Client* const client_;
  const std::string scope_;
  const std::string key_;
  const Work& work_;
  const RunOnceOptions& options_;
  const absl::Time deadline_;

  idem::v1::BeginRequest begin_;
  Backoff backoff_;
};

absl::StatusOr<RunOnceResult> Client::RunOnce(absl::string_view scope,
                                              absl::string_view key,
                                              absl::string_view request_bytes,
                                              const Work& work,
                                              const RunOnceOptions& options) {
  if (!work) return absl::InvalidArgumentError("idem RunOnce: work is empty");
  return RunOnceCall(this, scope, key, request_bytes, work, options).Run();
}

}  // namespace idem
