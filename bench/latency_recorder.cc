#include "bench/latency_recorder.h"

#include <cmath>

namespace idem::bench {
namespace {
constexpr int64_t kSub = int64_t{1} << LatencyRecorder::kSubBits;  // 64
}  // namespace

LatencyRecorder::LatencyRecorder() {
  for (auto& c : counts_) c.store(0, std::memory_order_relaxed);
}

// Values below 2 * kSub map to themselves; above, the top kSubBits + 1 bits
// select the bucket: value >> shift lies in [kSub, 2 * kSub).
int LatencyRecorder::BucketOf(int64_t nanos) {
  if (nanos < 0) nanos = 0;
  uint64_t v = static_cast<uint64_t>(nanos);
  if (v < static_cast<uint64_t>(2 * kSub)) return static_cast<int>(v);
  int msb = 63 - __builtin_clzll(v);
  int shift = msb - kSubBits;
  int sub = static_cast<int>(v >> shift);  // [kSub, 2 * kSub)
  return shift * static_cast<int>(kSub) + sub;
}

int64_t LatencyRecorder::BucketLow(int bucket) {
  if (bucket < 2 * kSub) return bucket;
  int shift = bucket / static_cast<int>(kSub) - 1;
  int64_t sub = bucket % kSub + kSub;
  return sub << shift;
}

int64_t LatencyRecorder::BucketWidth(int bucket) {
  if (bucket < 2 * kSub) return 1;
  return int64_t{1} << (bucket / static_cast<int>(kSub) - 1);
}

void LatencyRecorder::Record(int64_t nanos) {
  if (nanos < 0) nanos = 0;
  counts_[BucketOf(nanos)].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(static_cast<uint64_t>(nanos), std::memory_order_relaxed);
  int64_t seen = max_.load(std::memory_order_relaxed);
  while (nanos > seen &&
         !max_.compare_exchange_weak(seen, nanos, std::memory_order_relaxed)) {
  }
}

void LatencyRecorder::Merge(const LatencyRecorder& other) {
  for (int i = 0; i < kBuckets; ++i) {
    uint64_t n = other.counts_[i].load(std::memory_order_relaxed);
    if (n != 0) counts_[i].fetch_add(n, std::memory_order_relaxed);
  }
  sum_.fetch_add(other.sum_.load(std::memory_order_relaxed), std::memory_order_relaxed);
  int64_t theirs = other.max_nanos();
  int64_t seen = max_.load(std::memory_order_relaxed);
  while (theirs > seen &&
         !max_.compare_exchange_weak(seen, theirs, std::memory_order_relaxed)) {
  }
}

uint64_t LatencyRecorder::count() const {
  uint64_t total = 0;
  for (const auto& c : counts_) total += c.load(std::memory_order_relaxed);
  return total;
}

double LatencyRecorder::mean_nanos() const {
  uint64_t n = count();
  return n == 0 ? 0.0
                : static_cast<double>(sum_.load(std::memory_order_relaxed)) / n;
}

int64_t LatencyRecorder::ValueAtQuantile(double q) const {
  uint64_t total = count();
  if (total == 0) return 0;
  if (q < 0) q = 0;
  if (q > 1) q = 1;
  uint64_t rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(total)));
  if (rank == 0) rank = 1;
  uint64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += counts_[i].load(std::memory_order_relaxed);
    if (seen >= rank) {
      int64_t mid = BucketLow(i) + BucketWidth(i) / 2;
      return mid < max_nanos() ? mid : max_nanos();
    }
  }
  return max_nanos();
}

}  // namespace idem::bench
