#include "server/record_decisions.h"

#include <gtest/gtest.h>

#include "server/proto_time.h"

namespace idem {
namespace {

using idem::v1::Record;

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

Record MakeRecord(Record::Status status, absl::Duration lease_left,
                  absl::Duration life_left, const std::string& hash = "h") {
  Record r;
  r.set_status(status);
  r.set_request_hash(hash);
  r.set_lease_token(10);
  SetTimestampFromUnixMicros(absl::ToUnixMicros(kNow + lease_left),
                             r.mutable_locked_until());
  SetTimestampFromUnixMicros(absl::ToUnixMicros(kNow + life_left),
                             r.mutable_expires_at());
  return r;
}

struct BeginCase {
  const char* name;
  bool acquired;
  bool has_row;
  Record row;
  BeginDecision want;
};

void PrintTo(const BeginCase& c, std::ostream* os) { *os << c.name; }

class DecideBeginTest : public testing::TestWithParam<BeginCase> {};

TEST_P(DecideBeginTest, Decides) {
  const BeginCase& c = GetParam();
  EXPECT_EQ(DecideBegin(c.acquired, c.has_row ? &c.row : nullptr, "h", kNow), c.want);
}

TEST(DecideBeginOwnerTest, ReentryIsNeverDecidedFromASnapshot) {
  // The statement grants re-entry under the row lock; a row that comes back
  // unchanged is someone's live lease, whoever its owner.
  Record live = MakeRecord(Record::IN_PROGRESS, absl::Seconds(5), absl::Hours(1));
  live.set_owner("run-1");
  EXPECT_EQ(DecideBegin(false, &live, "h", kNow), BeginDecision::kInProgress);
  EXPECT_EQ(DecideBegin(true, &live, "h", kNow), BeginDecision::kAcquired);
}

const absl::Duration kS = absl::Seconds(1);
const absl::Duration kH = absl::Hours(1);

Record Retryable() {
  Record r = MakeRecord(Record::FAILED, -kS, kH);
  r.set_retryable(true);
  return r;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, DecideBeginTest,
    testing::Values(
        BeginCase{"Acquired", true, true, MakeRecord(Record::IN_PROGRESS, kS, kH), BeginDecision::kAcquired},
        BeginCase{"NoRowIsStale", false, false, {}, BeginDecision::kStale},
        BeginCase{"LiveLease", false, true, MakeRecord(Record::IN_PROGRESS, kS, kH), BeginDecision::kInProgress},
        BeginCase{"LapsedLeaseIsStale", false, true, MakeRecord(Record::IN_PROGRESS, -kS, kH), BeginDecision::kStale},
        BeginCase{"LeaseEndingNowIsStale", false, true, MakeRecord(Record::IN_PROGRESS, absl::ZeroDuration(), kH), BeginDecision::kStale},
        BeginCase{"Completed", false, true, MakeRecord(Record::COMPLETED, -kS, kH), BeginDecision::kCompleted},
        BeginCase{"Failed", false, true, MakeRecord(Record::FAILED, -kS, kH), BeginDecision::kFailed},
        BeginCase{"RetryableFailedIsStale", false, true, Retryable(), BeginDecision::kStale},
        BeginCase{"OtherHash", false, true, MakeRecord(Record::COMPLETED, -kS, kH, "other"), BeginDecision::kRequestMismatch},
        BeginCase{"OtherHashInProgress", false, true, MakeRecord(Record::IN_PROGRESS, kS, kH, "other"), BeginDecision::kRequestMismatch},
        BeginCase{"ExpiredIsStale", false, true, MakeRecord(Record::COMPLETED, -kS, -kS), BeginDecision::kStale},
        BeginCase{"ExpiredOtherHashIsStale", false, true, MakeRecord(Record::COMPLETED, -kS, absl::ZeroDuration(), "other"), BeginDecision::kStale}),
    [](const testing::TestParamInfo<BeginCase>& info) { return info.param.name; });

TEST(DecideWriteTest, AppliedWins) {
  Record r = MakeRecord(Record::COMPLETED, -kS, kH);
  EXPECT_EQ(DecideWrite(WriteKind::kComplete, true, &r, 10, false), WriteDecision::kApplied);
}

TEST(DecideWriteTest, NoRowIsNotFound) {
  EXPECT_EQ(DecideWrite(WriteKind::kFail, false, nullptr, 10, false), WriteDecision::kNotFound);
}

TEST(DecideWriteTest, OtherTokenIsLeaseLost) {
  for (Record::Status s : {Record::IN_PROGRESS, Record::COMPLETED, Record::FAILED}) {
    Record r = MakeRecord(s, kS, kH);
    EXPECT_EQ(DecideWrite(WriteKind::kComplete, false, &r, 11, true), WriteDecision::kLeaseLost);
    EXPECT_EQ(DecideWrite(WriteKind::kExtendLease, false, &r, 9, false), WriteDecision::kLeaseLost);
  }
}

TEST(DecideWriteTest, OwnInProgressRowIsStale) {
  Record r = MakeRecord(Record::IN_PROGRESS, kS, kH);
  EXPECT_EQ(DecideWrite(WriteKind::kComplete, false, &r, 10, false), WriteDecision::kStale);
}

TEST(DecideWriteTest, RepeatOfSameOutcomeIsAlreadyApplied) {
  Record r = MakeRecord(Record::COMPLETED, -kS, kH);
  EXPECT_EQ(DecideWrite(WriteKind::kComplete, false, &r, 10, true), WriteDecision::kAlreadyApplied);
  EXPECT_EQ(DecideWrite(WriteKind::kComplete, false, &r, 10, false), WriteDecision::kAlreadyFinished);
  EXPECT_EQ(DecideWrite(WriteKind::kExtendLease, false, &r, 10, true), WriteDecision::kAlreadyFinished);
}

TEST(DecisionStatusTest, CodesFollowTheContract) {
  EXPECT_EQ(BeginDecisionStatus(BeginDecision::kRequestMismatch).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(BeginDecisionStatus(BeginDecision::kStale).code(), absl::StatusCode::kAborted);
  EXPECT_EQ(WriteDecisionStatus(WriteKind::kComplete, WriteDecision::kNotFound, 1).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(WriteDecisionStatus(WriteKind::kFail, WriteDecision::kLeaseLost, 1).code(), absl::StatusCode::kAborted);
  EXPECT_EQ(WriteDecisionStatus(WriteKind::kComplete, WriteDecision::kAlreadyFinished, 1).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(WriteDecisionStatus(WriteKind::kExtendLease, WriteDecision::kAlreadyFinished, 1).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(BeginDecisionStatus(BeginDecision::kRequestMismatch).message().find("does not match"), absl::string_view::npos);
}

}  // namespace
}  // namespace idem
