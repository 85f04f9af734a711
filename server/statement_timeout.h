// The statement timeout a store call runs under: PostgreSQL's
// statement_timeout is set on the call's connection to the smaller of
// --statement_timeout and the time left before the call's deadline, so no
// statement (a lock wait included) outlives the call that started it.
//
// The time left is rounded down on a coarse ladder (steps of at most an
// eighth of the value), so calls with similar deadlines share one setting
// and a connection needs a `SET` round trip only when the setting changes.
//
// Example:
//   absl::Duration bound = StatementTimeoutFor(deadline - absl::Now(),
//                                              absl::Seconds(10));
//   if (bound <= absl::ZeroDuration()) return DeadlineExceeded(...);
//   connection.set_variable("statement_timeout", StatementTimeoutSetting(bound));
//
// Thread safety: pure functions.
#ifndef IDEM_SERVER_STATEMENT_TIMEOUT_H_
#define IDEM_SERVER_STATEMENT_TIMEOUT_H_

#include <string>

#include "absl/time/time.h"

namespace idem {

// `configured` when at least that much time is left; otherwise `time_left`
// rounded down (whole milliseconds, then the ladder). Zero when less than a
// millisecond is left: the call must not start a statement at all (and
// PostgreSQL would read 0 as "no timeout").
absl::Duration StatementTimeoutFor(absl::Duration time_left,
                                   absl::Duration configured);

// The value for `SET statement_timeout`: whole milliseconds, no unit.
std::string StatementTimeoutSetting(absl::Duration bound);

}  // namespace idem

#endif  // IDEM_SERVER_STATEMENT_TIMEOUT_H_
