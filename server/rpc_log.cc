#include "server/rpc_log.h"

#include <glog/logging.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace idem {

namespace {

// Field values come from callers (a refused request may hold anything).
constexpr size_t kMaxValueBytes = 256;

std::string Quoted(absl::string_view value) {
  const bool cut = value.size() > kMaxValueBytes;
  return absl::StrCat("\"", absl::CHexEscape(value.substr(0, kMaxValueBytes)),
                      cut ? "...\"" : "\"");
}

std::string ScopeAndKey(absl::string_view scope, absl::string_view key) {
  return absl::StrCat("scope=", Quoted(scope), " key=", Quoted(key));
}

const char* CodeName(grpc::StatusCode code) {
  static constexpr const char* kNames[] = {
      "OK",        "CANCELLED",          "UNKNOWN",        "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED", "NOT_FOUND",  "ALREADY_EXISTS", "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
      "UNIMPLEMENTED", "INTERNAL",       "UNAVAILABLE",    "DATA_LOSS",
      "UNAUTHENTICATED"};
  const int i = static_cast<int>(code);
  return i >= 0 && i < static_cast<int>(std::size(kNames)) ? kNames[i] : "UNKNOWN";
}

}  // namespace

std::string DescribeRequest(const idem::v1::BeginRequest& r) {
  return ScopeAndKey(r.scope(), r.key());
}
std::string DescribeRequest(const idem::v1::BatchBeginRequest& r) {
  return absl::StrCat("requests=", r.requests_size());
}
std::string DescribeRequest(const idem::v1::CompleteRequest& r) {
  return absl::StrCat(ScopeAndKey(r.scope(), r.key()), " token=", r.lease_token());
}
std::string DescribeRequest(const idem::v1::FailRequest& r) {
  return absl::StrCat(ScopeAndKey(r.scope(), r.key()), " token=", r.lease_token(),
                      " retryable=", r.retryable() ? "true" : "false");
}
std::string DescribeRequest(const idem::v1::GetRequest& r) {
  return ScopeAndKey(r.scope(), r.key());
}
std::string DescribeRequest(const idem::v1::ExtendLeaseRequest& r) {
  return absl::StrCat(ScopeAndKey(r.scope(), r.key()), " token=", r.lease_token());
}

bool RpcLogWanted(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::INTERNAL || VLOG_IS_ON(1);
}

void LogRpc(absl::string_view method, const std::string& request_fields,
            const grpc::Status& status, absl::string_view outcome, int attempt,
            absl::Duration latency) {
  if (!RpcLogWanted(status)) return;
  const bool internal = status.error_code() == grpc::StatusCode::INTERNAL;
  std::string line = absl::StrCat("rpc=", method, " ", request_fields,
                                  " code=", CodeName(status.error_code()));
  if (!outcome.empty()) absl::StrAppend(&line, " outcome=", outcome);
  if (attempt > 0) absl::StrAppend(&line, " attempt=", attempt);
  absl::StrAppend(&line, absl::StrFormat(" ms=%.3f", absl::ToDoubleMilliseconds(latency)));
  if (internal) {
    LOG(ERROR) << line << " message=" << Quoted(status.error_message());
  } else {
    LOG(INFO) << line;
  }
}

}  // namespace idem
