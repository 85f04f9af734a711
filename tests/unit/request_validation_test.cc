#include "server/request_validation.h"

#include <cstdint>
#include <limits>
#include <string>

#include <gtest/gtest.h>

namespace idem {
namespace {

using idem::v1::BeginRequest;

BeginRequest ValidBegin() {
  BeginRequest r;
  r.set_scope("payments/v1:charge.eu-west_1");
  r.set_key("order-42");
  r.set_request_hash(std::string(32, '\x01'));
  return r;
}

// Expects INVALID_ARGUMENT whose message names `field`.
void ExpectNames(const absl::Status& status, const std::string& field) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find(field), absl::string_view::npos)
      << "message does not name " << field << ": " << status.message();
}

TEST(ValidateBeginTest, AcceptsValidRequestAndResolvesDefaults) {
  const BeginRequest request = ValidBegin();  // BeginParams views its strings
  absl::StatusOr<BeginParams> params = ValidateBegin(request);
  ASSERT_TRUE(params.ok()) << params.status();
  EXPECT_EQ(params->lease_ttl, absl::Seconds(30));
  EXPECT_EQ(params->retention, absl::Hours(24));
  EXPECT_EQ(params->key, "order-42");
}

struct FieldCase {
  const char* name;
  void (*mutate)(BeginRequest*);
  const char* field;  // Named in the message; nullptr when valid.
};

void PrintTo(const FieldCase& c, std::ostream* os) { *os << c.name; }

class ValidateBeginFieldTest : public testing::TestWithParam<FieldCase> {};

TEST_P(ValidateBeginFieldTest, NamesTheField) {
  BeginRequest r = ValidBegin();
  GetParam().mutate(&r);
  absl::StatusOr<BeginParams> params = ValidateBegin(r);
  if (GetParam().field == nullptr) {
    EXPECT_TRUE(params.ok()) << params.status();
  } else {
    ExpectNames(params.status(), GetParam().field);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Fields, ValidateBeginFieldTest,
    testing::Values(
        FieldCase{"EmptyScope", [](BeginRequest* r) { r->clear_scope(); }, "scope"},
        FieldCase{"LongestScope", [](BeginRequest* r) { r->set_scope(std::string(128, 'a')); }, nullptr},
        FieldCase{"ScopeTooLong", [](BeginRequest* r) { r->set_scope(std::string(129, 'a')); }, "scope"},
        FieldCase{"ScopeWithSpace", [](BeginRequest* r) { r->set_scope("a b"); }, "scope"},
        FieldCase{"ScopeWithNul", [](BeginRequest* r) { r->set_scope(std::string("a\0b", 3)); }, "scope"},
        FieldCase{"ScopeWithUtf8", [](BeginRequest* r) { r->set_scope("caf\xc3\xa9"); }, "scope"},
        FieldCase{"EmptyKey", [](BeginRequest* r) { r->clear_key(); }, "key"},
        FieldCase{"LongestKey", [](BeginRequest* r) { r->set_key(std::string(255, '~')); }, nullptr},
        FieldCase{"KeyTooLong", [](BeginRequest* r) { r->set_key(std::string(256, 'k')); }, "key"},
        FieldCase{"KeyWithSpace", [](BeginRequest* r) { r->set_key("a b"); }, "key"},
        FieldCase{"KeyWithDel", [](BeginRequest* r) { r->set_key("a\x7f"); }, "key"},
        FieldCase{"KeyWithNul", [](BeginRequest* r) { r->set_key(std::string("a\0", 2)); }, "key"},
        FieldCase{"EmptyHash", [](BeginRequest* r) { r->clear_request_hash(); }, "request_hash"},
        FieldCase{"LongestHash", [](BeginRequest* r) { r->set_request_hash(std::string(64, '\0')); }, nullptr},
        FieldCase{"HashTooLong", [](BeginRequest* r) { r->set_request_hash(std::string(65, 'h')); }, "request_hash"},
        FieldCase{"LeaseOneSecond", [](BeginRequest* r) { r->mutable_lease_ttl()->set_seconds(1); }, nullptr},
        FieldCase{"LeaseOneHour", [](BeginRequest* r) { r->mutable_lease_ttl()->set_seconds(3600); }, nullptr},
        FieldCase{"LeaseTooShort", [](BeginRequest* r) { r->mutable_lease_ttl()->set_nanos(999999999); }, "lease_ttl"},
        FieldCase{"LeaseZero", [](BeginRequest* r) { r->mutable_lease_ttl(); }, "lease_ttl"},
        FieldCase{"LeaseTooLong", [](BeginRequest* r) { r->mutable_lease_ttl()->set_seconds(3600); r->mutable_lease_ttl()->set_nanos(1); }, "lease_ttl"},
        FieldCase{"LeaseNegative", [](BeginRequest* r) { r->mutable_lease_ttl()->set_seconds(-5); }, "lease_ttl"},
        FieldCase{"LeaseMixedSigns", [](BeginRequest* r) { r->mutable_lease_ttl()->set_seconds(5); r->mutable_lease_ttl()->set_nanos(-1); }, "lease_ttl"},
        FieldCase{"LeaseNanosOutOfRange", [](BeginRequest* r) { r->mutable_lease_ttl()->set_seconds(5); r->mutable_lease_ttl()->set_nanos(1000000000); }, "lease_ttl"},
        FieldCase{"LeaseInt64Max", [](BeginRequest* r) { r->mutable_lease_ttl()->set_seconds(std::numeric_limits<int64_t>::max()); }, "lease_ttl"},
        FieldCase{"LeaseInt64Min", [](BeginRequest* r) { r->mutable_lease_ttl()->set_seconds(std::numeric_limits<int64_t>::min()); }, "lease_ttl"},
        FieldCase{"RetentionThirtyDays", [](BeginRequest* r) { r->mutable_retention()->set_seconds(30 * 86400); }, nullptr},
        FieldCase{"RetentionTooLong", [](BeginRequest* r) { r->mutable_retention()->set_seconds(30 * 86400 + 1); }, "retention"},
        FieldCase{"RetentionTooShort", [](BeginRequest* r) { r->mutable_retention()->set_nanos(500000000); }, "retention"},
        FieldCase{"RetentionInt64Max", [](BeginRequest* r) { r->mutable_retention()->set_seconds(std::numeric_limits<int64_t>::max()); }, "retention"}),
    [](const testing::TestParamInfo<FieldCase>& info) { return info.param.name; });

TEST(ValidateLeaseTokenTest, RejectsZeroAndNegativeAcceptsMax) {
  ExpectNames(ValidateLeaseToken(0), "lease_token");
  ExpectNames(ValidateLeaseToken(-1), "lease_token");
  ExpectNames(ValidateLeaseToken(std::numeric_limits<int64_t>::min()), "lease_token");
  EXPECT_TRUE(ValidateLeaseToken(std::numeric_limits<int64_t>::max()).ok());
}

idem::v1::CompleteRequest ValidComplete() {
  idem::v1::CompleteRequest r;
  r.set_scope("s");
  r.set_key("k");
  r.set_lease_token(7);
  return r;
}

TEST(ValidateCompleteTest, ResponseLimitIsInclusive) {
  RequestLimits limits{10};
  idem::v1::CompleteRequest r = ValidComplete();
  r.set_response(std::string(10, '\0'));
  EXPECT_TRUE(ValidateComplete(r, limits).ok());
  r.set_response(std::string(11, 'x'));
  ExpectNames(ValidateComplete(r, limits), "response");
}

TEST(ValidateCompleteTest, RejectsBadMetadata) {
  idem::v1::CompleteRequest r = ValidComplete();
  (*r.mutable_response_metadata())["content-type"] = "application/json";
  EXPECT_TRUE(ValidateComplete(r, {}).ok());

  idem::v1::CompleteRequest nul = ValidComplete();
  (*nul.mutable_response_metadata())["a"] = std::string("b\0c", 3);
  ExpectNames(ValidateComplete(nul, {}), "response_metadata");

  idem::v1::CompleteRequest empty_key = ValidComplete();
  (*empty_key.mutable_response_metadata())[""] = "v";
  ExpectNames(ValidateComplete(empty_key, {}), "response_metadata");

  idem::v1::CompleteRequest many = ValidComplete();
  for (int i = 0; i <= kMaxMetadataEntries; ++i) {
    (*many.mutable_response_metadata())["k" + std::to_string(i)] = "v";
  }
  ExpectNames(ValidateComplete(many, {}), "response_metadata");

  idem::v1::CompleteRequest huge = ValidComplete();
  (*huge.mutable_response_metadata())["k"] = std::string(kMaxMetadataValueBytes + 1, 'v');
  ExpectNames(ValidateComplete(huge, {}), "response_metadata");
}

TEST(ValidateFailTest, RejectsUnstorableError) {
  idem::v1::FailRequest r;
  r.set_scope("s");
  r.set_key("k");
  r.set_lease_token(1);
  r.set_error("card declined: caf\xc3\xa9");
  EXPECT_TRUE(ValidateFail(r, {}).ok());
  r.set_error(std::string("x\0y", 3));
  ExpectNames(ValidateFail(r, {}), "error");
  r.set_error("\xff\xfe");
  ExpectNames(ValidateFail(r, {}), "error");
  r.set_error(std::string(kMaxErrorBytes + 1, 'e'));
  ExpectNames(ValidateFail(r, {}), "error");
  r.set_error("ok");
  r.set_lease_token(0);
  ExpectNames(ValidateFail(r, {}), "lease_token");
}

TEST(IsStorableTextTest, Utf8Rules) {
  EXPECT_TRUE(IsStorableText(""));
  EXPECT_TRUE(IsStorableText("plain"));
  EXPECT_TRUE(IsStorableText("\xe2\x82\xac"));          // EURO SIGN
  EXPECT_TRUE(IsStorableText("\xf0\x9f\x98\x80"));      // U+1F600
  EXPECT_FALSE(IsStorableText(std::string("\0", 1)));   // NUL
  EXPECT_FALSE(IsStorableText("\xc3"));                 // truncated
  EXPECT_FALSE(IsStorableText("\xe2\x82"));             // truncated
  EXPECT_FALSE(IsStorableText("\xc0\xaf"));             // overlong '/'
  EXPECT_FALSE(IsStorableText("\xed\xa0\x80"));         // surrogate
  EXPECT_FALSE(IsStorableText("\xf4\x90\x80\x80"));     // past U+10FFFF
  EXPECT_FALSE(IsStorableText("\x80"));                 // stray continuation
}

TEST(ValidateExtendLeaseTest, DefaultsAndRange) {
  idem::v1::ExtendLeaseRequest r;
  r.set_scope("s");
  r.set_key("k");
  r.set_lease_token(3);
  absl::StatusOr<ExtendLeaseParams> params = ValidateExtendLease(r);
  ASSERT_TRUE(params.ok());
  EXPECT_EQ(params->lease_ttl, absl::Seconds(30));
  r.mutable_lease_ttl()->set_seconds(7200);
  ExpectNames(ValidateExtendLease(r).status(), "lease_ttl");
}

TEST(ValidateGetTest, ChecksScopeAndKey) {
  idem::v1::GetRequest r;
  r.set_scope("s");
  ExpectNames(ValidateGet(r), "key");
  r.set_key("k");
  EXPECT_TRUE(ValidateGet(r).ok());
}

}  // namespace
}  // namespace idem
