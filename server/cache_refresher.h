// CacheRefresher: reads again, in batches, the cached records that the
// record cache says are due a refresh (record_cache.h), so a hot key's entry
// is replaced before it ends.
//
// CachingStore hands it each key whose hit claimed a refresh (Request: a
// push under a lock, no I/O). Its thread waits for the first key, gathers
// for `gather` more, then reads them all with BatchGet, `batch` keys a
// statement, and replaces each entry with the fresh record or drops it (the
// key is gone, or no longer final: released, purged, or taken again). One
// statement and one wake-up serve every key due in a gather window, where
// one read per key woke a worker and a PostgreSQL backend per key (1,000
// hot keys and a 5 s max_age: 270 wake-ups a second, each delaying the
// replays answered on the completion-queue thread; docs/performance.md).
//
// A key that cannot be queued (full, or stopped), or whose read fails, keeps
// its entry until the entry's own end: it is never served longer.
//
// Example:
//   CacheRefresher refresher(&store, &cache, {absl::Milliseconds(100)});
//   CachingStore caching(&store, &cache, &refresher);
//   refresher.Start();
//   ...
//   refresher.Stop();  // Returns once the read in progress is done.
//
// Thread safety: Request and the counters from any thread; Start and Stop
// from one owning thread; RefreshQueued from one thread at a time.
#ifndef IDEM_SERVER_CACHE_REFRESHER_H_
#define IDEM_SERVER_CACHE_REFRESHER_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/record_cache.h"
#include "server/store.h"

namespace idem {

class CacheRefresher {
 public:
  struct Options {
    // How long keys are gathered after the first one arrives. Well under a
    // quarter of the cache's max_age (the window in which a refresh is due).
    absl::Duration gather = absl::Milliseconds(100);
    // Keys per statement.
    size_t batch = 500;
    // Keys queued at most; more are not refreshed.
    size_t max_queued = 65536;
    // Deadline of each statement.
    absl::Duration read_timeout = absl::Seconds(2);
  };

  // `store` and `cache` must outlive this.
  CacheRefresher(IdempotencyStore* store, RecordCache* cache, Options options);
  CacheRefresher(const CacheRefresher&) = delete;
  CacheRefresher& operator=(const CacheRefresher&) = delete;
  // Calls Stop().
  ~CacheRefresher();

  // Queues (scope, key) for the next read; false when the queue is full or
  // the refresher stopped.
  bool Request(absl::string_view scope, absl::string_view key) ABSL_LOCKS_EXCLUDED(mu_);

  // Starts the thread that runs RefreshQueued after each gather.
  void Start();
  // Stops and joins the thread; keys still queued are dropped, and Request
  // refuses from then on.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  // Reads every key queued now and replaces or drops its entry, on the
  // calling thread (the refresher's own thread, or a test).
  void RefreshQueued() ABSL_LOCKS_EXCLUDED(mu_);

  // Totals since construction, for metrics: keys read, and statements that
  // failed (their keys were not refreshed).
  int64_t refreshed() const { return refreshed_.load(std::memory_order_relaxed); }
  int64_t errors() const { return errors_.load(std::memory_order_relaxed); }

 private:
  void Run() ABSL_LOCKS_EXCLUDED(mu_);
  bool WorkOrStopping() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || !queued_.empty();
  }

  IdempotencyStore* const store_;
  RecordCache* const cache_;
  const Options options_;

  absl::Mutex mu_;
  std::vector<RecordId> queued_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  std::atomic<int64_t> refreshed_{0};
  std::atomic<int64_t> errors_{0};
  std::thread thread_;
};

}  // namespace idem

#endif  // IDEM_SERVER_CACHE_REFRESHER_H_
