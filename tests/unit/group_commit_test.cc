#include "server/group_commit.h"

#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "server/worker_pool.h"

namespace idem {
namespace {

// A request is a key and a value; the batch answers each value doubled.
struct Req {
  std::string key;
  int value = 0;
};
using Result = absl::StatusOr<int>;
using Batcher = GroupCommit<Req, Result>;

std::pair<std::string, std::string> KeyOf(const Req& r) { return {"scope", r.key}; }

// Records the batches it ran; the first batch waits for `release`.
struct Recorder {
  absl::Mutex mu;
  std::vector<std::vector<std::string>> batches ABSL_GUARDED_BY(mu);
  absl::Notification release;
  absl::Notification first_started;
  int ones = 0;

  absl::StatusOr<std::vector<Result>> Run(absl::Span<const Req* const> batch) {
    if (!first_started.HasBeenNotified()) {
      first_started.Notify();
      release.WaitForNotification();
    }
    std::vector<std::string> keys;
    std::vector<Result> out;
    for (const Req* r : batch) {
      keys.push_back(r->key);
      out.push_back(r->value * 2);
    }
    absl::MutexLock lock(&mu);
    batches.push_back(keys);
    return out;
  }
};

// One batch in flight, up to 16 calls in it; no leader scheduling.
GroupCommitOptions OneAtATime() {
  GroupCommitOptions options;
  options.max_running = 1;
  options.max_batch = 16;
  return options;
}

absl::Time Later() { return absl::Now() + absl::Seconds(30); }

TEST(GroupCommitTest, ALoneCallGoesStraightThrough) {
  Recorder rec;
  rec.release.Notify();
  Batcher batcher(OneAtATime(), KeyOf,
                  [&](absl::Span<const Req* const> b, absl::Time) { return rec.Run(b); },
                  [](const Req& r, absl::Time) -> Result { return -1; });
  Result r = batcher.Submit(Req{"a", 21}, Later());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 42);
  EXPECT_EQ(batcher.counters().batches.load(), 1);
}

// Waits until `n` calls are queued behind the running batch.
void AwaitQueued(const Batcher& batcher, size_t n) {
  while (batcher.queued() < n) absl::SleepFor(absl::Milliseconds(1));
}

TEST(GroupCommitTest, CallsArrivingWhileABatchRunsGoTogetherEachWithItsOwnResult) {
  Recorder rec;
  Batcher batcher(OneAtATime(), KeyOf,
                  [&](absl::Span<const Req* const> b, absl::Time) { return rec.Run(b); },
                  [](const Req& r, absl::Time) -> Result { return -1; });
  std::vector<Result> results(11, absl::UnknownError("unset"));
  std::vector<std::thread> threads;
  threads.emplace_back([&] { results[0] = batcher.Submit(Req{"first", 0}, Later()); });
  rec.first_started.WaitForNotification();
  for (int i = 1; i <= 10; ++i) {
    threads.emplace_back(
        [&, i] { results[i] = batcher.Submit(Req{"k" + std::to_string(i), i}, Later()); });
  }
  AwaitQueued(batcher, 10);
  rec.release.Notify();
  for (std::thread& t : threads) t.join();
  for (int i = 0; i <= 10; ++i) {
    ASSERT_TRUE(results[i].ok()) << i;
    EXPECT_EQ(*results[i], 2 * i);
  }
  absl::MutexLock lock(&rec.mu);
  ASSERT_EQ(rec.batches.size(), 2u);
  EXPECT_EQ(rec.batches[1].size(), 10u);
  EXPECT_EQ(batcher.counters().calls.load(), 11);
}

TEST(GroupCommitTest, TwoCallsForOneKeyNeverShareABatch) {
  Recorder rec;
  Batcher batcher(OneAtATime(), KeyOf,
                  [&](absl::Span<const Req* const> b, absl::Time) { return rec.Run(b); },
                  [](const Req& r, absl::Time) -> Result { return -1; });
  std::vector<std::thread> threads;
  threads.emplace_back([&] { (void)batcher.Submit(Req{"first", 0}, Later()); });
  rec.first_started.WaitForNotification();
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&, i] {
      (void)batcher.Submit(Req{i % 2 == 0 ? "same" : "k" + std::to_string(i), i}, Later());
    });
  }
  AwaitQueued(batcher, 6);
  rec.release.Notify();
  for (std::thread& t : threads) t.join();
  absl::MutexLock lock(&rec.mu);
  int same_total = 0;
  for (const auto& batch : rec.batches) {
    int same = 0;
    for (const std::string& k : batch) same += k == "same";
    EXPECT_LE(same, 1);
    same_total += same;
  }
  EXPECT_EQ(same_total, 3);
}

TEST(GroupCommitTest, ABatchThatFailsAsAWholeRunsEachCallAlone) {
  absl::Notification release, started;
  std::atomic<int> alone{0};
  std::atomic<int> batch_calls{0};
  Batcher batcher(
      OneAtATime(), KeyOf,
      [&](absl::Span<const Req* const> b, absl::Time) -> absl::StatusOr<std::vector<Result>> {
        if (batch_calls.fetch_add(1) == 0) {
          started.Notify();
          release.WaitForNotification();
          return std::vector<Result>{Result(0)};
        }
        return absl::AbortedError("deadlock detected");
      },
      [&](const Req& r, absl::Time) -> Result {
        alone.fetch_add(1);
        if (r.key == "bad") return absl::InvalidArgumentError("bad row");
        return r.value * 2;
      });
  std::vector<Result> results(4, absl::UnknownError("unset"));
  std::vector<std::thread> threads;
  threads.emplace_back([&] { results[0] = batcher.Submit(Req{"first", 0}, Later()); });
  started.WaitForNotification();
  const char* keys[] = {"", "x", "bad", "y"};
  for (int i = 1; i <= 3; ++i) {
    threads.emplace_back([&, i] { results[i] = batcher.Submit(Req{keys[i], i}, Later()); });
  }
  AwaitQueued(batcher, 3);
  release.Notify();
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(alone.load(), 3);
  EXPECT_EQ(*results[1], 2);
  EXPECT_EQ(results[2].status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*results[3], 6);
  EXPECT_EQ(batcher.counters().fallbacks.load(), 1);
}

TEST(GroupCommitTest, UnavailableFailsTheWholeBatchWithoutRetrying) {
  absl::Notification release, started;
  std::atomic<int> batch_calls{0};
  std::atomic<int> alone{0};
  Batcher batcher(
      OneAtATime(), KeyOf,
      [&](absl::Span<const Req* const>, absl::Time) -> absl::StatusOr<std::vector<Result>> {
        if (batch_calls.fetch_add(1) == 0) {
          started.Notify();
          release.WaitForNotification();
        }
        return absl::UnavailableError("database down");
      },
      [&](const Req&, absl::Time) -> Result {
        alone.fetch_add(1);
        return 0;
      });
  std::vector<Result> results(3, absl::UnknownError("unset"));
  std::vector<std::thread> threads;
  threads.emplace_back([&] { results[0] = batcher.Submit(Req{"first", 0}, Later()); });
  started.WaitForNotification();
  for (int i = 1; i <= 2; ++i) {
    threads.emplace_back(
        [&, i] { results[i] = batcher.Submit(Req{"k" + std::to_string(i), i}, Later()); });
  }
  AwaitQueued(batcher, 2);
  release.Notify();
  for (std::thread& t : threads) t.join();
  for (const Result& r : results) EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(alone.load(), 0);
}

TEST(GroupCommitTest, ACallWhoseDeadlinePassesWhileQueuedDoesNotRun) {
  Recorder rec;
  Batcher batcher(OneAtATime(), KeyOf,
                  [&](absl::Span<const Req* const> b, absl::Time) { return rec.Run(b); },
                  [](const Req& r, absl::Time) -> Result { return -1; });
  std::thread first([&] { (void)batcher.Submit(Req{"first", 0}, Later()); });
  rec.first_started.WaitForNotification();
  Result late = batcher.Submit(Req{"late", 1}, absl::Now() + absl::Milliseconds(50));
  EXPECT_EQ(late.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(batcher.queued(), 0u);
  rec.release.Notify();
  first.join();
  absl::MutexLock lock(&rec.mu);
  EXPECT_EQ(rec.batches.size(), 1u);
}

// Async calls: results collected by index; Wait() until `n` are answered.
struct AsyncResults {
  explicit AsyncResults(size_t n) : results(n, absl::UnknownError("unset")) {}
  Batcher::Done For(size_t i) {
    return [this, i](Result r) {
      absl::MutexLock lock(&mu);
      results[i] = std::move(r);
      ++answered;
    };
  }
  void Wait(int n) {
    absl::MutexLock lock(&mu);
    auto done = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return answered >= n; };
    mu.Await(absl::Condition(&done));
  }
  absl::Mutex mu;
  std::vector<Result> results ABSL_GUARDED_BY(mu);
  int answered ABSL_GUARDED_BY(mu) = 0;
};

// Options whose leaders run on `pool`, counting the leaders started.
GroupCommitOptions AsyncOptions(WorkerPool* pool, std::atomic<int>* scheduled,
                                size_t max_queued = 4096) {
  GroupCommitOptions options = OneAtATime();
  options.schedule = [pool, scheduled](std::function<void()> task) {
    scheduled->fetch_add(1);
    return pool->TrySchedule(std::move(task));
  };
  options.max_queued = max_queued;
  return options;
}

TEST(GroupCommitTest, AsyncCallsQueuedWhileABatchRunsAreAnsweredByItsLeader) {
  Recorder rec;
  WorkerPool pool(2, 16);
  std::atomic<int> scheduled{0};
  Batcher batcher(AsyncOptions(&pool, &scheduled), KeyOf,
                  [&](absl::Span<const Req* const> b, absl::Time) { return rec.Run(b); },
                  [](const Req& r, absl::Time) -> Result { return -1; });
  AsyncResults out(12);
  batcher.SubmitAsync(Req{"first", 0}, Later(), out.For(0));
  rec.first_started.WaitForNotification();
  // The batch is blocked; SubmitAsync returns anyway (no thread waits).
  for (int i = 1; i <= 10; ++i) {
    batcher.SubmitAsync(Req{"k" + std::to_string(i), i}, Later(), out.For(i));
  }
  batcher.SubmitAsync(Req{"k1", 11}, Later(), out.For(11));  // Same key as #1.
  AwaitQueued(batcher, 11);
  rec.release.Notify();
  out.Wait(12);
  {
    absl::MutexLock lock(&out.mu);
    for (int i = 0; i <= 11; ++i) {
      ASSERT_TRUE(out.results[i].ok()) << i << " " << out.results[i].status();
      EXPECT_EQ(*out.results[i], 2 * i);
    }
  }
  absl::MutexLock lock(&rec.mu);
  ASSERT_EQ(rec.batches.size(), 3u);  // first; k1..k10; the second k1.
  EXPECT_EQ(rec.batches[1].size(), 10u);
  EXPECT_EQ(rec.batches[2], std::vector<std::string>{"k1"});
  EXPECT_EQ(scheduled.load(), 1);  // One leader ran all three batches.
  EXPECT_EQ(batcher.queued(), 0u);
}

TEST(GroupCommitTest, AsyncCallsOfAFailedBatchRunAloneAndAnswerEach) {
  absl::Notification release, started;
  std::atomic<int> batch_calls{0};
  WorkerPool pool(2, 16);
  std::atomic<int> scheduled{0};
  Batcher batcher(
      AsyncOptions(&pool, &scheduled), KeyOf,
      [&](absl::Span<const Req* const> b, absl::Time) -> absl::StatusOr<std::vector<Result>> {
        if (batch_calls.fetch_add(1) == 0) {
          started.Notify();
          release.WaitForNotification();
          return std::vector<Result>{Result(0)};
        }
        return absl::AbortedError("deadlock detected");
      },
      [&](const Req& r, absl::Time) -> Result {
        if (r.key == "bad") return absl::InvalidArgumentError("bad row");
        return r.value * 2;
      });
  AsyncResults out(3);
  batcher.SubmitAsync(Req{"first", 0}, Later(), out.For(0));
  started.WaitForNotification();
  batcher.SubmitAsync(Req{"bad", 1}, Later(), out.For(1));
  batcher.SubmitAsync(Req{"good", 2}, Later(), out.For(2));
  AwaitQueued(batcher, 2);
  release.Notify();
  out.Wait(3);
  absl::MutexLock lock(&out.mu);
  EXPECT_EQ(*out.results[0], 0);
  EXPECT_EQ(out.results[1].status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*out.results[2], 4);
  EXPECT_EQ(batcher.counters().fallbacks.load(), 1);
}

TEST(GroupCommitTest, AnAsyncCallWhoseDeadlinePassedWhileQueuedDoesNotRun) {
  Recorder rec;
  WorkerPool pool(2, 16);
  std::atomic<int> scheduled{0};
  Batcher batcher(AsyncOptions(&pool, &scheduled), KeyOf,
                  [&](absl::Span<const Req* const> b, absl::Time) { return rec.Run(b); },
                  [](const Req& r, absl::Time) -> Result { return -1; });
  AsyncResults out(3);
  batcher.SubmitAsync(Req{"first", 0}, Later(), out.For(0));
  rec.first_started.WaitForNotification();
  batcher.SubmitAsync(Req{"late", 1}, absl::Now() + absl::Milliseconds(1), out.For(1));
  batcher.SubmitAsync(Req{"on-time", 2}, Later(), out.For(2));
  absl::SleepFor(absl::Milliseconds(20));
  rec.release.Notify();
  out.Wait(3);
  {
    absl::MutexLock lock(&out.mu);
    EXPECT_EQ(out.results[1].status().code(), absl::StatusCode::kDeadlineExceeded);
    EXPECT_EQ(*out.results[2], 4);
  }
  absl::MutexLock lock(&rec.mu);
  ASSERT_EQ(rec.batches.size(), 2u);
  EXPECT_EQ(rec.batches[1], std::vector<std::string>{"on-time"});
}

TEST(GroupCommitTest, AsyncCallsBeyondTheQueueBoundAreRefused) {
  Recorder rec;
  WorkerPool pool(2, 16);
  std::atomic<int> scheduled{0};
  Batcher batcher(AsyncOptions(&pool, &scheduled, /*max_queued=*/1), KeyOf,
                  [&](absl::Span<const Req* const> b, absl::Time) { return rec.Run(b); },
                  [](const Req& r, absl::Time) -> Result { return -1; });
  AsyncResults out(3);
  batcher.SubmitAsync(Req{"first", 0}, Later(), out.For(0));
  rec.first_started.WaitForNotification();
  batcher.SubmitAsync(Req{"queued", 1}, Later(), out.For(1));
  batcher.SubmitAsync(Req{"refused", 2}, Later(), out.For(2));
  out.Wait(1);  // The refusal comes at once, while the batch still runs.
  {
    absl::MutexLock lock(&out.mu);
    EXPECT_EQ(out.results[2].status().code(), absl::StatusCode::kResourceExhausted);
    EXPECT_NE(out.results[2].status().message().find("queue full"), absl::string_view::npos);
  }
  rec.release.Notify();
  out.Wait(3);
  absl::MutexLock lock(&out.mu);
  EXPECT_EQ(*out.results[1], 2);
}

TEST(GroupCommitTest, AnAsyncCallIsRefusedWhenNoLeaderCanStart) {
  Recorder rec;
  rec.release.Notify();
  GroupCommitOptions options = OneAtATime();
  options.schedule = [](std::function<void()>) { return false; };
  Batcher batcher(options, KeyOf,
                  [&](absl::Span<const Req* const> b, absl::Time) { return rec.Run(b); },
                  [](const Req& r, absl::Time) -> Result { return -1; });
  AsyncResults out(1);
  batcher.SubmitAsync(Req{"a", 1}, Later(), out.For(0));
  out.Wait(1);
  absl::MutexLock lock(&out.mu);
  EXPECT_EQ(out.results[0].status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(batcher.queued(), 0u);
  absl::MutexLock rec_lock(&rec.mu);
  EXPECT_TRUE(rec.batches.empty());
}

TEST(GroupCommitTest, ASyncLeaderHandsQueuedAsyncCallsToANewLeader) {
  Recorder rec;
  WorkerPool pool(2, 16);
  std::atomic<int> scheduled{0};
  Batcher batcher(AsyncOptions(&pool, &scheduled), KeyOf,
                  [&](absl::Span<const Req* const> b, absl::Time) { return rec.Run(b); },
                  [](const Req& r, absl::Time) -> Result { return -1; });
  Result first = absl::UnknownError("unset");
  std::thread sync_leader([&] { first = batcher.Submit(Req{"first", 5}, Later()); });
  rec.first_started.WaitForNotification();
  AsyncResults out(2);
  batcher.SubmitAsync(Req{"a", 1}, Later(), out.For(0));
  batcher.SubmitAsync(Req{"b", 2}, Later(), out.For(1));
  EXPECT_EQ(scheduled.load(), 0);  // A batch is running: no new leader.
  rec.release.Notify();
  sync_leader.join();
  EXPECT_EQ(*first, 10);
  out.Wait(2);
  absl::MutexLock lock(&out.mu);
  EXPECT_EQ(*out.results[0], 2);
  EXPECT_EQ(*out.results[1], 4);
  EXPECT_EQ(scheduled.load(), 1);  // The rest went to a worker.
}

}  // namespace
}  // namespace idem
