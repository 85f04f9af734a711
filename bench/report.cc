#include "bench/report.h"

#include <cstdio>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace idem::bench {
namespace {

const char* const kCodeNames[17] = {
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
    "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
const char* const kOutcomeNames[5] = {"OUTCOME_UNSPECIFIED", "ACQUIRED",
                                      "IN_PROGRESS", "COMPLETED", "FAILED"};

struct Quantile {
  const char* label;  // text
  const char* key;    // JSON
  double q;
};
const Quantile kQuantiles[] = {{"p50", "p50", 0.5},
                               {"p90", "p90", 0.9},
                               {"p99", "p99", 0.99},
                               {"p99.9", "p99_9", 0.999}};

double Ms(int64_t nanos) { return static_cast<double>(nanos) / 1e6; }

double Throughput(const LoadResult& result) {
  return result.measured_seconds > 0 ? result.operations / result.measured_seconds : 0;
}

// JSON string; only the characters our own names and flags can hold need care.
std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += absl::StrFormat("\\u%04x", c);
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::vector<OpKind> KindsOf(Mode mode) {
  switch (mode) {
    case Mode::kBegin: return {OpKind::kBegin};
    case Mode::kReplay: return {OpKind::kReplay};
    case Mode::kCycle: return {OpKind::kCycle};
    case Mode::kContended: return {OpKind::kContended};
    case Mode::kMixed: return {OpKind::kCycle, OpKind::kReplay, OpKind::kContended};
  }
  return {};
}

std::string LatencyText(const LatencyRecorder& latency) {
  std::vector<std::string> parts;
  for (const Quantile& q : kQuantiles) {
    parts.push_back(absl::StrFormat("%s %.3f", q.label, Ms(latency.ValueAtQuantile(q.q))));
  }
  parts.push_back(absl::StrFormat("max %.3f", Ms(latency.max_nanos())));
  return absl::StrCat(absl::StrJoin(parts, "  "), " ms");
}

std::string LatencyJson(const LatencyRecorder& latency) {
  std::vector<std::string> parts;
  for (const Quantile& q : kQuantiles) {
    parts.push_back(absl::StrFormat("\"%s\": %.6f", q.key, Ms(latency.ValueAtQuantile(q.q))));
  }
  parts.push_back(absl::StrFormat("\"max\": %.6f", Ms(latency.max_nanos())));
  parts.push_back(absl::StrFormat("\"mean\": %.6f", latency.mean_nanos() / 1e6));
  return absl::StrCat("{", absl::StrJoin(parts, ", "), "}");
}

// Non-zero outcome counts of one kind.
std::vector<std::pair<const char*, uint64_t>> Outcomes(const LoadResult& result, OpKind kind) {
  std::vector<std::pair<const char*, uint64_t>> out;
  for (int o = 0; o < 5; ++o) {
    uint64_t n = result.outcomes[static_cast<int>(kind)][o];
    if (n != 0) out.emplace_back(kOutcomeNames[o], n);
  }
  return out;
}

std::string OutcomesJson(const LoadResult& result, OpKind kind) {
  std::vector<std::string> parts;
  for (const auto& [name, n] : Outcomes(result, kind)) {
    parts.push_back(absl::StrCat("\"", name, "\": ", n));
  }
  return absl::StrCat("{", absl::StrJoin(parts, ", "), "}");
}

}  // namespace

void PrintReport(const RunInfo& info, const LoadResult& result,
                 const LoadGenerator& generator, std::ostream& out) {
  const LoadOptions& o = info.options;
  out << "mode:        " << ModeName(o.mode) << "\n";
  out << "target:      " << info.target << "  (scope prefix " << info.scope_prefix << ")\n";
  out << "concurrency: " << o.concurrency << "  (client API " << ClientApiName(o.client_api)
      << (o.client_api == ClientApi::kCompletionQueue
              ? absl::StrCat(", ", o.completion_queue_threads, " thread(s)")
              : "")
      << ")\n";
  out << absl::StrFormat("duration:    %.1f s measured after %.1f s warmup\n",
                         absl::ToDoubleSeconds(o.duration), absl::ToDoubleSeconds(o.warmup));
  out << "operations:  " << result.operations << "\n";
  out << absl::StrFormat("throughput:  %.1f ops/s\n", Throughput(result));
  out << "latency:     " << LatencyText(generator.overall_latency()) << "\n";
  std::vector<std::string> errors;
  for (int c = 1; c < 17; ++c) {
    if (result.errors[c] != 0) errors.push_back(absl::StrCat(kCodeNames[c], " ", result.errors[c]));
  }
  out << "errors:      " << result.error_total()
      << (errors.empty() ? "" : absl::StrCat(" (", absl::StrJoin(errors, ", "), ")")) << "\n";
  std::vector<OpKind> kinds = KindsOf(o.mode);
  for (OpKind kind : kinds) {
    std::vector<std::string> parts;
    for (const auto& [name, n] : Outcomes(result, kind)) parts.push_back(absl::StrCat(name, " ", n));
    std::string label = kinds.size() > 1 ? absl::StrCat(OpKindName(kind), " outcomes:") : "outcomes:";
    out << absl::StrFormat("%-12s ", label) << absl::StrJoin(parts, ", ") << "\n";
    if (kinds.size() > 1) {
      out << absl::StrFormat("%-12s ", absl::StrCat(OpKindName(kind), ":"))
          << result.operations_by_kind[static_cast<int>(kind)] << " ops, "
          << LatencyText(generator.latency(kind)) << "\n";
    }
  }
}

std::string ReportJson(const RunInfo& info, const LoadResult& result,
                       const LoadGenerator& generator) {
  const LoadOptions& o = info.options;
  std::vector<std::string> fields;
  fields.push_back(absl::StrCat("\"mode\": ", Quote(ModeName(o.mode))));
  fields.push_back(absl::StrCat("\"target\": ", Quote(info.target)));
  fields.push_back(absl::StrCat("\"scope_prefix\": ", Quote(info.scope_prefix)));
  fields.push_back(absl::StrCat("\"concurrency\": ", o.concurrency));
  fields.push_back(absl::StrCat("\"client_api\": ", Quote(ClientApiName(o.client_api))));
  if (o.client_api == ClientApi::kCompletionQueue) {
    fields.push_back(absl::StrCat("\"client_threads\": ", o.completion_queue_threads));
  }
  fields.push_back(absl::StrFormat("\"duration_s\": %.3f", absl::ToDoubleSeconds(o.duration)));
  fields.push_back(absl::StrFormat("\"warmup_s\": %.3f", absl::ToDoubleSeconds(o.warmup)));
  fields.push_back(absl::StrCat("\"response_bytes\": ", o.response_bytes));
  fields.push_back(absl::StrCat("\"operations\": ", result.operations));
  fields.push_back(absl::StrFormat("\"throughput_ops_per_s\": %.3f", Throughput(result)));
  fields.push_back(absl::StrCat("\"latency_ms\": ", LatencyJson(generator.overall_latency())));
  fields.push_back(absl::StrCat("\"errors_total\": ", result.error_total()));
  std::vector<std::string> errors;
  for (int c = 1; c < 17; ++c) {
    if (result.errors[c] != 0) errors.push_back(absl::StrCat("\"", kCodeNames[c], "\": ", result.errors[c]));
  }
  fields.push_back(absl::StrCat("\"errors\": {", absl::StrJoin(errors, ", "), "}"));
  std::vector<OpKind> kinds = KindsOf(o.mode);
  if (kinds.size() == 1) {
    fields.push_back(absl::StrCat("\"outcomes\": ", OutcomesJson(result, kinds[0])));
  } else {
    std::vector<std::string> per_kind;
    for (OpKind kind : kinds) {
      per_kind.push_back(absl::StrCat(
          "\"", OpKindName(kind), "\": {\"operations\": ",
          result.operations_by_kind[static_cast<int>(kind)],
          ", \"latency_ms\": ", LatencyJson(generator.latency(kind)),
          ", \"outcomes\": ", OutcomesJson(result, kind), "}"));
    }
    fields.push_back(absl::StrCat("\"kinds\": {", absl::StrJoin(per_kind, ", "), "}"));
  }
  return absl::StrCat("{\n  ", absl::StrJoin(fields, ",\n  "), "\n}\n");
}

}  // namespace idem::bench
