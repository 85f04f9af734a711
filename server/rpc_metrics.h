// RpcMetrics: what GrpcService records about each finished call.
//
//   idem_rpcs_total{method, code, outcome}      calls by gRPC status code; for
//       Begin answered OK, outcome is ACQUIRED, IN_PROGRESS, COMPLETED or
//       FAILED (empty otherwise). So Begin COMPLETED/FAILED are replays,
//       Begin IN_PROGRESS in-progress conflicts, Begin FAILED_PRECONDITION
//       request mismatches, Complete/Fail/ExtendLease ABORTED lost leases.
//   idem_batch_begin_items_total{code, outcome} the same per BatchBegin item.
//   idem_rpc_duration_seconds{method}           latency, from the handler
//       being called to the answer (a waiting Begin's wait included).
//
// Example:
//   RpcMetrics metrics(&registry);
//   metrics.Record("Begin", status, "COMPLETED", absl::Milliseconds(3));
//
// Thread safety: safe for concurrent use.
#ifndef IDEM_SERVER_RPC_METRICS_H_
#define IDEM_SERVER_RPC_METRICS_H_

#include <string>

#include <grpcpp/support/status.h>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "idem/v1/idempotency.pb.h"
#include "server/metrics.h"

namespace idem {

class RpcMetrics {
 public:
  // Adds its families to `registry`, which must outlive this.
  explicit RpcMetrics(MetricsRegistry* registry);
  RpcMetrics(const RpcMetrics&) = delete;
  RpcMetrics& operator=(const RpcMetrics&) = delete;

  // One finished call of `method` (the proto's method name).
  void Record(absl::string_view method, const grpc::Status& status,
              absl::string_view outcome, absl::Duration latency);
  // Each item of a BatchBegin answered OK.
  void RecordBatchItems(const idem::v1::BatchBeginResponse& response);

 private:
  CounterFamily* const rpcs_;
  CounterFamily* const batch_items_;
  HistogramFamily* const latency_;
  // One histogram per method, made up front so every method shows a count.
  absl::flat_hash_map<std::string, Histogram*> latency_by_method_;
};

// The label value of a status code: "OK", "FAILED_PRECONDITION", ...
std::string CodeLabel(int code);
// The outcome label of an answered Begin: "ACQUIRED", ...
std::string OutcomeLabel(idem::v1::BeginResponse::Outcome outcome);

}  // namespace idem

#endif  // IDEM_SERVER_RPC_METRICS_H_
