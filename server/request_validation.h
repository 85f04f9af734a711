// Validation of every request field, with defaults resolved.
//
// Each function returns INVALID_ARGUMENT with a message that names the field
// and the rule it broke, and never echoes the field's value (it may be a
// secret or huge).
#ifndef IDEM_SERVER_REQUEST_VALIDATION_H_
#define IDEM_SERVER_REQUEST_VALIDATION_H_

#include <cstdint>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "idem/v1/idempotency.pb.h"
#include "server/store.h"

namespace idem {

struct RequestLimits {
  // Largest response (Complete.response, Fail.response) accepted.
  int64_t max_response_bytes = 1 << 20;
};

inline constexpr int kMaxScopeBytes = 128;
inline constexpr int kMaxKeyBytes = 255;
inline constexpr int kMaxRequestHashBytes = 64;
inline constexpr int kMaxMetadataEntries = 64;
inline constexpr int kMaxMetadataKeyBytes = 256;
inline constexpr int kMaxMetadataValueBytes = 16 * 1024;
inline constexpr int kMaxErrorBytes = 64 * 1024;
inline constexpr int kMaxOwnerBytes = 128;
inline constexpr int kMaxBatchBeginRequests = 500;

inline constexpr absl::Duration kDefaultLeaseTtl = absl::Seconds(30);
inline constexpr absl::Duration kMinLeaseTtl = absl::Seconds(1);
inline constexpr absl::Duration kMaxLeaseTtl = absl::Hours(1);
inline constexpr absl::Duration kDefaultRetention = absl::Hours(24);
inline constexpr absl::Duration kMinRetention = absl::Seconds(1);
inline constexpr absl::Duration kMaxRetention = absl::Hours(24 * 30);
inline constexpr absl::Duration kMaxWait = absl::Seconds(60);

absl::Status ValidateScope(absl::string_view scope);
absl::Status ValidateKey(absl::string_view key);
absl::Status ValidateLeaseToken(int64_t lease_token);

// Unset (nullptr) resolves to `fallback`; a set value must be a well-formed
// Duration within [min, max].
absl::StatusOr<absl::Duration> ResolveDuration(
    absl::string_view field, const google::protobuf::Duration* value,
    absl::Duration fallback, absl::Duration min, absl::Duration max);

// Valid UTF-8 without NUL bytes: what a PostgreSQL text column can hold.
bool IsStorableText(absl::string_view text);

// Whole-request validation. The returned params point into `request`.
absl::StatusOr<BeginParams> ValidateBegin(const idem::v1::BeginRequest& request);
// BeginRequest.wait, resolved (zero when unset); for a request that passed
// ValidateBegin.
absl::Duration RequestedWait(const idem::v1::BeginRequest& request);
// Every request as ValidateBegin (messages name requests[i]), none with a
// wait, no scope and key twice, at most kMaxBatchBeginRequests.
absl::StatusOr<std::vector<BeginParams>> ValidateBatchBegin(
    const idem::v1::BatchBeginRequest& request);
absl::Status ValidateComplete(const idem::v1::CompleteRequest& request,
                              const RequestLimits& limits);
absl::Status ValidateFail(const idem::v1::FailRequest& request,
                          const RequestLimits& limits);
absl::StatusOr<ExtendLeaseParams> ValidateExtendLease(
    const idem::v1::ExtendLeaseRequest& request);
absl::Status ValidateGet(const idem::v1::GetRequest& request);

}  // namespace idem

#endif  // IDEM_SERVER_REQUEST_VALIDATION_H_
