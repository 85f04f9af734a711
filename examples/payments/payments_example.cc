// payments_example: how to make a side effect happen exactly once with idem.
//
// A Charge service. Callers retry Charge as often as they like (timeouts,
// lost answers, this process crashing and restarting); each order is
// charged once, and every successful answer for an order names the same
// charge. Three things make that true, and all three are needed:
//
//   1. idem::Client::RunOnce, keyed by the order id, runs the charge only in
//      the call that owns the key and replays the stored reply to all the
//      others, including calls made after a restart.
//   2. The charge writes the ledger in ONE PostgreSQL transaction fenced
//      with the lease token (charge_fences): it only writes if no holder
//      with a newer token has written for the order.
//   3. That transaction first looks for the order's ledger row, and if it
//      finds one, answers with that charge instead of charging again.
//
// Why 3: a holder can crash (or lose its connection to idem) after its
// transaction COMMITTED but before RunOnce recorded Complete. idem still
// sees the key in progress; when the lease runs out it hands the key to the
// next caller with a newer token, which passes the fence. Only the ledger
// knows the charge already happened.
// Why 2: the old holder is not necessarily dead. Paused or cut off from
// idem, it can still be about to charge while its successor does. Without
// the fence both transactions could see no ledger row and both insert. The
// fence row serializes them, and the older token loses: it gets ABORTED, so
// RunOnce does not complete with it.
//
//   payments_example --idem=127.0.0.1:50051 --postgres=postgresql:///ledger
//                    [--listen=127.0.0.1:50061] [--lease_ttl=30s]
#include <algorithm>
#include <cctype>
#include <memory>
#include <string>

#include <glog/logging.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>
#include <pqxx/pqxx>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "examples/payments/payments.grpc.pb.h"
#include "idem/client.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50061", "gRPC address, host:port");
ABSL_FLAG(std::string, idem, "127.0.0.1:50051", "idemd address, host:port");
ABSL_FLAG(std::string, postgres, "",
          "libpq URL of the ledger database (this service's own, not idem's)");
ABSL_FLAG(absl::Duration, lease_ttl, absl::Seconds(30),
          "how long a charge owns its order; RunOnce extends it while it runs");
ABSL_FLAG(absl::Duration, work_delay, absl::ZeroDuration(),
          "for demos and tests: a slow charge. Half is spent inside the ledger "
          "transaction, half after its commit and before Complete");

namespace {

using idem::examples::payments::ChargeReply;
using idem::examples::payments::ChargeRequest;

// The idem scope of this RPC; the key is the order id.
constexpr char kScope[] = "payments.example/Charge";

constexpr char kSchema[] = R"sql(
  -- Per order, the newest lease token that has written the ledger.
  CREATE TABLE IF NOT EXISTS charge_fences (
    order_id    text PRIMARY KEY,
    lease_token bigint NOT NULL);
  -- The side effect. On purpose no UNIQUE on order_id: exactly-once comes
  -- from idem and the fence, and a double charge would stay visible.
  CREATE TABLE IF NOT EXISTS ledger (
    id           bigserial PRIMARY KEY,
    order_id     text NOT NULL,
    amount_cents bigint NOT NULL,
    currency     text NOT NULL,
    lease_token  bigint NOT NULL,
    charge_id    text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now());
  CREATE INDEX IF NOT EXISTS ledger_order_id ON ledger (order_id);
)sql";

// The charge itself: runs inside RunOnce, only while this call holds the
// order's lease `lease_token`. Here the side effect is the ledger row; to
// call an outside payment provider instead, do it in the same place and
// pass it an idempotency key of its own (the order id).
absl::StatusOr<ChargeReply> ChargeOnce(const std::string& ledger_url,
                                       const ChargeRequest& request,
                                       int64_t lease_token, absl::Duration delay) {
  ChargeReply reply;
  try {
    pqxx::connection ledger(ledger_url);  // A real service would pool these.
    pqxx::work tx(ledger);
    // (a) The fence. Takes the order's fence row lock until commit, and
    // writes only if every earlier writer had an older token.
    const pqxx::result fenced = tx.exec_params(
        "INSERT INTO charge_fences (order_id, lease_token) VALUES ($1, $2) "
        "ON CONFLICT (order_id) DO UPDATE SET lease_token = EXCLUDED.lease_token "
        "WHERE charge_fences.lease_token < EXCLUDED.lease_token "
        "RETURNING lease_token",
        request.order_id(), lease_token);
    if (fenced.empty()) {
      // A newer holder exists. ABORTED: RunOnce must not complete with us.
      return absl::AbortedError("a newer lease holder has written this order");
    }
    // (b) Charged already by a holder that died before Complete? Replay it.
    const pqxx::result existing = tx.exec_params(
        "SELECT charge_id, amount_cents, currency FROM ledger WHERE order_id = $1",
        request.order_id());
    if (!existing.empty()) {
      if (existing[0][1].as<int64_t>() != request.amount_cents() ||
          existing[0][2].as<std::string>() != request.currency()) {
        // Only after idem forgot the key (its retention ran out).
        return absl::FailedPreconditionError("order already charged another amount");
      }
      reply.set_charge_id(existing[0][0].as<std::string>());
    } else {
      // (c) Charge.
      const pqxx::result charged = tx.exec_params(
          "INSERT INTO ledger (order_id, amount_cents, currency, lease_token, charge_id) "
          "VALUES ($1, $2, $3, $4, 'ch_' || replace(gen_random_uuid()::text, '-', '')) "
          "RETURNING charge_id",
          request.order_id(), request.amount_cents(), request.currency(), lease_token);
      reply.set_charge_id(charged[0][0].as<std::string>());
      absl::SleepFor(delay / 2);  // A slow charge: a crash here rolls back.
    }
    tx.commit();
  } catch (const std::exception& e) {
    // Nothing was committed (or, rarely, the commit's outcome is unknown):
    // UNAVAILABLE makes RunOnce release the key, and the retry that takes
    // it over finds the charge through (b) if it did happen.
    LOG(WARNING) << "ledger: " << e.what();
    return absl::UnavailableError("the ledger database is unavailable");
  }
  // The crash window: committed, not yet recorded in idem.
  absl::SleepFor(delay - delay / 2);
  reply.set_amount_cents(request.amount_cents());
  return reply;
}

class PaymentsService final : public idem::examples::payments::Payments::Service {
 public:
  PaymentsService(idem::Client* idem, std::string ledger_url,
                  absl::Duration lease_ttl, absl::Duration work_delay)
      : idem_(idem),
        ledger_url_(std::move(ledger_url)),
        lease_ttl_(lease_ttl),
        work_delay_(work_delay) {}

  grpc::Status Charge(grpc::ServerContext* context, const ChargeRequest* request,
                      ChargeReply* reply) override {
    const std::string& currency = request->currency();
    if (request->amount_cents() <= 0 || currency.size() != 3 ||
        !std::all_of(currency.begin(), currency.end(),
                     [](unsigned char c) { return std::isupper(c); })) {
      return {grpc::StatusCode::INVALID_ARGUMENT,
              "amount_cents must be > 0 and currency three upper-case letters"};
    }
    // order_id is checked by idem (INVALID_ARGUMENT naming the key).
    idem::RunOnceOptions options;
    options.lease_ttl = lease_ttl_;
    // Give up (waiting for another holder, retrying idem) when our caller would.
    options.deadline = std::min(absl::Seconds(30),
                                absl::FromChrono(context->deadline()) - absl::Now());

    // The request's bytes are its fingerprint: the same order id with another
    // amount is FAILED_PRECONDITION instead of a replay of the first charge.
    const absl::StatusOr<idem::RunOnceResult> run = idem_->RunOnce(
        kScope, request->order_id(), request->SerializeAsString(),
        [&](const idem::Lease& lease) -> absl::StatusOr<idem::WorkResult> {
          absl::StatusOr<ChargeReply> charged =
              ChargeOnce(ledger_url_, *request, lease.token, work_delay_);
          if (!charged.ok()) return charged.status();
          return idem::WorkResult{charged->SerializeAsString(), 0, {}};
        },
        options);
    if (!run.ok()) {  // Lost the lease, deadline, idem unreachable: retryable.
      return {static_cast<grpc::StatusCode>(run.status().code()),
              std::string(run.status().message())};
    }
    if (run->record.status() == idem::v1::Record::FAILED) {  // Stored failure.
      return {static_cast<grpc::StatusCode>(run->record.response_code()),
              run->record.error()};
    }
    // This call's charge or an earlier one's: the same bytes either way.
    if (!reply->ParseFromString(run->record.response())) {
      return {grpc::StatusCode::INTERNAL, "stored reply does not parse"};
    }
    return grpc::Status::OK;
  }

 private:
  idem::Client* const idem_;
  const std::string ledger_url_;
  const absl::Duration lease_ttl_;
  const absl::Duration work_delay_;
};

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "payments_example: a Charge service that charges each order once.\n"
      "  payments_example --idem=127.0.0.1:50051 --postgres=postgresql:///ledger");
  absl::ParseCommandLine(argc, argv);
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);

  const std::string ledger_url = absl::GetFlag(FLAGS_postgres);
  if (ledger_url.empty()) {
    LOG(ERROR) << "--postgres (the ledger database) is required";
    return 2;
  }
  try {
    pqxx::connection ledger(ledger_url);
    pqxx::nontransaction(ledger).exec(kSchema);
  } catch (const std::exception& e) {
    LOG(ERROR) << "cannot prepare the ledger: " << e.what();
    return 1;
  }

  // One client for all calls: it is thread-safe.
  idem::Client idem(grpc::CreateChannel(absl::GetFlag(FLAGS_idem),
                                        grpc::InsecureChannelCredentials()));
  PaymentsService service(&idem, ledger_url, absl::GetFlag(FLAGS_lease_ttl),
                          absl::GetFlag(FLAGS_work_delay));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::GetFlag(FLAGS_listen),
                           grpc::InsecureServerCredentials());
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) {
    LOG(ERROR) << "cannot listen on " << absl::GetFlag(FLAGS_listen);
    return 1;
  }
  LOG(INFO) << "payments_example on " << absl::GetFlag(FLAGS_listen)
            << ", idem at " << absl::GetFlag(FLAGS_idem);
  server->Wait();
  return 0;
}
