#include "server/connection_pool.h"

#include <utility>

#include <pqxx/nontransaction>

#include "absl/time/clock.h"

#include "server/conninfo.h"
#include "server/pg_errors.h"
#include "server/statement_timeout.h"

namespace idem {

PooledConnection::PooledConnection(ConnectionPool* pool, int slot,
                                   std::unique_ptr<pqxx::connection> connection)
    : pool_(pool), slot_(slot), connection_(std::move(connection)) {}

PooledConnection::PooledConnection(PooledConnection&& other) noexcept
    : pool_(std::exchange(other.pool_, nullptr)),
      slot_(other.slot_),
      connection_(std::move(other.connection_)),
      lost_(other.lost_) {}

PooledConnection::~PooledConnection() {
  if (pool_ != nullptr) pool_->Release(slot_, std::move(connection_), lost_);
}

ConnectionPool::ConnectionPool(Options options) : options_(std::move(options)) {
  conninfo_ = WithConnectionDefaults(options_.url);
  slots_.resize(options_.size);
  for (int i = options_.size - 1; i >= 0; --i) free_.push_back(i);
}

absl::StatusOr<PooledConnection> ConnectionPool::Acquire(absl::Time deadline) {
  int slot;
  std::unique_ptr<pqxx::connection> connection;
  bool replan = false;
  {
    absl::MutexLock lock(&mu_);
    auto has_free = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !free_.empty();
    };
    if (free_.empty()) {
      const absl::Time start = absl::Now();
      const bool got = mu_.AwaitWithDeadline(absl::Condition(&has_free), deadline);
      waits_.fetch_add(1, std::memory_order_relaxed);
      wait_nanos_.fetch_add(absl::ToInt64Nanoseconds(absl::Now() - start),
                            std::memory_order_relaxed);
      if (!got) {
        return absl::DeadlineExceededError(
            "deadline passed while waiting for a database connection");
      }
    }
    slot = free_.back();
    free_.pop_back();
    Slot& s = slots_[slot];
    if (s.generation == generation_) connection = std::move(s.connection);
    s.connection.reset();  // An older generation's connection is dropped.
    s.generation = generation_;
    // Decided here, under the lock; a fresh connection plans anew anyway.
    const absl::Time now = absl::Now();
    replan = options_.replan_interval > absl::ZeroDuration() &&
             now - s.planned_at >= options_.replan_interval;
    if (replan || connection == nullptr) s.planned_at = now;
  }
  const bool fresh = connection == nullptr || !connection->is_open();
  try {
    if (fresh) {
      connection = std::make_unique<pqxx::connection>(conninfo_);
      if (options_.on_connect) options_.on_connect(*connection);
    } else if (replan) {
      // Prepared statements stay; their plans are made again on next use.
      pqxx::nontransaction tx(*connection);
      tx.exec0("DISCARD PLANS");
    }
    if (options_.statement_timeout > absl::ZeroDuration()) {
      const absl::Duration bound =
          StatementTimeoutFor(deadline - absl::Now(), options_.statement_timeout);
      if (bound <= absl::ZeroDuration()) {
        Release(slot, std::move(connection), /*lost=*/false);
        return absl::DeadlineExceededError(
            "deadline passed before the database statement could start");
      }
      // get_variable reads what set_variable set (no round trip); a SET is
      // sent only when the bound changes.
      const std::string setting = StatementTimeoutSetting(bound);
      if (connection->get_variable("statement_timeout") != setting) {
        connection->set_variable("statement_timeout", setting);
      }
    }
  } catch (...) {
    const PqxxFailure failure = ClassifyPqxxException(std::current_exception());
    // A connection that failed while being opened or set up is not reused.
    Release(slot, nullptr, /*lost=*/!fresh && failure.connection_lost);
    if (fresh && failure.status.code() == absl::StatusCode::kInternal) {
      // A connection that cannot be opened is the database being away
      // (or misconfigured), never a bug in the caller's request.
      return absl::UnavailableError("cannot connect to the database");
    }
    return failure.status;
  }
  return PooledConnection(this, slot, std::move(connection));
}

void ConnectionPool::Release(int slot, std::unique_ptr<pqxx::connection> connection,
                             bool lost) {
  std::unique_ptr<pqxx::connection> to_close;
  {
    absl::MutexLock lock(&mu_);
    Slot& s = slots_[slot];
    if (lost) {
      ++generation_;
      to_close = std::move(connection);
    } else {
      s.connection = std::move(connection);
    }
    free_.push_back(slot);
  }
  // to_close is destroyed (and its socket closed) outside the lock.
}

int ConnectionPool::in_use() const {
  absl::MutexLock lock(&mu_);
  return options_.size - static_cast<int>(free_.size());
}

}  // namespace idem
