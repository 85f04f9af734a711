#include "server/sweeper.h"

#include <glog/logging.h>

#include "absl/time/clock.h"

namespace idem {

Sweeper::Sweeper(IdempotencyStore* store, Options options)
    : store_(store), options_(options) {}

Sweeper::~Sweeper() { Stop(); }

void Sweeper::Start() {
  thread_ = std::thread([this] {
    while (!stop_.WaitForNotificationWithTimeout(options_.interval)) {
      absl::StatusOr<int64_t> removed = SweepOnce();
      if (!removed.ok()) {
        LOG(WARNING) << "sweeper: round failed: " << removed.status();
      } else if (*removed > 0) {
        LOG(INFO) << "sweeper: removed " << *removed << " expired records";
      }
    }
  });
}

void Sweeper::Stop() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

absl::StatusOr<int64_t> Sweeper::SweepOnce() {
  int64_t total = 0;
  runs_.fetch_add(1, std::memory_order_relaxed);
  while (!stop_.HasBeenNotified()) {
    absl::StatusOr<int64_t> removed =
        store_->DeleteExpired(options_.batch, absl::Now() + options_.batch_timeout);
    if (!removed.ok()) {
      errors_.fetch_add(1, std::memory_order_relaxed);
      return removed.status();
    }
    total += *removed;
    rows_removed_.fetch_add(*removed, std::memory_order_relaxed);
    VLOG(1) << "sweeper: batch removed " << *removed;
    if (*removed < options_.batch) break;
  }
  return total;
}

}  // namespace idem
