#include "bench/latency_recorder.h"

#include <cstdint>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace idem::bench {
namespace {

TEST(LatencyRecorderTest, BucketsAreContiguousAndBounded) {
  for (int b = 1; b < LatencyRecorder::kBuckets; ++b) {
    EXPECT_EQ(LatencyRecorder::BucketLow(b - 1) + LatencyRecorder::BucketWidth(b - 1),
              LatencyRecorder::BucketLow(b))
        << b;
  }
  for (int64_t v : {int64_t{0}, int64_t{1}, int64_t{127}, int64_t{128}, int64_t{1000},
                    int64_t{123456789}, int64_t{1} << 40, INT64_MAX}) {
    int b = LatencyRecorder::BucketOf(v);
    ASSERT_LT(b, LatencyRecorder::kBuckets);
    EXPECT_LE(LatencyRecorder::BucketLow(b), v);
    EXPECT_LT(v - LatencyRecorder::BucketLow(b), LatencyRecorder::BucketWidth(b));
    // Relative bucket width at most 1/64.
    EXPECT_LE(LatencyRecorder::BucketWidth(b) * 64, std::max<int64_t>(64, v)) << v;
  }
}

TEST(LatencyRecorderTest, QuantilesWithinOnePointSixPercent) {
  LatencyRecorder r;
  for (int64_t i = 1; i <= 100000; ++i) r.Record(i * 1000);  // 1 us .. 100 ms
  EXPECT_EQ(r.count(), 100000u);
  EXPECT_EQ(r.max_nanos(), 100000000);
  for (double q : {0.5, 0.9, 0.99, 0.999}) {
    double want = q * 100000 * 1000;
    EXPECT_NEAR(r.ValueAtQuantile(q), want, want / 64) << q;
  }
  EXPECT_EQ(r.ValueAtQuantile(1.0), 100000000);
  EXPECT_NEAR(r.mean_nanos(), 50000500.0, 1.0);
}

TEST(LatencyRecorderTest, EmptyAndMerge) {
  LatencyRecorder a, b;
  EXPECT_EQ(a.ValueAtQuantile(0.5), 0);
  a.Record(5);
  b.Record(7000);
  a.Merge(b);
  EXPECT_EQ(a.count(), 2u);
  EXPECT_EQ(a.max_nanos(), 7000);
  EXPECT_EQ(a.ValueAtQuantile(0.5), 5);
}

TEST(LatencyRecorderTest, ConcurrentRecordsAreAllCounted) {
  LatencyRecorder r;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&r, t] {
      for (int i = 0; i < 10000; ++i) r.Record(1000 + t);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(r.count(), 40000u);
  EXPECT_EQ(r.max_nanos(), 1003);
}

}  // namespace
}  // namespace idem::bench
