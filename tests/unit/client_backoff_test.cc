#include "client/backoff.h"

#include <gtest/gtest.h>

namespace idem {
namespace {

TEST(BackoffTest, DoublesWithJitterUpToMax) {
  Backoff backoff(absl::Milliseconds(100), absl::Milliseconds(800));
  const absl::Duration uppers[] = {absl::Milliseconds(100), absl::Milliseconds(200),
                                   absl::Milliseconds(400), absl::Milliseconds(800),
                                   absl::Milliseconds(800), absl::Milliseconds(800)};
  for (absl::Duration upper : uppers) {
    const absl::Duration d = backoff.Next();
    EXPECT_GE(d, upper / 2);
    EXPECT_LE(d, upper);
  }
}

TEST(BackoffTest, NonsenseBoundsStayPositive) {
  Backoff zero(absl::ZeroDuration(), absl::ZeroDuration());
  EXPECT_GT(zero.Next(), absl::ZeroDuration());
  EXPECT_LE(zero.Next(), absl::Milliseconds(1));
  Backoff inverted(absl::Seconds(1), absl::Milliseconds(10));
  EXPECT_LE(inverted.Next(), absl::Seconds(1));
}

}  // namespace
}  // namespace idem
