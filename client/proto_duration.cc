#include "client/proto_duration.h"

#include <cstdint>
#include <limits>

namespace idem {

google::protobuf::Duration ToProtoDuration(absl::Duration d) {
  google::protobuf::Duration out;
  if (d == absl::InfiniteDuration() || d == -absl::InfiniteDuration()) {
    out.set_seconds(d > absl::ZeroDuration() ? std::numeric_limits<int32_t>::max()
                                             : std::numeric_limits<int32_t>::min());
    return out;
  }
  const int64_t seconds = absl::IDivDuration(d, absl::Seconds(1), &d);
  out.set_seconds(seconds);
  out.set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(d)));
  return out;
}

}  // namespace idem
