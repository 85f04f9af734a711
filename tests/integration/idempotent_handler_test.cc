// IdempotentHandler (client/include/idem/idempotent_handler.h) in a real
// gRPC service, in front of a real in-process idemd.
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/create_channel.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "idem/idempotent_handler.h"
#include "test_payments.grpc.pb.h"
#include "tests/integration/test_env.h"

namespace idem {
namespace {

using idem::test::payments::ChargeReply;
using idem::test::payments::ChargeRequest;
using idem::test::payments::Payments;
using testenv::InProcessIdemd;

constexpr char kChargeMethod[] = "/idem.test.payments.Payments/Charge";

// The business logic: counts its executions. A negative amount is a
// permanent error; order "flaky" fails with UNAVAILABLE on its first run.
grpc::Status DoCharge(std::atomic<int>* executions, const ChargeRequest& request,
                      ChargeReply* reply) {
  const int n = ++*executions;
  if (request.amount_cents() < 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "negative amount");
  }
  if (request.order_id() == "flaky" && n == 1) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "provider down");
  }
  reply->set_charge_id(absl::StrCat("ch_", request.order_id(), "_", n));
  reply->set_amount_cents(request.amount_cents());
  reply->set_execution(n);
  return grpc::Status::OK;
}

class SyncPayments final : public Payments::Service {
 public:
  explicit SyncPayments(IdempotentHandler charge) : charge_(std::move(charge)) {}
  grpc::Status Charge(grpc::ServerContext* context, const ChargeRequest* request,
                      ChargeReply* reply) override {
    return charge_.Run(context, *request, reply,
                       [&] { return DoCharge(&executions, *request, reply); });
  }
  std::atomic<int> executions{0};

 private:
  const IdempotentHandler charge_;
};

// The callback API: the blocking Run goes to a thread of its own, never on
// the reactor's thread. The threads are joined when the service goes.
class CallbackPayments final : public Payments::CallbackService {
 public:
  explicit CallbackPayments(IdempotentHandler charge) : charge_(std::move(charge)) {}
  ~CallbackPayments() override {
    absl::MutexLock lock(&mu_);
    for (std::thread& t : workers_) t.join();
  }
  grpc::ServerUnaryReactor* Charge(grpc::CallbackServerContext* context,
                                   const ChargeRequest* request,
                                   ChargeReply* reply) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    absl::MutexLock lock(&mu_);
    workers_.emplace_back([this, context, request, reply, reactor] {
      reactor->Finish(charge_.Run(context, *request, reply, [&] {
        return DoCharge(&executions, *request, reply);
      }));
    });
    return reactor;
  }
  std::atomic<int> executions{0};

 private:
  const IdempotentHandler charge_;
  absl::Mutex mu_;
  std::vector<std::thread> workers_ ABSL_GUARDED_BY(mu_);
};

struct Reply {
  grpc::Status status;
  ChargeReply reply;
  bool replayed = false;
};

class IdempotentHandlerTest : public testenv::SharedIdemdTest {
 protected:

  void SetUp() override {
    SharedIdemdTest::SetUp();
    key_ = scope_;  // unique per test, and a valid key
  }
  void TearDown() override {
    // The server goes before the service it calls.
    if (server_ != nullptr) server_->Shutdown(std::chrono::system_clock::now());
    server_.reset();
    service_.reset();
  }

  IdempotentHandler Handler(IdempotentHandlerOptions options = {}) {
    options.run_once.initial_backoff = absl::Milliseconds(20);
    options.run_once.max_backoff = absl::Milliseconds(200);
    options.run_once.deadline = absl::Seconds(10);
    absl::StatusOr<IdempotentHandler> h =
        IdempotentHandler::Create(idemd_->client.get(), kChargeMethod, options);
    EXPECT_TRUE(h.ok()) << h.status();
    return *std::move(h);
  }

  // Serves `service` on a free port; the fixture keeps it until TearDown.
  template <typename S>
  S* Serve(std::unique_ptr<S> service) {
    S* raw = service.get();
    service_ = std::move(service);
    int port = 0;
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(raw);
    server_ = builder.BuildAndStart();
    EXPECT_NE(server_, nullptr);
    stub_ = Payments::NewStub(grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                                  grpc::InsecureChannelCredentials()));
    return raw;
  }

  // Calls Charge with `key` as idempotency-key (none when empty).
  Reply Charge(const ChargeRequest& request, const std::string& key) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(15)));
    if (!key.empty()) context.AddMetadata(kIdempotencyKeyHeader, key);
    Reply out;
    out.status = stub_->Charge(&context, request, &out.reply);
    const auto& initial = context.GetServerInitialMetadata();
    const auto it = initial.find(kIdempotentReplayedHeader);
    out.replayed = it != initial.end() && it->second == "true";
    return out;
  }

  static ChargeRequest Request(const std::string& order, int64_t amount) {
    ChargeRequest r;
    r.set_order_id(order);
    r.set_amount_cents(amount);
    (*r.mutable_tags())["a"] = "1";
    (*r.mutable_tags())["b"] = "2";
    (*r.mutable_tags())["c"] = "3";
    return r;
  }

  std::string key_;
  std::unique_ptr<grpc::Service> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<Payments::Stub> stub_;
};


TEST_F(IdempotentHandlerTest, SameKeyTwiceRunsTheHandlerOnceAndReplays) {
  SyncPayments* service = Serve(std::make_unique<SyncPayments>(Handler()));
  const Reply first = Charge(Request("o1", 500), key_);
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();
  EXPECT_FALSE(first.replayed);
  EXPECT_EQ(first.reply.charge_id(), "ch_o1_1");

  const Reply second = Charge(Request("o1", 500), key_);
  ASSERT_TRUE(second.status.ok()) << second.status.error_message();
  EXPECT_TRUE(second.replayed);
  EXPECT_EQ(second.reply.SerializeAsString(), first.reply.SerializeAsString());
  EXPECT_EQ(service->executions, 1);

  // Stored under the method's scope.
  absl::StatusOr<idem::v1::Record> record =
      idemd_->client->Get("idem.test.payments.Payments/Charge", key_);
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->status(), idem::v1::Record::COMPLETED);
}

TEST_F(IdempotentHandlerTest, StoredErrorStatusIsReplayed) {
  SyncPayments* service = Serve(std::make_unique<SyncPayments>(Handler()));
  const Reply first = Charge(Request("o1", -5), key_);
  EXPECT_EQ(first.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(first.status.error_message(), "negative amount");
  EXPECT_FALSE(first.replayed);

  const Reply second = Charge(Request("o1", -5), key_);
  EXPECT_EQ(second.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(second.status.error_message(), "negative amount");
  EXPECT_TRUE(second.replayed);
  EXPECT_EQ(service->executions, 1);
}

TEST_F(IdempotentHandlerTest, RetryableErrorReleasesTheKey) {
  SyncPayments* service = Serve(std::make_unique<SyncPayments>(Handler()));
  const Reply first = Charge(Request("flaky", 100), key_);
  EXPECT_EQ(first.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(first.status.error_message(), "provider down");

  const Reply second = Charge(Request("flaky", 100), key_);
  ASSERT_TRUE(second.status.ok()) << second.status.error_message();
  EXPECT_FALSE(second.replayed);
  EXPECT_EQ(second.reply.execution(), 2);
  EXPECT_EQ(service->executions, 2);
}

TEST_F(IdempotentHandlerTest, CallsWithoutAKeyPassThrough) {
  SyncPayments* service = Serve(std::make_unique<SyncPayments>(Handler()));
  const Reply first = Charge(Request("o1", 500), "");
  const Reply second = Charge(Request("o1", 500), "");
  ASSERT_TRUE(first.status.ok() && second.status.ok());
  EXPECT_FALSE(second.replayed);
  EXPECT_EQ(second.reply.execution(), 2);
  EXPECT_EQ(service->executions, 2);
}

TEST_F(IdempotentHandlerTest, RequireKeyRejectsCallsWithoutOne) {
  IdempotentHandlerOptions options;
  options.require_key = true;
  SyncPayments* service = Serve(std::make_unique<SyncPayments>(Handler(options)));
  const Reply r = Charge(Request("o1", 500), "");
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(r.status.error_message().find(kIdempotencyKeyHeader), std::string::npos);
  EXPECT_EQ(service->executions, 0);
}

TEST_F(IdempotentHandlerTest, MalformedKeyIsInvalidArgument) {
  SyncPayments* service = Serve(std::make_unique<SyncPayments>(Handler()));
  for (const std::string& bad : {std::string("has space"), std::string(256, 'k')}) {
    const Reply r = Charge(Request("o1", 500), bad);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad;
  }
  EXPECT_EQ(service->executions, 0);
}

TEST_F(IdempotentHandlerTest, SameKeyOtherRequestIsFailedPrecondition) {
  SyncPayments* service = Serve(std::make_unique<SyncPayments>(Handler()));
  ASSERT_TRUE(Charge(Request("o1", 500), key_).status.ok());
  const Reply other = Charge(Request("o1", 501), key_);
  EXPECT_EQ(other.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << other.status.error_message();
  EXPECT_EQ(service->executions, 1);
}

TEST_F(IdempotentHandlerTest, ConfiguredScopeIsUsed) {
  IdempotentHandlerOptions options;
  options.scope = testenv::UniqueScope();
  SyncPayments* service = Serve(std::make_unique<SyncPayments>(Handler(options)));
  ASSERT_TRUE(Charge(Request("o1", 500), "key-1").status.ok());
  absl::StatusOr<idem::v1::Record> record = idemd_->client->Get(options.scope, "key-1");
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->status(), idem::v1::Record::COMPLETED);
  EXPECT_EQ(service->executions, 1);
}

TEST_F(IdempotentHandlerTest, WorksFromTheCallbackApiOnAWorkerThread) {
  CallbackPayments* service = Serve(std::make_unique<CallbackPayments>(Handler()));
  const Reply first = Charge(Request("o1", 500), key_);
  const Reply second = Charge(Request("o1", 500), key_);
  ASSERT_TRUE(first.status.ok() && second.status.ok())
      << first.status.error_message() << second.status.error_message();
  EXPECT_FALSE(first.replayed);
  EXPECT_TRUE(second.replayed);
  EXPECT_EQ(second.reply.SerializeAsString(), first.reply.SerializeAsString());
  EXPECT_EQ(service->executions, 1);
}

}  // namespace
}  // namespace idem
