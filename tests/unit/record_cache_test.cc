#include "server/record_cache.h"

#include <string>

#include <gtest/gtest.h>

#include "server/proto_time.h"

namespace idem {
namespace {

using idem::v1::Record;

// A clock the tests move.
struct TestClock {
  absl::Time now = absl::FromUnixSeconds(1000000);
};

Record Final(const std::string& key, Record::Status status, absl::Time expires_at,
             bool retryable = false) {
  Record r;
  r.set_scope("s");
  r.set_key(key);
  r.set_request_hash("h");
  r.set_status(status);
  r.set_retryable(retryable);
  r.set_response("response of " + key);
  SetTimestampFromUnixMicros(absl::ToUnixMicros(expires_at), r.mutable_expires_at());
  return r;
}

RecordCache::Options Options(TestClock* clock, int64_t max_bytes = 1 << 20) {
  RecordCache::Options o;
  o.max_bytes = max_bytes;
  o.max_age = absl::Seconds(5);
  o.clock_margin = absl::Seconds(1);
  o.clock = [clock] { return clock->now; };
  return o;
}

TEST(RecordCacheTest, ServesOnlyFinalRecords) {
  TestClock clock;
  RecordCache cache(Options(&clock));
  const absl::Time later = clock.now + absl::Hours(1);
  cache.Insert(Final("completed", Record::COMPLETED, later));
  cache.Insert(Final("failed", Record::FAILED, later));
  cache.Insert(Final("retryable", Record::FAILED, later, /*retryable=*/true));
  cache.Insert(Final("in_progress", Record::IN_PROGRESS, later));
  ASSERT_NE(cache.Lookup("s", "completed"), nullptr);
  EXPECT_EQ(cache.Lookup("s", "completed")->response(), "response of completed");
  EXPECT_NE(cache.Lookup("s", "failed"), nullptr);
  EXPECT_EQ(cache.Lookup("s", "retryable"), nullptr);
  EXPECT_EQ(cache.Lookup("s", "in_progress"), nullptr);
  EXPECT_EQ(cache.Lookup("other-scope", "completed"), nullptr);
  EXPECT_EQ(cache.hits(), 3);
  EXPECT_EQ(cache.misses(), 3);
}

TEST(RecordCacheTest, NeverServesPastExpiryLessTheClockMargin) {
  TestClock clock;
  RecordCache cache(Options(&clock));
  cache.Insert(Final("k", Record::COMPLETED, clock.now + absl::Seconds(3)));
  clock.now += absl::Milliseconds(1999);
  EXPECT_NE(cache.Lookup("s", "k"), nullptr);
  clock.now += absl::Milliseconds(1);  // expires_at - 1 s margin
  EXPECT_EQ(cache.Lookup("s", "k"), nullptr);
  // A record already within the margin of its expiry is not stored.
  cache.Insert(Final("k2", Record::COMPLETED, clock.now + absl::Milliseconds(500)));
  EXPECT_EQ(cache.Lookup("s", "k2"), nullptr);
  EXPECT_EQ(cache.bytes(), 0);
}

TEST(RecordCacheTest, NeverServesAnEntryOlderThanMaxAge) {
  TestClock clock;
  RecordCache cache(Options(&clock));
  cache.Insert(Final("k", Record::COMPLETED, clock.now + absl::Hours(1)));
  clock.now += absl::Milliseconds(4999);
  EXPECT_NE(cache.Lookup("s", "k"), nullptr);
  clock.now += absl::Milliseconds(1);
  EXPECT_EQ(cache.Lookup("s", "k"), nullptr);
}

TEST(RecordCacheTest, StaysWithinItsByteBudgetDroppingLeastRecentlyUsed) {
  TestClock clock;
  const int64_t budget = 64 << 10;
  RecordCache cache(Options(&clock, budget));
  const absl::Time later = clock.now + absl::Hours(1);
  for (int i = 0; i < 5000; ++i) {
    cache.Insert(Final("k" + std::to_string(i), Record::COMPLETED, later));
    ASSERT_LE(cache.bytes(), budget);
  }
  EXPECT_GT(cache.bytes(), budget / 2);
  EXPECT_EQ(cache.Lookup("s", "k0"), nullptr);
  EXPECT_NE(cache.Lookup("s", "k4999"), nullptr);
}

TEST(RecordCacheTest, ZeroBytesTurnsItOff) {
  TestClock clock;
  RecordCache cache(Options(&clock, 0));
  cache.Insert(Final("k", Record::COMPLETED, clock.now + absl::Hours(1)));
  EXPECT_EQ(cache.Lookup("s", "k"), nullptr);
  EXPECT_FALSE(cache.enabled());
}

TEST(RecordCacheTest, ANewerRecordReplacesTheEntry) {
  TestClock clock;
  RecordCache cache(Options(&clock));
  Record r = Final("k", Record::COMPLETED, clock.now + absl::Hours(1));
  cache.Insert(r);
  const int64_t one = cache.bytes();
  r.set_response("second");
  cache.Insert(r);
  EXPECT_EQ(cache.Lookup("s", "k")->response(), "second");
  EXPECT_EQ(cache.bytes(), one - static_cast<int64_t>(std::string("response of k").size()) +
                               static_cast<int64_t>(std::string("second").size()));
}

}  // namespace
}  // namespace idem
