// The contract (proto/idem/v1/idempotency.proto), rule by rule, through gRPC
// against an in-process idemd on the test PostgreSQL.
#include <unistd.h>

#include <atomic>
#include <set>
#include <thread>
#include <string>

#include <grpcpp/create_channel.h>
#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "server/proto_time.h"
#include "tests/integration/test_env.h"

namespace idem {
namespace {

using idem::v1::BeginResponse;
using idem::v1::Record;
using testenv::InProcessIdemd;

class ServerTest : public testenv::SharedIdemdTest {
 protected:
  static void SetUpTestSuite() {
    Server::Options options = testenv::TestServerOptions();
    options.max_response_bytes = 4096;
    StartIdemd(options);
  }

  absl::StatusOr<BeginResponse> Begin(const std::string& key,
                                      const std::string& request = "request",
                                      BeginOptions options = {}) {
    return client().Begin(scope_, key, request, options);
  }

  // Begins `key` and expects ACQUIRED; returns the token.
  int64_t Acquire(const std::string& key, const std::string& request = "request",
                  BeginOptions options = {}) {
    absl::StatusOr<BeginResponse> r = Begin(key, request, options);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return 0;
    EXPECT_EQ(r->outcome(), BeginResponse::ACQUIRED);
    return r->lease_token();
  }

  idem::v1::CompleteRequest CompleteRequest(const std::string& key, int64_t token,
                                            const std::string& response = "done") {
    idem::v1::CompleteRequest c;
    c.set_scope(scope_);
    c.set_key(key);
    c.set_lease_token(token);
    c.set_response(response);
    c.set_response_code(201);
    (*c.mutable_response_metadata())["content-type"] = "application/json";
    return c;
  }

  idem::v1::FailRequest FailRequest(const std::string& key, int64_t token,
                                    bool retryable) {
    idem::v1::FailRequest f;
    f.set_scope(scope_);
    f.set_key(key);
    f.set_lease_token(token);
    f.set_error("card declined");
    f.set_retryable(retryable);
    f.set_response("{\"error\":\"declined\"}");
    f.set_response_code(402);
    return f;
  }

  idem::v1::ExtendLeaseRequest ExtendRequest(const std::string& key, int64_t token,
                                             absl::Duration ttl) {
    idem::v1::ExtendLeaseRequest e;
    e.set_scope(scope_);
    e.set_key(key);
    e.set_lease_token(token);
    e.mutable_lease_ttl()->set_seconds(absl::ToInt64Seconds(ttl));
    return e;
  }

};


absl::Time T(const google::protobuf::Timestamp& t) { return FromProtoTimestamp(t); }

TEST_F(ServerTest, UnknownKeyIsAcquiredWithALease) {
  BeginOptions options;
  options.lease_ttl = absl::Seconds(7);
  options.retention = absl::Hours(2);
  absl::StatusOr<BeginResponse> r = Begin("k", "request", options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outcome(), BeginResponse::ACQUIRED);
  EXPECT_GT(r->lease_token(), 0);
  const Record& rec = r->record();
  EXPECT_EQ(rec.status(), Record::IN_PROGRESS);
  EXPECT_EQ(rec.attempt(), 1);
  EXPECT_EQ(rec.lease_token(), r->lease_token());
  EXPECT_EQ(rec.scope(), scope_);
  EXPECT_EQ(rec.key(), "k");
  EXPECT_EQ(rec.request_hash(), Client::RequestHash("request"));
  // The lease is counted from when the row was locked (clock_timestamp()),
  // a hair after created_at (now()).
  EXPECT_GE(T(rec.locked_until()) - T(rec.created_at()), absl::Seconds(7));
  EXPECT_LT(T(rec.locked_until()) - T(rec.created_at()), absl::Seconds(8));
  EXPECT_EQ(T(rec.expires_at()) - T(rec.created_at()), absl::Hours(2));
  EXPECT_LT(absl::AbsDuration(T(rec.created_at()) - absl::Now()), absl::Seconds(30));
}

TEST_F(ServerTest, DefaultLeaseIs30sAndRetention24h) {
  absl::StatusOr<BeginResponse> r = Begin("k");
  ASSERT_TRUE(r.ok());
  EXPECT_GE(T(r->record().locked_until()) - T(r->record().created_at()), absl::Seconds(30));
  EXPECT_LT(T(r->record().locked_until()) - T(r->record().created_at()), absl::Seconds(31));
  EXPECT_EQ(T(r->record().expires_at()) - T(r->record().created_at()), absl::Hours(24));
}

TEST_F(ServerTest, LiveLeaseAnswersInProgressWithRetryAfter) {
  const int64_t token = Acquire("k", "request", {absl::Seconds(20), absl::ZeroDuration()});
  absl::StatusOr<BeginResponse> r = Begin("k");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->outcome(), BeginResponse::IN_PROGRESS);
  EXPECT_EQ(r->lease_token(), 0);
  EXPECT_EQ(r->record().lease_token(), 0) << "the holder's token must not leak";
  EXPECT_EQ(r->record().attempt(), 1);
  const absl::Duration retry_after = FromProtoDuration(r->retry_after());
  EXPECT_GT(retry_after, absl::Seconds(15));
  EXPECT_LE(retry_after, absl::Seconds(20));
  EXPECT_GT(token, 0);
}

TEST_F(ServerTest, DifferentRequestHashIsFailedPreconditionInEveryState) {
  const int64_t token = Acquire("in-progress");
  absl::StatusOr<BeginResponse> r = Begin("in-progress", "another request");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("does not match the key's original request"),
            absl::string_view::npos)
      << r.status();

  ASSERT_TRUE(client().Complete(CompleteRequest("in-progress", token)).ok());
  EXPECT_EQ(Begin("in-progress", "another request").status().code(),
            absl::StatusCode::kFailedPrecondition);

  const int64_t t2 = Acquire("failed");
  ASSERT_TRUE(client().Fail(FailRequest("failed", t2, /*retryable=*/false)).ok());
  EXPECT_EQ(Begin("failed", "another request").status().code(),
            absl::StatusCode::kFailedPrecondition);

  const int64_t t3 = Acquire("released");
  ASSERT_TRUE(client().Fail(FailRequest("released", t3, /*retryable=*/true)).ok());
  EXPECT_EQ(Begin("released", "another request").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(ServerTest, LapsedLeaseIsTakenOverWithAGreaterToken) {
  const int64_t first = Acquire("k", "request", {absl::Seconds(1), absl::ZeroDuration()});
  absl::SleepFor(absl::Milliseconds(1200));
  absl::StatusOr<BeginResponse> r = Begin("k");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->outcome(), BeginResponse::ACQUIRED);
  EXPECT_GT(r->lease_token(), first);
  EXPECT_EQ(r->record().attempt(), 2);

  // The first holder lost its lease: nothing it sends is stored.
  absl::StatusOr<Record> late = client().Complete(CompleteRequest("k", first, "stale"));
  EXPECT_EQ(late.status().code(), absl::StatusCode::kAborted) << late.status();
  EXPECT_EQ(client().Fail(FailRequest("k", first, false)).status().code(),
            absl::StatusCode::kAborted);
  EXPECT_EQ(client().ExtendLease(ExtendRequest("k", first, absl::Minutes(5))).status().code(),
            absl::StatusCode::kAborted);
  absl::StatusOr<Record> now = client().Get(scope_, "k");
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(now->status(), Record::IN_PROGRESS);
  EXPECT_EQ(now->response(), "");
  EXPECT_EQ(T(now->locked_until()), T(r->record().locked_until()));

  // The new holder completes normally.
  ASSERT_TRUE(client().Complete(CompleteRequest("k", r->lease_token())).ok());
}

TEST_F(ServerTest, CompletedReplaysResponseByteForByte) {
  std::string response;
  for (int i = 0; i < 256; ++i) response.push_back(static_cast<char>(i));
  idem::v1::CompleteRequest c = CompleteRequest("k", Acquire("k"), response);
  c.set_response_code(-7);
  (*c.mutable_response_metadata())["quote\"back\\slash"] = "caf\xc3\xa9 \xf0\x9f\x98\x80 {}[]";
  (*c.mutable_response_metadata())["empty"] = "";
  absl::StatusOr<Record> done = client().Complete(c);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->status(), Record::COMPLETED);
  EXPECT_FALSE(done->has_locked_until());

  absl::StatusOr<BeginResponse> replay = Begin("k");
  ASSERT_TRUE(replay.ok());
  EXPECT_EQ(replay->outcome(), BeginResponse::COMPLETED);
  EXPECT_EQ(replay->lease_token(), 0) << "a replay hands out no lease";
  EXPECT_EQ(replay->record().response(), response);
  EXPECT_EQ(replay->record().response_code(), -7);
  EXPECT_EQ(replay->record().response_metadata().size(), 3u);
  EXPECT_EQ(replay->record().response_metadata().at("quote\"back\\slash"),
            "caf\xc3\xa9 \xf0\x9f\x98\x80 {}[]");
  EXPECT_EQ(replay->record().response_metadata().at("empty"), "");
  EXPECT_EQ(replay->record().response_metadata().at("content-type"), "application/json");
}

TEST_F(ServerTest, PermanentFailureIsReplayed) {
  ASSERT_TRUE(client().Fail(FailRequest("k", Acquire("k"), false)).ok());
  absl::StatusOr<BeginResponse> r = Begin("k");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->outcome(), BeginResponse::FAILED);
  EXPECT_EQ(r->lease_token(), 0);
  EXPECT_EQ(r->record().error(), "card declined");
  EXPECT_EQ(r->record().response(), "{\"error\":\"declined\"}");
  EXPECT_EQ(r->record().response_code(), 402);
  EXPECT_FALSE(r->record().retryable());
}

TEST_F(ServerTest, RetryableFailureReleasesTheKeyAtOnce) {
  const int64_t first = Acquire("k", "request", {absl::Minutes(10), absl::ZeroDuration()});
  absl::StatusOr<Record> failed = client().Fail(FailRequest("k", first, true));
  ASSERT_TRUE(failed.ok());
  EXPECT_EQ(failed->status(), Record::FAILED);
  EXPECT_TRUE(failed->retryable());
  absl::StatusOr<BeginResponse> r = Begin("k");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->outcome(), BeginResponse::ACQUIRED);
  EXPECT_EQ(r->record().attempt(), 2);
  EXPECT_GT(r->lease_token(), first);
  EXPECT_EQ(r->record().error(), "");
}

TEST_F(ServerTest, RepeatingTheSameCompleteOrFailIsOk) {
  const int64_t t = Acquire("c");
  absl::StatusOr<Record> first = client().Complete(CompleteRequest("c", t));
  absl::StatusOr<Record> again = client().Complete(CompleteRequest("c", t));
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(first->SerializeAsString(), again->SerializeAsString());
  // A different outcome on the finished record is refused, and not stored.
  EXPECT_EQ(client().Complete(CompleteRequest("c", t, "other")).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(client().Fail(FailRequest("c", t, false)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(client().ExtendLease(ExtendRequest("c", t, absl::Minutes(1))).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(client().Get(scope_, "c")->response(), "done");

  const int64_t f = Acquire("f");
  ASSERT_TRUE(client().Fail(FailRequest("f", f, false)).ok());
  absl::StatusOr<Record> fail_again = client().Fail(FailRequest("f", f, false));
  ASSERT_TRUE(fail_again.ok()) << fail_again.status();
  EXPECT_EQ(fail_again->error(), "card declined");
}

TEST_F(ServerTest, WrongTokenIsAbortedAndStoresNothing) {
  const int64_t t = Acquire("k");
  for (int64_t wrong : {t + 1000, t - 1 > 0 ? t - 1 : t + 1, INT64_MAX}) {
    EXPECT_EQ(client().Complete(CompleteRequest("k", wrong)).status().code(),
              absl::StatusCode::kAborted);
    EXPECT_EQ(client().Fail(FailRequest("k", wrong, true)).status().code(),
              absl::StatusCode::kAborted);
    EXPECT_EQ(client().ExtendLease(ExtendRequest("k", wrong, absl::Minutes(1))).status().code(),
              absl::StatusCode::kAborted);
  }
  absl::StatusOr<Record> r = client().Get(scope_, "k");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status(), Record::IN_PROGRESS);
  EXPECT_EQ(r->response(), "");
  EXPECT_EQ(r->error(), "");
}

TEST_F(ServerTest, MissingKeyIsNotFound) {
  EXPECT_EQ(client().Complete(CompleteRequest("missing", 5)).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(client().Fail(FailRequest("missing", 5, false)).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(client().ExtendLease(ExtendRequest("missing", 5, absl::Minutes(1))).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(client().Get(scope_, "missing").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ServerTest, ExtendLeaseMovesLockedUntil) {
  const int64_t t = Acquire("k", "request", {absl::Seconds(2), absl::ZeroDuration()});
  absl::StatusOr<Record> extended =
      client().ExtendLease(ExtendRequest("k", t, absl::Minutes(10)));
  ASSERT_TRUE(extended.ok()) << extended.status();
  EXPECT_EQ(extended->lease_token(), t);
  EXPECT_GT(T(extended->locked_until()), absl::Now() + absl::Minutes(9));
  absl::SleepFor(absl::Milliseconds(2200));  // Past the original lease.
  absl::StatusOr<BeginResponse> other = Begin("k");
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->outcome(), BeginResponse::IN_PROGRESS);
  EXPECT_GT(FromProtoDuration(other->retry_after()), absl::Minutes(9));
}

TEST_F(ServerTest, ExpiredRecordIsAbsentBeforeTheSweep) {
  const int64_t t = Acquire("k", "request", {absl::Seconds(1), absl::Seconds(1)});
  ASSERT_TRUE(client().Complete(CompleteRequest("k", t)).ok());
  absl::SleepFor(absl::Milliseconds(1200));
  EXPECT_EQ(client().Get(scope_, "k").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client().Complete(CompleteRequest("k", t)).status().code(),
            absl::StatusCode::kNotFound);
  // Unknown again: any request may take it, from attempt 1.
  absl::StatusOr<BeginResponse> r = Begin("k", "a different request");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outcome(), BeginResponse::ACQUIRED);
  EXPECT_EQ(r->record().attempt(), 1);
  EXPECT_GT(r->lease_token(), t);
  EXPECT_EQ(r->record().response(), "");
}

TEST_F(ServerTest, ARecordNeverExpiresWhileItsLeaseIsLive) {
  const int64_t t = Acquire("k", "request", {absl::Seconds(5), absl::Seconds(1)});
  absl::SleepFor(absl::Milliseconds(1300));
  absl::StatusOr<BeginResponse> r = Begin("k");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->outcome(), BeginResponse::IN_PROGRESS);
  EXPECT_TRUE(client().Complete(CompleteRequest("k", t)).ok());
}

TEST_F(ServerTest, HolderMayFinishAfterItsLeaseRanOutIfNobodyTookOver) {
  const int64_t t = Acquire("k", "request", {absl::Seconds(1), absl::ZeroDuration()});
  absl::SleepFor(absl::Milliseconds(1200));
  absl::StatusOr<Record> done = client().Complete(CompleteRequest("k", t));
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(Begin("k")->outcome(), BeginResponse::COMPLETED);
}

TEST_F(ServerTest, BadInputIsInvalidArgumentNamingTheField) {
  struct Case {
    std::string field;
    idem::v1::BeginRequest request;
  };
  idem::v1::BeginRequest base;
  base.set_scope(scope_);
  base.set_key("k");
  base.set_request_hash("h");
  std::vector<Case> cases;
  cases.push_back({"scope", base});
  cases.back().request.set_scope("");
  cases.push_back({"scope", base});
  cases.back().request.set_scope("white space");
  cases.push_back({"key", base});
  cases.back().request.set_key(std::string(256, 'k'));
  cases.push_back({"key", base});
  cases.back().request.set_key(std::string("nul\0", 4));
  cases.push_back({"request_hash", base});
  cases.back().request.clear_request_hash();
  cases.push_back({"lease_ttl", base});
  cases.back().request.mutable_lease_ttl()->set_seconds(-1);
  cases.push_back({"lease_ttl", base});
  cases.back().request.mutable_lease_ttl()->set_seconds(INT64_MAX);
  cases.push_back({"retention", base});
  cases.back().request.mutable_retention()->set_seconds(31 * 86400);
  for (const Case& c : cases) {
    absl::StatusOr<BeginResponse> r = client().Begin(c.request);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_NE(r.status().message().find(c.field), absl::string_view::npos)
        << r.status();
  }
  const int64_t t = Acquire("k");
  idem::v1::CompleteRequest big = CompleteRequest("k", t, std::string(4097, 'x'));
  absl::StatusOr<Record> r = client().Complete(big);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("max_response_bytes"), absl::string_view::npos);
  // Far over the limit (but within gRPC's receive cap) is still
  // INVALID_ARGUMENT naming the field, not a transport error.
  absl::StatusOr<Record> huge = client().Complete(CompleteRequest("k", t, std::string(3 << 20, 'x')));
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kInvalidArgument) << huge.status();
  EXPECT_EQ(client().Complete(CompleteRequest("k", 0)).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Nothing was stored by the refused calls.
  EXPECT_EQ(client().Get(scope_, "k")->status(), Record::IN_PROGRESS);
}

TEST_F(ServerTest, ClientDeadlineBoundsACallStuckInTheDatabase) {
  Acquire("k");
  // Hold the row's lock so the next Begin waits inside PostgreSQL.
  pqxx::connection locker(testenv::SharedDatabaseUrl());
  pqxx::work tx(locker);
  tx.exec_params("SELECT 1 FROM idempotency_keys WHERE scope = $1 FOR UPDATE", scope_);
  ClientOptions options;
  options.deadline = absl::Milliseconds(300);
  Client impatient(grpc::CreateChannel(idemd_->address, grpc::InsecureChannelCredentials()),
                   options);
  const absl::Time start = absl::Now();
  absl::StatusOr<BeginResponse> r = impatient.Begin(scope_, "k", "request");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  tx.abort();
  // The server is fine afterwards.
  EXPECT_EQ(Begin("k")->outcome(), BeginResponse::IN_PROGRESS);
}

idem::v1::BeginRequest BeginRequestFor(const std::string& scope, const std::string& key,
                                       const std::string& request,
                                       const std::string& owner = "") {
  idem::v1::BeginRequest r;
  r.set_scope(scope);
  r.set_key(key);
  r.set_request_hash(Client::RequestHash(request));
  r.set_owner(owner);
  return r;
}

TEST_F(ServerTest, OwnerReentersItsOwnLiveLease) {
  absl::StatusOr<BeginResponse> first = client().Begin(BeginRequestFor(scope_, "k", "req", "run-1"));
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->outcome(), BeginResponse::ACQUIRED);
  EXPECT_EQ(first->record().owner(), "run-1");

  // The same invocation retrying a Begin whose answer it lost.
  absl::SleepFor(absl::Milliseconds(20));
  absl::StatusOr<BeginResponse> again = client().Begin(BeginRequestFor(scope_, "k", "req", "run-1"));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->outcome(), BeginResponse::ACQUIRED);
  EXPECT_EQ(again->lease_token(), first->lease_token());
  EXPECT_EQ(again->record().attempt(), 1);
  // Re-entry renews the lease, so the holder gets a whole lease_ttl again.
  EXPECT_GT(T(again->record().locked_until()), T(first->record().locked_until()));

  // Anyone else still waits, and learns neither the token nor the owner.
  for (const std::string owner : {"run-2", ""}) {
    absl::StatusOr<BeginResponse> other = client().Begin(BeginRequestFor(scope_, "k", "req", owner));
    ASSERT_TRUE(other.ok());
    EXPECT_EQ(other->outcome(), BeginResponse::IN_PROGRESS) << owner;
    EXPECT_EQ(other->record().owner(), "");
    EXPECT_EQ(other->record().lease_token(), 0);
  }
  // Re-entry needs the same request.
  EXPECT_EQ(client().Begin(BeginRequestFor(scope_, "k", "other", "run-1")).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // Once completed, the owner gets the replay like everyone.
  ASSERT_TRUE(client().Complete(CompleteRequest("k", first->lease_token())).ok());
  absl::StatusOr<BeginResponse> replay = client().Begin(BeginRequestFor(scope_, "k", "req", "run-1"));
  ASSERT_TRUE(replay.ok());
  EXPECT_EQ(replay->outcome(), BeginResponse::COMPLETED);
}

TEST_F(ServerTest, ReentryNeverRevivesALeaseTakenOverByAnother) {
  idem::v1::BeginRequest mine = BeginRequestFor(scope_, "k", "req", "run-1");
  mine.mutable_lease_ttl()->set_seconds(1);
  absl::StatusOr<BeginResponse> first = client().Begin(mine);
  ASSERT_TRUE(first.ok());
  absl::SleepFor(absl::Milliseconds(1200));
  absl::StatusOr<BeginResponse> other = client().Begin(BeginRequestFor(scope_, "k", "req", "run-2"));
  ASSERT_TRUE(other.ok());
  ASSERT_EQ(other->outcome(), BeginResponse::ACQUIRED);
  absl::StatusOr<BeginResponse> late = client().Begin(mine);
  ASSERT_TRUE(late.ok());
  EXPECT_EQ(late->outcome(), BeginResponse::IN_PROGRESS);
  EXPECT_EQ(late->lease_token(), 0);
}

TEST_F(ServerTest, OwnerAndWaitAreValidated) {
  idem::v1::BeginRequest r = BeginRequestFor(scope_, "k", "req", std::string(129, 'o'));
  absl::StatusOr<BeginResponse> long_owner = client().Begin(r);
  EXPECT_EQ(long_owner.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(long_owner.status().message().find("owner"), absl::string_view::npos);
  r.set_owner("has space");
  EXPECT_EQ(client().Begin(r).status().code(), absl::StatusCode::kInvalidArgument);
  r.set_owner("");
  r.mutable_wait()->set_seconds(61);
  absl::StatusOr<BeginResponse> long_wait = client().Begin(r);
  EXPECT_EQ(long_wait.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(long_wait.status().message().find("wait"), absl::string_view::npos);
  r.mutable_wait()->set_seconds(-1);
  EXPECT_EQ(client().Begin(r).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ServerTest, BatchBeginAnswersEachRequestInOrder) {
  // Keys in every state first.
  const int64_t done = Acquire("completed");
  ASSERT_TRUE(client().Complete(CompleteRequest("completed", done, "receipt")).ok());
  const int64_t failed = Acquire("failed");
  ASSERT_TRUE(client().Fail(FailRequest("failed", failed, false)).ok());
  const int64_t busy = Acquire("busy");
  const int64_t released = Acquire("released");
  ASSERT_TRUE(client().Fail(FailRequest("released", released, true)).ok());

  idem::v1::BatchBeginRequest batch;
  *batch.add_requests() = BeginRequestFor(scope_, "new-1", "request");
  *batch.add_requests() = BeginRequestFor(scope_, "completed", "request");
  *batch.add_requests() = BeginRequestFor(scope_, "failed", "request");
  *batch.add_requests() = BeginRequestFor(scope_, "busy", "request");
  *batch.add_requests() = BeginRequestFor(scope_, "completed", "another request");
  batch.mutable_requests(4)->set_key("busy");  // busy, other request: mismatch
  *batch.add_requests() = BeginRequestFor(scope_, "released", "request");
  *batch.add_requests() = BeginRequestFor(scope_, "new-2", "request");
  absl::StatusOr<idem::v1::BatchBeginResponse> r = client().BatchBegin(batch);
  // "busy" appears twice: refused as a whole.
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("requests[4] repeats"), absl::string_view::npos)
      << r.status();

  batch.mutable_requests(4)->set_key("mismatch");
  {
    const int64_t t = Acquire("mismatch");
    ASSERT_TRUE(client().Complete(CompleteRequest("mismatch", t)).ok());
  }
  r = client().BatchBegin(batch);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->results_size(), 7);
  auto outcome = [&](int i) { return r->results(i).response().outcome(); };
  EXPECT_EQ(outcome(0), BeginResponse::ACQUIRED);
  EXPECT_EQ(outcome(1), BeginResponse::COMPLETED);
  EXPECT_EQ(r->results(1).response().record().response(), "receipt");
  EXPECT_EQ(outcome(2), BeginResponse::FAILED);
  EXPECT_EQ(outcome(3), BeginResponse::IN_PROGRESS);
  EXPECT_GT(FromProtoDuration(r->results(3).response().retry_after()), absl::ZeroDuration());
  EXPECT_EQ(r->results(4).code(), static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_NE(r->results(4).message().find("does not match"), std::string::npos);
  EXPECT_FALSE(r->results(4).has_response());
  EXPECT_EQ(outcome(5), BeginResponse::ACQUIRED);
  EXPECT_EQ(r->results(5).response().record().attempt(), 2);
  EXPECT_GT(r->results(5).response().lease_token(), released);
  EXPECT_EQ(outcome(6), BeginResponse::ACQUIRED);
  for (int i : {0, 1, 2, 3, 5, 6}) EXPECT_EQ(r->results(i).code(), 0) << i;
  EXPECT_NE(r->results(0).response().lease_token(), r->results(6).response().lease_token());
  EXPECT_GT(busy, 0);
  EXPECT_GT(failed, 0);
}

TEST_F(ServerTest, BatchBeginTakes500KeysAndRefusesMore) {
  idem::v1::BatchBeginRequest batch;
  for (int i = 0; i < 500; ++i) {
    *batch.add_requests() = BeginRequestFor(scope_, "key-" + std::to_string(i), "msg");
  }
  absl::StatusOr<idem::v1::BatchBeginResponse> r = client().BatchBegin(batch);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->results_size(), 500);
  std::set<int64_t> tokens;
  for (int i = 0; i < 500; ++i) {
    EXPECT_EQ(r->results(i).response().outcome(), BeginResponse::ACQUIRED);
    EXPECT_EQ(r->results(i).response().record().key(), "key-" + std::to_string(i));
    tokens.insert(r->results(i).response().lease_token());
  }
  EXPECT_EQ(tokens.size(), 500u);
  *batch.add_requests() = BeginRequestFor(scope_, "key-500", "msg");
  EXPECT_EQ(client().BatchBegin(batch).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ServerTest, BatchesInOppositeKeyOrderNeverDeadlock) {
  // Replays lock their rows too (ON CONFLICT DO UPDATE locks what it
  // checks), so two batches over the same keys in opposite orders would
  // wait for each other if rows were not taken in one order.
  constexpr int kKeys = 60;
  idem::v1::BatchBeginRequest forward, backward;
  for (int i = 0; i < kKeys; ++i) {
    *forward.add_requests() = BeginRequestFor(scope_, "k" + std::to_string(i), "msg");
  }
  for (int i = kKeys - 1; i >= 0; --i) *backward.add_requests() = forward.requests(i);
  absl::StatusOr<idem::v1::BatchBeginResponse> first = client().BatchBegin(forward);
  ASSERT_TRUE(first.ok()) << first.status();
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_TRUE(client()
                    .Complete(CompleteRequest("k" + std::to_string(i),
                                              first->results(i).response().lease_token()))
                    .ok());
  }
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 15; ++round) {
        absl::StatusOr<idem::v1::BatchBeginResponse> r =
            client().BatchBegin(t % 2 ? backward : forward);
        if (!r.ok()) {
          ADD_FAILURE() << r.status();
          failures.fetch_add(1);
          continue;
        }
        for (const auto& result : r->results()) {
          EXPECT_EQ(result.response().outcome(), BeginResponse::COMPLETED);
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST_F(ServerTest, BatchBeginValidatesEveryRequest) {
  idem::v1::BatchBeginRequest batch;
  EXPECT_EQ(client().BatchBegin(batch).status().code(), absl::StatusCode::kInvalidArgument);
  for (int i = 0; i < 4; ++i) {
    *batch.add_requests() = BeginRequestFor(scope_, "k" + std::to_string(i), "msg");
  }
  batch.mutable_requests(2)->set_key("bad key");
  absl::StatusOr<idem::v1::BatchBeginResponse> r = client().BatchBegin(batch);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("requests[2]: key"), absl::string_view::npos)
      << r.status();
  batch.mutable_requests(2)->set_key("k2");
  batch.mutable_requests(1)->mutable_wait()->set_seconds(1);
  r = client().BatchBegin(batch);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("wait"), absl::string_view::npos);
  // Nothing was begun by the refused batches.
  EXPECT_EQ(client().Get(scope_, "k0").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ServerTest, HealthServiceSaysServing) {
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(idemd_->address, grpc::InsecureChannelCredentials()));
  for (const std::string service : {"", "idem.v1.Idempotency"}) {
    grpc::ClientContext context;
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    ASSERT_TRUE(stub->Check(&context, request, &response).ok()) << service;
    EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  }
}

}  // namespace
}  // namespace idem

namespace idem {
namespace {

// The record cache: a record deleted behind idemd's back (idemctl purge, or
// through another replica) is no longer replayed once --record_cache_ttl
// has passed since idemd last read it; the key is then begun afresh.
TEST(RecordCacheServerTest, APurgedRecordIsForgottenAfterTheCacheTtl) {
  Server::Options options = testenv::TestServerOptions();
  options.record_cache_ttl = absl::Milliseconds(300);
  InProcessIdemd idemd(options);
  const std::string scope = testenv::UniqueScope();
  absl::StatusOr<BeginResponse> begun = idemd.client->Begin(scope, "k", "request");
  ASSERT_TRUE(begun.ok()) << begun.status();
  idem::v1::CompleteRequest c;
  c.set_scope(scope);
  c.set_key("k");
  c.set_lease_token(begun->lease_token());
  c.set_response("first");
  ASSERT_TRUE(idemd.client->Complete(c).ok());
  absl::StatusOr<BeginResponse> replay = idemd.client->Begin(scope, "k", "request");
  ASSERT_TRUE(replay.ok()) << replay.status();
  EXPECT_EQ(replay->outcome(), BeginResponse::COMPLETED);
  EXPECT_EQ(replay->record().response(), "first");

  pqxx::connection admin(testenv::SharedDatabaseUrl());
  pqxx::work tx(admin);
  tx.exec_params("DELETE FROM idempotency_keys WHERE scope = $1", scope);
  tx.commit();
  absl::SleepFor(absl::Milliseconds(400));
  absl::StatusOr<BeginResponse> again = idemd.client->Begin(scope, "k", "request");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->outcome(), BeginResponse::ACQUIRED);
  EXPECT_GT(again->lease_token(), begun->lease_token());
}

// --listen=unix:PATH: idemd serves on a unix socket (bench/compare reaches
// it that way, as pgbench reaches PostgreSQL).
TEST(UnixSocketServerTest, ServesBeginCompleteAndReplayOnAUnixSocket) {
  Server::Options options = testenv::TestServerOptions();
  const std::string path = absl::StrCat(testing::TempDir(), "idemd-", getpid(), ".sock");
  options.listen = absl::StrCat("unix:", path);
  InProcessIdemd idemd(options);
  ASSERT_NE(idemd.client, nullptr);
  const std::string scope = testenv::UniqueScope();
  absl::StatusOr<BeginResponse> begun = idemd.client->Begin(scope, "k", "request");
  ASSERT_TRUE(begun.ok()) << begun.status();
  EXPECT_EQ(begun->outcome(), BeginResponse::ACQUIRED);
  idem::v1::CompleteRequest c;
  c.set_scope(scope);
  c.set_key("k");
  c.set_lease_token(begun->lease_token());
  c.set_response("over a unix socket");
  ASSERT_TRUE(idemd.client->Complete(c).ok());
  absl::StatusOr<BeginResponse> replay = idemd.client->Begin(scope, "k", "request");
  ASSERT_TRUE(replay.ok()) << replay.status();
  EXPECT_EQ(replay->outcome(), BeginResponse::COMPLETED);
  EXPECT_EQ(replay->record().response(), "over a unix socket");
}

}  // namespace
}  // namespace idem
