// ChaosCluster: the system under test for the chaos harness, as real
// processes it may hurt: a throwaway PostgreSQL 15 cluster of its own
// (scripts/pg-cluster in a private directory, unix socket only, so a crash
// restart of it cannot disturb anything else) and N idemd replicas on fixed
// ports on one migrated database, each of which can be killed (SIGKILL or
// SIGTERM) and started again on the same port.
//
// Thread safety: not thread-safe; one thread (the fault injector, or main
// when it is not running) drives it.
#ifndef IDEM_TESTS_CHAOS_CHAOS_CLUSTER_H_
#define IDEM_TESTS_CHAOS_CHAOS_CLUSTER_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace idem::chaos {

struct ClusterPaths {
  std::string pg_cluster_script;  // scripts/pg-cluster
  std::string idemd;              // the idemd binary
  std::string dir;                // private directory, deleted at the end
};

class ChaosCluster {
 public:
  explicit ChaosCluster(ClusterPaths paths) : paths_(std::move(paths)) {}
  // Kills the replicas, stops PostgreSQL and deletes the directory.
  ~ChaosCluster();
  ChaosCluster(const ChaosCluster&) = delete;
  ChaosCluster& operator=(const ChaosCluster&) = delete;

  // Creates and starts PostgreSQL, creates and migrates database idem.
  absl::Status StartPostgres();
  // Starts `n` replicas (each waits until SERVING).
  absl::Status StartReplicas(int n);

  // kill -9 (or SIGTERM, waiting for the graceful exit) of replica i, then
  // a pause, then the same replica again on the same port.
  absl::Status Kill9AndRestart(int i);
  absl::Status SigtermAndRestart(int i);
  // `pg_ctl stop -m immediate` then start: a PostgreSQL crash.
  absl::Status CrashRestartPostgres();
  // Waits until every replica answers SERVING (after a PostgreSQL restart).
  absl::Status WaitAllServing(int timeout_ms);

  const std::string& database_url() const { return database_url_; }
  // "ipv4:127.0.0.1:p1,127.0.0.1:p2,...": every replica, for round robin.
  std::string Target() const;
  const std::vector<std::string>& addresses() const { return addresses_; }
  int replicas() const { return static_cast<int>(addresses_.size()); }

 private:
  absl::Status Start(int i);
  // SIGKILL or SIGTERM, then waits for the exit: the wait status, or
  // DEADLINE_EXCEEDED (and a SIGKILL) when it does not exit in time.
  absl::StatusOr<int> Stop(int i, int signal);
  absl::Status PgCluster(const std::string& command);

  const ClusterPaths paths_;
  std::string database_url_;
  std::vector<std::string> addresses_;
  std::vector<pid_t> pids_;
  bool postgres_started_ = false;
};

}  // namespace idem::chaos

#endif  // IDEM_TESTS_CHAOS_CHAOS_CLUSTER_H_
