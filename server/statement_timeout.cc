#include "server/statement_timeout.h"

#include <cstdint>

namespace idem {

absl::Duration StatementTimeoutFor(absl::Duration time_left,
                                   absl::Duration configured) {
  if (time_left >= configured) return configured;
  const int64_t ms = absl::ToInt64Milliseconds(time_left);  // Rounds down.
  if (ms < 1) return absl::ZeroDuration();
  // The largest power of two not above ms; steps of an eighth of it.
  int64_t power = 1;
  while (power <= ms / 2) power *= 2;
  const int64_t step = power >= 8 ? power / 8 : 1;
  return absl::Milliseconds(ms / step * step);
}

std::string StatementTimeoutSetting(absl::Duration bound) {
  return std::to_string(absl::ToInt64Milliseconds(bound));
}

}  // namespace idem
