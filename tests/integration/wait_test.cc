// BeginRequest.wait: idemd holds a Begin while the key is IN_PROGRESS and
// answers when the key changes, on this replica or another, or the wait
// ends. Two in-process idemd replicas share the test database.
#include <atomic>
#include <thread>
#include <vector>

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "server/proto_time.h"
#include "tests/integration/test_env.h"

namespace idem {
namespace {

using idem::v1::BeginResponse;
using testenv::InProcessIdemd;

class WaitTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    a_ = new InProcessIdemd(testenv::TestServerOptions());
    b_ = new InProcessIdemd(testenv::TestServerOptions());
  }
  static void TearDownTestSuite() {
    delete a_;
    delete b_;
  }
  void SetUp() override {
    ASSERT_NE(a_->client, nullptr);
    ASSERT_NE(b_->client, nullptr);
    scope_ = testenv::UniqueScope();
  }

  idem::v1::BeginRequest Request(const std::string& key, absl::Duration wait,
                                 absl::Duration lease = absl::Seconds(30)) {
    idem::v1::BeginRequest r;
    r.set_scope(scope_);
    r.set_key(key);
    r.set_request_hash(Client::RequestHash("charge"));
    *r.mutable_lease_ttl() = ToProtoDuration(lease);
    if (wait > absl::ZeroDuration()) *r.mutable_wait() = ToProtoDuration(wait);
    return r;
  }

  int64_t Acquire(Client& client, const std::string& key,
                  absl::Duration lease = absl::Seconds(30)) {
    absl::StatusOr<BeginResponse> r = client.Begin(Request(key, absl::ZeroDuration(), lease));
    EXPECT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->outcome(), BeginResponse::ACQUIRED);
    return r->lease_token();
  }

  idem::v1::CompleteRequest Completion(const std::string& key, int64_t token) {
    idem::v1::CompleteRequest c;
    c.set_scope(scope_);
    c.set_key(key);
    c.set_lease_token(token);
    c.set_response("paid");
    return c;
  }

  // A client whose calls may take `deadline` (the default 5 s is shorter
  // than some waits here).
  static std::unique_ptr<Client> PatientClient(const InProcessIdemd& idemd,
                                               absl::Duration deadline) {
    ClientOptions options;
    options.deadline = deadline;
    return std::make_unique<Client>(
        grpc::CreateChannel(idemd.address, grpc::InsecureChannelCredentials()), options);
  }

  static InProcessIdemd* a_;
  static InProcessIdemd* b_;
  std::string scope_;
};

InProcessIdemd* WaitTest::a_ = nullptr;
InProcessIdemd* WaitTest::b_ = nullptr;

TEST_F(WaitTest, CompleteOnOneReplicaWakesAWaiterOnAnother) {
  const int64_t token = Acquire(*a_->client, "k");
  auto waiter_client = PatientClient(*b_, absl::Seconds(30));
  absl::StatusOr<BeginResponse> waited = absl::UnknownError("unset");
  absl::Time answered;
  std::thread waiter([&] {
    waited = waiter_client->Begin(Request("k", absl::Seconds(20)));
    answered = absl::Now();
  });
  // Let the waiter park on replica B.
  for (int i = 0; i < 100 && b_->server->waiting_calls() == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_EQ(b_->server->waiting_calls(), 1u);
  ASSERT_TRUE(a_->client->Complete(Completion("k", token)).ok());
  const absl::Time completed = absl::Now();
  waiter.join();
  ASSERT_TRUE(waited.ok()) << waited.status();
  // Without the wake-up it would have answered IN_PROGRESS after 20 s.
  EXPECT_EQ(waited->outcome(), BeginResponse::COMPLETED);
  EXPECT_EQ(waited->record().response(), "paid");
  const absl::Duration latency = answered - completed;
  RecordProperty("wake_latency_us", std::to_string(absl::ToInt64Microseconds(latency)));
  std::printf("waiter on replica B answered %s after the Complete on replica A\n",
              absl::FormatDuration(latency).c_str());
  EXPECT_LT(latency, absl::Seconds(5));
  EXPECT_EQ(b_->server->waiting_calls(), 0u);
}

TEST_F(WaitTest, ChangeCommittedWhileTheWaitersStatementRunsIsNotLost) {
  Acquire(*a_->client, "k");
  // A completion holds the row's lock; the waiter's Begin statement blocks
  // on it and then reads its old snapshot (IN_PROGRESS), while the NOTIFY
  // of the commit arrives before the waiter is parked.
  pqxx::connection writer(testenv::SharedDatabaseUrl());
  pqxx::work tx(writer);
  tx.exec_params(
      "UPDATE idempotency_keys SET status = 'completed', response = 'paid', "
      "locked_until = NULL WHERE scope = $1 AND key = 'k'",
      scope_);
  absl::StatusOr<BeginResponse> waited = absl::UnknownError("unset");
  std::thread waiter([&] {
    waited = PatientClient(*b_, absl::Seconds(30))->Begin(Request("k", absl::Seconds(8)));
  });
  absl::SleepFor(absl::Milliseconds(300));
  tx.commit();
  waiter.join();
  ASSERT_TRUE(waited.ok()) << waited.status();
  // A lost wake-up answers IN_PROGRESS after the whole 8 s wait.
  EXPECT_EQ(waited->outcome(), BeginResponse::COMPLETED);
}

TEST_F(WaitTest, ManyWaitersAreAllWokenByOneComplete) {
  const int64_t token = Acquire(*a_->client, "k");
  constexpr int kWaiters = 40;
  std::vector<absl::StatusOr<BeginResponse>> results(kWaiters, absl::UnknownError(""));
  std::vector<std::thread> threads;
  auto client_a = PatientClient(*a_, absl::Seconds(30));
  auto client_b = PatientClient(*b_, absl::Seconds(30));
  for (int i = 0; i < kWaiters; ++i) {
    threads.emplace_back([&, i] {
      results[i] = (i % 2 ? client_a : client_b)->Begin(Request("k", absl::Seconds(20)));
    });
  }
  for (int i = 0; i < 200 && a_->server->waiting_calls() + b_->server->waiting_calls() <
                                 static_cast<size_t>(kWaiters);
       ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_TRUE(a_->client->Complete(Completion("k", token)).ok());
  for (std::thread& t : threads) t.join();
  for (const auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->outcome(), BeginResponse::COMPLETED);
  }
}

TEST_F(WaitTest, LeaseRunningOutHandsTheKeyToTheWaiter) {
  const int64_t token = Acquire(*a_->client, "k", absl::Seconds(1));
  absl::StatusOr<BeginResponse> r =
      PatientClient(*b_, absl::Seconds(10))->Begin(Request("k", absl::Seconds(5)));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outcome(), BeginResponse::ACQUIRED);
  EXPECT_GT(r->lease_token(), token);
  EXPECT_EQ(r->record().attempt(), 2);
}

TEST_F(WaitTest, RetryableFailureHandsTheKeyToTheWaiter) {
  const int64_t token = Acquire(*a_->client, "k");
  absl::StatusOr<BeginResponse> waited = absl::UnknownError("unset");
  std::thread waiter([&] {
    waited = PatientClient(*b_, absl::Seconds(30))->Begin(Request("k", absl::Seconds(20)));
  });
  for (int i = 0; i < 100 && b_->server->waiting_calls() == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  idem::v1::FailRequest f;
  f.set_scope(scope_);
  f.set_key("k");
  f.set_lease_token(token);
  f.set_retryable(true);
  ASSERT_TRUE(a_->client->Fail(f).ok());
  waiter.join();
  ASSERT_TRUE(waited.ok()) << waited.status();
  EXPECT_EQ(waited->outcome(), BeginResponse::ACQUIRED);
  EXPECT_GT(waited->lease_token(), token);
}

TEST_F(WaitTest, WaitEndsInProgressWhenNothingHappens) {
  Acquire(*a_->client, "k");
  const absl::Time start = absl::Now();
  absl::StatusOr<BeginResponse> r = a_->client->Begin(Request("k", absl::Milliseconds(700)));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outcome(), BeginResponse::IN_PROGRESS);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(650));
  EXPECT_EQ(a_->server->waiting_calls(), 0u);
}

TEST_F(WaitTest, CallerDeadlineShorterThanTheWaitGetsInProgressInTime) {
  Acquire(*a_->client, "k");
  absl::StatusOr<BeginResponse> r =
      PatientClient(*a_, absl::Milliseconds(600))->Begin(Request("k", absl::Seconds(30)));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outcome(), BeginResponse::IN_PROGRESS);
}

TEST_F(WaitTest, CancelledCallFreesItsWaiter) {
  Acquire(*a_->client, "k");
  auto stub = idem::v1::Idempotency::NewStub(
      grpc::CreateChannel(a_->address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  idem::v1::BeginResponse response;
  grpc::Status status;
  std::thread caller([&] { status = stub->Begin(&context, Request("k", absl::Seconds(20)), &response); });
  for (int i = 0; i < 100 && a_->server->waiting_calls() == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_EQ(a_->server->waiting_calls(), 1u);
  context.TryCancel();
  caller.join();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
  for (int i = 0; i < 100 && a_->server->waiting_calls() != 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(a_->server->waiting_calls(), 0u);
}

TEST(WaitShutdownTest, ShutdownAnswersParkedCallsAtOnce) {
  InProcessIdemd idemd(testenv::TestServerOptions());
  const std::string scope = testenv::UniqueScope();
  idem::v1::BeginRequest r;
  r.set_scope(scope);
  r.set_key("k");
  r.set_request_hash("h");
  ASSERT_TRUE(idemd.client->Begin(r).ok());
  r.mutable_wait()->set_seconds(30);
  ClientOptions options;
  options.deadline = absl::Seconds(40);
  Client patient(grpc::CreateChannel(idemd.address, grpc::InsecureChannelCredentials()),
                 options);
  absl::StatusOr<BeginResponse> waited = absl::UnknownError("unset");
  std::thread waiter([&] { waited = patient.Begin(r); });
  for (int i = 0; i < 100 && idemd.server->waiting_calls() == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  const absl::Time start = absl::Now();
  idemd.server->Shutdown();
  waiter.join();
  ASSERT_TRUE(waited.ok()) << waited.status();
  EXPECT_EQ(waited->outcome(), BeginResponse::IN_PROGRESS);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

}  // namespace
}  // namespace idem
