// FaultInjector: hurts the ChaosCluster on a schedule while the workers run.
//
// Every `interval` it injects the next fault of a rotation (by default all
// three): kill -9 of a replica (restarted on its port), SIGTERM of a replica
// (the same), and a PostgreSQL crash restart (`pg_ctl stop -m immediate`,
// start). Replicas are taken in turn. The other two faults of the issue, cancelled calls and
// leases that run out mid-work, are the workers' own (chaos_worker.h).
// A fault that could not be injected, or a replica that does not come back,
// is a violation.
//
// Thread safety: Start() and Stop() from one thread; the cluster is the
// injector's alone between them.
#ifndef IDEM_TESTS_CHAOS_FAULT_INJECTOR_H_
#define IDEM_TESTS_CHAOS_FAULT_INJECTOR_H_

#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "tests/chaos/chaos_cluster.h"
#include "tests/chaos/chaos_journal.h"

namespace idem::chaos {

class FaultInjector {
 public:
  // `kinds`: the rotation, of kKill9, kSigterm and kPgRestart.
  FaultInjector(ChaosCluster* cluster, ChaosJournal* journal, absl::Duration interval,
                std::vector<Fault> kinds)
      : cluster_(cluster), journal_(journal), interval_(interval), kinds_(std::move(kinds)) {}
  ~FaultInjector() { Stop(); }

  void Start();
  // Returns after the fault in progress (and its recovery) finished.
  void Stop();

 private:
  void Loop();
  void InjectOne(int n);

  ChaosCluster* const cluster_;
  ChaosJournal* const journal_;
  const absl::Duration interval_;
  const std::vector<Fault> kinds_;
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace idem::chaos

#endif  // IDEM_TESTS_CHAOS_FAULT_INJECTOR_H_
