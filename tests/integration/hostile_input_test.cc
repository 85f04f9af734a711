// Hostile input through real gRPC against an in-process idemd on the test
// PostgreSQL: bytes that are not a request, messages over the receive cap,
// huge metadata maps, invalid UTF-8, NUL bytes, out-of-range durations and
// lease tokens. Each is refused with a clear status; after each, the server
// still serves and nothing stored under the test's scope changed (checked
// with SQL and with Get).
//
// What gRPC itself answers (before any idem code runs): a message over the
// receive cap (--max_response_bytes + 16 MiB), RESOURCE_EXHAUSTED.
// idem takes every method's raw bytes and parses them itself: bytes that do
// not parse as the method's request, and string fields (scope, key, owner,
// error, response_metadata) holding invalid UTF-8, which proto3's parser
// refuses, are INVALID_ARGUMENT naming the request type (gRPC's typed
// handler would answer UNIMPLEMENTED with an empty message). Everything
// that parses is judged by validation: INVALID_ARGUMENT naming the field,
// or (a well-formed token that is not the lease) ABORTED.
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <google/protobuf/util/message_differencer.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/support/byte_buffer.h>
#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "tests/integration/test_env.h"

namespace idem {
namespace {

using google::protobuf::util::MessageDifferencer;
using idem::v1::BeginResponse;
using idem::v1::Record;

constexpr int64_t kMaxResponseBytes = 64 << 10;

const char* const kMethods[] = {"Begin", "BatchBegin", "Complete",
                                "Fail",  "Get",        "ExtendLease"};

// What idem answers bytes that are not a valid idem.v1.<method>Request.
void ExpectUnparsable(const std::string& what, const std::string& method,
                      const grpc::Status& s) {
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << what << ": " << s.error_code() << " " << s.error_message();
  EXPECT_EQ(s.error_message(),
            absl::StrCat("request is not a valid idem.v1.", method,
                         "Request (malformed protobuf or invalid UTF-8 in a string field)"))
      << what;
}

class HostileInputTest : public testenv::SharedIdemdTest {
 protected:
  static void SetUpTestSuite() {
    Server::Options options = testenv::TestServerOptions();
    // gRPC's receive cap is then 64 KiB + 16 MiB.
    options.max_response_bytes = kMaxResponseBytes;
    StartIdemd(options);
  }

  void SetUp() override {
    SharedIdemdTest::SetUp();
    // A finished record and a live lease, which no refused call may touch.
    absl::StatusOr<BeginResponse> done = client().Begin(scope_, "done", "request");
    ASSERT_TRUE(done.ok()) << done.status();
    idem::v1::CompleteRequest complete;
    complete.set_scope(scope_);
    complete.set_key("done");
    complete.set_lease_token(done->lease_token());
    complete.set_response("stored response");
    (*complete.mutable_response_metadata())["content-type"] = "text/plain";
    ASSERT_TRUE(client().Complete(complete).ok());
    absl::StatusOr<BeginResponse> held = client().Begin(scope_, "held", "request");
    ASSERT_TRUE(held.ok()) << held.status();
    held_token_ = held->lease_token();
    done_before_ = *client().Get(scope_, "done");
    held_before_ = *client().Get(scope_, "held");
    rows_before_ = Rows();
  }

  // Every row under this test's scope (a refused call may only have tried
  // a scope that starts with it), as text: count, tokens, attempts, times.
  std::string Rows() {
    pqxx::connection c(testenv::SharedDatabaseUrl());
    pqxx::nontransaction tx(c);
    return tx
        .exec_params1(
            "SELECT count(*) || ' ' || coalesce(string_agg(scope || '|' || key || '|' "
            "|| status || '|' || lease_token || '|' || attempt || '|' || updated_at "
            "|| '|' || md5(response), ',' ORDER BY key), '') "
            "FROM idempotency_keys WHERE starts_with(scope, $1)",
            scope_)[0]
        .as<std::string>();
  }

  // The refused call changed nothing and the server still serves: the rows,
  // the two records, and a fresh Begin that must be ACQUIRED (its row then
  // becomes part of what must not change).
  void ExpectHarmless(const std::string& what) {
    SCOPED_TRACE(what);
    EXPECT_EQ(Rows(), rows_before_);
    absl::StatusOr<Record> done = client().Get(scope_, "done");
    ASSERT_TRUE(done.ok()) << done.status();
    EXPECT_TRUE(MessageDifferencer::Equals(*done, done_before_)) << done->DebugString();
    absl::StatusOr<Record> held = client().Get(scope_, "held");
    ASSERT_TRUE(held.ok()) << held.status();
    EXPECT_TRUE(MessageDifferencer::Equals(*held, held_before_)) << held->DebugString();
    absl::StatusOr<BeginResponse> alive =
        client().Begin(scope_, absl::StrCat("alive-", ++alive_), "request");
    ASSERT_TRUE(alive.ok()) << alive.status();
    EXPECT_EQ(alive->outcome(), BeginResponse::ACQUIRED);
    rows_before_ = Rows();
  }

  // Expects `status` to be `code` with a message naming `names`, then that
  // the call was harmless.
  void ExpectRefused(const std::string& what, const absl::Status& status,
                     absl::StatusCode code, const std::string& names) {
    EXPECT_EQ(status.code(), code) << what << ": " << status;
    EXPECT_NE(status.message().find(names), absl::string_view::npos)
        << what << ": " << status;
    ExpectHarmless(what);
  }

  // Sends `bytes` as the request of idem.v1.Idempotency/`method`.
  static grpc::Status SendRaw(const std::string& method, const std::string& bytes) {
    grpc::GenericStub stub(grpc::CreateChannel(idemd_->address,
                                               grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer response;
    grpc::Status status;
    absl::Notification done;
    stub.UnaryCall(&context, absl::StrCat("/idem.v1.Idempotency/", method),
                   grpc::StubOptions(), &request, &response,
                   [&](grpc::Status s) {
                     status = std::move(s);
                     done.Notify();
                   });
    done.WaitForNotification();
    return status;
  }

  idem::v1::CompleteRequest HeldComplete() const {
    idem::v1::CompleteRequest c;
    c.set_scope(scope_);
    c.set_key("held");
    c.set_lease_token(held_token_);
    c.set_response("response");
    return c;
  }
  idem::v1::FailRequest HeldFail() const {
    idem::v1::FailRequest f;
    f.set_scope(scope_);
    f.set_key("held");
    f.set_lease_token(held_token_);
    f.set_error("error");
    return f;
  }
  idem::v1::ExtendLeaseRequest HeldExtend() const {
    idem::v1::ExtendLeaseRequest e;
    e.set_scope(scope_);
    e.set_key("held");
    e.set_lease_token(held_token_);
    return e;
  }
  idem::v1::BeginRequest NewBegin(const std::string& key = "new") const {
    idem::v1::BeginRequest b;
    b.set_scope(scope_);
    b.set_key(key);
    b.set_request_hash("hash");
    return b;
  }

  int64_t held_token_ = 0;
  Record done_before_, held_before_;
  std::string rows_before_;
  int alive_ = 0;
};

TEST_F(HostileInputTest, BytesThatAreNotARequestAreInvalidArgumentAndHarmless) {
  const std::vector<std::pair<std::string, std::string>> garbage = {
      {"truncated varint", std::string("\x08", 1)},
      {"truncated tag", std::string("\x80", 1)},
      {"length past the end", std::string("\x0a\xff\xff\xff\xff\x0f", 6)},
      {"length past the end, short", std::string("\x0a\x05" "ab", 4)},
      {"field number 0", std::string("\x00\x01", 2)},
      {"wire type 7", std::string("\x0f\x01", 2)},
      {"unterminated group", std::string("\x0b", 1)},
      {"end group without start", std::string("\x0c", 1)},
      {"11-byte varint", std::string("\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12)},
      {"random", std::string("\xde\xad\xbe\xef\x00\xff\x13\x37", 8)},
  };
  for (const char* method : kMethods) {
    for (const auto& [name, bytes] : garbage) {
      ExpectUnparsable(absl::StrCat(method, ": ", name), method, SendRaw(method, bytes));
    }
    ExpectHarmless(method);
  }
}

TEST_F(HostileInputTest, UnknownFieldsAreIgnoredAndTheRequestJudgedAsItStands) {
  // Field 50 (varint) is unknown to every request: it parses as an empty
  // request, which names its first missing field. So do zero bytes.
  const std::string unknown("\x90\x03\x01", 3);
  for (const char* method : kMethods) {
    for (const std::string& bytes : {unknown, std::string()}) {
      const std::string what = absl::StrCat(method, bytes.empty() ? ": empty" : ": unknown");
      const grpc::Status s = SendRaw(method, bytes);
      EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
          << what << ": " << s.error_message();
      EXPECT_NE(s.error_message().find(std::string(method) == "BatchBegin" ? "requests"
                                                                            : "scope"),
                std::string::npos)
          << what << ": " << s.error_message();
    }
  }
  ExpectHarmless("unknown fields");
}

TEST_F(HostileInputTest, OversizedMessagesAreResourceExhaustedOrNamedByValidation) {
  // Over --max_response_bytes but within gRPC's cap: idem names the limit.
  idem::v1::CompleteRequest big = HeldComplete();
  big.set_response(std::string(kMaxResponseBytes + 1, 'x'));
  ExpectRefused("response over max_response_bytes", client().Complete(big).status(),
                absl::StatusCode::kInvalidArgument, "max_response_bytes");
  // Over gRPC's receive cap: gRPC refuses before parsing.
  const size_t over_cap = kMaxResponseBytes + (16 << 20) + 1024;
  big.set_response(std::string(over_cap, 'x'));
  ExpectRefused("Complete over the receive cap", client().Complete(big).status(),
                absl::StatusCode::kResourceExhausted, "");
  idem::v1::BeginRequest huge_begin = NewBegin();
  huge_begin.set_owner(std::string(over_cap, 'o'));
  ExpectRefused("Begin over the receive cap", client().Begin(huge_begin).status(),
                absl::StatusCode::kResourceExhausted, "");
  // Under the cap, every oversized field is named.
  idem::v1::FailRequest fail = HeldFail();
  fail.set_error(std::string(1 << 20, 'e'));
  ExpectRefused("error of 1 MiB", client().Fail(fail).status(),
                absl::StatusCode::kInvalidArgument, "error");
  idem::v1::BeginRequest long_key = NewBegin(std::string(1 << 20, 'k'));
  ExpectRefused("key of 1 MiB", client().Begin(long_key).status(),
                absl::StatusCode::kInvalidArgument, "key");
  idem::v1::BeginRequest long_hash = NewBegin();
  long_hash.set_request_hash(std::string(1 << 20, 'h'));
  ExpectRefused("request_hash of 1 MiB", client().Begin(long_hash).status(),
                absl::StatusCode::kInvalidArgument, "request_hash");
  idem::v1::BatchBeginRequest batch;
  for (int i = 0; i < 20000; ++i) *batch.add_requests() = NewBegin(absl::StrCat("b", i));
  ExpectRefused("BatchBegin of 20000", client().BatchBegin(batch).status(),
                absl::StatusCode::kInvalidArgument, "requests");
}

TEST_F(HostileInputTest, HugeMetadataMapsAreInvalidArgumentNamingTheLimit) {
  struct Case {
    std::string what;
    std::vector<std::pair<std::string, std::string>> entries;
    std::string names;
  };
  std::vector<Case> cases;
  cases.push_back({"65 entries", {}, "64"});
  for (int i = 0; i < 65; ++i) cases.back().entries.emplace_back(absl::StrCat("h", i), "v");
  cases.push_back({"200000 entries", {}, "64"});
  for (int i = 0; i < 200000; ++i) {
    cases.back().entries.emplace_back(absl::StrCat("h", i), "v");
  }
  cases.push_back({"a 16 KiB + 1 value", {{"h", std::string((16 << 10) + 1, 'v')}},
                   "16384"});
  cases.push_back({"a 4 MiB value", {{"h", std::string(4 << 20, 'v')}}, "16384"});
  cases.push_back({"a 257-byte key", {{std::string(257, 'k'), "v"}}, "256"});
  cases.push_back({"an empty key", {{"", "v"}}, "256"});
  for (const Case& c : cases) {
    idem::v1::CompleteRequest request = HeldComplete();
    for (const auto& [name, value] : c.entries) {
      (*request.mutable_response_metadata())[name] = value;
    }
    const absl::Status s = client().Complete(request).status();
    EXPECT_NE(s.message().find("response_metadata"), absl::string_view::npos) << s;
    ExpectRefused(c.what, s, absl::StatusCode::kInvalidArgument, c.names);
  }
}

TEST_F(HostileInputTest, InvalidUtf8InStringFieldsIsInvalidArgumentNamingTheType) {
  // Each request is serialized with a placeholder, which is then replaced
  // by as many bytes of invalid UTF-8 (so the client's serializer is not
  // involved).
  const std::string placeholder = "PLACEHOLDER";
  const std::string invalid = "\xff\xfe\xc0\xaf\xed\xa0\x80\xf8\x88\x80\x80";
  ASSERT_EQ(placeholder.size(), invalid.size());
  auto raw = [&](const google::protobuf::Message& m) {
    std::string bytes = m.SerializeAsString();
    const size_t at = bytes.find(placeholder);
    EXPECT_NE(at, std::string::npos);
    if (at != std::string::npos) bytes.replace(at, invalid.size(), invalid);
    return bytes;
  };
  std::vector<std::tuple<std::string, std::string, std::string>> cases;
  idem::v1::BeginRequest begin = NewBegin();
  begin.set_scope(scope_ + placeholder);
  cases.emplace_back("Begin.scope", "Begin", raw(begin));
  begin = NewBegin(placeholder);
  cases.emplace_back("Begin.key", "Begin", raw(begin));
  begin = NewBegin();
  begin.set_owner(placeholder);
  cases.emplace_back("Begin.owner", "Begin", raw(begin));
  idem::v1::BatchBeginRequest batch;
  *batch.add_requests() = NewBegin("a");
  *batch.add_requests() = NewBegin(placeholder);
  cases.emplace_back("BatchBegin.requests[1].key", "BatchBegin", raw(batch));
  idem::v1::FailRequest fail = HeldFail();
  fail.set_error(placeholder);
  cases.emplace_back("Fail.error", "Fail", raw(fail));
  idem::v1::CompleteRequest complete = HeldComplete();
  (*complete.mutable_response_metadata())[placeholder] = "v";
  cases.emplace_back("Complete.response_metadata key", "Complete", raw(complete));
  complete = HeldComplete();
  (*complete.mutable_response_metadata())["k"] = placeholder;
  cases.emplace_back("Complete.response_metadata value", "Complete", raw(complete));
  idem::v1::GetRequest get;
  get.set_scope(scope_);
  get.set_key(placeholder);
  cases.emplace_back("Get.key", "Get", raw(get));
  idem::v1::ExtendLeaseRequest extend = HeldExtend();
  extend.set_scope(scope_ + placeholder);
  cases.emplace_back("ExtendLease.scope", "ExtendLease", raw(extend));
  for (const auto& [what, method, bytes] : cases) {
    ExpectUnparsable(what, method, SendRaw(method, bytes));
    ExpectHarmless(what);
  }
}

TEST_F(HostileInputTest, NulBytesAreInvalidArgumentNeverInternal) {
  const std::string nul("a\0b", 3);
  idem::v1::BeginRequest begin = NewBegin();
  begin.set_scope(scope_ + nul);
  ExpectRefused("Begin.scope", client().Begin(begin).status(),
                absl::StatusCode::kInvalidArgument, "scope");
  begin = NewBegin(nul);
  ExpectRefused("Begin.key", client().Begin(begin).status(),
                absl::StatusCode::kInvalidArgument, "key");
  begin = NewBegin();
  begin.set_owner(nul);
  ExpectRefused("Begin.owner", client().Begin(begin).status(),
                absl::StatusCode::kInvalidArgument, "owner");
  begin = NewBegin();
  begin.set_request_hash(std::string("\0\0\0", 3));  // bytes: NUL is fine here.
  absl::StatusOr<BeginResponse> nul_hash = client().Begin(begin);
  ASSERT_TRUE(nul_hash.ok()) << nul_hash.status();
  EXPECT_EQ(nul_hash->outcome(), BeginResponse::ACQUIRED);
  rows_before_ = Rows();
  idem::v1::FailRequest fail = HeldFail();
  fail.set_error(nul);
  ExpectRefused("Fail.error", client().Fail(fail).status(),
                absl::StatusCode::kInvalidArgument, "error");
  idem::v1::CompleteRequest complete = HeldComplete();
  (*complete.mutable_response_metadata())["k"] = nul;
  ExpectRefused("Complete.response_metadata value", client().Complete(complete).status(),
                absl::StatusCode::kInvalidArgument, "response_metadata");
  complete = HeldComplete();
  (*complete.mutable_response_metadata())[nul] = "v";
  ExpectRefused("Complete.response_metadata key", client().Complete(complete).status(),
                absl::StatusCode::kInvalidArgument, "response_metadata");
  ExpectRefused("Get.key", client().Get(scope_, nul).status(),
                absl::StatusCode::kInvalidArgument, "key");
  idem::v1::ExtendLeaseRequest extend = HeldExtend();
  extend.set_key("held" + nul);
  ExpectRefused("ExtendLease.key", client().ExtendLease(extend).status(),
                absl::StatusCode::kInvalidArgument, "key");
  idem::v1::BatchBeginRequest batch;
  *batch.add_requests() = NewBegin("a");
  *batch.add_requests() = NewBegin(nul);
  ExpectRefused("BatchBegin.requests[1].key", client().BatchBegin(batch).status(),
                absl::StatusCode::kInvalidArgument, "requests[1]");
}

TEST_F(HostileInputTest, NegativeAndOverflowingDurationsAreInvalidArgument) {
  const int64_t kMax = std::numeric_limits<int64_t>::max();
  const int64_t kMin = std::numeric_limits<int64_t>::min();
  const int32_t kMaxNanos = std::numeric_limits<int32_t>::max();
  const int32_t kMinNanos = std::numeric_limits<int32_t>::min();
  const std::vector<std::pair<int64_t, int32_t>> bad = {
      {kMax, 0},          {kMax, 999999999}, {kMin, 0},         {kMin, -999999999},
      {-1, 0},            {0, -1},           {0, 1000000000},   {0, -1000000000},
      {0, kMaxNanos},     {0, kMinNanos},    {1, -1},           {-1, 1},
      {315576000001, 0},  {3601, 0},         {kMax / 1000, 0},  {kMax, kMaxNanos},
  };
  for (const auto& [seconds, nanos] : bad) {
    const std::string d = absl::StrCat("{", seconds, "s, ", nanos, "ns}");
    idem::v1::BeginRequest begin = NewBegin();
    begin.mutable_lease_ttl()->set_seconds(seconds);
    begin.mutable_lease_ttl()->set_nanos(nanos);
    ExpectRefused("Begin.lease_ttl " + d, client().Begin(begin).status(),
                  absl::StatusCode::kInvalidArgument, "lease_ttl");
    begin = NewBegin();
    begin.mutable_wait()->set_seconds(seconds);
    begin.mutable_wait()->set_nanos(nanos);
    ExpectRefused("Begin.wait " + d, client().Begin(begin).status(),
                  absl::StatusCode::kInvalidArgument, "wait");
    idem::v1::ExtendLeaseRequest extend = HeldExtend();
    extend.mutable_lease_ttl()->set_seconds(seconds);
    extend.mutable_lease_ttl()->set_nanos(nanos);
    ExpectRefused("ExtendLease.lease_ttl " + d, client().ExtendLease(extend).status(),
                  absl::StatusCode::kInvalidArgument, "lease_ttl");
    if (seconds == 3601) continue;  // A valid retention (30 days allowed).
    begin = NewBegin();
    begin.mutable_retention()->set_seconds(seconds);
    begin.mutable_retention()->set_nanos(nanos);
    ExpectRefused("Begin.retention " + d, client().Begin(begin).status(),
                  absl::StatusCode::kInvalidArgument, "retention");
  }
}

TEST_F(HostileInputTest, LeaseTokensOutOfRangeAreRefusedAndStoreNothing) {
  for (int64_t token : {int64_t{0}, int64_t{-1}, std::numeric_limits<int64_t>::min()}) {
    const std::string t = absl::StrCat(" token ", token);
    idem::v1::CompleteRequest complete = HeldComplete();
    complete.set_lease_token(token);
    ExpectRefused("Complete" + t, client().Complete(complete).status(),
                  absl::StatusCode::kInvalidArgument, "lease_token");
    idem::v1::FailRequest fail = HeldFail();
    fail.set_lease_token(token);
    ExpectRefused("Fail" + t, client().Fail(fail).status(),
                  absl::StatusCode::kInvalidArgument, "lease_token");
    idem::v1::ExtendLeaseRequest extend = HeldExtend();
    extend.set_lease_token(token);
    ExpectRefused("ExtendLease" + t, client().ExtendLease(extend).status(),
                  absl::StatusCode::kInvalidArgument, "lease_token");
  }
  // INT64_MAX is a well-formed token (the sequence's last value) that is
  // not this key's lease: ABORTED on a live key, NOT_FOUND on a missing one.
  const int64_t kMax = std::numeric_limits<int64_t>::max();
  idem::v1::CompleteRequest complete = HeldComplete();
  complete.set_lease_token(kMax);
  ExpectRefused("Complete INT64_MAX", client().Complete(complete).status(),
                absl::StatusCode::kAborted, "lease_token");
  idem::v1::FailRequest fail = HeldFail();
  fail.set_lease_token(kMax);
  ExpectRefused("Fail INT64_MAX", client().Fail(fail).status(),
                absl::StatusCode::kAborted, "lease_token");
  idem::v1::ExtendLeaseRequest extend = HeldExtend();
  extend.set_lease_token(kMax);
  ExpectRefused("ExtendLease INT64_MAX", client().ExtendLease(extend).status(),
                absl::StatusCode::kAborted, "lease_token");
  complete.set_key("missing");
  ExpectRefused("Complete INT64_MAX on a missing key",
                client().Complete(complete).status(), absl::StatusCode::kNotFound,
                "no live record");
}

}  // namespace
}  // namespace idem
