#include "server/store_stats_collector.h"

#include <algorithm>

#include <glog/logging.h>

#include "absl/time/clock.h"

namespace idem {

StoreStatsCollector::StoreStatsCollector(IdempotencyStore* store,
                                         MetricsRegistry* registry,
                                         absl::Duration interval)
    : store_(store),
      interval_(interval),
      lag_(registry
               ->AddGauge("idem_sweeper_lag_seconds",
                          "Age of the oldest expired record the sweeper has not "
                          "deleted yet (0 when none); refreshed in the background.")
               ->WithLabels({})),
      past_lease_(registry
                      ->AddGauge("idem_keys_in_progress_past_lease",
                                 "Records in progress whose lease ran out and that "
                                 "nobody took over; refreshed in the background.")
                      ->WithLabels({})),
      errors_(registry
                  ->AddCounter("idem_store_stats_errors_total",
                               "Background refreshes of idem_sweeper_lag_seconds "
                               "and idem_keys_in_progress_past_lease that failed.")
                  ->WithLabels({})) {}

StoreStatsCollector::~StoreStatsCollector() { Stop(); }

void StoreStatsCollector::Start() {
  thread_ = std::thread([this] {
    do {
      if (absl::Status s = CollectOnce(); !s.ok()) {
        LOG(WARNING) << "metrics: store stats failed: " << s;
      }
    } while (!stop_.WaitForNotificationWithTimeout(interval_));
  });
}

void StoreStatsCollector::Stop() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

absl::Status StoreStatsCollector::CollectOnce() {
  // Never longer than the interval, so a slow database cannot pile up calls.
  const absl::Duration timeout = std::min(interval_, absl::Seconds(10));
  absl::StatusOr<StoreStats> stats = store_->Stats(absl::Now() + timeout);
  if (!stats.ok()) {
    errors_->Increment();
    return stats.status();
  }
  lag_->Set(absl::ToDoubleSeconds(stats->oldest_expired_age));
  past_lease_->Set(static_cast<double>(stats->in_progress_past_lease));
  return absl::OkStatus();
}

}  // namespace idem
