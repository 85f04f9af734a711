// Pure decisions over what one store statement returned.
//
// Each write statement (see postgres_store.cc) tries its change under the
// row's lock and, when the change does not apply, also returns the row as
// its snapshot saw it. These functions turn that into the contract's
// outcome. When the snapshot says the change should have applied, the row
// changed between the snapshot and the lock (a concurrent writer committed
// in between): the answer is kStale and the statement is run again.
//
// No I/O, no clock: `db_now` is the database's now() for the statement.
#ifndef IDEM_SERVER_RECORD_DECISIONS_H_
#define IDEM_SERVER_RECORD_DECISIONS_H_

#include <cstdint>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "idem/v1/idempotency.pb.h"

namespace idem {

enum class BeginDecision {
  kAcquired,
  kInProgress,
  kCompleted,
  kFailed,
  kRequestMismatch,
  kStale,
};

// `acquired`: the statement's insert, take-over or re-entry applied (all
// decided under the row's lock, never from a snapshot). `row`: the record
// it returned, or nullptr when it returned none.
BeginDecision DecideBegin(bool acquired, const idem::v1::Record* row,
                          absl::string_view request_hash, absl::Time db_now);

enum class WriteKind { kComplete, kFail, kExtendLease };

enum class WriteDecision {
  kApplied,
  // The same Complete or Fail, with the same token, was applied before.
  kAlreadyApplied,
  kNotFound,
  kLeaseLost,
  // The token holder asks to change a record that is already finished.
  kAlreadyFinished,
  kStale,
};

// `applied`: the statement's update applied. `row`: the record it returned,
// or nullptr. `same_outcome`: the row already holds exactly what this
// request would store (compared by the caller; ignored for kExtendLease).
WriteDecision DecideWrite(WriteKind kind, bool applied,
                          const idem::v1::Record* row, int64_t lease_token,
                          bool same_outcome);

// The contract's status for a decision that is not a success.
absl::Status BeginDecisionStatus(BeginDecision decision);
absl::Status WriteDecisionStatus(WriteKind kind, WriteDecision decision,
                                 int64_t lease_token);

}  // namespace idem

#endif  // IDEM_SERVER_RECORD_DECISIONS_H_
