// WorkerPool: a fixed set of threads running queued tasks, with a bounded
// queue.
//
// The gRPC callback API forbids blocking in a reaction; store calls block on
// PostgreSQL. GrpcService hands each call to this pool, sized to the
// connection pool, so at most `threads` store calls run at once and none
// waits for a connection.
//
// Example:
//   WorkerPool pool(/*threads=*/8, /*max_queued=*/1024);
//   if (!pool.TrySchedule([] { DoBlockingWork(); })) RejectOverload();
//   pool.Shutdown();  // Runs what is queued, then joins.
//
// Thread safety: TrySchedule may be called from any thread.
#ifndef IDEM_SERVER_WORKER_POOL_H_
#define IDEM_SERVER_WORKER_POOL_H_

#include <cstddef>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace idem {

class WorkerPool {
 public:
  WorkerPool(int threads, size_t max_queued);
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;
  // Calls Shutdown().
  ~WorkerPool();

  // Queues `task`; false when the queue is full or the pool shut down.
  bool TrySchedule(std::function<void()> task) ABSL_LOCKS_EXCLUDED(mu_);

  // Stops accepting tasks, runs the queued ones, joins the threads.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

  size_t queued() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Run() ABSL_LOCKS_EXCLUDED(mu_);

  // Constant after construction.
  const size_t max_queued_;

  mutable absl::Mutex mu_;
  // State below is protected by mu_.
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;

  std::vector<std::thread> threads_;
};

}  // namespace idem

#endif  // IDEM_SERVER_WORKER_POOL_H_
