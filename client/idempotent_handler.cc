#include "idem/idempotent_handler.h"

#include <algorithm>
#include <iterator>
#include <utility>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace idem {

namespace {

constexpr size_t kMaxScopeBytes = 128;
constexpr size_t kMaxKeyBytes = 255;

bool IsScopeChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         c == '.' || c == ':' || c == '/' || c == '-';
}

absl::Status ValidateScope(absl::string_view scope) {
  if (scope.empty() || scope.size() > kMaxScopeBytes ||
      !std::all_of(scope.begin(), scope.end(), IsScopeChar)) {
    return absl::InvalidArgumentError(
        absl::StrCat("scope \"", absl::CHexEscape(scope),
                     "\" is not 1-128 bytes of [A-Za-z0-9._:/-]"));
  }
  return absl::OkStatus();
}

bool IsValidKey(absl::string_view key) {
  return !key.empty() && key.size() <= kMaxKeyBytes &&
         std::all_of(key.begin(), key.end(), [](char c) { return c >= 0x21 && c <= 0x7E; });
}

// The same message always gives the same bytes (map order included), so
// the request fingerprint does not depend on how the message was built.
bool SerializeDeterministic(const google::protobuf::MessageLite& message,
                            std::string* out) {
  out->clear();
  google::protobuf::io::StringOutputStream stream(out);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  return message.SerializeToCodedStream(&coded) && !coded.HadError();
}

grpc::StatusCode GrpcCode(int32_t code) {
  return code > 0 && code <= grpc::StatusCode::UNAUTHENTICATED
             ? static_cast<grpc::StatusCode>(code)
             : grpc::StatusCode::UNKNOWN;
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

}  // namespace

absl::StatusOr<std::string> IdempotentHandler::ScopeForMethod(absl::string_view method) {
  absl::string_view name = method;
  if (!name.empty() && name.front() == '/') name.remove_prefix(1);
  std::string scope(name);
  std::replace(scope.begin(), scope.end(), '_', '-');
  if (scope.size() > kMaxScopeBytes) {
    const std::string digest = absl::BytesToHexString(Client::RequestHash(name));
    scope = absl::StrCat(scope.substr(0, kMaxScopeBytes - 17), ":", digest.substr(0, 16));
  }
  if (name.empty() || !ValidateScope(scope).ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "method \"", absl::CHexEscape(method),
        "\" is not a gRPC method's full name (\"/pkg.Service/Method\")"));
  }
  return scope;
}

absl::StatusOr<IdempotentHandler> IdempotentHandler::Create(
    Client* client, absl::string_view method, IdempotentHandlerOptions options) {
  if (client == nullptr) return absl::InvalidArgumentError("client is null");
  std::string scope = options.scope;
  if (scope.empty()) {
    absl::StatusOr<std::string> derived = ScopeForMethod(method);
    if (!derived.ok()) return derived.status();
    scope = *std::move(derived);
  }
  const absl::Status valid = ValidateScope(scope);
  if (!valid.ok()) return valid;
  return IdempotentHandler(client, std::move(scope), std::move(options));
}

IdempotentHandler::IdempotentHandler(Client* client, std::string scope,
                                     IdempotentHandlerOptions options)
    : client_(client), scope_(std::move(scope)), options_(std::move(options)) {}

grpc::Status IdempotentHandler::Run(grpc::ServerContextBase* context,
                                    const google::protobuf::MessageLite& request,
                                    google::protobuf::MessageLite* response,
                                    const Handler& handler) const {
  const auto& metadata = context->client_metadata();
  const auto [first, last] = metadata.equal_range(kIdempotencyKeyHeader);
  if (first == last) {
    if (options_.require_key) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("this method needs an ", kIdempotencyKeyHeader,
                                       " metadata entry"));
    }
    return handler();
  }
  if (std::next(first) != last) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("more than one ", kIdempotencyKeyHeader));
  }
  const std::string key(first->second.data(), first->second.size());
  if (!IsValidKey(key)) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat(kIdempotencyKeyHeader,
                                     " must be 1-255 printable ASCII characters "
                                     "(0x21-0x7E, no spaces)"));
  }
  std::string request_bytes;
  if (!SerializeDeterministic(request, &request_bytes)) {
    return grpc::Status(grpc::StatusCode::INTERNAL, "cannot serialize the request");
  }

  RunOnceOptions run_once = options_.run_once;
  const absl::Duration call_left = absl::FromChrono(context->deadline()) - absl::Now();
  run_once.deadline = std::min(run_once.deadline, call_left);

  grpc::Status handler_status;
  const Work work = [&](const Lease&) -> absl::StatusOr<WorkResult> {
    handler_status = handler();
    if (!handler_status.ok()) {
      return absl::Status(static_cast<absl::StatusCode>(handler_status.error_code()),
                          handler_status.error_message());
    }
    WorkResult result;
    if (!SerializeDeterministic(*response, &result.response)) {
      return absl::InternalError("cannot serialize the reply");
    }
    return result;
  };
  absl::StatusOr<RunOnceResult> done =
      client_->RunOnce(scope_, key, request_bytes, work, run_once);
  if (!done.ok()) {
    // The handler's own retryable status goes back as it was (details too).
    if (!handler_status.ok() &&
        done.status().code() ==
            static_cast<absl::StatusCode>(handler_status.error_code()) &&
        done.status().message() == handler_status.error_message()) {
      return handler_status;
    }
    return ToGrpcStatus(done.status());
  }

  const idem::v1::Record& record = done->record;
  if (!done->executed) context->AddInitialMetadata(kIdempotentReplayedHeader, "true");
  switch (record.status()) {
    case idem::v1::Record::COMPLETED:
      if (!done->executed && !response->ParseFromString(record.response())) {
        return grpc::Status(grpc::StatusCode::INTERNAL,
                            absl::StrCat("the stored reply for this key does not parse as ",
                                         response->GetTypeName()));
      }
      return grpc::Status::OK;
    case idem::v1::Record::FAILED:
      return grpc::Status(GrpcCode(record.response_code()), record.error());
    default:
      return grpc::Status(grpc::StatusCode::INTERNAL,
                          absl::StrCat("idem answered a record in state ", record.status()));
  }
}

}  // namespace idem
