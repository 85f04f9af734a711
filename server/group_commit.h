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
// Example:
//   GroupCommit<Req, absl::StatusOr<Out>> batcher(options, key_of, run_batch, run_one);
//   absl::StatusOr<Out> out = batcher.Submit(request, deadline);
//
// Thread safety: Submit() may be called from any number of threads.
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

  GroupCommit(GroupCommitOptions options, KeyOf key_of, RunBatch run_batch,
              RunOne run_one)
      : options_(options),
        key_of_(std::move(key_of)),
        run_batch_(std::move(run_batch)),
        run_one_(std::move(run_one)) {}
  GroupCommit(const GroupCommit&) = delete;
  GroupCommit& operator=(const GroupCommit&) = delete;

  Result Submit(const Request& request, absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_) {
    Call call{&request, deadline, key_of_(request)};
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
    if (!batch.empty()) Lead(batch);
    if (call.run_alone) return run_one_(request, deadline);
    return std::move(call.result);
  }

  const GroupCommitCounters& counters() const { return counters_; }

  // Calls waiting to be taken into a batch.
  size_t queued() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return queue_.size();
  }

 private:
  struct Call {
    const Request* request;
    absl::Time deadline;
    std::pair<std::string, std::string> key;
    bool taken = false;
    bool done = false;
    bool run_alone = false;
    Result result = absl::UnknownError("not run");
  };

  // `leader` first, then queued calls in order, skipping repeated keys.
  std::vector<Call*> TakeBatchLocked(Call* leader) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<Call*> batch{leader};
    leader->taken = true;
    absl::flat_hash_set<std::pair<std::string, std::string>> keys{leader->key};
    std::deque<Call*> rest;
    for (Call* c : queue_) {
      if (c == leader) continue;
      if (static_cast<int>(batch.size()) < options_.max_batch && keys.insert(c->key).second) {
        c->taken = true;
        batch.push_back(c);
      } else {
        rest.push_back(c);
      }
    }
    queue_.swap(rest);
    return batch;
  }

  void Lead(const std::vector<Call*>& batch) ABSL_LOCKS_EXCLUDED(mu_) {
    std::vector<const Request*> requests;
    requests.reserve(batch.size());
    absl::Time deadline = absl::InfinitePast();
    for (Call* c : batch) {
      requests.push_back(c->request);
      deadline = std::max(deadline, c->deadline);
    }
    counters_.batches.fetch_add(1, std::memory_order_relaxed);
    counters_.calls.fetch_add(static_cast<int64_t>(batch.size()), std::memory_order_relaxed);
    absl::StatusOr<std::vector<Result>> results = run_batch_(requests, deadline);
    const bool alone =
        !results.ok() && batch.size() > 1 &&
        results.status().code() != absl::StatusCode::kUnavailable &&
        results.status().code() != absl::StatusCode::kDeadlineExceeded;
    if (alone) counters_.fallbacks.fetch_add(1, std::memory_order_relaxed);
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
      c->done = true;
    }
    --running_;
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
