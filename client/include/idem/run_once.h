// Types of idem::Client::RunOnce (declared in client.h).
//
// RunOnce turns the Begin -> work -> Complete/Fail dance into one call:
//
//   absl::StatusOr<idem::RunOnceResult> r = client.RunOnce(
//       "payments", order_id, request_bytes,
//       [&](const idem::Lease& lease) -> absl::StatusOr<idem::WorkResult> {
//         // Runs only when this caller owns the key. Record lease.token
//         // with the side effect (a fencing token) where you can.
//         IDEM_ASSIGN_OR_RETURN(std::string receipt, Charge(lease.token));
//         return idem::WorkResult{receipt, 201, {}};
//       });
//   if (!r.ok()) return r.status();          // lost lease, deadline, ...
//   if (r->record.status() == idem::v1::Record::FAILED) ...  // stored failure
//   Reply(r->record.response());              // first run or replay alike
//
// What RunOnce does:
//   - hashes request_bytes with SHA-256 and calls Begin with a fresh owner
//     id (so a Begin retried after a lost answer re-enters its own lease);
//   - ACQUIRED: runs `work`. OK -> Complete; a retryable status (UNAVAILABLE,
//     DEADLINE_EXCEEDED, ABORTED, RESOURCE_EXHAUSTED) -> Fail(retryable) and
//     that status is returned; any other status -> Fail(retryable = false)
//     storing error = status.message() and response_code = the status code,
//     and the FAILED record is returned (OK).
//   - COMPLETED / FAILED: returns the stored record without running `work`.
//   - IN_PROGRESS: waits (server-side `wait`, then jittered backoff) and
//     tries again until the deadline: DEADLINE_EXCEEDED.
//   - While `work` runs past half the lease, a heartbeat thread calls
//     ExtendLease. If the lease is lost (ABORTED), RunOnce does not complete
//     and returns ABORTED; Lease::lost() turns true so work can stop early.
//   - Transient gRPC errors (UNAVAILABLE, RESOURCE_EXHAUSTED, a call's
//     DEADLINE_EXCEEDED, and CANCELLED, which RunOnce never causes itself:
//     gRPC answers it to a call that reaches an idemd as it shuts down) are
//     retried with backoff within the deadline; anything else comes back as
//     a clear absl::Status.
//
// Deadlines: every idem call ends by `deadline`, except that the time
// `work` itself takes is not counted: Complete/Fail after work get until
// deadline + work's duration (at least ClientOptions::deadline), so a
// result is recorded whenever idem can be reached.
//
// Thread safety: RunOnce may be called from many threads at once on one
// Client. `work` runs on the calling thread; the heartbeat runs on its own
// thread, which RunOnce stops and joins before it returns.
#ifndef IDEM_CLIENT_RUN_ONCE_H_
#define IDEM_CLIENT_RUN_ONCE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "idem/v1/idempotency.pb.h"

namespace idem {

// The lease `work` runs under.
class Lease {
 public:
  Lease(int64_t token, int32_t attempt) : token(token), attempt(attempt) {}
  // The fencing token: strictly greater than any earlier holder's.
  const int64_t token;
  // 1 on the first acquisition of the key, +1 on each takeover.
  const int32_t attempt;
  // True once the heartbeat learned the lease was taken over: stop working.
  bool lost() const { return lost_.load(); }
  void MarkLost() { lost_.store(true); }

 private:
  std::atomic<bool> lost_{false};
};

// What successful work produced: stored and replayed byte for byte.
struct WorkResult {
  std::string response;
  int32_t response_code = 0;
  std::map<std::string, std::string> response_metadata;
};

using Work = std::function<absl::StatusOr<WorkResult>(const Lease& lease)>;

struct RunOnceOptions {
  absl::Duration lease_ttl = absl::Seconds(30);
  absl::Duration retention = absl::Hours(24);
  // The whole RunOnce, waiting and retries included (not `work` itself,
  // which runs to its end).
  absl::Duration deadline = absl::Seconds(30);
  // Jittered exponential backoff between tries (IN_PROGRESS, UNAVAILABLE).
  absl::Duration initial_backoff = absl::Milliseconds(50);
  absl::Duration max_backoff = absl::Seconds(2);
  // Server-side wait per Begin while the key is IN_PROGRESS (at most 60 s).
  absl::Duration wait = absl::Seconds(10);
  // Heartbeat period; zero: lease_ttl / 2. absl::InfiniteDuration(): no
  // heartbeat (work must then finish within lease_ttl). Heartbeats go on
  // while work runs, past `deadline` too.
  absl::Duration heartbeat_interval = absl::ZeroDuration();
};

// The work statuses RunOnce treats as transient (the key is released and
// the status returned): UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED,
// RESOURCE_EXHAUSTED.
bool IsRetryableWorkStatus(absl::StatusCode code);

struct RunOnceResult {
  // true: this call ran `work`; false: an earlier run's result replayed.
  bool executed = false;
  // The final record: COMPLETED (response, response_code,
  // response_metadata) or FAILED (error, response, response_code).
  idem::v1::Record record;
};

}  // namespace idem

#endif  // IDEM_CLIENT_RUN_ONCE_H_
