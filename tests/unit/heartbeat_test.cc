// The client's Heartbeat thread against a fake ExtendLease: it extends until
// destroyed, retries transient errors, and marks the lease lost for good on
// an answer that means it is gone. Run under ThreadSanitizer by scripts/test
// (ctest label "concurrent").
#include "client/heartbeat.h"

#include <atomic>

#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "idem/run_once.h"

namespace idem {
namespace {

// Counts calls; answers from `answer` (guarded), and lets a test wait for a
// number of calls.
class FakeExtend {
 public:
  Heartbeat::Extend AsExtend() {
    return [this](absl::Time) {
      absl::MutexLock lock(&mu_);
      ++calls_;
      return answer_;
    };
  }
  void SetAnswer(absl::Status answer) {
    absl::MutexLock lock(&mu_);
    answer_ = std::move(answer);
  }
  void AwaitCalls(int n) {
    absl::MutexLock lock(&mu_);
    auto reached = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return calls_ >= n; };
    mu_.Await(absl::Condition(&reached));
  }
  int calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

 private:
  absl::Mutex mu_;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status answer_ ABSL_GUARDED_BY(mu_);
};

TEST(HeartbeatTest, ExtendsUntilDestroyedAndStopsAfter) {
  FakeExtend fake;
  Lease lease(7, 1);
  int calls_at_destruction;
  {
    Heartbeat heartbeat(fake.AsExtend(), absl::Milliseconds(10), &lease);
    fake.AwaitCalls(3);
  }
  calls_at_destruction = fake.calls();
  EXPECT_GE(calls_at_destruction, 3);
  EXPECT_FALSE(lease.lost());
  // The thread is joined: no call after destruction.
  EXPECT_EQ(fake.calls(), calls_at_destruction);
}

TEST(HeartbeatTest, TransientErrorsAreRetriedWithoutLosingTheLease) {
  FakeExtend fake;
  fake.SetAnswer(absl::UnavailableError("database restarting"));
  Lease lease(7, 1);
  Heartbeat heartbeat(fake.AsExtend(), absl::Milliseconds(10), &lease);
  fake.AwaitCalls(5);
  EXPECT_FALSE(lease.lost());
  fake.SetAnswer(absl::OkStatus());
  const int before = fake.calls();
  fake.AwaitCalls(before + 2);
  EXPECT_FALSE(lease.lost());
}

TEST(HeartbeatTest, LeaseGoneMarksItLostAndStopsExtending) {
  for (const absl::Status& gone :
       {absl::AbortedError("taken over"), absl::NotFoundError("expired"),
        absl::FailedPreconditionError("finished")}) {
    FakeExtend fake;
    fake.SetAnswer(gone);
    Lease lease(7, 1);
    {
      Heartbeat heartbeat(fake.AsExtend(), absl::Milliseconds(10), &lease);
      fake.AwaitCalls(1);
      // The destructor joins the thread, which marks the lease before it ends.
    }
    EXPECT_TRUE(lease.lost()) << gone;
    EXPECT_EQ(fake.calls(), 1) << gone;
  }
}

TEST(HeartbeatTest, InfiniteIntervalStartsNoThread) {
  FakeExtend fake;
  Lease lease(7, 1);
  { Heartbeat heartbeat(fake.AsExtend(), absl::InfiniteDuration(), &lease); }
  EXPECT_EQ(fake.calls(), 0);
}

}  // namespace
}  // namespace idem
