#include "tests/chaos/fault_injector.h"

#include <cstdio>

#include "absl/strings/str_cat.h"

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
  // kill -9, SIGTERM, PostgreSQL crash; replicas in turn.
  const int replica = (n / 3 + n) % cluster_->replicas();
  absl::Status injected;
  std::string what;
  switch (n % 3) {
    case 0:
      what = absl::StrCat("kill -9 of replica ", replica);
      journal_->NoteFault(Fault::kKill9);
      injected = cluster_->Kill9AndRestart(replica);
      break;
    case 1:
      what = absl::StrCat("SIGTERM of replica ", replica);
      journal_->NoteFault(Fault::kSigterm);
      injected = cluster_->SigtermAndRestart(replica);
      break;
    default:
      what = "PostgreSQL crash restart";
      journal_->NoteFault(Fault::kPgRestart);
      injected = cluster_->CrashRestartPostgres();
      if (injected.ok()) injected = cluster_->WaitAllServing(20000);
      break;
  }
  std::fprintf(stderr, "chaos: fault %d: %s%s\n", n + 1, what.c_str(),
               injected.ok() ? "" : " FAILED");
  if (!injected.ok()) {
    journal_->NoteViolation(absl::StrCat("fault ", what, ": ", injected.ToString()));
  }
}

}  // namespace idem::chaos
