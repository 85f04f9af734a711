// KeyWaiters: Begin calls parked until their key may have changed.
//
// A waiting Begin (BeginRequest.wait) holds no thread: it parks a callback
// here and returns. Registration has two phases so that no change is lost:
// Prepare() before the Begin statement looks at the key, Park() after it
// answered IN_PROGRESS. A NotifyKey() in between is remembered, and Park()
// then says kNotified: look again now. A parked callback fires exactly
// once, at the first of: NotifyKey() for its key (the KeyChangeListener
// relays PostgreSQL's NOTIFY, from any idemd replica), NotifyAll(), its
// wake-up time (the holder's lease end, or the end of the wait), or
// Shutdown(). Cancel() removes a waiter whose callback has not fired, so it
// never will.
//
// Callbacks run on the thread that fired them (the timer thread, the
// listener thread, or the caller of Shutdown), never under the lock; they
// must be short (GrpcService only queues work).
//
// Example:
//   KeyWaiters waiters(/*max_waiters=*/10000);
//   KeyWaiters::Id id = waiters.Prepare("payments", "order-42");
//   ... run Begin; it answers IN_PROGRESS ...
//   if (id == 0) return AnswerNow();  // Full or shutting down.
//   if (waiters.Park(id, absl::Now() + absl::Seconds(5), Retry) ==
//       KeyWaiters::ParkResult::kNotified) {
//     Retry();  // The key changed while Begin ran.
//   }
//
// Thread safety: every method may be called from any thread.
#ifndef IDEM_SERVER_KEY_WAITERS_H_
#define IDEM_SERVER_KEY_WAITERS_H_

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace idem {

class KeyWaiters {
 public:
  using Id = uint64_t;

  explicit KeyWaiters(size_t max_waiters);
  KeyWaiters(const KeyWaiters&) = delete;
  KeyWaiters& operator=(const KeyWaiters&) = delete;
  // Calls Shutdown().
  ~KeyWaiters();

  // Phase 1, before looking at the key: starts remembering its changes.
  // Returns 0 when max_waiters wait already or Shutdown() was called.
  Id Prepare(absl::string_view scope, absl::string_view key)
      ABSL_LOCKS_EXCLUDED(mu_);

  enum class ParkResult {
    // `on_wake` will fire once (unless cancelled).
    kParked,
    // The key changed since Prepare() (or all were woken): the waiter is
    // gone and `on_wake` will never fire; look at the key again.
    kNotified,
  };
  // Phase 2: arms prepared waiter `id` with `on_wake`, due at `wake_at`.
  ParkResult Park(Id id, absl::Time wake_at, std::function<void()> on_wake)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Removes a prepared or parked waiter; true when its callback had not
  // fired (it never will).
  bool Cancel(Id id) ABSL_LOCKS_EXCLUDED(mu_);

  // Fires every parked waiter of (scope, key); marks prepared ones.
  void NotifyKey(absl::string_view scope, absl::string_view key)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Fires every parked waiter and marks every prepared one (after missed
  // notifications, e.g. a reconnect).
  void NotifyAll() ABSL_LOCKS_EXCLUDED(mu_);

  // Refuses new waiters, fires every waiter, stops the timer thread.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

  size_t size() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Waiter {
    std::string scope_key;
    // Prepared: InfiniteFuture and no callback; parked: both set.
    absl::Time wake_at = absl::InfiniteFuture();
    std::function<void()> on_wake;
    // Prepared only: the key changed since Prepare().
    bool notified = false;
  };

  // Removes waiter `id` and returns its callback (empty if not parked).
  std::function<void()> TakeLocked(Id id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Fires parked waiter `id` into `fire`, or marks a prepared one.
  void NotifyLocked(Id id, std::vector<std::function<void()>>* fire)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void TimerLoop() ABSL_LOCKS_EXCLUDED(mu_);

  // Constant after construction.
  const size_t max_waiters_;

  mutable absl::Mutex mu_;
  // State below is protected by mu_.
  absl::flat_hash_map<Id, Waiter> waiters_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, absl::flat_hash_set<Id>> by_key_
      ABSL_GUARDED_BY(mu_);
  // Parked waiters only.
  std::set<std::pair<absl::Time, Id>> by_time_ ABSL_GUARDED_BY(mu_);
  Id next_id_ ABSL_GUARDED_BY(mu_) = 1;
  // Set when a waiter earlier than the timer's current target arrives.
  bool timer_reschedule_ ABSL_GUARDED_BY(mu_) = false;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;

  std::thread timer_;
};

}  // namespace idem

#endif  // IDEM_SERVER_KEY_WAITERS_H_
