#include "tests/chaos/fault_injector.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace idem::chaos {

void FaultInjector::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void FaultInjector::Stop() {
  if (!thread_.joinable()) return;
  stop_.Notify();
  thread_.join();
}

void FaultInjector::Loop() {
  for (int n = 0; !stop_.WaitForNotificationWithTimeout(interval_); ++n) InjectOne(n);
}

void FaultInjector::InjectOne(int n) {
  if (kinds_.empty()) return;  // --faults= : the workers' own faults only.
  // kill -9, SIGTERM, PostgreSQL crash; replicas in turn.
  const Fault fault = kinds_[n % kinds_.size()];
  const int replica = (n / static_cast<int>(kinds_.size()) + n) % cluster_->replicas();
  absl::Status injected;
  std::string what;
  const absl::Time start = absl::Now();
  switch (fault) {
    case Fault::kKill9:
      what = absl::StrCat("kill -9 of replica ", replica);
      journal_->NoteFault(Fault::kKill9);
      injected = cluster_->Kill9AndRestart(replica);
      break;
    case Fault::kSigterm:
      what = absl::StrCat("SIGTERM of replica ", replica);
      journal_->NoteFault(Fault::kSigterm);
      journal_->NoteShutdownBegins();
      injected = cluster_->SigtermAndRestart(replica);
      journal_->NoteShutdownEnds();
      break;
    default:  // kPgRestart
      what = "PostgreSQL crash restart";
      journal_->NoteFault(Fault::kPgRestart);
      injected = cluster_->CrashRestartPostgres();
      if (injected.ok()) injected = cluster_->WaitAllServing(20000);
      break;
  }
  std::fprintf(stderr, "chaos: %s fault %d: %s%s (took %s)\n", journal_->Elapsed().c_str(),
               n + 1, what.c_str(), injected.ok() ? "" : " FAILED",
               absl::FormatDuration(absl::Now() - start).c_str());
  if (!injected.ok()) {
    journal_->NoteViolation(absl::StrCat("fault ", what, ": ", injected.ToString()));
  }
}

}  // namespace idem::chaos
