// ConnectionPool: a fixed number of libpqxx connections to one database.
//
// A connection is used by one thread at a time: Acquire() hands out a
// PooledConnection that owns it until destroyed. Connections are opened
// lazily (with the timeouts of conninfo.h), on the Acquire() that finds its
// slot empty, and replaced after they are reported lost; when one is lost,
// every idle one is replaced too (a database restart drops them all), so
// recovery costs one failed call, not one per connection.
//
// With a statement_timeout, Acquire() also bounds the statements the caller
// runs: the connection's PostgreSQL statement_timeout becomes the smaller of
// it and the time left before the deadline (statement_timeout.h), so a
// statement (a lock wait included) is cancelled by PostgreSQL (SQLSTATE
// 57014, DEADLINE_EXCEEDED) instead of outliving its call. Every pool user
// (RPCs, sweeper, health checks, metrics) gets this bound.
//
// With a replan_interval, Acquire() also sends `DISCARD PLANS` on a
// connection whose cached plans are older than that, so prepared
// statements are re-planned for the table as it is now. (A generic plan is
// made once and kept until ANALYZE invalidates it: one made while the table
// was empty scans the whole table, and keeps doing so as it grows, for up to
// a minute of autovacuum's naptime.)
//
// Thread safety: safe for concurrent use. Every PooledConnection must be
// destroyed before the pool.
#ifndef IDEM_SERVER_CONNECTION_POOL_H_
#define IDEM_SERVER_CONNECTION_POOL_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <pqxx/connection>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace idem {

class ConnectionPool;

class PooledConnection {
 public:
  PooledConnection(PooledConnection&& other) noexcept;
  PooledConnection& operator=(PooledConnection&&) = delete;
  ~PooledConnection();

  pqxx::connection& get() { return *connection_; }
  // The connection failed: close it instead of returning it for reuse.
  void MarkLost() { lost_ = true; }

 private:
  friend class ConnectionPool;
  PooledConnection(ConnectionPool* pool, int slot,
                   std::unique_ptr<pqxx::connection> connection);

  ConnectionPool* pool_;
  int slot_;
  std::unique_ptr<pqxx::connection> connection_;
  bool lost_ = false;
};

class ConnectionPool {
 public:
  struct Options {
    // libpq connection string or URI.
    std::string url;
    int size = 8;
    // Runs on every new connection (prepare statements, SET ...). May throw
    // libpqxx exceptions; the connection is then discarded.
    std::function<void(pqxx::connection&)> on_connect;
    // The longest any statement may run; zero: leave the server's setting
    // alone (and no per-call bound).
    absl::Duration statement_timeout = absl::ZeroDuration();
    // How old a connection's cached plans may get before they are dropped
    // (DISCARD PLANS); zero: never.
    absl::Duration replan_interval = absl::ZeroDuration();
  };

  explicit ConnectionPool(Options options);
  ConnectionPool(const ConnectionPool&) = delete;
  ConnectionPool& operator=(const ConnectionPool&) = delete;

  // Waits for a free connection until `deadline` (DEADLINE_EXCEEDED), opens
  // it if needed (UNAVAILABLE when the database cannot be reached), and
  // bounds its statements by `deadline` (see above; DEADLINE_EXCEEDED when
  // under a millisecond is left). Never waits past `deadline`, except for
  // opening a connection (bounded by conninfo.h's connect_timeout).
  absl::StatusOr<PooledConnection> Acquire(absl::Time deadline)
      ABSL_LOCKS_EXCLUDED(mu_);

  int size() const { return options_.size; }
  // Connections handed out right now.
  int in_use() const ABSL_LOCKS_EXCLUDED(mu_);
  // Acquire() calls that found no free connection and waited, and their
  // total time waiting (including those that gave up at their deadline).
  int64_t waits() const { return waits_.load(std::memory_order_relaxed); }
  absl::Duration wait_time() const {
    return absl::Nanoseconds(wait_nanos_.load(std::memory_order_relaxed));
  }

 private:
  friend class PooledConnection;
  struct Slot {
    std::unique_ptr<pqxx::connection> connection;
    // The pool's generation when the connection was opened.
    uint64_t generation = 0;
    // When the connection was opened or its plans last discarded.
    absl::Time planned_at = absl::InfinitePast();
  };

  void Release(int slot, std::unique_ptr<pqxx::connection> connection, bool lost)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Constant after construction.
  const Options options_;
  // options_.url with timeouts and keepalives added (conninfo.h).
  std::string conninfo_;

  // Wait statistics, updated with atomics.
  std::atomic<int64_t> waits_{0};
  std::atomic<int64_t> wait_nanos_{0};

  mutable absl::Mutex mu_;
  // State below is protected by mu_.
  std::vector<Slot> slots_ ABSL_GUARDED_BY(mu_);
  std::vector<int> free_ ABSL_GUARDED_BY(mu_);
  // Bumped when a connection is lost; older connections are replaced.
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace idem

#endif  // IDEM_SERVER_CONNECTION_POOL_H_
