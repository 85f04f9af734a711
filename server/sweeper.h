// Sweeper: deletes expired records in the background.
//
// Expired records are already invisible to every RPC (each statement checks
// expires_at against the database clock); the sweeper only reclaims space.
// Each round deletes batches of at most `batch` rows (FOR UPDATE SKIP
// LOCKED, so replicas sweeping at once never wait on each other or on Begin
// traffic) until a batch comes back short.
//
// Example:
//   Sweeper sweeper(&store, {absl::Seconds(60), 1000});
//   sweeper.Start();
//   ...
//   sweeper.Stop();  // Returns once the current batch is done.
//
// Thread safety: Start/Stop from one owning thread; SweepOnce and the
// counters from any.
#ifndef IDEM_SERVER_SWEEPER_H_
#define IDEM_SERVER_SWEEPER_H_

#include <atomic>
#include <cstdint>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "server/store.h"

namespace idem {

class Sweeper {
 public:
  struct Options {
    absl::Duration interval = absl::Seconds(60);
    int64_t batch = 1000;
    // Deadline of each batch's statement.
    absl::Duration batch_timeout = absl::Seconds(30);
  };

  Sweeper(IdempotencyStore* store, Options options);
  Sweeper(const Sweeper&) = delete;
  Sweeper& operator=(const Sweeper&) = delete;
  ~Sweeper();

  void Start();
  void Stop();

  // One round: batches until one deletes fewer than `batch` rows or Stop()
  // is called. Returns the rows deleted.
  absl::StatusOr<int64_t> SweepOnce();

  // Totals since construction, for metrics: rounds run (SweepOnce calls),
  // rounds that ended in an error, rows deleted.
  int64_t runs() const { return runs_.load(std::memory_order_relaxed); }
  int64_t errors() const { return errors_.load(std::memory_order_relaxed); }
  int64_t rows_removed() const {
    return rows_removed_.load(std::memory_order_relaxed);
  }

 private:
  IdempotencyStore* const store_;
  const Options options_;
  std::atomic<int64_t> runs_{0};
  std::atomic<int64_t> errors_{0};
  std::atomic<int64_t> rows_removed_{0};
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace idem

#endif  // IDEM_SERVER_SWEEPER_H_
