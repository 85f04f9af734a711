#include "server/record_cache.h"

#include <malloc.h>

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

TEST(RecordCacheTest, AHitInTheLastQuarterOfItsAgeIsToldToRefreshOnce) {
  TestClock clock;
  RecordCache cache(Options(&clock));  // max_age 5 s: refresh from 3.75 s.
  cache.Insert(Final("k", Record::COMPLETED, clock.now + absl::Hours(1)));
  bool refresh = true;
  ASSERT_NE(cache.Lookup("s", "k", true, &refresh), nullptr);
  EXPECT_FALSE(refresh);
  clock.now += absl::Milliseconds(3700);
  ASSERT_NE(cache.Lookup("s", "k", true, &refresh), nullptr);
  EXPECT_FALSE(refresh);
  clock.now += absl::Milliseconds(100);
  ASSERT_NE(cache.Lookup("s", "k", true, &refresh), nullptr);
  EXPECT_TRUE(refresh);
  // Told once: the next hits are served without asking again.
  ASSERT_NE(cache.Lookup("s", "k", true, &refresh), nullptr);
  EXPECT_FALSE(refresh);
  // The refreshed copy starts a new age (and may be refreshed again).
  cache.Insert(Final("k", Record::COMPLETED, clock.now + absl::Hours(1)));
  clock.now += absl::Seconds(4);
  ASSERT_NE(cache.Lookup("s", "k", true, &refresh), nullptr);
  EXPECT_TRUE(refresh);
  // Refreshing never serves an entry past max_age.
  clock.now += absl::Seconds(1);
  EXPECT_EQ(cache.Lookup("s", "k", true, &refresh), nullptr);
  EXPECT_FALSE(refresh);
}

TEST(RecordCacheTest, AnEntryEndingAtItsExpiryIsNotRefreshed) {
  TestClock clock;
  RecordCache cache(Options(&clock));
  // Expires in 4 s: served until 3 s (clock margin 1 s), and no later copy
  // could be served longer.
  cache.Insert(Final("k", Record::COMPLETED, clock.now + absl::Seconds(4)));
  clock.now += absl::Milliseconds(2900);
  bool refresh = true;
  ASSERT_NE(cache.Lookup("s", "k", true, &refresh), nullptr);
  EXPECT_FALSE(refresh);
}

TEST(RecordCacheTest, EraseDropsTheEntry) {
  TestClock clock;
  RecordCache cache(Options(&clock));
  cache.Insert(Final("k", Record::COMPLETED, clock.now + absl::Hours(1)));
  ASSERT_GT(cache.bytes(), 0);
  cache.Erase("s", "k");
  cache.Erase("s", "absent");
  EXPECT_EQ(cache.Lookup("s", "k"), nullptr);
  EXPECT_EQ(cache.bytes(), 0);
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

// Heap bytes in use (glibc's allocator; sanitizers replace it).
int64_t HeapInUse() { return static_cast<int64_t>(mallinfo2().uordblks); }

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitizedMalloc = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitizedMalloc = true;
#else
constexpr bool kSanitizedMalloc = false;
#endif
#else
constexpr bool kSanitizedMalloc = false;
#endif

// The budget bounds what the entries really take from the heap (records
// shaped like idemd's: every timestamp set, a 32-byte hash, an owner, a
// metadata entry), not only the records' serialized bytes.
TEST(RecordCacheTest, ItsByteBudgetBoundsTheHeapItTakes) {
  if (kSanitizedMalloc) GTEST_SKIP() << "the sanitizer's allocator keeps no glibc statistics";
  TestClock clock;
  const int64_t budget = 8 << 20;
  const absl::Time later = clock.now + absl::Hours(1);
  const int64_t before = HeapInUse();
  int64_t peak = 0;
  {
    RecordCache cache(Options(&clock, budget));
    for (int i = 0; i < 100000; ++i) {
      Record r = Final("bench-4242-1795459484/cycle/s17-" + std::to_string(i),
                       Record::COMPLETED, later);
      r.set_scope("bench-4242-1795459484/cycle");
      r.set_request_hash(std::string(32, 'h'));
      r.set_owner("owner-0123456789abcdef");
      r.set_response(std::string(64, 'r'));
      r.set_lease_token(i + 1);
      r.set_attempt(1);
      for (auto* t : {r.mutable_created_at(), r.mutable_updated_at(),
                      r.mutable_locked_until()}) {
        SetTimestampFromUnixMicros(absl::ToUnixMicros(later), t);
      }
      (*r.mutable_response_metadata())["content-type"] = "application/json";
      cache.Insert(r);
    }
    peak = HeapInUse() - before;
    EXPECT_GT(cache.bytes(), budget / 2);
    std::printf("budget %lld bytes: charged %lld, heap taken %lld (%.2fx the charge)\n",
                static_cast<long long>(budget), static_cast<long long>(cache.bytes()),
                static_cast<long long>(peak),
                static_cast<double>(peak) / static_cast<double>(cache.bytes()));
  }
  EXPECT_LE(peak, budget * 11 / 10);
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
  r.set_response("a second response, longer than the first one");
  cache.Insert(r);
  EXPECT_EQ(cache.Lookup("s", "k")->response(), r.response());
  // Charged for the second record alone.
  RecordCache only_second(Options(&clock));
  only_second.Insert(r);
  EXPECT_EQ(cache.bytes(), only_second.bytes());
}

}  // namespace
}  // namespace idem
