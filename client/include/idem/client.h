// idem::Client: a thin C++ client of the idem service.
//
// One method per RPC, each with a deadline (ClientOptions::deadline unless
// the call says otherwise), each returning absl::StatusOr with the
// contract's status codes (see proto/idem/v1/idempotency.proto).
//
// Example:
//   idem::Client client(grpc::CreateChannel("127.0.0.1:50051",
//                                           grpc::InsecureChannelCredentials()));
//   auto begun = client.Begin("payments", "order-42", request_bytes);
//   if (!begun.ok()) return begun.status();
//   switch (begun->outcome()) {
//     case idem::v1::BeginResponse::ACQUIRED: {
//       std::string result = Charge();
//       idem::v1::CompleteRequest done;
//       done.set_scope("payments");
//       done.set_key("order-42");
//       done.set_lease_token(begun->lease_token());
//       done.set_response(result);
//       return client.Complete(done).status();
//     }
//     case idem::v1::BeginResponse::COMPLETED:
//       return Replay(begun->record().response());
//     ...
//   }
//
// Security (idemd --tls_cert/--tls_key, --tls_client_ca, --auth_file): TLS
// is the channel's business, the bearer token the Client's:
//   grpc::SslCredentialsOptions tls;
//   tls.pem_root_certs = ReadFile("ca.pem");       // CA that signed idemd's cert
//   tls.pem_cert_chain = ReadFile("client.pem");   // mutual TLS only
//   tls.pem_private_key = ReadFile("client.key");  // mutual TLS only
//   idem::ClientOptions options;
//   options.bearer_token = std::getenv("IDEM_TOKEN");
//   idem::Client client(
//       grpc::CreateChannel("idem.internal:50051", grpc::SslCredentials(tls)),
//       options);
// The host name in the target must match a name (DNS or IP SAN) in idemd's
// certificate. Every call, RunOnce's included, carries the token.
//
// Thread safety: a Client is safe for concurrent use from many threads.
#ifndef IDEM_CLIENT_CLIENT_H_
#define IDEM_CLIENT_CLIENT_H_

#include <memory>
#include <string>
#include "absl/strings/string_view.h"

#include <grpcpp/channel.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "idem/run_once.h"
#include "idem/v1/idempotency.grpc.pb.h"

namespace idem {

struct ClientOptions {
  // Deadline of every call, counted from when it starts.
  absl::Duration deadline = absl::Seconds(5);
  // true: a call made while the channel is (re)connecting, e.g. during an
  // idemd restart, waits for it within its deadline instead of failing
  // UNAVAILABLE at once (gRPC's wait_for_ready).
  bool wait_for_ready = true;
  // Non-empty: every call sends metadata "authorization: Bearer <token>"
  // (idemd --auth_file). Send it over TLS only: it is a secret.
  std::string bearer_token;
};

struct BeginOptions {
  // Unset (zero): the server's default (30 s lease, 24 h retention).
  absl::Duration lease_ttl = absl::ZeroDuration();
  absl::Duration retention = absl::ZeroDuration();
};

class Client {
 public:
  explicit Client(std::shared_ptr<grpc::ChannelInterface> channel,
                  ClientOptions options = {});

  // The SHA-256 of `request_bytes`: the request_hash Begin sends.
  static std::string RequestHash(absl::string_view request_bytes);

  // Begin with request_hash = RequestHash(request_bytes).
  absl::StatusOr<idem::v1::BeginResponse> Begin(absl::string_view scope,
                                                absl::string_view key,
                                                absl::string_view request_bytes,
                                                const BeginOptions& options = {});

  absl::StatusOr<idem::v1::BeginResponse> Begin(
      const idem::v1::BeginRequest& request);
  absl::StatusOr<idem::v1::Record> Complete(
      const idem::v1::CompleteRequest& request);
  absl::StatusOr<idem::v1::Record> Fail(const idem::v1::FailRequest& request);
  absl::StatusOr<idem::v1::Record> Get(absl::string_view scope,
                                       absl::string_view key);
  absl::StatusOr<idem::v1::Record> ExtendLease(
      const idem::v1::ExtendLeaseRequest& request);
  absl::StatusOr<idem::v1::BatchBeginResponse> BatchBegin(
      const idem::v1::BatchBeginRequest& request);

  // Runs `work` at most once for (scope, key) however often it is called:
  // see run_once.h.
  absl::StatusOr<RunOnceResult> RunOnce(absl::string_view scope,
                                        absl::string_view key,
                                        absl::string_view request_bytes,
                                        const Work& work,
                                        const RunOnceOptions& options = {});

 private:
  friend class RunOnceCall;  // run_once.cc: uses the deadline-taking calls.

  // The RPCs with an explicit deadline; the public methods pass
  // now + ClientOptions::deadline.
  absl::StatusOr<idem::v1::BeginResponse> BeginUntil(
      const idem::v1::BeginRequest& request, absl::Time deadline);
  absl::StatusOr<idem::v1::Record> CompleteUntil(
      const idem::v1::CompleteRequest& request, absl::Time deadline);
  absl::StatusOr<idem::v1::Record> FailUntil(const idem::v1::FailRequest& request,
                                             absl::Time deadline);
  absl::StatusOr<idem::v1::Record> ExtendLeaseUntil(
      const idem::v1::ExtendLeaseRequest& request, absl::Time deadline);

  // Constant after construction.
  std::unique_ptr<idem::v1::Idempotency::Stub> stub_;
  const ClientOptions options_;
};

}  // namespace idem

#endif  // IDEM_CLIENT_CLIENT_H_
