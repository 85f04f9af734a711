#include "tests/chaos/chaos_worker.h"

#include <utility>

#include <grpcpp/client_context.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"

namespace idem::chaos {

namespace {

using idem::v1::BeginRequest;
using idem::v1::BeginResponse;
using idem::v1::CompleteRequest;
using idem::v1::CompleteResponse;
using idem::v1::FailRequest;
using idem::v1::FailResponse;
using idem::v1::Record;

// Client::RunOnce's whole budget (waiting for other holders included).
constexpr absl::Duration kRunOnceDeadline = absl::Seconds(10);
// ClientOptions::deadline of every worker's Client: each RPC of RunOnce.
constexpr absl::Duration kRpcDeadline = absl::Seconds(4);
// Raw calls: deadline, and Begin's server-side wait within it.
constexpr absl::Duration kRawDeadline = absl::Seconds(3);
constexpr absl::Duration kRawWait = absl::Seconds(1);
// Longest time an effect transaction holds the key's row lock.
constexpr absl::Duration kMaxHold = absl::Milliseconds(30);

google::protobuf::Duration ProtoDuration(absl::Duration d) {
  google::protobuf::Duration p;
  p.set_seconds(absl::ToInt64Seconds(d));
  p.set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(d % absl::Seconds(1))));
  return p;
}

// Codes a caller must be ready for under faults (retry at some level).
bool ExpectedUnderFaults(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAVAILABLE ||
         code == grpc::StatusCode::DEADLINE_EXCEEDED ||
         code == grpc::StatusCode::ABORTED ||
         code == grpc::StatusCode::RESOURCE_EXHAUSTED;
}

// Starts `start(context, done)` (a callback-API call) and cancels it after
// `cancel_after` unless it finished by then. Returns its status; sets
// *cancelled when TryCancel was called.
template <typename Start>
grpc::Status CallCancellable(grpc::ClientContext* context, absl::Duration cancel_after,
                             bool* cancelled, Start start) {
  absl::Notification done;
  grpc::Status status;
  start(context, [&](grpc::Status s) {
    status = std::move(s);
    done.Notify();
  });
  *cancelled = false;
  if (!done.WaitForNotificationWithTimeout(cancel_after)) {
    context->TryCancel();
    *cancelled = true;
  }
  done.WaitForNotification();
  return status;
}

// A uniformly random duration in [0, max).
absl::Duration UpTo(absl::BitGen& random, absl::Duration max) {
  return absl::Microseconds(
      absl::Uniform<int64_t>(random, 0, absl::ToInt64Microseconds(max)));
}

ClientOptions WorkerClientOptions() {
  ClientOptions options;
  options.deadline = kRpcDeadline;
  return options;
}

}  // namespace

std::string KeyName(int key) { return absl::StrCat("k", key); }
std::string RequestBytes(int key) { return absl::StrCat("chaos request ", key); }
std::string EffectResponse(int64_t effect_id) { return absl::StrCat("effect:", effect_id); }

int KeyPicker::Next(absl::BitGen& random) {
  const int64_t n = taken_.fetch_add(1);
  return static_cast<int>((n / visits_ + absl::Uniform(random, 0, window_)) % keys_);
}

ChaosWorker::ChaosWorker(int id, std::shared_ptr<grpc::Channel> channel,
                         const std::string& effects_url, ChaosJournal* journal,
                         WorkerOptions options)
    : id_(id),
      channel_(channel),
      client_(channel, WorkerClientOptions()),
      stub_(idem::v1::Idempotency::NewStub(channel)),
      effect_(effects_url, options.scope, options.effect_mode),
      journal_(journal),
      options_(std::move(options)) {}

void ChaosWorker::Run(KeyPicker* keys, const std::atomic<bool>& stop) {
  while (!stop.load()) {
    const int key = keys->Next(random_);
    journal_->NoteOperation();
    if (absl::Bernoulli(random_, options_.raw_rpcs)) {
      RawOperation(key);
    } else {
      RunOnceOperation(key, absl::Bernoulli(random_, options_.sleep_past_lease))
          .IgnoreError();
    }
  }
}

absl::Status ChaosWorker::DriveToCompletion(int key, absl::Time give_up) {
  absl::Status last;
  while (absl::Now() < give_up) {
    journal_->NoteOperation();
    last = RunOnceOperation(key, /*sleep_past_lease=*/false);
    if (last.ok()) return last;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return absl::DeadlineExceededError(
      absl::StrCat(KeyName(key), " never completed; last: ", last.ToString()));
}

absl::StatusOr<std::string> ChaosWorker::Effect(int key, int64_t token,
                                                absl::Duration hold) {
  absl::StatusOr<EffectResult> effect = effect_.Apply(KeyName(key), token, id_, hold);
  if (!effect.ok()) {
    if (effect.status().code() == absl::StatusCode::kAborted) {
      journal_->NoteFault(Fault::kLeaseExpiry);  // The fence refused us.
    }
    return effect.status();
  }
  return EffectResponse(effect->effect_id);
}

absl::Status ChaosWorker::RunOnceOperation(int key, bool sleep_past_lease) {
  RunOnceOptions options;
  options.lease_ttl = options_.lease_ttl;
  options.deadline = kRunOnceDeadline;
  options.wait = absl::Seconds(2);
  options.initial_backoff = absl::Milliseconds(20);
  options.max_backoff = absl::Milliseconds(500);
  // Sleepers work without a heartbeat: their lease runs out mid-work.
  const bool sleep_first = sleep_past_lease && absl::Bernoulli(random_, 0.5);
  if (sleep_past_lease) options.heartbeat_interval = absl::InfiniteDuration();
  const absl::Duration oversleep = options_.lease_ttl + absl::Milliseconds(300);
  const absl::Duration hold = UpTo(random_, kMaxHold);

  absl::Duration work_time;
  const absl::Time start = absl::Now();
  absl::StatusOr<RunOnceResult> run = client_.RunOnce(
      options_.scope, KeyName(key), RequestBytes(key),
      [&](const Lease& lease) -> absl::StatusOr<WorkResult> {
        const absl::Time work_start = absl::Now();
        // The ACQUIRED answer was in hand by now.
        journal_->NoteAcquired(key, lease.token, work_start);
        if (sleep_first) absl::SleepFor(oversleep);
        absl::StatusOr<std::string> response = Effect(key, lease.token, hold);
        if (sleep_past_lease && !sleep_first) absl::SleepFor(oversleep);
        work_time = absl::Now() - work_start;
        if (!response.ok()) return response.status();
        return WorkResult{*std::move(response), 200, {}};
      },
      options);
  // RunOnce's contract: its deadline, not counting work; recording the
  // outcome gets one more call's time; the heartbeat's last call is joined.
  journal_->NoteCall("RunOnce", absl::Now() - start,
                     kRunOnceDeadline + work_time + kRpcDeadline + options_.lease_ttl / 2);
  if (!run.ok()) {
    if (!ExpectedUnderFaults(static_cast<grpc::StatusCode>(run.status().code()))) {
      journal_->NoteViolation(absl::StrCat("RunOnce(", KeyName(key), "): ",
                                           run.status().ToString(), " (after ",
                                           absl::FormatDuration(absl::Now() - start), ")"));
    } else if (absl::StrContains(run.status().message(), "was lost")) {
      journal_->NoteFault(Fault::kLeaseExpiry);
    }
    return run.status();
  }
  if (run->record.status() != Record::COMPLETED) {
    journal_->NoteViolation(absl::StrCat("RunOnce(", KeyName(key), ") answered a ",
                                         Record::Status_Name(run->record.status()),
                                         " record: ", run->record.error()));
    return absl::InternalError("not COMPLETED");
  }
  journal_->NoteCompleted(
      key, {run->record.lease_token(), run->record.response(), run->executed});
  return absl::OkStatus();
}

absl::Duration ChaosWorker::MaybeCancelAfter() {
  if (!absl::Bernoulli(random_, options_.cancel)) return absl::InfiniteDuration();
  return UpTo(random_, absl::Milliseconds(40));
}

void ChaosWorker::JudgeStatus(const char* what, int key, const grpc::Status& status,
                              bool cancelled, const std::string& peer,
                              absl::Duration took) {
  if (status.ok() || ExpectedUnderFaults(status.error_code())) return;
  if (status.error_code() == grpc::StatusCode::CANCELLED) {
    if (cancelled) {
      journal_->NoteFault(Fault::kCancel);
      return;
    }
    // Not ours: allowed only from a replica shutting down (gRPC cancels a
    // call that arrives then; the contract says retry like UNAVAILABLE).
    if (journal_->DuringShutdown(absl::Now() - took, absl::Now())) {
      journal_->NoteShutdownCancel();
      return;
    }
  }
  journal_->NoteViolation(absl::StrCat(what, "(", KeyName(key), "): code ",
                                       status.error_code(), ": ", status.error_message(),
                                       " (", peer, ", after ", absl::FormatDuration(took),
                                       ")"));
}

void ChaosWorker::RawOperation(int key) {
  BeginRequest begin;
  begin.set_scope(options_.scope);
  begin.set_key(KeyName(key));
  begin.set_request_hash(Client::RequestHash(RequestBytes(key)));
  *begin.mutable_lease_ttl() = ProtoDuration(options_.lease_ttl);
  *begin.mutable_wait() = ProtoDuration(kRawWait);
  begin.set_owner(absl::StrCat("raw-", id_, "-", absl::Uniform<uint64_t>(random_)));

  // Begin; a cancelled one is retried once in two with the same owner,
  // which re-enters the lease if the cancelled call had acquired it.
  BeginResponse begun;
  grpc::Status status;
  for (int attempt = 0;; ++attempt) {
    grpc::ClientContext context;
    const absl::Time start = absl::Now();
    context.set_deadline(absl::ToChronoTime(start + kRawDeadline));
    context.set_wait_for_ready(true);
    bool cancelled = false;
    status = CallCancellable(
        &context, attempt == 0 ? MaybeCancelAfter() : absl::InfiniteDuration(), &cancelled,
        [&](grpc::ClientContext* c, std::function<void(grpc::Status)> done) {
          stub_->async()->Begin(c, &begin, &begun, std::move(done));
        });
    journal_->NoteCall("Begin", absl::Now() - start, kRawDeadline);
    JudgeStatus("Begin", key, status, cancelled, context.peer(), absl::Now() - start);
    if (cancelled && !status.ok() && attempt == 0 && absl::Bernoulli(random_, 0.5)) {
      continue;
    }
    break;
  }
  if (!status.ok()) return;
  const absl::Time acquired_at = absl::Now();
  switch (begun.outcome()) {
    case BeginResponse::COMPLETED:
      journal_->NoteCompleted(
          key, {begun.record().lease_token(), begun.record().response(), false});
      return;
    case BeginResponse::IN_PROGRESS:
      return;
    case BeginResponse::ACQUIRED:
      break;
    default:
      journal_->NoteViolation(absl::StrCat("Begin(", KeyName(key), ") answered ",
                                           BeginResponse::Outcome_Name(begun.outcome())));
      return;
  }
  const int64_t token = begun.lease_token();
  journal_->NoteAcquired(key, token, acquired_at);

  absl::StatusOr<std::string> response =
      Effect(key, token, UpTo(random_, kMaxHold));
  if (!response.ok()) {
    // Release the key for the next caller (ABORTED if it is not ours).
    FailRequest fail;
    fail.set_scope(options_.scope);
    fail.set_key(KeyName(key));
    fail.set_lease_token(token);
    fail.set_error(std::string(response.status().message()));
    fail.set_retryable(true);
    FailResponse failed;
    grpc::ClientContext context;
    const absl::Time start = absl::Now();
    context.set_deadline(absl::ToChronoTime(start + kRawDeadline));
    const grpc::Status fail_status = stub_->Fail(&context, fail, &failed);
    journal_->NoteCall("Fail", absl::Now() - start, kRawDeadline);
    JudgeStatus("Fail", key, fail_status, false, context.peer(), absl::Now() - start);
    return;
  }

  CompleteRequest complete;
  complete.set_scope(options_.scope);
  complete.set_key(KeyName(key));
  complete.set_lease_token(token);
  complete.set_response(*response);
  complete.set_response_code(200);
  // A cancelled (or unanswered) Complete is retried with the same token up
  // to three times, or abandoned: the lease then runs out and a successor
  // finds the effect.
  const int tries = absl::Bernoulli(random_, 0.5) ? 4 : 1;
  for (int attempt = 0; attempt < tries; ++attempt) {
    CompleteResponse done;
    grpc::ClientContext context;
    const absl::Time start = absl::Now();
    context.set_deadline(absl::ToChronoTime(start + kRawDeadline));
    context.set_wait_for_ready(true);
    bool cancelled = false;
    status = CallCancellable(&context, MaybeCancelAfter(), &cancelled,
                             [&](grpc::ClientContext* c,
                                 std::function<void(grpc::Status)> on_done) {
                               stub_->async()->Complete(c, &complete, &done,
                                                        std::move(on_done));
                             });
    journal_->NoteCall("Complete", absl::Now() - start, kRawDeadline);
    JudgeStatus("Complete", key, status, cancelled, context.peer(), absl::Now() - start);
    if (status.ok()) {
      if (done.record().status() != Record::COMPLETED ||
          done.record().response() != complete.response() ||
          done.record().lease_token() != token) {
        journal_->NoteViolation(absl::StrCat("Complete(", KeyName(key), ", token ", token,
                                             ") acknowledged another record"));
      }
      journal_->NoteCompleted(key, {done.record().lease_token(), done.record().response(),
                                    /*acknowledged=*/true});
      return;
    }
    if (status.error_code() == grpc::StatusCode::ABORTED) {
      journal_->NoteFault(Fault::kLeaseExpiry);  // Taken over: nothing stored.
      return;
    }
  }
}

}  // namespace idem::chaos
