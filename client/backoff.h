// Backoff: jittered exponential delays between RunOnce's tries.
//
// Each Next() is drawn uniformly from [current / 2, current], where current
// starts at `initial` and doubles after every draw up to `max`. The jitter
// keeps many callers waiting on one key from retrying in lock step.
//
// Example:
//   Backoff backoff(absl::Milliseconds(50), absl::Seconds(2));
//   while (!TryOnce()) absl::SleepFor(backoff.Next());
//
// Thread safety: thread-compatible (one Backoff per retry loop).
#ifndef IDEM_CLIENT_BACKOFF_H_
#define IDEM_CLIENT_BACKOFF_H_

#include "absl/random/random.h"
#include "absl/time/time.h"

namespace idem {

class Backoff {
 public:
  // A non-positive `initial` becomes 1 ms; `max` below `initial` becomes
  // `initial`.
  Backoff(absl::Duration initial, absl::Duration max);

  Backoff(const Backoff&) = delete;
  Backoff& operator=(const Backoff&) = delete;

  // The next delay, in [current / 2, current]; never above max.
  absl::Duration Next();

 private:
  // Constant after construction.
  const absl::Duration max_;

  absl::Duration current_;
  absl::BitGen random_;
};

}  // namespace idem

#endif  // IDEM_CLIENT_BACKOFF_H_
