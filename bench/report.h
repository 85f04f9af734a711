// The result of an idem-bench run, as text for people and as JSON.
#ifndef IDEM_BENCH_REPORT_H_
#define IDEM_BENCH_REPORT_H_

#include <ostream>
#include <string>

#include "bench/load_generator.h"

namespace idem::bench {

struct RunInfo {
  std::string target;
  std::string scope_prefix;
  LoadOptions options;
};

void PrintReport(const RunInfo& info, const LoadResult& result,
                 const LoadGenerator& generator, std::ostream& out);

// One JSON object: mode, concurrency, operations, throughput, latency in ms,
// errors by gRPC code name, outcomes (and, for mixed, per kind).
std::string ReportJson(const RunInfo& info, const LoadResult& result,
                       const LoadGenerator& generator);

}  // namespace idem::bench

#endif  // IDEM_BENCH_REPORT_H_
