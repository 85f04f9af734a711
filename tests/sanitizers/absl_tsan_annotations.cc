// ThreadSanitizer builds only (-DIDEM_SANITIZE=thread): tells TSan what
// Debian's absl::Mutex, absl::CondVar and absl::Notification do.
//
// Debian's libabsl_synchronization is not built with TSan, so its own
// annotations (ABSL_TSAN_MUTEX_*) are compiled out: TSan would see none of
// the happens-before edges a Mutex gives (its fast path is an atomic in an
// uninstrumented library) and report every ABSL_GUARDED_BY member as a race.
// This file, linked into every executable of a TSan build, interposes the
// library's out-of-line entry points (our definitions win over the shared
// library's, for callers in idem and in libgrpc alike), annotates each one
// the way absl's own TSan build does, and calls the library's function
// (found with dlsym(RTLD_NEXT)).
//
//   Mutex lock/unlock (exclusive, shared, try, when)  __tsan_mutex_pre/post_*
//   Mutex::Await*, CondVar::Wait*                     unlock before, lock after
//   Condition::Eval (run by absl inside lock/unlock)   reads ignored: absl may
//       evaluate a waiter's condition while, as TSan sees it, the waiter has
//       released the mutex (it holds it again inside the library)
//   Notification::Notify / WaitForNotification*       release / acquire on the
//       flag that the inline HasBeenNotified() loads
//
// ~Mutex is left alone: __tsan_mutex_destroy counts as a write to the
// mutex, and libgrpc destroys mutexes inside memory it later frees on
// another thread, ordered by its own (invisible) atomics. Freed memory loses
// its mutex state anyway.
//
// Calls the library makes to itself while one of the interposed functions
// runs (Notification's LockWhen/Unlock, CondVar's relock) are passed through
// unannotated, so TSan sees each lock and unlock exactly once.
// Limitation: Await* and CondVar::Wait* are annotated as exclusive holds
// (idem never waits holding a reader lock).
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/base/config.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

#if !defined(ABSL_HAVE_THREAD_SANITIZER)
#error "absl_tsan_annotations.cc belongs in ThreadSanitizer builds only"
#endif
// The mangled names below assume absl's inline namespace (Debian: debian3).
#if !ABSL_OPTION_USE_INLINE_NAMESPACE
#error "absl_tsan_annotations.cc expects absl built with an inline namespace"
#endif

extern "C" void AnnotateIgnoreReadsBegin(const char* file, int line);
extern "C" void AnnotateIgnoreReadsEnd(const char* file, int line);

namespace {

#define IDEM_STRINGIFY_INNER(x) #x
#define IDEM_STRINGIFY(x) IDEM_STRINGIFY_INNER(x)

// The Itanium-mangled name of absl::<inline namespace>::<rest>; a `rest`
// starting with K names a const member function.
std::string AbslSymbol(const char* rest) {
  const std::string ns = IDEM_STRINGIFY(ABSL_OPTION_INLINE_NAMESPACE_NAME);
  const bool is_const = rest[0] == 'K';
  return std::string(is_const ? "_ZNK" : "_ZN") + "4absl" + std::to_string(ns.size()) +
         ns + (is_const ? rest + 1 : rest);
}

// The shared library's definition of `rest` (see AbslSymbol).
template <typename Fn>
Fn Next(const char* rest) {
  const std::string name = AbslSymbol(rest);
  void* fn = dlsym(RTLD_NEXT, name.c_str());
  if (fn == nullptr) {
    std::fprintf(stderr, "absl_tsan_annotations: %s not found\n", name.c_str());
    std::abort();
  }
  return reinterpret_cast<Fn>(fn);
}

// Nonzero while an interposed function runs the library's code: the
// library's calls to itself are then passed through unannotated.
thread_local int in_library = 0;

struct InLibrary {
  InLibrary() { ++in_library; }
  ~InLibrary() { --in_library; }
};

// The address of Notification::notified_yet_ (declared after `mutable Mutex
// mutex_`), which the inline HasBeenNotified() loads with acquire order.
void* NotifiedFlag(const absl::Notification* n) {
  static_assert(sizeof(absl::Mutex) == sizeof(intptr_t), "absl::Mutex layout changed");
  static_assert(sizeof(absl::Notification) == 2 * sizeof(intptr_t),
                "absl::Notification layout changed");
  return const_cast<char*>(reinterpret_cast<const char*>(n)) + sizeof(absl::Mutex);
}

void AnnotateLock(void* mu, unsigned flags) {
  __tsan_mutex_pre_lock(mu, flags);
  __tsan_mutex_post_lock(mu, flags, 0);
}

void AnnotateUnlock(void* mu, unsigned flags) {
  __tsan_mutex_pre_unlock(mu, flags);
  __tsan_mutex_post_unlock(mu, flags);
}

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

void Mutex::Lock() {
  static const auto next = Next<void (*)(Mutex*)>("5Mutex4LockEv");
  if (in_library != 0) return next(this);
  __tsan_mutex_pre_lock(this, 0);
  {
    InLibrary guard;
    next(this);
  }
  __tsan_mutex_post_lock(this, 0, 0);
}

void Mutex::ReaderLock() {
  static const auto next = Next<void (*)(Mutex*)>("5Mutex10ReaderLockEv");
  if (in_library != 0) return next(this);
  __tsan_mutex_pre_lock(this, __tsan_mutex_read_lock);
  {
    InLibrary guard;
    next(this);
  }
  __tsan_mutex_post_lock(this, __tsan_mutex_read_lock, 0);
}

bool Mutex::TryLock() {
  static const auto next = Next<bool (*)(Mutex*)>("5Mutex7TryLockEv");
  if (in_library != 0) return next(this);
  __tsan_mutex_pre_lock(this, __tsan_mutex_try_lock);
  bool locked;
  {
    InLibrary guard;
    locked = next(this);
  }
  __tsan_mutex_post_lock(
      this, locked ? __tsan_mutex_try_lock : __tsan_mutex_try_lock_failed, 0);
  return locked;
}

bool Mutex::ReaderTryLock() {
  static const auto next = Next<bool (*)(Mutex*)>("5Mutex13ReaderTryLockEv");
  if (in_library != 0) return next(this);
  __tsan_mutex_pre_lock(this, __tsan_mutex_try_read_lock);
  bool locked;
  {
    InLibrary guard;
    locked = next(this);
  }
  __tsan_mutex_post_lock(
      this, locked ? __tsan_mutex_try_read_lock : __tsan_mutex_try_read_lock_failed, 0);
  return locked;
}

void Mutex::Unlock() {
  static const auto next = Next<void (*)(Mutex*)>("5Mutex6UnlockEv");
  if (in_library != 0) return next(this);
  __tsan_mutex_pre_unlock(this, 0);
  {
    InLibrary guard;
    next(this);  // may evaluate waiters' conditions: still ours, as TSan sees it
  }
  __tsan_mutex_post_unlock(this, 0);
}

void Mutex::ReaderUnlock() {
  static const auto next = Next<void (*)(Mutex*)>("5Mutex12ReaderUnlockEv");
  if (in_library != 0) return next(this);
  __tsan_mutex_pre_unlock(this, __tsan_mutex_read_lock);
  {
    InLibrary guard;
    next(this);
  }
  __tsan_mutex_post_unlock(this, __tsan_mutex_read_lock);
}

void Mutex::LockWhen(const Condition& cond) {
  static const auto next =
      Next<void (*)(Mutex*, const Condition&)>("5Mutex8LockWhenERKNS0_9ConditionE");
  if (in_library != 0) return next(this, cond);
  __tsan_mutex_pre_lock(this, 0);
  {
    InLibrary guard;
    next(this, cond);
  }
  __tsan_mutex_post_lock(this, 0, 0);
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  static const auto next =
      Next<void (*)(Mutex*, const Condition&)>("5Mutex14ReaderLockWhenERKNS0_9ConditionE");
  if (in_library != 0) return next(this, cond);
  __tsan_mutex_pre_lock(this, __tsan_mutex_read_lock);
  {
    InLibrary guard;
    next(this, cond);
  }
  __tsan_mutex_post_lock(this, __tsan_mutex_read_lock, 0);
}

// The ...WithTimeout/Deadline forms hold the lock on return either way.
bool Mutex::LockWhenWithTimeout(const Condition& cond, absl::Duration timeout) {
  static const auto next = Next<bool (*)(Mutex*, const Condition&, absl::Duration)>(
      "5Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  if (in_library != 0) return next(this, cond, timeout);
  __tsan_mutex_pre_lock(this, 0);
  bool met;
  {
    InLibrary guard;
    met = next(this, cond, timeout);
  }
  __tsan_mutex_post_lock(this, 0, 0);
  return met;
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, absl::Time deadline) {
  static const auto next = Next<bool (*)(Mutex*, const Condition&, absl::Time)>(
      "5Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  if (in_library != 0) return next(this, cond, deadline);
  __tsan_mutex_pre_lock(this, 0);
  bool met;
  {
    InLibrary guard;
    met = next(this, cond, deadline);
  }
  __tsan_mutex_post_lock(this, 0, 0);
  return met;
}

bool Mutex::ReaderLockWhenWithTimeout(const Condition& cond, absl::Duration timeout) {
  static const auto next = Next<bool (*)(Mutex*, const Condition&, absl::Duration)>(
      "5Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  if (in_library != 0) return next(this, cond, timeout);
  __tsan_mutex_pre_lock(this, __tsan_mutex_read_lock);
  bool met;
  {
    InLibrary guard;
    met = next(this, cond, timeout);
  }
  __tsan_mutex_post_lock(this, __tsan_mutex_read_lock, 0);
  return met;
}

bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond, absl::Time deadline) {
  static const auto next = Next<bool (*)(Mutex*, const Condition&, absl::Time)>(
      "5Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  if (in_library != 0) return next(this, cond, deadline);
  __tsan_mutex_pre_lock(this, __tsan_mutex_read_lock);
  bool met;
  {
    InLibrary guard;
    met = next(this, cond, deadline);
  }
  __tsan_mutex_post_lock(this, __tsan_mutex_read_lock, 0);
  return met;
}

// Await*: the mutex is released while waiting and held again on return.
void Mutex::Await(const Condition& cond) {
  static const auto next =
      Next<void (*)(Mutex*, const Condition&)>("5Mutex5AwaitERKNS0_9ConditionE");
  if (in_library != 0) return next(this, cond);
  AnnotateUnlock(this, 0);
  {
    InLibrary guard;
    next(this, cond);
  }
  AnnotateLock(this, 0);
}

bool Mutex::AwaitWithTimeout(const Condition& cond, absl::Duration timeout) {
  static const auto next = Next<bool (*)(Mutex*, const Condition&, absl::Duration)>(
      "5Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  if (in_library != 0) return next(this, cond, timeout);
  AnnotateUnlock(this, 0);
  bool met;
  {
    InLibrary guard;
    met = next(this, cond, timeout);
  }
  AnnotateLock(this, 0);
  return met;
}

bool Mutex::AwaitWithDeadline(const Condition& cond, absl::Time deadline) {
  static const auto next = Next<bool (*)(Mutex*, const Condition&, absl::Time)>(
      "5Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  if (in_library != 0) return next(this, cond, deadline);
  AnnotateUnlock(this, 0);
  bool met;
  {
    InLibrary guard;
    met = next(this, cond, deadline);
  }
  AnnotateLock(this, 0);
  return met;
}

// The library evaluates a waiter's condition in whichever thread holds the
// mutex at that moment, sometimes the waiter itself before Await returns
// (as TSan sees it, before the waiter holds the mutex again). The reads
// always happen under the mutex, so they are not checked.
bool Condition::Eval() const {
  static const auto next = Next<bool (*)(const Condition*)>("K9Condition4EvalEv");
  AnnotateIgnoreReadsBegin(__FILE__, __LINE__);
  const bool result = next(this);
  AnnotateIgnoreReadsEnd(__FILE__, __LINE__);
  return result;
}

// CondVar (used by libgrpc's grpc_core::CondVar): waiting releases the
// mutex and takes it again.
void CondVar::Wait(Mutex* mu) {
  static const auto next =
      Next<void (*)(CondVar*, Mutex*)>("7CondVar4WaitEPNS0_5MutexE");
  if (in_library != 0) return next(this, mu);
  AnnotateUnlock(mu, 0);
  {
    InLibrary guard;
    next(this, mu);
  }
  AnnotateLock(mu, 0);
}

bool CondVar::WaitWithTimeout(Mutex* mu, absl::Duration timeout) {
  static const auto next = Next<bool (*)(CondVar*, Mutex*, absl::Duration)>(
      "7CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  if (in_library != 0) return next(this, mu, timeout);
  AnnotateUnlock(mu, 0);
  bool timed_out;
  {
    InLibrary guard;
    timed_out = next(this, mu, timeout);
  }
  AnnotateLock(mu, 0);
  return timed_out;
}

bool CondVar::WaitWithDeadline(Mutex* mu, absl::Time deadline) {
  static const auto next = Next<bool (*)(CondVar*, Mutex*, absl::Time)>(
      "7CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  if (in_library != 0) return next(this, mu, deadline);
  AnnotateUnlock(mu, 0);
  bool timed_out;
  {
    InLibrary guard;
    timed_out = next(this, mu, deadline);
  }
  AnnotateLock(mu, 0);
  return timed_out;
}

void Notification::Notify() {
  static const auto next = Next<void (*)(Notification*)>("12Notification6NotifyEv");
  __tsan_release(NotifiedFlag(this));
  InLibrary guard;
  next(this);
}

void Notification::WaitForNotification() const {
  static const auto next =
      Next<void (*)(const Notification*)>("K12Notification19WaitForNotificationEv");
  {
    InLibrary guard;
    next(this);
  }
  __tsan_acquire(NotifiedFlag(this));
}

bool Notification::WaitForNotificationWithTimeout(absl::Duration timeout) const {
  static const auto next = Next<bool (*)(const Notification*, absl::Duration)>(
      "K12Notification30WaitForNotificationWithTimeoutENS0_8DurationE");
  bool notified;
  {
    InLibrary guard;
    notified = next(this, timeout);
  }
  if (notified) __tsan_acquire(NotifiedFlag(this));
  return notified;
}

bool Notification::WaitForNotificationWithDeadline(absl::Time deadline) const {
  static const auto next = Next<bool (*)(const Notification*, absl::Time)>(
      "K12Notification31WaitForNotificationWithDeadlineENS0_4TimeE");
  bool notified;
  {
    InLibrary guard;
    notified = next(this, deadline);
  }
  if (notified) __tsan_acquire(NotifiedFlag(this));
  return notified;
}

ABSL_NAMESPACE_END
}  // namespace absl
