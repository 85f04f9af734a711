// Metrics: counters, gauges and histograms rendered in the Prometheus text
// exposition format (version 0.0.4).
//
// A MetricsRegistry owns metric families. A family has a name, a HELP text
// and fixed label names; its children (one per set of label values) are
// created on first use and live as long as the registry, so a caller may
// keep the pointer it got and update it with atomics only. Values that
// another object already keeps (a pool's size, a queue's depth) are
// registered as callbacks, read at render time.
//
// Example:
//   MetricsRegistry registry;
//   CounterFamily* rpcs = registry.AddCounter(
//       "idem_rpcs_total", "RPCs answered.", {"method", "code"});
//   rpcs->WithLabels({"Begin", "OK"})->Increment();
//   HistogramFamily* latency = registry.AddHistogram(
//       "idem_rpc_duration_seconds", "RPC latency.", {"method"}, {0.001, 0.01});
//   latency->WithLabels({"Begin"})->Observe(0.004);
//   registry.AddGaugeCallback("idem_waiters", "Parked Begins.",
//                             [&] { return waiters.size(); });
//   std::string text = registry.Render();
//
// Thread safety: every method may be called from any thread. Updating a
// child is lock-free; WithLabels() takes a reader lock (a writer lock the
// first time a label set is seen); Render() holds the registry's lock while
// it calls the callbacks, which must therefore be short and never block
// (a mutex held briefly is fine) nor touch the registry.
#ifndef IDEM_SERVER_METRICS_H_
#define IDEM_SERVER_METRICS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace idem {

// A value that only goes up.
class Counter {
 public:
  void Increment(double by = 1);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// A value that goes up and down.
class Gauge {
 public:
  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Observations counted into buckets by upper bound (non-cumulative inside;
// rendered cumulative, with +Inf).
class Histogram {
 public:
  // `bounds`: strictly increasing upper bounds, without +Inf.
  explicit Histogram(const std::vector<double>* bounds);
  void Observe(double value);

  struct Snapshot {
    // Cumulative counts, one per bound, then +Inf (== count).
    std::vector<uint64_t> cumulative;
    double sum = 0;
  };
  Snapshot Read() const;

 private:
  const std::vector<double>* const bounds_;
  // One per bound plus one for +Inf.
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;
  std::atomic<double> sum_{0};
};

// Label values, in the order of the family's label names.
using LabelValues = std::vector<std::string>;

// A metric name with fixed label names and a child per label set.
template <typename Child>
class Family {
 public:
  // The child for `values` (as many as the family has label names),
  // created on first use. The pointer stays valid as long as the registry.
  Child* WithLabels(const LabelValues& values) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  friend class MetricsRegistry;
  Family(std::string name, std::string help, std::vector<std::string> labels,
         std::function<std::unique_ptr<Child>()> make);

  const std::string name_;
  const std::string help_;
  const std::vector<std::string> label_names_;
  const std::function<std::unique_ptr<Child>()> make_;

  mutable absl::Mutex mu_;
  std::map<LabelValues, std::unique_ptr<Child>> children_ ABSL_GUARDED_BY(mu_);
};

using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;
using HistogramFamily = Family<Histogram>;

// Buckets for RPC latency in seconds: 0.5 ms to 10 s.
std::vector<double> LatencyBuckets();

class MetricsRegistry {
 public:
  MetricsRegistry();
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;
  ~MetricsRegistry();

  // Names must be valid Prometheus names and unique in the registry
  // (checked: a duplicate or invalid name is a programming error and
  // aborts). Families are rendered in the order they were added.
  CounterFamily* AddCounter(const std::string& name, const std::string& help,
                            std::vector<std::string> label_names = {})
      ABSL_LOCKS_EXCLUDED(mu_);
  GaugeFamily* AddGauge(const std::string& name, const std::string& help,
                        std::vector<std::string> label_names = {})
      ABSL_LOCKS_EXCLUDED(mu_);
  HistogramFamily* AddHistogram(const std::string& name, const std::string& help,
                                std::vector<std::string> label_names,
                                std::vector<double> bounds)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Unlabelled metrics whose value `read` returns at render time.
  void AddCounterCallback(const std::string& name, const std::string& help,
                          std::function<double()> read) ABSL_LOCKS_EXCLUDED(mu_);
  void AddGaugeCallback(const std::string& name, const std::string& help,
                        std::function<double()> read) ABSL_LOCKS_EXCLUDED(mu_);

  // Every family in the text format, each with HELP and TYPE lines.
  std::string Render() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Entry;
  static std::unique_ptr<Entry> NewEntry(const std::string& name,
                                         const std::string& help, const char* type);
  void AddEntry(std::unique_ptr<Entry> entry) ABSL_LOCKS_EXCLUDED(mu_);
  // A metric whose value `read` returns at each render; `type` is its TYPE.
  void AddCallback(const std::string& name, const std::string& help,
                   const char* type, std::function<double()> read)
      ABSL_LOCKS_EXCLUDED(mu_);

  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Entry>> entries_ ABSL_GUARDED_BY(mu_);
};

namespace metrics_text {
// A label value escaped for the text format: \ " and newline.
std::string EscapeLabelValue(absl::string_view value);
// A HELP text escaped for the text format: \ and newline.
std::string EscapeHelp(absl::string_view help);
// A sample value: integers without a fraction, +Inf, -Inf, NaN, else the
// shortest text that reads back as the same double.
std::string FormatValue(double value);
}  // namespace metrics_text

}  // namespace idem

#endif  // IDEM_SERVER_METRICS_H_
