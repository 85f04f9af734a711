// IdempotentHandler: makes a C++ gRPC unary handler idempotent with idem.
//
// A call that carries `idempotency-key` client metadata runs through
// Client::RunOnce with
//   scope         = the configured scope, or one derived from the method's
//                   full name ("/pkg.Service/Method" -> "pkg.Service/Method",
//                   see ScopeForMethod);
//   key           = the metadata value (1-255 printable ASCII, 0x21-0x7E;
//                   anything else is answered INVALID_ARGUMENT);
//   request bytes = the request message, serialized deterministically.
// The first call runs the handler and stores its reply; later calls with the
// same key get the stored reply, or the stored non-OK grpc::Status (code and
// message; error details are not stored), plus the initial metadata
// `idempotent-replayed: true`, without running the handler. A non-OK handler
// status is stored as a permanent failure, except the retryable codes
// (IsRetryableWorkStatus: UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED,
// RESOURCE_EXHAUSTED), which release the key and are returned as they are.
// The same key with a different request is answered FAILED_PRECONDITION.
// Other idem answers come back as their gRPC code (UNAVAILABLE, ABORTED when
// the lease was lost, DEADLINE_EXCEEDED, ...). Calls without the key run the
// handler untouched, or are refused INVALID_ARGUMENT with `require_key`.
//
// Run blocks: it waits for idem, and for another caller holding the same
// key, up to the RunOnce deadline (capped by the call's deadline). Use it in
// the sync API, or in the callback API only from a worker thread (never on
// the reactor's thread itself).
//
// Example (sync API):
//   class PaymentsImpl final : public payments::v1::Payments::Service {
//    public:
//     explicit PaymentsImpl(idem::IdempotentHandler charge) : charge_(charge) {}
//     grpc::Status Charge(grpc::ServerContext* context,
//                         const payments::v1::ChargeRequest* request,
//                         payments::v1::ChargeReply* reply) override {
//       return charge_.Run(context, *request, reply,
//                          [&] { return DoCharge(*request, reply); });
//     }
//    private:
//     const idem::IdempotentHandler charge_;
//   };
//   ...
//   absl::StatusOr<idem::IdempotentHandler> charge = idem::IdempotentHandler::Create(
//       &idem_client, "/payments.v1.Payments/Charge");
//   if (!charge.ok()) return charge.status();
//   PaymentsImpl service(*charge);
//
// Thread safety: an IdempotentHandler is immutable after Create; Run may be
// called from many threads at once. The Client must outlive it.
#ifndef IDEM_CLIENT_IDEMPOTENT_HANDLER_H_
#define IDEM_CLIENT_IDEMPOTENT_HANDLER_H_

#include <functional>
#include <string>

#include <google/protobuf/message_lite.h>
#include <grpcpp/server_context.h>
#include <grpcpp/support/status.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "idem/client.h"
#include "idem/run_once.h"

namespace idem {

// The client metadata that carries the idempotency key.
inline constexpr char kIdempotencyKeyHeader[] = "idempotency-key";
// The initial metadata added to replayed replies, with the value "true".
inline constexpr char kIdempotentReplayedHeader[] = "idempotent-replayed";

struct IdempotentHandlerOptions {
  // The idem scope of the method's keys (1-128 bytes of [A-Za-z0-9._:/-]).
  // Empty: ScopeForMethod(method).
  std::string scope;
  // true: a call without idempotency-key is answered INVALID_ARGUMENT.
  // false: it runs the handler as if there were no IdempotentHandler.
  bool require_key = false;
  // Lease, retention, waiting and backoff per call; `deadline` is further
  // capped by the gRPC call's own deadline.
  RunOnceOptions run_once;
};

class IdempotentHandler {
 public:
  // The handler being wrapped: fills the reply and returns the call's
  // status. Runs on the thread that calls Run.
  using Handler = std::function<grpc::Status()>;

  // `method` is the gRPC method's full name, "/pkg.Service/Method". `client`
  // must outlive the handler. INVALID_ARGUMENT for a bad method or scope.
  static absl::StatusOr<IdempotentHandler> Create(
      Client* client, absl::string_view method,
      IdempotentHandlerOptions options = {});

  // A valid idem scope for a method's full name: the leading '/' dropped
  // and '_' (which scopes do not allow, and which is the only character of
  // a proto name they do not allow) turned into '-'; a name past 128 bytes
  // keeps 111 and ends with ':' and 16 hex digits of its SHA-256.
  static absl::StatusOr<std::string> ScopeForMethod(absl::string_view method);

  // Runs `handler` at most once per idempotency key, as described above.
  // `response` is filled by the handler on a first run, or from the stored
  // reply on a replay. Works with grpc::ServerContext and
  // grpc::CallbackServerContext alike.
  grpc::Status Run(grpc::ServerContextBase* context,
                   const google::protobuf::MessageLite& request,
                   google::protobuf::MessageLite* response,
                   const Handler& handler) const;

  const std::string& scope() const { return scope_; }

 private:
  IdempotentHandler(Client* client, std::string scope, IdempotentHandlerOptions options);

  // Constant after construction.
  Client* client_;
  std::string scope_;
  IdempotentHandlerOptions options_;
};

}  // namespace idem

#endif  // IDEM_CLIENT_IDEMPOTENT_HANDLER_H_
