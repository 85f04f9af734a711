#include "idem/client.h"

#include <openssl/evp.h>

#include <grpcpp/client_context.h>

#include "client/proto_duration.h"

namespace idem {

namespace {

absl::Status ToAbslStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

}  // namespace

Client::Client(std::shared_ptr<grpc::ChannelInterface> channel,
               ClientOptions options)
    : stub_(idem::v1::Idempotency::NewStub(channel)), options_(options) {}

std::string Client::RequestHash(absl::string_view request_bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_Digest(request_bytes.data(), request_bytes.size(), digest, &size,
             EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<const char*>(digest), size);
}

// Runs one unary call with a fresh context and the given deadline.
#define IDEM_CLIENT_CALL(method, request, response, deadline)              \
  grpc::ClientContext context;                                            \
  context.set_deadline(absl::ToChronoTime(deadline));                     \
  context.set_wait_for_ready(options_.wait_for_ready);                    \
  if (!options_.bearer_token.empty()) {                                   \
    context.AddMetadata("authorization",                                  \
                        "Bearer " + options_.bearer_token);               \
  }                                                                       \
  const absl::Status status =                                             \
      ToAbslStatus(stub_->method(&context, request, &response));          \
  if (!status.ok()) return status

absl::StatusOr<idem::v1::BeginResponse> Client::Begin(
    absl::string_view scope, absl::string_view key, absl::string_view request_bytes,
    const BeginOptions& options) {
  idem::v1::BeginRequest request;
  request.set_scope(std::string(scope));
  request.set_key(std::string(key));
  request.set_request_hash(RequestHash(request_bytes));
  if (options.lease_ttl != absl::ZeroDuration()) {
    *request.mutable_lease_ttl() = ToProtoDuration(options.lease_ttl);
  }
  if (options.retention != absl::ZeroDuration()) {
    *request.mutable_retention() = ToProtoDuration(options.retention);
  }
  return Begin(request);
}

absl::StatusOr<idem::v1::BeginResponse> Client::Begin(
    const idem::v1::BeginRequest& request) {
  return BeginUntil(request, absl::Now() + options_.deadline);
}

absl::StatusOr<idem::v1::Record> Client::Complete(
    const idem::v1::CompleteRequest& request) {
  return CompleteUntil(request, absl::Now() + options_.deadline);
}

absl::StatusOr<idem::v1::Record> Client::Fail(const idem::v1::FailRequest& request) {
  return FailUntil(request, absl::Now() + options_.deadline);
}

absl::StatusOr<idem::v1::Record> Client::Get(absl::string_view scope,
                                             absl::string_view key) {
  idem::v1::GetRequest request;
  request.set_scope(std::string(scope));
  request.set_key(std::string(key));
  idem::v1::GetResponse response;
  IDEM_CLIENT_CALL(Get, request, response, absl::Now() + options_.deadline);
  return std::move(*response.mutable_record());
}

absl::StatusOr<idem::v1::Record> Client::ExtendLease(
    const idem::v1::ExtendLeaseRequest& request) {
  return ExtendLeaseUntil(request, absl::Now() + options_.deadline);
}

absl::StatusOr<idem::v1::BatchBeginResponse> Client::BatchBegin(
    const idem::v1::BatchBeginRequest& request) {
  idem::v1::BatchBeginResponse response;
  IDEM_CLIENT_CALL(BatchBegin, request, response, absl::Now() + options_.deadline);
  return response;
}

absl::StatusOr<idem::v1::BeginResponse> Client::BeginUntil(
    const idem::v1::BeginRequest& request, absl::Time deadline) {
  idem::v1::BeginResponse response;
  IDEM_CLIENT_CALL(Begin, request, response, deadline);
  return response;
}

absl::StatusOr<idem::v1::Record> Client::CompleteUntil(
    const idem::v1::CompleteRequest& request, absl::Time deadline) {
  idem::v1::CompleteResponse response;
  IDEM_CLIENT_CALL(Complete, request, response, deadline);
  return std::move(*response.mutable_record());
}

absl::StatusOr<idem::v1::Record> Client::FailUntil(const idem::v1::FailRequest& request,
                                                   absl::Time deadline) {
  idem::v1::FailResponse response;
  IDEM_CLIENT_CALL(Fail, request, response, deadline);
  return std::move(*response.mutable_record());
}

absl::StatusOr<idem::v1::Record> Client::ExtendLeaseUntil(
    const idem::v1::ExtendLeaseRequest& request, absl::Time deadline) {
  idem::v1::ExtendLeaseResponse response;
  IDEM_CLIENT_CALL(ExtendLease, request, response, deadline);
  return std::move(*response.mutable_record());
}

#undef IDEM_CLIENT_CALL

}  // namespace idem
