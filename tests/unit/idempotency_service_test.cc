#include "server/idempotency_service.h"

#include <gtest/gtest.h>

#include "server/proto_time.h"
#include "tests/unit/fake_store.h"

namespace idem {
namespace {

using idem::v1::BeginResponse;
using idem::v1::Record;

const absl::Time kDeadline = absl::FromUnixSeconds(2'000'000'000);

class IdempotencyServiceTest : public testing::Test {
 protected:
  IdempotencyServiceTest() : service_(&store_, RequestLimits{16}) {}

  static idem::v1::BeginRequest Begin() {
    idem::v1::BeginRequest r;
    r.set_scope("s");
    r.set_key("k");
    r.set_request_hash("h");
    return r;
  }

  static Record InProgress(int64_t token) {
    Record r;
    r.set_status(Record::IN_PROGRESS);
    r.set_lease_token(token);
    return r;
  }

  FakeStore store_;
  IdempotencyService service_;
};

TEST_F(IdempotencyServiceTest, InvalidRequestNeverReachesTheStore) {
  idem::v1::BeginRequest r = Begin();
  r.set_key("");
  BeginResponse response;
  EXPECT_EQ(service_.Begin(r, kDeadline, &response).code(),
            absl::StatusCode::kInvalidArgument);
  idem::v1::CompleteRequest c;
  c.set_scope("s");
  c.set_key("k");
  c.set_lease_token(1);
  c.set_response(std::string(17, 'x'));  // Over the limit of 16.
  idem::v1::CompleteResponse cr;
  EXPECT_EQ(service_.Complete(c, kDeadline, &cr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_.calls, 0);
}

TEST_F(IdempotencyServiceTest, BeginPassesDefaultsAndDeadline) {
  store_.begin_result = BeginResult{BeginResponse::ACQUIRED, InProgress(5), {}};
  BeginResponse response;
  ASSERT_TRUE(service_.Begin(Begin(), kDeadline, &response).ok());
  EXPECT_EQ(store_.last_lease_ttl, absl::Seconds(30));
  EXPECT_EQ(store_.last_retention, absl::Hours(24));
  EXPECT_EQ(store_.last_deadline, kDeadline);
}

TEST_F(IdempotencyServiceTest, AcquiredHandsOutTheToken) {
  store_.begin_result = BeginResult{BeginResponse::ACQUIRED, InProgress(5), {}};
  BeginResponse response;
  ASSERT_TRUE(service_.Begin(Begin(), kDeadline, &response).ok());
  EXPECT_EQ(response.outcome(), BeginResponse::ACQUIRED);
  EXPECT_EQ(response.lease_token(), 5);
  EXPECT_EQ(response.record().lease_token(), 5);
  EXPECT_FALSE(response.has_retry_after());
}

TEST_F(IdempotencyServiceTest, InProgressHidesTheHoldersTokenAndSaysWhenToRetry) {
  store_.begin_result =
      BeginResult{BeginResponse::IN_PROGRESS, InProgress(5), absl::Milliseconds(1500)};
  BeginResponse response;
  ASSERT_TRUE(service_.Begin(Begin(), kDeadline, &response).ok());
  EXPECT_EQ(response.outcome(), BeginResponse::IN_PROGRESS);
  EXPECT_EQ(response.lease_token(), 0);
  EXPECT_EQ(response.record().lease_token(), 0);
  EXPECT_EQ(FromProtoDuration(response.retry_after()), absl::Milliseconds(1500));
}

TEST_F(IdempotencyServiceTest, CompletedHandsOutNoLease) {
  Record done;
  done.set_status(Record::COMPLETED);
  done.set_lease_token(5);
  done.set_response("r");
  store_.begin_result = BeginResult{BeginResponse::COMPLETED, done, {}};
  BeginResponse response;
  ASSERT_TRUE(service_.Begin(Begin(), kDeadline, &response).ok());
  EXPECT_EQ(response.outcome(), BeginResponse::COMPLETED);
  EXPECT_EQ(response.lease_token(), 0);
  EXPECT_EQ(response.record().response(), "r");
}

TEST_F(IdempotencyServiceTest, StoreStatusPassesThrough) {
  for (absl::Status s : {absl::FailedPreconditionError("mismatch"),
                         absl::UnavailableError("down"), absl::AbortedError("lost")}) {
    store_.begin_result = s;
    BeginResponse response;
    EXPECT_EQ(service_.Begin(Begin(), kDeadline, &response), s);
  }
}

TEST_F(IdempotencyServiceTest, GetHidesALiveLeaseToken) {
  store_.record_result = InProgress(9);
  idem::v1::GetRequest r;
  r.set_scope("s");
  r.set_key("k");
  idem::v1::GetResponse response;
  ASSERT_TRUE(service_.Get(r, kDeadline, &response).ok());
  EXPECT_EQ(response.record().status(), Record::IN_PROGRESS);
  EXPECT_EQ(response.record().lease_token(), 0);
}

TEST_F(IdempotencyServiceTest, ExtendLeaseReturnsTheHoldersRecord) {
  store_.record_result = InProgress(9);
  idem::v1::ExtendLeaseRequest r;
  r.set_scope("s");
  r.set_key("k");
  r.set_lease_token(9);
  r.mutable_lease_ttl()->set_seconds(120);
  idem::v1::ExtendLeaseResponse response;
  ASSERT_TRUE(service_.ExtendLease(r, kDeadline, &response).ok());
  EXPECT_EQ(store_.last_lease_ttl, absl::Seconds(120));
  EXPECT_EQ(response.record().lease_token(), 9);
}

}  // namespace
}  // namespace idem
