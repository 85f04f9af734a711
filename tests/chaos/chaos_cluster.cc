#include "tests/chaos/chaos_cluster.h"

#include <signal.h>
#include <sys/wait.h>

#include <cstdlib>

#include <pqxx/pqxx>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "server/migration_list.h"
#include "server/migrator.h"
#include "tests/integration/idemd_process.h"

namespace idem::chaos {

namespace {

// How long a killed replica stays down: callers see it gone.
constexpr absl::Duration kDowntime = absl::Milliseconds(300);
constexpr int kStartTimeoutMs = 20000;
// SIGTERM: --shutdown_grace=2s, then idemd must be gone.
constexpr absl::Duration kExitTimeout = absl::Seconds(10);

}  // namespace

ChaosCluster::~ChaosCluster() {
  for (int i = 0; i < replicas(); ++i) Stop(i, SIGKILL).IgnoreError();
  if (postgres_started_) {
    PgCluster("stop").IgnoreError();
    std::system(absl::StrCat("rm -rf '", paths_.dir, "'").c_str());
  }
}

absl::Status ChaosCluster::PgCluster(const std::string& command) {
  const std::string cmd = absl::StrCat(paths_.pg_cluster_script, " ", command, " '",
                                       paths_.dir, "' >/dev/null");
  if (std::system(cmd.c_str()) != 0) return absl::InternalError("failed: " + cmd);
  return absl::OkStatus();
}

absl::Status ChaosCluster::StartPostgres() {
  std::system(absl::StrCat("rm -rf '", paths_.dir, "'").c_str());  // An old run's.
  postgres_started_ = true;
  if (absl::Status s = PgCluster("start"); !s.ok()) return s;
  try {
    pqxx::connection c(absl::StrCat("postgresql:///postgres?host=", paths_.dir,
                                    "/socket&user=postgres"));
    pqxx::nontransaction(c).exec("CREATE DATABASE idem");
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("cannot create database idem: ", e.what()));
  }
  database_url_ = absl::StrCat("postgresql:///idem?host=", paths_.dir,
                               "/socket&user=postgres");
  absl::StatusOr<std::vector<int>> applied =
      Migrator(database_url_, EmbeddedMigrations()).Migrate();
  return applied.status();
}

absl::Status ChaosCluster::StartReplicas(int n) {
  for (int i = 0; i < n; ++i) {
    addresses_.push_back(absl::StrCat("127.0.0.1:", testenv::PickFreePort()));
    pids_.push_back(-1);
  }
  for (int i = 0; i < n; ++i) {
    if (absl::Status s = Start(i); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ChaosCluster::Start(int i) {
  pids_[i] = testenv::SpawnProcess({paths_.idemd, "--listen=" + addresses_[i],
                                    "--postgres=" + database_url_, "--pool_size=4",
                                    "--health_check_interval=200ms",
                                    "--shutdown_grace=2s", "--statement_timeout=5s"});
  if (pids_[i] <= 0) return absl::InternalError("cannot start " + paths_.idemd);
  if (!testenv::WaitForHealth(addresses_[i], /*serving=*/true, kStartTimeoutMs)) {
    return absl::DeadlineExceededError(
        absl::StrCat("idemd at ", addresses_[i], " never became SERVING"));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> ChaosCluster::Stop(int i, int signal) {
  if (pids_[i] <= 0) return 0;
  kill(pids_[i], signal);
  int status = 0;
  const absl::Time give_up = absl::Now() + kExitTimeout;
  while (waitpid(pids_[i], &status, WNOHANG) == 0) {
    if (absl::Now() > give_up) {
      kill(pids_[i], SIGKILL);
      waitpid(pids_[i], &status, 0);
      pids_[i] = -1;
      return absl::DeadlineExceededError(
          absl::StrCat("idemd at ", addresses_[i], " had not exited ",
                       absl::FormatDuration(kExitTimeout), " after signal ", signal));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  pids_[i] = -1;
  return status;
}

absl::Status ChaosCluster::Kill9AndRestart(int i) {
  absl::StatusOr<int> stopped = Stop(i, SIGKILL);
  absl::SleepFor(kDowntime);
  absl::Status started = Start(i);
  return stopped.ok() ? started : stopped.status();
}

absl::Status ChaosCluster::SigtermAndRestart(int i) {
  absl::StatusOr<int> stopped = Stop(i, SIGTERM);
  absl::SleepFor(kDowntime);
  absl::Status started = Start(i);
  if (!stopped.ok()) return stopped.status();
  if (!WIFEXITED(*stopped) || WEXITSTATUS(*stopped) != 0) {
    return absl::InternalError(absl::StrCat("idemd at ", addresses_[i],
                                            " did not exit 0 on SIGTERM (wait status ",
                                            *stopped, ")"));
  }
  return started;
}

absl::Status ChaosCluster::CrashRestartPostgres() { return PgCluster("restart"); }

absl::Status ChaosCluster::WaitAllServing(int timeout_ms) {
  for (const std::string& address : addresses_) {
    if (!testenv::WaitForHealth(address, /*serving=*/true, timeout_ms)) {
      return absl::DeadlineExceededError(
          absl::StrCat("idemd at ", address, " is not SERVING"));
    }
  }
  return absl::OkStatus();
}

std::string ChaosCluster::Target() const {
  return absl::StrCat("ipv4:", absl::StrJoin(addresses_, ","));
}

}  // namespace idem::chaos
