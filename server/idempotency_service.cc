#include "server/idempotency_service.h"

#include <utility>

#include "server/proto_time.h"
#include "server/status_macros.h"

namespace idem {

using idem::v1::BeginResponse;
using idem::v1::Record;

namespace {

// A live lease's token (and its owner id, which re-enters it) is the
// holder's authority to Complete or Fail: it is shown only to the holder
// (the ACQUIRED Begin and the holder's own writes).
void HideLiveLeaseToken(Record* record) {
  if (record->status() == Record::IN_PROGRESS) {
    record->clear_lease_token();
    record->clear_owner();
  }
}

}  // namespace

void IdempotencyService::FillBeginResponse(BeginResult result,
                                           BeginResponse* response) {
  if (result.outcome == BeginResponse::ACQUIRED) {
    if (result.reentered) {
      reentries_.fetch_add(1, std::memory_order_relaxed);
    } else if (result.record.attempt() > 1) {
      takeovers_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  response->set_outcome(result.outcome);
  if (result.outcome == BeginResponse::ACQUIRED) {
    response->set_lease_token(result.record.lease_token());
  } else {
    HideLiveLeaseToken(&result.record);
  }
  if (result.outcome == BeginResponse::IN_PROGRESS) {
    *response->mutable_retry_after() =
        ToProtoDuration(std::max(result.retry_after, absl::ZeroDuration()));
  }
  *response->mutable_record() = std::move(result.record);
}

namespace {

// Stores `record` into the response's record field.
template <typename Response>
absl::Status Respond(absl::StatusOr<Record> record, Response* response) {
  if (!record.ok()) return record.status();
  *response->mutable_record() = *std::move(record);
  return absl::OkStatus();
}

}  // namespace

IdempotencyService::IdempotencyService(IdempotencyStore* store,
                                       RequestLimits limits)
    : store_(store), limits_(limits) {}

absl::Status IdempotencyService::Begin(const idem::v1::BeginRequest& request,
                                       absl::Time deadline,
                                       BeginResponse* response) {
  IDEM_ASSIGN_OR_RETURN(const BeginParams params, ValidateBegin(request));
  IDEM_ASSIGN_OR_RETURN(BeginResult result, store_->Begin(params, deadline));
  FillBeginResponse(std::move(result), response);
  return absl::OkStatus();
}

void IdempotencyService::BeginAsync(const idem::v1::BeginRequest& request,
                                    absl::Time deadline, BeginResponse* response,
                                    std::function<void(absl::Status)> done) {
  absl::StatusOr<BeginParams> params = ValidateBegin(request);
  if (!params.ok()) {
    done(params.status());
    return;
  }
  store_->BeginAsync(*params, deadline,
                     [this, response, done = std::move(done)](
                         absl::StatusOr<BeginResult> result) {
                       if (!result.ok()) {
                         done(result.status());
                         return;
                       }
                       FillBeginResponse(*std::move(result), response);
                       done(absl::OkStatus());
                     });
}

bool IdempotencyService::TryBeginWithoutBlocking(const idem::v1::BeginRequest& request,
                                                 BeginResponse* response,
                                                 absl::Status* status) {
  absl::StatusOr<BeginParams> params = ValidateBegin(request);
  if (!params.ok()) {
    *status = params.status();
    return true;
  }
  std::optional<absl::StatusOr<BeginResult>> answer = store_->TryBeginFromMemory(*params);
  if (!answer.has_value()) return false;
  if (!answer->ok()) {
    *status = answer->status();
    return true;
  }
  FillBeginResponse(**std::move(answer), response);
  *status = absl::OkStatus();
  return true;
}

absl::Status IdempotencyService::BatchBegin(
    const idem::v1::BatchBeginRequest& request, absl::Time deadline,
    idem::v1::BatchBeginResponse* response) {
  IDEM_ASSIGN_OR_RETURN(const std::vector<BeginParams> params,
                        ValidateBatchBegin(request));
  IDEM_ASSIGN_OR_RETURN(std::vector<absl::StatusOr<BeginResult>> results,
                        store_->BatchBegin(params, deadline));
  for (absl::StatusOr<BeginResult>& result : results) {
    idem::v1::BatchBeginResult* out = response->add_results();
    if (result.ok()) {
      FillBeginResponse(*std::move(result), out->mutable_response());
    } else {
      out->set_code(static_cast<int32_t>(result.status().code()));
      out->set_message(std::string(result.status().message()));
    }
  }
  return absl::OkStatus();
}

absl::Status IdempotencyService::Complete(const idem::v1::CompleteRequest& request,
                                          absl::Time deadline,
                                          idem::v1::CompleteResponse* response) {
  IDEM_RETURN_IF_ERROR(ValidateComplete(request, limits_));
  return Respond(store_->Complete(request, deadline), response);
}

absl::Status IdempotencyService::Fail(const idem::v1::FailRequest& request,
                                      absl::Time deadline,
                                      idem::v1::FailResponse* response) {
  IDEM_RETURN_IF_ERROR(ValidateFail(request, limits_));
  return Respond(store_->Fail(request, deadline), response);
}

absl::Status IdempotencyService::Get(const idem::v1::GetRequest& request,
                                     absl::Time deadline,
                                     idem::v1::GetResponse* response) {
  IDEM_RETURN_IF_ERROR(ValidateGet(request));
  IDEM_ASSIGN_OR_RETURN(Record record,
                        store_->Get(request.scope(), request.key(), deadline));
  HideLiveLeaseToken(&record);
  *response->mutable_record() = std::move(record);
  return absl::OkStatus();
}

absl::Status IdempotencyService::ExtendLease(
    const idem::v1::ExtendLeaseRequest& request, absl::Time deadline,
    idem::v1::ExtendLeaseResponse* response) {
  IDEM_ASSIGN_OR_RETURN(const ExtendLeaseParams params,
                        ValidateExtendLease(request));
  return Respond(store_->ExtendLease(params, deadline), response);
}

}  // namespace idem
