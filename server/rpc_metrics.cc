#include "server/rpc_metrics.h"

#include "absl/status/status.h"

namespace idem {

namespace {
constexpr const char* kMethods[] = {"Begin", "BatchBegin", "Complete",
                                    "Fail",  "Get",        "ExtendLease"};
}  // namespace

std::string CodeLabel(int code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

std::string OutcomeLabel(idem::v1::BeginResponse::Outcome outcome) {
  return idem::v1::BeginResponse::Outcome_Name(outcome);
}

RpcMetrics::RpcMetrics(MetricsRegistry* registry)
    : rpcs_(registry->AddCounter(
          "idem_rpcs_total",
          "RPCs answered, by method, gRPC status code and (Begin answered OK) "
          "outcome.",
          {"method", "code", "outcome"})),
      batch_items_(registry->AddCounter(
          "idem_batch_begin_items_total",
          "BatchBegin items answered (calls answered OK), by the item's status "
          "code and outcome.",
          {"code", "outcome"})),
      latency_(registry->AddHistogram(
          "idem_rpc_duration_seconds",
          "Time from receiving an RPC to answering it (a waiting Begin's wait "
          "included), by method.",
          {"method"}, LatencyBuckets())) {
  for (const char* method : kMethods) {
    latency_by_method_[method] = latency_->WithLabels({method});
  }
}

void RpcMetrics::Record(absl::string_view method, const grpc::Status& status,
                        absl::string_view outcome, absl::Duration latency) {
  rpcs_->WithLabels({std::string(method), CodeLabel(status.error_code()),
                     std::string(outcome)})
      ->Increment();
  auto it = latency_by_method_.find(method);
  Histogram* histogram = it != latency_by_method_.end()
                             ? it->second
                             : latency_->WithLabels({std::string(method)});
  histogram->Observe(absl::ToDoubleSeconds(latency));
}

void RpcMetrics::RecordBatchItems(const idem::v1::BatchBeginResponse& response) {
  for (const idem::v1::BatchBeginResult& item : response.results()) {
    const bool ok = item.code() == 0;
    batch_items_
        ->WithLabels({CodeLabel(item.code()),
                      ok ? OutcomeLabel(item.response().outcome()) : ""})
        ->Increment();
  }
}

}  // namespace idem
