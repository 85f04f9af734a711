#include "server/worker_pool.h"

#include <atomic>

#include <gtest/gtest.h>

#include "absl/synchronization/notification.h"

namespace idem {
namespace {

TEST(WorkerPoolTest, RunsEveryQueuedTaskBeforeShutdownReturns) {
  std::atomic<int> ran{0};
  WorkerPool pool(2, 1000);
  for (int i = 0; i < 500; ++i) {
    ASSERT_TRUE(pool.TrySchedule([&ran] { ran.fetch_add(1); }));
  }
  pool.Shutdown();
  EXPECT_EQ(ran.load(), 500);
}

TEST(WorkerPoolTest, RejectsWhenTheQueueIsFull) {
  absl::Notification release;
  absl::Notification started;
  WorkerPool pool(1, 2);
  ASSERT_TRUE(pool.TrySchedule([&] {
    started.Notify();
    release.WaitForNotification();
  }));
  started.WaitForNotification();
  EXPECT_TRUE(pool.TrySchedule([] {}));
  EXPECT_TRUE(pool.TrySchedule([] {}));
  EXPECT_FALSE(pool.TrySchedule([] {}));
  release.Notify();
  pool.Shutdown();
  EXPECT_FALSE(pool.TrySchedule([] {}));
}

}  // namespace
}  // namespace idem
