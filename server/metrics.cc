#include "server/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <utility>

#include <glog/logging.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace idem {

namespace {

void AddTo(std::atomic<double>& target, double by) {
  double old = target.load(std::memory_order_relaxed);
  while (!target.compare_exchange_weak(old, old + by, std::memory_order_relaxed)) {
  }
}

bool ValidName(absl::string_view name) {
  if (name.empty() || absl::ascii_isdigit(name[0])) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(c) || c == '_' || c == ':';
  });
}

}  // namespace

namespace metrics_text {

std::string EscapeLabelValue(absl::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
  return out;
}

std::string EscapeHelp(absl::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
  return out;
}

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::trunc(value) && std::abs(value) < 1e15) {
    return absl::StrCat(static_cast<int64_t>(value));
  }
  char buffer[64];
  // Shortest round-trip digits, printf %g's choice of fixed or exponent.
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value,
                                    std::chars_format::general);
  return std::string(buffer, result.ptr);
}

}  // namespace metrics_text

using metrics_text::EscapeHelp;
using metrics_text::EscapeLabelValue;
using metrics_text::FormatValue;

void Counter::Increment(double by) {
  if (by > 0) AddTo(value_, by);
}

Histogram::Histogram(const std::vector<double>* bounds)
    : bounds_(bounds), buckets_(new std::atomic<uint64_t>[bounds->size() + 1]) {
  for (size_t i = 0; i <= bounds_->size(); ++i) buckets_[i].store(0);
}

void Histogram::Observe(double value) {
  // The first bound >= value (le is "less than or equal").
  const size_t i = std::lower_bound(bounds_->begin(), bounds_->end(), value) -
                   bounds_->begin();
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  AddTo(sum_, value);
}

Histogram::Snapshot Histogram::Read() const {
  Snapshot snapshot;
  snapshot.cumulative.resize(bounds_->size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_->size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    snapshot.cumulative[i] = running;
  }
  snapshot.sum = sum_.load(std::memory_order_relaxed);
  return snapshot;
}

std::vector<double> LatencyBuckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
          0.1,    0.25,  0.5,    1,     2.5,  5,     10};
}

template <typename Child>
Family<Child>::Family(std::string name, std::string help,
                      std::vector<std::string> labels,
                      std::function<std::unique_ptr<Child>()> make)
    : name_(std::move(name)),
      help_(std::move(help)),
      label_names_(std::move(labels)),
      make_(std::move(make)) {}

template <typename Child>
Child* Family<Child>::WithLabels(const LabelValues& values) {
  CHECK_EQ(values.size(), label_names_.size()) << "label values of " << name_;
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = children_.find(values);
    if (it != children_.end()) return it->second.get();
  }
  absl::MutexLock lock(&mu_);
  std::unique_ptr<Child>& child = children_[values];
  if (child == nullptr) child = make_();
  return child.get();
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

// One family, as the registry renders it.
struct MetricsRegistry::Entry {
  std::string name;
  std::string help;
  const char* type;  // "counter", "gauge", "histogram".
  std::unique_ptr<CounterFamily> counters;
  std::unique_ptr<GaugeFamily> gauges;
  std::unique_ptr<HistogramFamily> histograms;
  std::vector<double> bounds;  // Histograms: shared by every child.
  std::function<double()> read;  // Callbacks.
};

MetricsRegistry::MetricsRegistry() = default;
MetricsRegistry::~MetricsRegistry() = default;

void MetricsRegistry::AddEntry(std::unique_ptr<Entry> entry) {
  CHECK(ValidName(entry->name)) << "invalid metric name " << entry->name;
  absl::MutexLock lock(&mu_);
  for (const auto& e : entries_) {
    CHECK_NE(e->name, entry->name) << "metric added twice";
  }
  entries_.push_back(std::move(entry));
}

namespace {
void CheckLabelNames(const std::vector<std::string>& names) {
  for (const std::string& n : names) {
    CHECK(ValidName(n) && n.find(':') == std::string::npos && n != "le")
        << "invalid label name " << n;
  }
}
}  // namespace

std::unique_ptr<MetricsRegistry::Entry> MetricsRegistry::NewEntry(
    const std::string& name, const std::string& help, const char* type) {
  auto entry = std::make_unique<Entry>();
  entry->name = name;
  entry->help = help;
  entry->type = type;
  return entry;
}

CounterFamily* MetricsRegistry::AddCounter(const std::string& name,
                                           const std::string& help,
                                           std::vector<std::string> label_names) {
  CheckLabelNames(label_names);
  auto entry = NewEntry(name, help, "counter");
  entry->counters.reset(new CounterFamily(
      name, help, std::move(label_names), [] { return std::make_unique<Counter>(); }));
  CounterFamily* family = entry->counters.get();
  AddEntry(std::move(entry));
  return family;
}

GaugeFamily* MetricsRegistry::AddGauge(const std::string& name,
                                       const std::string& help,
                                       std::vector<std::string> label_names) {
  CheckLabelNames(label_names);
  auto entry = NewEntry(name, help, "gauge");
  entry->gauges.reset(new GaugeFamily(name, help, std::move(label_names),
                                      [] { return std::make_unique<Gauge>(); }));
  GaugeFamily* family = entry->gauges.get();
  AddEntry(std::move(entry));
  return family;
}

HistogramFamily* MetricsRegistry::AddHistogram(const std::string& name,
                                               const std::string& help,
                                               std::vector<std::string> label_names,
                                               std::vector<double> bounds) {
  CheckLabelNames(label_names);
  CHECK(std::is_sorted(bounds.begin(), bounds.end()) &&
        std::adjacent_find(bounds.begin(), bounds.end()) == bounds.end())
      << "bucket bounds of " << name << " must be strictly increasing";
  CHECK(bounds.empty() || !std::isinf(bounds.back())) << "+Inf is implicit";
  auto entry = NewEntry(name, help, "histogram");
  entry->bounds = std::move(bounds);
  const std::vector<double>* shared_bounds = &entry->bounds;
  entry->histograms.reset(new HistogramFamily(
      name, help, std::move(label_names),
      [shared_bounds] { return std::make_unique<Histogram>(shared_bounds); }));
  HistogramFamily* family = entry->histograms.get();
  AddEntry(std::move(entry));
  return family;
}

void MetricsRegistry::AddCounterCallback(const std::string& name,
                                         const std::string& help,
                                         std::function<double()> read) {
  AddCallback(name, help, "counter", std::move(read));
}

void MetricsRegistry::AddGaugeCallback(const std::string& name,
                                       const std::string& help,
                                       std::function<double()> read) {
  AddCallback(name, help, "gauge", std::move(read));
}

void MetricsRegistry::AddCallback(const std::string& name, const std::string& help,
                                  const char* type, std::function<double()> read) {
  auto entry = NewEntry(name, help, type);
  entry->read = std::move(read);
  AddEntry(std::move(entry));
}

namespace {

// `{a="x",b="y"` without the closing brace (so "le" can be appended), or
// empty when there are no labels.
std::string OpenLabels(const std::vector<std::string>& names,
                       const LabelValues& values) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    absl::StrAppend(&out, i == 0 ? "{" : ",", names[i], "=\"",
                    EscapeLabelValue(values[i]), "\"");
  }
  return out;
}

std::string CloseLabels(const std::string& open) {
  return open.empty() ? "" : open + "}";
}

}  // namespace

std::string MetricsRegistry::Render() const {
  std::string out;
  // Counters and gauges render alike: one line per label set.
  auto render_values = [&out](const std::string& name, const auto& family) {
    absl::ReaderMutexLock family_lock(&family.mu_);
    for (const auto& [values, child] : family.children_) {
      absl::StrAppend(&out, name, CloseLabels(OpenLabels(family.label_names_, values)),
                      " ", FormatValue(child->value()), "\n");
    }
  };
  absl::MutexLock lock(&mu_);
  for (const auto& e : entries_) {
    absl::StrAppend(&out, "# HELP ", e->name, " ", EscapeHelp(e->help), "\n",
                    "# TYPE ", e->name, " ", e->type, "\n");
    if (e->read) {
      absl::StrAppend(&out, e->name, " ", FormatValue(e->read()), "\n");
    } else if (e->counters) {
      render_values(e->name, *e->counters);
    } else if (e->gauges) {
      render_values(e->name, *e->gauges);
    } else if (e->histograms) {
      absl::ReaderMutexLock family_lock(&e->histograms->mu_);
      for (const auto& [values, child] : e->histograms->children_) {
        const std::string open = OpenLabels(e->histograms->label_names_, values);
        const std::string bucket_open = open.empty() ? "{" : open + ",";
        const Histogram::Snapshot s = child->Read();
        for (size_t i = 0; i < s.cumulative.size(); ++i) {
          const std::string le =
              i < e->bounds.size() ? FormatValue(e->bounds[i]) : "+Inf";
          absl::StrAppend(&out, e->name, "_bucket", bucket_open, "le=\"", le,
                          "\"} ", s.cumulative[i], "\n");
        }
        absl::StrAppend(&out, e->name, "_sum", CloseLabels(open), " ",
                        FormatValue(s.sum), "\n", e->name, "_count",
                        CloseLabels(open), " ", s.cumulative.back(), "\n");
      }
    }
  }
  return out;
}

}  // namespace idem
