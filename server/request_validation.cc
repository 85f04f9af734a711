#include "server/request_validation.h"

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "server/proto_time.h"
#include "server/status_macros.h"

namespace idem {

namespace {

bool IsScopeChar(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' ||
         c == '/' || c == '-';
}

absl::Status LengthError(absl::string_view field, int max) {
  return absl::InvalidArgumentError(
      absl::StrCat(field, " must be 1 to ", max, " bytes"));
}

absl::Status ValidateRequestHash(absl::string_view hash) {
  if (hash.empty() || hash.size() > kMaxRequestHashBytes) {
    return LengthError("request_hash", kMaxRequestHashBytes);
  }
  return absl::OkStatus();
}

absl::Status ValidateResponse(absl::string_view field, absl::string_view response,
                              const RequestLimits& limits) {
  if (static_cast<int64_t>(response.size()) > limits.max_response_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " is ", response.size(), " bytes, over the limit of ",
                     limits.max_response_bytes, " (--max_response_bytes)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateMetadata(
    const google::protobuf::Map<std::string, std::string>& metadata) {
  if (metadata.size() > kMaxMetadataEntries) {
    return absl::InvalidArgumentError(absl::StrCat(
        "response_metadata has ", metadata.size(), " entries, over the limit of ",
        kMaxMetadataEntries));
  }
  for (const auto& [name, value] : metadata) {
    if (name.empty() || name.size() > kMaxMetadataKeyBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "response_metadata keys must be 1 to ", kMaxMetadataKeyBytes, " bytes"));
    }
    if (value.size() > kMaxMetadataValueBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "response_metadata values must be at most ", kMaxMetadataValueBytes,
          " bytes"));
    }
    if (!IsStorableText(name) || !IsStorableText(value)) {
      return absl::InvalidArgumentError(
          "response_metadata keys and values must be valid UTF-8 without NUL "
          "bytes");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateScopeAndKey(absl::string_view scope, absl::string_view key) {
  IDEM_RETURN_IF_ERROR(ValidateScope(scope));
  return ValidateKey(key);
}

}  // namespace

absl::Status ValidateScope(absl::string_view scope) {
  if (scope.empty() || scope.size() > kMaxScopeBytes) {
    return LengthError("scope", kMaxScopeBytes);
  }
  for (unsigned char c : scope) {
    if (!IsScopeChar(c)) {
      return absl::InvalidArgumentError(
          "scope may hold only the characters A-Z a-z 0-9 . _ : / -");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateKey(absl::string_view key) {
  if (key.empty() || key.size() > kMaxKeyBytes) {
    return LengthError("key", kMaxKeyBytes);
  }
  for (unsigned char c : key) {
    if (c < 0x21 || c > 0x7E) {
      return absl::InvalidArgumentError(
          "key may hold only printable ASCII (0x21-0x7E), no spaces or "
          "control bytes");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateLeaseToken(int64_t lease_token) {
  if (lease_token <= 0) {
    return absl::InvalidArgumentError(
        "lease_token must be the positive token from an ACQUIRED Begin");
  }
  return absl::OkStatus();
}

absl::StatusOr<absl::Duration> ResolveDuration(
    absl::string_view field, const google::protobuf::Duration* value,
    absl::Duration fallback, absl::Duration min, absl::Duration max) {
  if (value == nullptr) return fallback;
  const int64_t seconds = value->seconds();
  const int32_t nanos = value->nanos();
  if (nanos <= -1000000000 || nanos >= 1000000000 ||
      (seconds > 0 && nanos < 0) || (seconds < 0 && nanos > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " is not a well-formed Duration"));
  }
  // Compare in seconds first: a huge seconds value must not overflow.
  const int64_t max_seconds = absl::ToInt64Seconds(max);
  const absl::Duration d =
      (seconds > max_seconds || seconds < 0) ? absl::InfiniteDuration()
                                             : FromProtoDuration(*value);
  if (seconds < 0 || d < min || d > max) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must be between ", absl::FormatDuration(min),
                     " and ", absl::FormatDuration(max)));
  }
  return d;
}

bool IsStorableText(absl::string_view text) {
  size_t i = 0;
  const size_t n = text.size();
  while (i < n) {
    const unsigned char c = text[i];
    if (c == 0) return false;
    if (c < 0x80) {
      ++i;
      continue;
    }
    int extra;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      extra = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + extra >= n) return false;  // Truncated sequence.
    for (int k = 1; k <= extra; ++k) {
      const unsigned char cc = text[i + k];
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF.
    static constexpr uint32_t kMinForLength[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMinForLength[extra] || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += extra + 1;
  }
  return true;
}

namespace {

absl::Status ValidateOwner(absl::string_view owner) {
  if (owner.size() > kMaxOwnerBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("owner must be at most ", kMaxOwnerBytes, " bytes"));
  }
  for (unsigned char c : owner) {
    if (c < 0x21 || c > 0x7E) {
      return absl::InvalidArgumentError(
          "owner may hold only printable ASCII (0x21-0x7E)");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<BeginParams> ValidateBegin(const idem::v1::BeginRequest& request) {
  IDEM_RETURN_IF_ERROR(ValidateScopeAndKey(request.scope(), request.key()));
  IDEM_RETURN_IF_ERROR(ValidateRequestHash(request.request_hash()));
  IDEM_RETURN_IF_ERROR(ValidateOwner(request.owner()));
  if (request.has_wait()) {
    IDEM_RETURN_IF_ERROR(ResolveDuration("wait", &request.wait(),
                                         absl::ZeroDuration(),
                                         absl::ZeroDuration(), kMaxWait)
                             .status());
  }
  BeginParams params;
  params.scope = request.scope();
  params.key = request.key();
  params.request_hash = request.request_hash();
  params.owner = request.owner();
  IDEM_ASSIGN_OR_RETURN(
      params.lease_ttl,
      ResolveDuration("lease_ttl",
                      request.has_lease_ttl() ? &request.lease_ttl() : nullptr,
                      kDefaultLeaseTtl, kMinLeaseTtl, kMaxLeaseTtl));
  IDEM_ASSIGN_OR_RETURN(
      params.retention,
      ResolveDuration("retention",
                      request.has_retention() ? &request.retention() : nullptr,
                      kDefaultRetention, kMinRetention, kMaxRetention));
  return params;
}

absl::Duration RequestedWait(const idem::v1::BeginRequest& request) {
  return request.has_wait() ? FromProtoDuration(request.wait())
                            : absl::ZeroDuration();
}

absl::StatusOr<std::vector<BeginParams>> ValidateBatchBegin(
    const idem::v1::BatchBeginRequest& request) {
  const int n = request.requests_size();
  if (n == 0 || n > kMaxBatchBeginRequests) {
    return absl::InvalidArgumentError(absl::StrCat(
        "requests must hold 1 to ", kMaxBatchBeginRequests, " requests, not ", n));
  }
  std::vector<BeginParams> params;
  params.reserve(n);
  absl::flat_hash_map<std::pair<absl::string_view, absl::string_view>, int> seen;
  for (int i = 0; i < n; ++i) {
    const idem::v1::BeginRequest& r = request.requests(i);
    absl::StatusOr<BeginParams> p = ValidateBegin(r);
    if (!p.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("requests[", i, "]: ", p.status().message()));
    }
    if (r.has_wait() && RequestedWait(r) != absl::ZeroDuration()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "requests[", i, "]: wait is not supported in BatchBegin"));
    }
    auto [it, inserted] = seen.emplace(std::make_pair(p->scope, p->key), i);
    if (!inserted) {
      return absl::InvalidArgumentError(
          absl::StrCat("requests[", i, "] repeats the scope and key of requests[",
                       it->second, "]"));
    }
    params.push_back(*p);
  }
  return params;
}

absl::Status ValidateComplete(const idem::v1::CompleteRequest& request,
                              const RequestLimits& limits) {
  IDEM_RETURN_IF_ERROR(ValidateScopeAndKey(request.scope(), request.key()));
  IDEM_RETURN_IF_ERROR(ValidateLeaseToken(request.lease_token()));
  IDEM_RETURN_IF_ERROR(ValidateResponse("response", request.response(), limits));
  return ValidateMetadata(request.response_metadata());
}

absl::Status ValidateFail(const idem::v1::FailRequest& request,
                          const RequestLimits& limits) {
  IDEM_RETURN_IF_ERROR(ValidateScopeAndKey(request.scope(), request.key()));
  IDEM_RETURN_IF_ERROR(ValidateLeaseToken(request.lease_token()));
  if (request.error().size() > kMaxErrorBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("error must be at most ", kMaxErrorBytes, " bytes"));
  }
  if (!IsStorableText(request.error())) {
    return absl::InvalidArgumentError(
        "error must be valid UTF-8 without NUL bytes");
  }
  return ValidateResponse("response", request.response(), limits);
}

absl::StatusOr<ExtendLeaseParams> ValidateExtendLease(
    const idem::v1::ExtendLeaseRequest& request) {
  IDEM_RETURN_IF_ERROR(ValidateScopeAndKey(request.scope(), request.key()));
  IDEM_RETURN_IF_ERROR(ValidateLeaseToken(request.lease_token()));
  ExtendLeaseParams params;
  params.scope = request.scope();
  params.key = request.key();
  params.lease_token = request.lease_token();
  IDEM_ASSIGN_OR_RETURN(
      params.lease_ttl,
      ResolveDuration("lease_ttl",
                      request.has_lease_ttl() ? &request.lease_ttl() : nullptr,
                      kDefaultLeaseTtl, kMinLeaseTtl, kMaxLeaseTtl));
  return params;
}

absl::Status ValidateGet(const idem::v1::GetRequest& request) {
  return ValidateScopeAndKey(request.scope(), request.key());
}

}  // namespace idem
