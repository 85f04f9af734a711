// idem-chaos: exactly-once under faults (README "Guarantees").
//
// Starts a private PostgreSQL and --replicas idemd on it, and runs --workers
// threads that make a fenced side effect happen (chaos_effects, written in
// the transaction that checks the lease token: fenced_effect.h) for --keys
// keys through RunOnce and the raw RPCs, several workers per key at once.
// Meanwhile it injects faults: kill -9 and SIGTERM of replicas, PostgreSQL
// crash restarts (fault_injector.h), leases of --lease_ms that run out
// mid-work and calls cancelled mid-call (chaos_worker.h). Then, faults
// stopped, it drives every key to completion, crashes PostgreSQL once more
// and checks (chaos_checker.h): each key's effect happened exactly once,
// every acknowledged Complete is still there, no worker acted on a stale
// lease, no call hung past its deadline. It prints one summary line and
// exits 1 when there was any violation.
//
//   build/tests/chaos/idem-chaos            # short form (CI: ctest chaos_short)
//   build/tests/chaos/idem-chaos --long     # minutes
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/create_channel.h>
#include <grpcpp/support/channel_arguments.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "tests/chaos/chaos_checker.h"
#include "tests/chaos/chaos_cluster.h"
#include "tests/chaos/chaos_journal.h"
#include "tests/chaos/chaos_worker.h"
#include "tests/chaos/fault_injector.h"
#include "tests/chaos/fenced_effect.h"

ABSL_FLAG(bool, long, false,
          "the long form: defaults become --duration=5m --keys=6000 --workers=32");
ABSL_FLAG(absl::Duration, duration, absl::ZeroDuration(),
          "how long faults are injected (default 40s, --long 5m)");
ABSL_FLAG(int, keys, 0, "keys, each to be done exactly once (default 2000, --long 6000)");
ABSL_FLAG(int, workers, 0, "worker threads (default 16, --long 32)");
ABSL_FLAG(int, replicas, 3, "idemd replicas on the one PostgreSQL");
ABSL_FLAG(int, lease_ms, 1000, "lease of every acquisition, ms (idem's minimum is 1000)");
ABSL_FLAG(absl::Duration, fault_interval, absl::Seconds(4),
          "time between faults (kill -9, SIGTERM, PostgreSQL crash, in turn)");
ABSL_FLAG(std::vector<std::string>, faults,
          std::vector<std::string>({"kill9", "sigterm", "pg_restart"}),
          "the rotation of injected faults, of kill9, sigterm, pg_restart");
ABSL_FLAG(std::string, dir, "",
          "private directory of the PostgreSQL cluster (default /tmp/idem-chaos-PID)");
ABSL_FLAG(std::string, idemd, IDEM_CHAOS_IDEMD, "the idemd binary");
ABSL_FLAG(std::string, pg_cluster, IDEM_CHAOS_PG_CLUSTER, "scripts/pg-cluster");
ABSL_FLAG(std::string, sabotage, "none",
          "checks the checker: no_fence (effects written without the lease check) "
          "or no_lookup (a successor writes again); the run must then report violations");
ABSL_FLAG(int, show_violations, 30, "violations printed in full");

namespace idem::chaos {
namespace {

struct RunSize {
  absl::Duration duration;
  int keys;
  int workers;
};

RunSize ResolveSize() {
  const bool is_long = absl::GetFlag(FLAGS_long);
  RunSize size{absl::GetFlag(FLAGS_duration), absl::GetFlag(FLAGS_keys),
               absl::GetFlag(FLAGS_workers)};
  if (size.duration <= absl::ZeroDuration()) {
    size.duration = is_long ? absl::Minutes(5) : absl::Seconds(40);
  }
  if (size.keys <= 0) size.keys = is_long ? 6000 : 2000;
  if (size.workers <= 0) size.workers = is_long ? 32 : 16;
  return size;
}

std::shared_ptr<grpc::Channel> RoundRobinChannel(const std::string& target) {
  grpc::ChannelArguments args;
  args.SetLoadBalancingPolicyName("round_robin");
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

void PrintSummary(const ChaosJournal& journal, int keys, int64_t effects,
                  const std::vector<std::string>& violations) {
  const int show = absl::GetFlag(FLAGS_show_violations);
  for (size_t i = 0; i < violations.size() && static_cast<int>(i) < show; ++i) {
    std::fprintf(stderr, "chaos: VIOLATION %s\n", violations[i].c_str());
  }
  const int64_t kill9 = journal.faults(Fault::kKill9);
  const int64_t sigterm = journal.faults(Fault::kSigterm);
  const int64_t pg = journal.faults(Fault::kPgRestart);
  const int64_t cancels = journal.faults(Fault::kCancel);
  const int64_t expiries = journal.faults(Fault::kLeaseExpiry);
  std::printf(
      "chaos: operations=%lld faults=%lld (kill9=%lld sigterm=%lld pg_restart=%lld "
      "cancels=%lld lease_expiries=%lld) keys=%d effects=%lld violations=%zu\n",
      static_cast<long long>(journal.operations()),
      static_cast<long long>(kill9 + sigterm + pg + cancels + expiries),
      static_cast<long long>(kill9), static_cast<long long>(sigterm),
      static_cast<long long>(pg), static_cast<long long>(cancels),
      static_cast<long long>(expiries), keys, static_cast<long long>(effects),
      violations.size());
  std::fflush(stdout);
}

int Run() {
  const RunSize size = ResolveSize();
  const int lease_ms = absl::GetFlag(FLAGS_lease_ms);
  std::string dir = absl::GetFlag(FLAGS_dir);
  if (dir.empty()) dir = absl::StrCat("/tmp/idem-chaos-", getpid());
  // idemd's warnings (a connect refused during each restart) are noise here.
  setenv("GLOG_minloglevel", "2", /*overwrite=*/0);

  // Whatever happens below, the run ends: a hang of the harness itself is
  // reported as one and the process exits (the cluster is left for a look).
  absl::Notification finished;
  std::thread watchdog([&] {
    if (!finished.WaitForNotificationWithTimeout(size.duration + absl::Minutes(5))) {
      std::printf("chaos: hang: the run did not finish in %s; violations=1\n",
                  absl::FormatDuration(size.duration + absl::Minutes(5)).c_str());
      std::fflush(stdout);
      _exit(1);
    }
  });
  struct JoinWatchdog {
    absl::Notification& finished;
    std::thread& watchdog;
    ~JoinWatchdog() {
      finished.Notify();
      watchdog.join();
    }
  } join_watchdog{finished, watchdog};

  const absl::Time started = absl::Now();
  ChaosCluster cluster(
      {absl::GetFlag(FLAGS_pg_cluster), absl::GetFlag(FLAGS_idemd), dir});
  absl::Status ready = cluster.StartPostgres();
  if (ready.ok()) ready = FencedEffect::CreateSchema(cluster.database_url());
  if (ready.ok()) ready = cluster.StartReplicas(absl::GetFlag(FLAGS_replicas));
  if (!ready.ok()) {
    std::fprintf(stderr, "chaos: set-up failed: %s\n", ready.ToString().c_str());
    return 2;
  }
  std::fprintf(stderr,
               "chaos: %d replicas, %d workers, %d keys, %d ms leases, faults every %s "
               "for %s (set-up took %s)\n",
               cluster.replicas(), size.workers, size.keys, lease_ms,
               absl::FormatDuration(absl::GetFlag(FLAGS_fault_interval)).c_str(),
               absl::FormatDuration(size.duration).c_str(),
               absl::FormatDuration(absl::Now() - started).c_str());

  std::vector<Fault> kinds;
  for (const std::string& name : absl::GetFlag(FLAGS_faults)) {
    if (name == "kill9") {
      kinds.push_back(Fault::kKill9);
    } else if (name == "sigterm") {
      kinds.push_back(Fault::kSigterm);
    } else if (name == "pg_restart") {
      kinds.push_back(Fault::kPgRestart);
    } else {
      std::fprintf(stderr, "chaos: --faults takes kill9, sigterm, pg_restart, not %s\n",
                   name.c_str());
      return 2;
    }
  }

  const std::string scope = "chaos/run";
  // The workers' own connections give up connecting after 2 s.
  const std::string effects_url = cluster.database_url() + "&connect_timeout=2";
  std::shared_ptr<grpc::Channel> channel = RoundRobinChannel(cluster.Target());
  ChaosJournal journal(size.keys);
  WorkerOptions options;
  options.scope = scope;
  options.lease_ttl = absl::Milliseconds(lease_ms);
  const std::string sabotage = absl::GetFlag(FLAGS_sabotage);
  if (sabotage == "no_fence") {
    options.effect_mode = FencedEffect::Mode::kNoFence;
  } else if (sabotage == "no_lookup") {
    options.effect_mode = FencedEffect::Mode::kNoLookup;
  } else if (sabotage != "none") {
    std::fprintf(stderr, "chaos: --sabotage must be none, no_fence or no_lookup\n");
    return 2;
  }
  std::vector<std::unique_ptr<ChaosWorker>> workers;
  for (int w = 0; w < size.workers; ++w) {
    workers.push_back(
        std::make_unique<ChaosWorker>(w, channel, effects_url, &journal, options));
  }

  // Load under faults: about four workers on a key at a time.
  {
    KeyPicker keys(size.keys, std::max(2, size.workers / 4), /*visits=*/4);
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    for (auto& worker : workers) {
      threads.emplace_back([&, w = worker.get()] { w->Run(&keys, stop); });
    }
    FaultInjector injector(&cluster, &journal, absl::GetFlag(FLAGS_fault_interval),
                           kinds);
    injector.Start();
    absl::SleepFor(size.duration);
    injector.Stop();
    stop = true;
    for (std::thread& t : threads) t.join();
  }
  const int64_t operations_under_faults = journal.operations();
  const absl::Time faults_over = absl::Now();

  // Faults over: every key must now complete (most already have).
  {
    std::atomic<int> next{0};
    std::vector<std::thread> threads;
    for (auto& worker : workers) {
      threads.emplace_back([&, w = worker.get()] {
        const absl::Time give_up = absl::Now() + absl::Minutes(2);
        for (int key = next++; key < size.keys; key = next++) {
          absl::Status done = w->DriveToCompletion(key, give_up);
          if (!done.ok()) journal.NoteViolation(done.ToString());
        }
      });
    }
    for (std::thread& t : threads) t.join();
  }
  const absl::Time drained = absl::Now();

  // A last PostgreSQL crash: what was acknowledged must survive it.
  absl::Status crashed = cluster.CrashRestartPostgres();
  if (crashed.ok()) crashed = cluster.WaitAllServing(30000);
  if (!crashed.ok()) journal.NoteViolation("final PostgreSQL crash: " + crashed.ToString());

  Client client(channel);
  CheckReport report = CheckRun(cluster.database_url(), scope, size.keys, journal, client);
  std::vector<std::string> violations = journal.Violations();
  violations.insert(violations.end(), report.violations.begin(), report.violations.end());
  std::fprintf(stderr,
               "chaos: %lld operations under faults; drain %s, check %s; longest call "
               "overrun past its allowance %s (grace %s); raw calls CANCELLED by a "
               "replica's shutdown: %lld\n",
               static_cast<long long>(operations_under_faults),
               absl::FormatDuration(drained - faults_over).c_str(),
               absl::FormatDuration(absl::Now() - drained).c_str(),
               absl::FormatDuration(journal.longest_overrun()).c_str(),
               absl::FormatDuration(ChaosJournal::kHangGrace).c_str(),
               static_cast<long long>(journal.shutdown_cancels()));
  PrintSummary(journal, size.keys, report.effects, violations);
  return violations.empty() ? 0 : 1;
}

}  // namespace
}  // namespace idem::chaos

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "idem-chaos: exactly-once under faults. Short form by default; --long for "
      "minutes. Exit 0 only with violations=0.");
  absl::ParseCommandLine(argc, argv);
  return idem::chaos::Run();
}
