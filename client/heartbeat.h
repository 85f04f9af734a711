// Heartbeat: keeps a lease alive while RunOnce's `work` runs.
//
// A thread calls `extend` every `interval` until the Heartbeat is
// destroyed. When `extend` answers that the lease is gone (ABORTED: taken
// over; NOT_FOUND: expired; FAILED_PRECONDITION: already finished) it marks
// the Lease lost and stops. Other errors (UNAVAILABLE, DEADLINE_EXCEEDED,
// ...) are retried after a quarter of the interval: whether the lease
// survived is then decided by Complete, which checks the fencing token.
//
// Example:
//   {
//     Heartbeat heartbeat(extend, absl::Seconds(15), &lease);
//     result = work(lease);
//   }  // the heartbeat thread is stopped and joined here
//
// Thread safety: construct and destroy on one thread; the Lease is shared
// with the heartbeat thread through its atomic flag only.
#ifndef IDEM_CLIENT_HEARTBEAT_H_
#define IDEM_CLIENT_HEARTBEAT_H_

#include <functional>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "idem/run_once.h"

namespace idem {

class Heartbeat {
 public:
  // Extends the lease once; `deadline` bounds the call.
  using Extend = std::function<absl::Status(absl::Time deadline)>;

  // Starts the thread, unless `interval` is infinite (no heartbeat).
  // `lease` must outlive the Heartbeat.
  Heartbeat(Extend extend, absl::Duration interval, Lease* lease);
  // Stops and joins the thread; an ExtendLease in flight is waited for
  // (it is bounded by `interval`).
  ~Heartbeat();

  Heartbeat(const Heartbeat&) = delete;
  Heartbeat& operator=(const Heartbeat&) = delete;

 private:
  void Loop();

  // Constant after construction.
  const Extend extend_;
  const absl::Duration interval_;
  Lease* const lease_;

  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace idem

#endif  // IDEM_CLIENT_HEARTBEAT_H_
