// LatencyRecorder: a thread-safe log-linear (HDR-style) latency histogram.
//
// Record() is one relaxed atomic increment plus a compare-and-swap for the
// maximum only when it grows, so many gRPC callback threads can record
// without a lock. Values are nanoseconds; each power of two is split into 64
// linear sub-buckets, so a reported percentile is within 1/64 (1.6%) of the
// true value (exact below 128 ns). The maximum is exact.
#ifndef IDEM_BENCH_LATENCY_RECORDER_H_
#define IDEM_BENCH_LATENCY_RECORDER_H_

#include <array>
#include <atomic>
#include <cstdint>

namespace idem::bench {

class LatencyRecorder {
 public:
  LatencyRecorder();
  LatencyRecorder(const LatencyRecorder&) = delete;
  LatencyRecorder& operator=(const LatencyRecorder&) = delete;

  void Record(int64_t nanos);
  // Adds every sample of `other` (for an overall view of several kinds).
  void Merge(const LatencyRecorder& other);

  uint64_t count() const;
  int64_t max_nanos() const { return max_.load(std::memory_order_relaxed); }
  double mean_nanos() const;
  // The value at quantile q in [0, 1] (0.999 for p99.9): the middle of the
  // bucket holding the ceil(q * count)-th smallest sample, capped at the
  // maximum. 0 without samples.
  int64_t ValueAtQuantile(double q) const;

  // Bucket layout, public for tests.
  static constexpr int kSubBits = 6;  // 64 sub-buckets per power of two
  // Samples are int64_t, so the top bit set is bit 62 and BucketOf never
  // exceeds (62 - kSubBits) * kSub + 2 * kSub - 1: exactly kBuckets - 1.
  // (A 64-bit layout had 64 more buckets nobody could reach, whose bounds
  // overflow int64_t: UBSan's signed-overflow finding in bench_latency_test.)
  static constexpr int kBuckets = (63 - kSubBits) * (1 << kSubBits) + (1 << kSubBits);
  static int BucketOf(int64_t nanos);
  static int64_t BucketLow(int bucket);
  static int64_t BucketWidth(int bucket);

 private:
  std::array<std::atomic<uint64_t>, kBuckets> counts_;
  std::atomic<int64_t> max_{0};
  std::atomic<uint64_t> sum_{0};
};

}  // namespace idem::bench

#endif  // IDEM_BENCH_LATENCY_RECORDER_H_
