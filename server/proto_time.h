// Conversions between protobuf Duration/Timestamp and absl::Duration/Time.
#ifndef IDEM_SERVER_PROTO_TIME_H_
#define IDEM_SERVER_PROTO_TIME_H_

#include <cstdint>

#include <google/protobuf/duration.pb.h>
#include <google/protobuf/timestamp.pb.h>

#include "absl/time/time.h"

namespace idem {

// Exact for any Duration with seconds and nanos of one sign; the caller
// validates the sign rule first (see request_validation.h).
absl::Duration FromProtoDuration(const google::protobuf::Duration& d);
google::protobuf::Duration ToProtoDuration(absl::Duration d);

absl::Time FromProtoTimestamp(const google::protobuf::Timestamp& t);
void SetTimestampFromUnixMicros(int64_t micros, google::protobuf::Timestamp* t);

}  // namespace idem

#endif  // IDEM_SERVER_PROTO_TIME_H_
