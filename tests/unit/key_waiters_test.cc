// KeyWaiters under concurrent use: every callback fires at most once, and
// exactly once unless a Cancel() that returned true took it first. Run under
// ThreadSanitizer by scripts/test (ctest label "concurrent").
#include "server/key_waiters.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"

namespace idem {
namespace {

TEST(KeyWaitersTest, NotifyBetweenPrepareAndParkIsRemembered) {
  KeyWaiters waiters(10);
  const KeyWaiters::Id id = waiters.Prepare("s", "k");
  ASSERT_NE(id, 0u);
  waiters.NotifyKey("s", "k");
  bool fired = false;
  EXPECT_EQ(waiters.Park(id, absl::InfiniteFuture(), [&fired] { fired = true; }),
            KeyWaiters::ParkResult::kNotified);
  EXPECT_FALSE(fired);
  EXPECT_EQ(waiters.size(), 0u);
}

TEST(KeyWaitersTest, RefusesWaitersBeyondTheLimit) {
  KeyWaiters waiters(2);
  EXPECT_NE(waiters.Prepare("s", "a"), 0u);
  EXPECT_NE(waiters.Prepare("s", "b"), 0u);
  EXPECT_EQ(waiters.Prepare("s", "c"), 0u);
}

// Threads park waiters on a few keys while others notify those keys and
// cancel some waiters, all at once.
TEST(KeyWaitersTest, RacingParkNotifyAndCancelFireEachCallbackAtMostOnce) {
  constexpr int kParkers = 4;
  constexpr int kPerParker = 300;
  constexpr int kKeys = 5;
  KeyWaiters waiters(kParkers * kPerParker);
  std::vector<std::atomic<int>> fired(kParkers * kPerParker);
  std::vector<std::atomic<bool>> cancelled(kParkers * kPerParker);
  std::atomic<bool> parking_done{false};
  std::atomic<int> not_parked{0};  // kNotified: will never fire

  std::vector<std::thread> threads;
  for (int p = 0; p < kParkers; ++p) {
    threads.emplace_back([&, p] {
      for (int i = 0; i < kPerParker; ++i) {
        const int n = p * kPerParker + i;
        const KeyWaiters::Id id = waiters.Prepare("s", absl::StrCat("k", n % kKeys));
        ASSERT_NE(id, 0u);
        const auto parked = waiters.Park(id, absl::InfiniteFuture(),
                                         [&fired, n] { fired[n].fetch_add(1); });
        if (parked == KeyWaiters::ParkResult::kNotified) {
          not_parked.fetch_add(1);
          continue;
        }
        if (i % 3 == 0 && waiters.Cancel(id)) cancelled[n] = true;
      }
    });
  }
  std::thread notifier([&] {
    while (!parking_done.load()) {
      for (int k = 0; k < kKeys; ++k) waiters.NotifyKey("s", absl::StrCat("k", k));
      std::this_thread::yield();
    }
  });
  for (auto& t : threads) t.join();
  parking_done = true;
  notifier.join();
  waiters.NotifyAll();  // Whatever is still parked fires now.

  int fired_once = 0;
  for (int n = 0; n < kParkers * kPerParker; ++n) {
    ASSERT_LE(fired[n].load(), 1) << "waiter " << n << " fired twice";
    if (cancelled[n]) {
      EXPECT_EQ(fired[n].load(), 0) << "cancelled waiter " << n << " fired";
    }
    fired_once += fired[n].load();
  }
  int cancelled_count = 0;
  for (auto& c : cancelled) cancelled_count += c.load();
  EXPECT_EQ(fired_once + cancelled_count + not_parked.load(), kParkers * kPerParker);
  EXPECT_EQ(waiters.size(), 0u);
  std::printf("fired %d, cancelled %d, notified before parking %d\n", fired_once,
              cancelled_count, not_parked.load());
}

// The timer thread fires waiters due soon while other threads park more.
TEST(KeyWaitersTest, TimerFiresEveryDueWaiterOnce) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 50;
  KeyWaiters waiters(kThreads * kPerThread);
  absl::Mutex mu;
  int fired = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const KeyWaiters::Id id = waiters.Prepare("s", absl::StrCat("t", t, "-", i));
        ASSERT_NE(id, 0u);
        // Due in 0..9 ms, out of order, so the timer reschedules.
        ASSERT_EQ(waiters.Park(id, absl::Now() + absl::Milliseconds((i * 7) % 10),
                               [&mu, &fired] {
                                 absl::MutexLock lock(&mu);
                                 ++fired;
                               }),
                  KeyWaiters::ParkResult::kParked);
      }
    });
  }
  for (auto& t : threads) t.join();
  absl::MutexLock lock(&mu);
  mu.Await(absl::Condition(
      +[](int* n) { return *n == kThreads * kPerThread; }, &fired));
  EXPECT_EQ(waiters.size(), 0u);
}

// Shutdown() fires every parked waiter once and refuses new ones, while
// other threads keep preparing and parking.
TEST(KeyWaitersTest, ShutdownFiresEveryParkedWaiterAndRefusesNewOnes) {
  constexpr int kThreads = 4;
  auto waiters = std::make_unique<KeyWaiters>(100000);
  std::atomic<int> parked{0};
  std::atomic<int> fired{0};
  std::atomic<int> refused{0};
  absl::Notification some_parked;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0;; ++i) {
        const KeyWaiters::Id id = waiters->Prepare("s", absl::StrCat("t", t, "-", i));
        if (id == 0) {
          refused.fetch_add(1);
          return;
        }
        if (waiters->Park(id, absl::InfiniteFuture(), [&fired] { fired.fetch_add(1); }) ==
            KeyWaiters::ParkResult::kParked) {
          if (parked.fetch_add(1) == 100) some_parked.Notify();
        }
      }
    });
  }
  some_parked.WaitForNotification();
  waiters->Shutdown();
  for (auto& t : threads) t.join();
  EXPECT_EQ(refused.load(), kThreads);
  EXPECT_EQ(fired.load(), parked.load());
  EXPECT_EQ(waiters->size(), 0u);
  waiters.reset();
}

}  // namespace
}  // namespace idem
