// ChaosJournal: everything the chaos harness's callers saw, kept in memory
// for the checker (chaos_checker.h) and the summary line.
//
// Per key: every lease a worker acquired (token, and the time the ACQUIRED
// answer was in hand), and every COMPLETED record a worker was answered
// (an acknowledged Complete or a replay). Globally: operations, faults by
// kind, calls that ran past their deadline, and violations found while the
// load ran (an answer a correct idem must never give).
//
// Thread safety: every method may be called from any thread.
#ifndef IDEM_TESTS_CHAOS_CHAOS_JOURNAL_H_
#define IDEM_TESTS_CHAOS_CHAOS_JOURNAL_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace idem::chaos {

// A lease some worker held: `token`, in hand at `acquired_at` or earlier.
struct Acquisition {
  int64_t token = 0;
  absl::Time acquired_at;
};

// A COMPLETED record a worker was answered.
struct CompletedAnswer {
  int64_t token = 0;         // record.lease_token: the token that completed
  std::string response;      // record.response
  bool acknowledged = false; // true: this worker's own Complete was answered OK
};

enum class Fault { kKill9, kSigterm, kPgRestart, kCancel, kLeaseExpiry };

class ChaosJournal {
 public:
  explicit ChaosJournal(int keys) : keys_(keys) {}

  // "t+12.345s": time since the journal was made, for log lines.
  std::string Elapsed() const;

  void NoteAcquired(int key, int64_t token, absl::Time acquired_at);
  void NoteCompleted(int key, CompletedAnswer answer);
  // One call (an RPC, or a whole RunOnce) that took `took` and was allowed
  // `allowed` (its deadline, plus what the call's contract adds); more than
  // allowed + grace is a hang.
  void NoteCall(const char* what, absl::Duration took, absl::Duration allowed);
  void NoteViolation(std::string what);
  // A replica's graceful shutdown (SIGTERM) runs from Begin to End.
  void NoteShutdownBegins();
  void NoteShutdownEnds();
  // Whether a call from `start` to `end` overlapped a shutdown (with a
  // second's margin for the answer to travel): gRPC answers CANCELLED to a
  // call that reaches a server as it starts shutting down.
  bool DuringShutdown(absl::Time start, absl::Time end) const;
  // A CANCELLED a worker did not cause, answered while a replica shut down.
  void NoteShutdownCancel() { shutdown_cancels_.fetch_add(1); }
  int64_t shutdown_cancels() const { return shutdown_cancels_.load(); }
  void NoteFault(Fault fault) { faults_[static_cast<int>(fault)].fetch_add(1); }
  void NoteOperation() { operations_.fetch_add(1); }

  std::vector<Acquisition> Acquisitions(int key) const;
  std::vector<CompletedAnswer> Answers(int key) const;
  std::vector<std::string> Violations() const;
  int64_t operations() const { return operations_.load(); }
  int64_t faults(Fault fault) const { return faults_[static_cast<int>(fault)].load(); }
  int64_t hangs() const { return hangs_.load(); }
  absl::Duration longest_overrun() const;

  // Calls may take this much past what they were allowed before they count
  // as hung (scheduling on a loaded two-core machine).
  static constexpr absl::Duration kHangGrace = absl::Seconds(2);

 private:
  struct KeyLog {
    std::vector<Acquisition> acquisitions;
    std::vector<CompletedAnswer> answers;
  };

  const int keys_;
  const absl::Time start_ = absl::Now();
  std::atomic<int64_t> operations_{0};
  std::atomic<int64_t> faults_[5] = {};
  std::atomic<int64_t> hangs_{0};
  std::atomic<int64_t> shutdown_cancels_{0};

  mutable absl::Mutex mu_;
  std::vector<KeyLog> logs_ ABSL_GUARDED_BY(mu_) = std::vector<KeyLog>(keys_);
  std::vector<std::string> violations_ ABSL_GUARDED_BY(mu_);
  // [begin, end) of each shutdown; the last one's end is InfiniteFuture
  // while it runs.
  std::vector<std::pair<absl::Time, absl::Time>> shutdowns_ ABSL_GUARDED_BY(mu_);
  absl::Duration longest_overrun_ ABSL_GUARDED_BY(mu_) = -absl::InfiniteDuration();
};

}  // namespace idem::chaos

#endif  // IDEM_TESTS_CHAOS_CHAOS_JOURNAL_H_
