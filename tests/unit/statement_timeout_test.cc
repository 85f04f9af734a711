#include "server/statement_timeout.h"

#include <gtest/gtest.h>

namespace idem {
namespace {

TEST(StatementTimeoutTest, TheConfiguredTimeoutWhenTheDeadlineIsFurther) {
  EXPECT_EQ(StatementTimeoutFor(absl::Seconds(30), absl::Seconds(10)), absl::Seconds(10));
  EXPECT_EQ(StatementTimeoutFor(absl::Seconds(10), absl::Seconds(10)), absl::Seconds(10));
  EXPECT_EQ(StatementTimeoutFor(absl::InfiniteDuration(), absl::Seconds(10)),
            absl::Seconds(10));
}

TEST(StatementTimeoutTest, NeverLongerThanTheTimeLeftAndAtMostAnEighthShorter) {
  for (int64_t ms = 1; ms < 20000; ms += 7) {
    const absl::Duration left = absl::Milliseconds(ms) + absl::Microseconds(999);
    const absl::Duration bound = StatementTimeoutFor(left, absl::Seconds(30));
    ASSERT_LE(bound, left) << ms;
    ASSERT_GE(bound, absl::Milliseconds(ms) * 7 / 8) << ms;
    ASSERT_GE(bound, absl::Milliseconds(1)) << ms;
  }
}

TEST(StatementTimeoutTest, SimilarDeadlinesShareOneSetting) {
  // Calls with a 5 s deadline arrive with a little less than 5 s left.
  const absl::Duration a = StatementTimeoutFor(absl::Milliseconds(4990), absl::Seconds(10));
  const absl::Duration b = StatementTimeoutFor(absl::Milliseconds(4650), absl::Seconds(10));
  EXPECT_EQ(a, b);
  EXPECT_EQ(StatementTimeoutSetting(a), "4608");
}

TEST(StatementTimeoutTest, ZeroWhenUnderAMillisecondIsLeft) {
  EXPECT_EQ(StatementTimeoutFor(absl::Microseconds(999), absl::Seconds(10)),
            absl::ZeroDuration());
  EXPECT_EQ(StatementTimeoutFor(absl::ZeroDuration(), absl::Seconds(10)),
            absl::ZeroDuration());
  EXPECT_EQ(StatementTimeoutFor(-absl::Seconds(3), absl::Seconds(10)),
            absl::ZeroDuration());
  EXPECT_EQ(StatementTimeoutFor(-absl::InfiniteDuration(), absl::Seconds(10)),
            absl::ZeroDuration());
}

TEST(StatementTimeoutTest, SettingIsWholeMilliseconds) {
  EXPECT_EQ(StatementTimeoutSetting(absl::Seconds(10)), "10000");
  EXPECT_EQ(StatementTimeoutSetting(absl::Milliseconds(1)), "1");
}

}  // namespace
}  // namespace idem
