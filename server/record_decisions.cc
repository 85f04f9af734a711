#include "server/record_decisions.h"

#include "absl/strings/str_cat.h"
#include "server/proto_time.h"

namespace idem {

using idem::v1::Record;

BeginDecision DecideBegin(bool acquired, const Record* row,
                          absl::string_view request_hash, absl::Time db_now) {
  if (row == nullptr) return BeginDecision::kStale;
  if (acquired) return BeginDecision::kAcquired;
  // An expired record is acquirable by anyone: the statement should have.
  if (FromProtoTimestamp(row->expires_at()) <= db_now) {
    return BeginDecision::kStale;
  }
  if (row->request_hash() != request_hash) {
    return BeginDecision::kRequestMismatch;
  }
  switch (row->status()) {
    case Record::COMPLETED:
      return BeginDecision::kCompleted;
    case Record::FAILED:
      return row->retryable() ? BeginDecision::kStale : BeginDecision::kFailed;
    case Record::IN_PROGRESS:
      // Re-entry by the lease's owner is granted only by the statement,
      // under the lock. A live lease that comes back unchanged is
      // IN_PROGRESS, even if the snapshot names the caller as owner: the
      // locked row may already be another caller's.
      return FromProtoTimestamp(row->locked_until()) > db_now
                 ? BeginDecision::kInProgress
                 : BeginDecision::kStale;
    default:
      return BeginDecision::kStale;
  }
}

WriteDecision DecideWrite(WriteKind kind, bool applied, const Record* row,
                          int64_t lease_token, bool same_outcome) {
  if (applied) return WriteDecision::kApplied;
  // The statement reads only live rows: none means missing or expired.
  if (row == nullptr) return WriteDecision::kNotFound;
  if (row->lease_token() != lease_token) return WriteDecision::kLeaseLost;
  // The token holder's own key. In progress means the update should have
  // applied and the snapshot is older than the row the update locked.
  if (row->status() == Record::IN_PROGRESS) return WriteDecision::kStale;
  if (kind != WriteKind::kExtendLease && same_outcome) {
    return WriteDecision::kAlreadyApplied;
  }
  return WriteDecision::kAlreadyFinished;
}

absl::Status BeginDecisionStatus(BeginDecision decision) {
  switch (decision) {
    case BeginDecision::kRequestMismatch:
      return absl::FailedPreconditionError(
          "request_hash does not match the key's original request: an "
          "idempotency key must not be reused for a different request");
    case BeginDecision::kStale:
      return absl::AbortedError(
          "the key changed concurrently on every try; retry the call");
    default:
      return absl::OkStatus();
  }
}

absl::Status WriteDecisionStatus(WriteKind kind, WriteDecision decision,
                                 int64_t lease_token) {
  switch (decision) {
    case WriteDecision::kNotFound:
      return absl::NotFoundError(
          "no live record for this scope and key (never begun, or expired)");
    case WriteDecision::kLeaseLost:
      return absl::AbortedError(absl::StrCat(
          "lease_token ", lease_token,
          " is not the key's current lease: the lease was lost to another "
          "caller, do not act on it"));
    case WriteDecision::kAlreadyFinished:
      return absl::FailedPreconditionError(
          kind == WriteKind::kExtendLease
              ? "the key is already completed or failed: there is no lease "
                "to extend"
              : "the key is already completed or failed with a different "
                "outcome; a finished record never changes");
    case WriteDecision::kStale:
      return absl::AbortedError(
          "the key changed concurrently on every try; retry the call");
    default:
      return absl::OkStatus();
  }
}

}  // namespace idem
