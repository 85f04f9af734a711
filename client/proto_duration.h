// absl::Duration to google.protobuf.Duration, for the client's requests.
//
// Thread safety: a pure function.
#ifndef IDEM_CLIENT_PROTO_DURATION_H_
#define IDEM_CLIENT_PROTO_DURATION_H_

#include <google/protobuf/duration.pb.h>

#include "absl/time/time.h"

namespace idem {

// Truncates below a nanosecond; an infinite duration saturates.
google::protobuf::Duration ToProtoDuration(absl::Duration d);

}  // namespace idem

#endif  // IDEM_CLIENT_PROTO_DURATION_H_
