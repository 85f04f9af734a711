// The one place where an internal absl::Status becomes a grpc::Status.
#ifndef IDEM_SERVER_GRPC_STATUS_H_
#define IDEM_SERVER_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace idem {

// Maps the code one to one and caps the message at 1 KiB, so a status never
// carries more than a short sentence back to the caller.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace idem

#endif  // IDEM_SERVER_GRPC_STATUS_H_
