// GroupCommit: gathers concurrent single-key store calls into batches, so
// one statement and one commit (one WAL flush) serve many callers.
//
// Callers block in Submit(). A call that finds fewer than `max_running`
// batches in flight leads at once: it takes every queued call (up to
// `max_batch`, its own first), runs them as one batch and hands each caller
// its own result. Calls that arrive while `max_running` batches are in
// flight queue up and go together in the next batch. So the gathering
// window adapts to load without a timer: a lone caller goes straight
// through; under load, a batch holds whatever arrived while the previous
// statements ran.
//
// Two calls for the same key never go into one batch (an ON CONFLICT or an
// UPDATE cannot touch one row twice): the later one waits for a later batch.
// When a batch of more than one fails as a whole (deadlock, a bad row,
// anything but UNAVAILABLE / DEADLINE_EXCEEDED, which would fail each call
// alike), each caller runs its own call alone, so one call's problem never
// fails the others. A call whose deadline passes while queued (not yet
// taken into a batch) answers DEADLINE_EXCEEDED without running.
//
// SubmitAsync() is the same without a thread waiting per call: the call is
// queued with its completion callback, and whichever thread runs its batch
// calls the callback. A leader keeps taking batches while calls are queued,
// so a queued call always has a leader; when no batch is in flight the
// leader is started through `options.schedule` (a worker pool), so
// SubmitAsync never blocks and may be called on a gRPC callback thread.
// A queued async call whose deadline passed is answered DEADLINE_EXCEEDED
// when the next batch is taken, without running.
//
// Example:
//   GroupCommit<Req, absl::StatusOr<Out>> batcher(options, key_of, run_batch, run_one);
//   absl::StatusOr<Out> out = batcher.Submit(request, deadline);
//   batcher.SubmitAsync(request, deadline, [](absl::StatusOr<Out> out) { ... });
//
// Thread safety: Submit() and SubmitAsync() may be called from any number
// of threads.
#ifndef IDEM_SERVER_GROUP_COMMIT_H_
#define IDEM_SERVER_GROUP_COMMIT_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace idem {

struct GroupCommitOptions {
  // Batches in flight at once (each holds one database connection).
  int max_running = 4;
  // Calls in one batch.
  int max_batch = 256;
  // Runs a task on another thread; false if it cannot (queue full, shutting
  // down). Required for SubmitAsync(); when empty, a leader that ran a
  // Submit() call drains the queue itself.
  std::function<bool(std::function<void()>)> schedule;
  // Async calls queued at most; more are answered RESOURCE_EXHAUSTED.
  size_t max_queued = 4096;
};

// Batch sizes and counts, for metrics.
struct GroupCommitCounters {
  std::atomic<int64_t> batches{0};
  std::atomic<int64_t> calls{0};
  // Batches that failed as a whole and were run call by call.
  std::atomic<int64_t> fallbacks{0};
};

template <typename Request, typename Result>
class GroupCommit {
 public:
  // The key two calls must not share in one batch (scope and key).
  using KeyOf = std::function<std::pair<std::string, std::string>(const Request&)>;
  // Runs a batch: one result per request, in order, or the batch's status.
  using RunBatch = std::function<absl::StatusOr<std::vector<Result>>(
      absl::Span<const Request* const>, absl::Time deadline)>;
  // Runs one call alone.
  using RunOne = std::function<Result(const Request&, absl::Time deadline)>;
  // Receives an async call's result.
  using Done = std::function<void(Result)>;

  GroupCommit(GroupCommitOptions options, KeyOf key_of, RunBatch run_batch,
              RunOne run_one)
      : options_(options),
        key_of_(std::move(key_of)),
        run_batch_(std::move(run_batch)),
        run_one_(std::move(run_one)) {}
  GroupCommit(const GroupCommit&) = delete;
  GroupCommit& operator=(const GroupCommit&) = delete;

  Result Submit(const Request& request, absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_) {
    Call call(&request, deadline, key_of_(request));
    std::vector<Call*> batch;
    {
      absl::MutexLock lock(&mu_);
      queue_.push_back(&call);
      auto ready = [this, &call]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return call.done || (!call.taken && running_ < options_.max_running);
      };
      if (!mu_.AwaitWithDeadline(absl::Condition(&ready), deadline) && !call.taken) {
        queue_.erase(std::find(queue_.begin(), queue_.end(), &call));
        return absl::DeadlineExceededError(
            "deadline passed while waiting to be batched with other calls");
      }
      if (call.taken) {
        auto done = [&call]() { return call.done; };
        mu_.Await(absl::Condition(&done));
      } else {
        batch = TakeBatchLocked(&call);
        ++running_;
      }
    }
    if (!batch.empty()) LeadUntilDrained(std::move(batch), /*sync_leader=*/true);
    if (call.run_alone) return run_one_(request, deadline);
    return std::move(call.result);
  }

  // Queues the call; `done` gets its result, on the thread that ran its
  // batch (or at once, RESOURCE_EXHAUSTED, if no leader could be started).
  // `request` is copied; whatever it points to must outlive `done`'s call.
  void SubmitAsync(const Request& request, absl::Time deadline, Done done)
      ABSL_LOCKS_EXCLUDED(mu_) {
    auto* call = new Call(nullptr, deadline, key_of_(request));
    call->owned_request = request;
    call->request = &call->owned_request;
    call->done_fn = std::move(done);
    bool full = false;
    {
      absl::MutexLock lock(&mu_);
      full = queue_.size() >= options_.max_queued;
      if (!full) {
        queue_.push_back(call);
        // A running leader takes it when its batch is over.
        if (running_ >= options_.max_running) return;
        ++running_;
      }
    }
    if (full) {
      call->done_fn(absl::ResourceExhaustedError(
          "idemd is overloaded (group-commit queue full); retry with backoff"));
      delete call;
      return;
    }
    if (options_.schedule && options_.schedule([this] { LeadQueued(); })) return;
    // No leader could start. With another batch running, its leader takes
    // what is queued; with none, no async call queued would have a leader:
    // refuse them all (a waiting Submit() caller leads its own).
    std::vector<Call*> refused;
    {
      absl::MutexLock lock(&mu_);
      --running_;
      if (running_ == 0) {
        std::deque<Call*> rest;
        for (Call* c : queue_) {
          if (c->done_fn) {
            refused.push_back(c);
          } else {
            rest.push_back(c);
          }
        }
        queue_.swap(rest);
      }
    }
    for (Call* c : refused) {
      c->done_fn(absl::ResourceExhaustedError(
          "idemd is overloaded (cannot start a batch); retry with backoff"));
      delete c;
    }
  }

  const GroupCommitCounters& counters() const { return counters_; }

  // Calls waiting to be taken into a batch.
  size_t queued() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return queue_.size();
  }

 private:
  struct Call {
    Call(const Request* r, absl::Time d, std::pair<std::string, std::string> k)
        : request(r), deadline(d), key(std::move(k)) {}
    const Request* request;
    absl::Time deadline;
    std::pair<std::string, std::string> key;
    bool taken = false;
    bool done = false;
    bool run_alone = false;
    Result result = absl::UnknownError("not run");
    // Async calls only: the callback (set) and their copy of the request.
    Done done_fn;
    Request owned_request{};
  };

  // `leader` (if any) first, then queued calls in order, skipping repeated
  // keys. Async calls whose deadline passed go to *expired instead.
  std::vector<Call*> TakeBatchLocked(Call* leader, std::vector<Call*>* expired = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<Call*> batch;
    absl::flat_hash_set<std::pair<std::string, std::string>> keys;
    if (leader != nullptr) {
      batch.push_back(leader);
      leader->taken = true;
      keys.insert(leader->key);
    }
    const absl::Time now = absl::Now();
    std::deque<Call*> rest;
    for (Call* c : queue_) {
      if (c == leader) continue;
      if (c->done_fn && c->deadline <= now && expired != nullptr) {
        expired->push_back(c);
      } else if (static_cast<int>(batch.size()) < options_.max_batch &&
                 keys.insert(c->key).second) {
        c->taken = true;
        batch.push_back(c);
      } else {
        rest.push_back(c);
      }
    }
    queue_.swap(rest);
    return batch;
  }

  // Leads whatever is queued (running_ already counts this leader).
  void LeadQueued() ABSL_LOCKS_EXCLUDED(mu_) {
    std::vector<Call*> batch;
    std::vector<Call*> expired;
    {
      absl::MutexLock lock(&mu_);
      batch = TakeBatchLocked(nullptr, &expired);
      if (batch.empty()) --running_;
    }
    AnswerExpired(expired);
    if (!batch.empty()) LeadUntilDrained(std::move(batch), /*sync_leader=*/false);
  }

  // Runs `batch`, then the batches of whatever was queued meanwhile, until
  // the queue is empty. A Submit() caller (`sync_leader`) hands the rest to
  // options.schedule, so it answers its own caller after one batch.
  void LeadUntilDrained(std::vector<Call*> batch, bool sync_leader)
      ABSL_LOCKS_EXCLUDED(mu_) {
    std::vector<Call*> async_calls;
    std::vector<Call*> expired;
    std::vector<Call*> next;
    while (!batch.empty()) {
      std::vector<const Request*> requests;
      requests.reserve(batch.size());
      absl::Time deadline = absl::InfinitePast();
      for (Call* c : batch) {
        requests.push_back(c->request);
        deadline = std::max(deadline, c->deadline);
      }
      counters_.batches.fetch_add(1, std::memory_order_relaxed);
      counters_.calls.fetch_add(static_cast<int64_t>(batch.size()),
                                std::memory_order_relaxed);
      absl::StatusOr<std::vector<Result>> results = run_batch_(requests, deadline);
      const bool alone =
          !results.ok() && batch.size() > 1 &&
          results.status().code() != absl::StatusCode::kUnavailable &&
          results.status().code() != absl::StatusCode::kDeadlineExceeded;
      if (alone) counters_.fallbacks.fetch_add(1, std::memory_order_relaxed);
      async_calls.clear();
      expired.clear();
      next.clear();
      bool hand_off = false;
      {
        absl::MutexLock lock(&mu_);
        for (size_t i = 0; i < batch.size(); ++i) {
          Call* c = batch[i];
          if (alone) {
            c->run_alone = true;
          } else if (!results.ok()) {
            c->result = results.status();
          } else {
            c->result = std::move((*results)[i]);
          }
          // A Submit() caller may return (and its Call go) once done is set.
          if (c->done_fn) {
            async_calls.push_back(c);
          } else {
            c->done = true;
          }
        }
        if (queue_.empty()) {
          --running_;
        } else if (sync_leader) {
          // A queued Submit() caller wakes and leads (taking async calls
          // too). Only async calls queued: a new leader on a worker. (Never
          // hand off while Submit() callers wait: they may hold every
          // worker, and the new leader would never start.)
          const bool only_async = std::all_of(queue_.begin(), queue_.end(),
                                              [](Call* c) { return c->done_fn != nullptr; });
          if (only_async && options_.schedule) {
            hand_off = true;  // running_ now counts the new leader.
          } else if (only_async) {
            next = TakeBatchLocked(nullptr, &expired);
            if (next.empty()) --running_;
          } else {
            --running_;
          }
        } else {
          next = TakeBatchLocked(nullptr, &expired);
          if (next.empty()) --running_;
        }
      }
      for (Call* c : async_calls) Answer(c);
      AnswerExpired(expired);
      if (hand_off && !options_.schedule([this] { LeadQueued(); })) {
        // No worker: lead the rest here.
        LeadQueued();
      }
      batch.swap(next);
    }
  }

  void AnswerExpired(const std::vector<Call*>& expired) {
    for (Call* c : expired) {
      c->done_fn(absl::DeadlineExceededError(
          "deadline passed while waiting to be batched with other calls"));
      delete c;
    }
  }

  // Gives an async call its result (running it alone if its batch failed
  // as a whole), then frees it.
  void Answer(Call* c) {
    if (c->run_alone) c->result = run_one_(*c->request, c->deadline);
    c->done_fn(std::move(c->result));
    delete c;
  }

  // Constant after construction.
  const GroupCommitOptions options_;
  const KeyOf key_of_;
  const RunBatch run_batch_;
  const RunOne run_one_;

  GroupCommitCounters counters_;

  mutable absl::Mutex mu_;
  // State below is protected by mu_.
  std::deque<Call*> queue_ ABSL_GUARDED_BY(mu_);
  int running_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace idem

#endif  // IDEM_SERVER_GROUP_COMMIT_H_
