// StoreStatsCollector: refreshes the metrics that need a database query.
//
// Every `interval` it runs IdempotencyStore::Stats() on its own thread and
// sets two gauges:
//   idem_sweeper_lag_seconds            age of the oldest expired record not
//                                       yet swept (0 when none)
//   idem_keys_in_progress_past_lease    in-progress records whose lease ran out
// and counts failures in idem_store_stats_errors_total (the gauges then keep
// their last values). Scrapes only read the gauges, so a slow or unreachable
// database never slows a scrape; the values are up to `interval` old.
//
// Example:
//   StoreStatsCollector collector(&store, &registry, absl::Seconds(15));
//   collector.Start();
//   ...
//   collector.Stop();
//
// Thread safety: Start/Stop from one owning thread; CollectOnce from any.
#ifndef IDEM_SERVER_STORE_STATS_COLLECTOR_H_
#define IDEM_SERVER_STORE_STATS_COLLECTOR_H_

#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "server/metrics.h"
#include "server/store.h"

namespace idem {

class StoreStatsCollector {
 public:
  // `store` and `registry` must outlive the collector.
  StoreStatsCollector(IdempotencyStore* store, MetricsRegistry* registry,
                      absl::Duration interval);
  StoreStatsCollector(const StoreStatsCollector&) = delete;
  StoreStatsCollector& operator=(const StoreStatsCollector&) = delete;
  // Calls Stop().
  ~StoreStatsCollector();

  // Collects once right away, then every interval.
  void Start();
  void Stop();

  absl::Status CollectOnce();

 private:
  IdempotencyStore* const store_;
  const absl::Duration interval_;
  Gauge* const lag_;
  Gauge* const past_lease_;
  Counter* const errors_;
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace idem

#endif  // IDEM_SERVER_STORE_STATS_COLLECTOR_H_
