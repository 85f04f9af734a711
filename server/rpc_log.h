// One structured log line per finished RPC.
//
//   rpc=Begin scope="payments" key="order-42" code=OK outcome=COMPLETED
//   attempt=1 ms=1.234
//
// Logged with VLOG(1) (run idemd with GLOG_v=1); INTERNAL answers, which
// only a bug produces, are logged at ERROR always. Values are C-escaped and
// capped, and stored responses, errors and metadata are never logged.
#ifndef IDEM_SERVER_RPC_LOG_H_
#define IDEM_SERVER_RPC_LOG_H_

#include <string>

#include <grpcpp/support/status.h>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "idem/v1/idempotency.pb.h"

namespace idem {

// The request's identifying fields ("scope=... key=..." or "requests=N").
std::string DescribeRequest(const idem::v1::BeginRequest& request);
std::string DescribeRequest(const idem::v1::BatchBeginRequest& request);
std::string DescribeRequest(const idem::v1::CompleteRequest& request);
std::string DescribeRequest(const idem::v1::FailRequest& request);
std::string DescribeRequest(const idem::v1::GetRequest& request);
std::string DescribeRequest(const idem::v1::ExtendLeaseRequest& request);

// Whether a call answered with `status` gets a line (always for INTERNAL,
// otherwise only with GLOG_v >= 1): callers build the line's fields only
// then, so an unlogged call pays nothing.
bool RpcLogWanted(const grpc::Status& status);

// Writes the line when RpcLogWanted(status). `outcome` and `attempt` may be
// empty / 0.
void LogRpc(absl::string_view method, const std::string& request_fields,
            const grpc::Status& status, absl::string_view outcome, int attempt,
            absl::Duration latency);

}  // namespace idem

#endif  // IDEM_SERVER_RPC_LOG_H_
