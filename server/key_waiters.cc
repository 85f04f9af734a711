#include "server/key_waiters.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace idem {

namespace {

std::string ScopeKey(absl::string_view scope, absl::string_view key) {
  return absl::StrCat(scope, "\n", key);
}

void FireAll(std::vector<std::function<void()>>& callbacks) {
  for (std::function<void()>& f : callbacks) f();
}

}  // namespace

KeyWaiters::KeyWaiters(size_t max_waiters) : max_waiters_(max_waiters) {
  timer_ = std::thread([this] { TimerLoop(); });
}

KeyWaiters::~KeyWaiters() { Shutdown(); }

KeyWaiters::Id KeyWaiters::Add(absl::string_view scope, absl::string_view key,
                               absl::Time wake_at, std::function<void()> on_wake) {
  absl::MutexLock lock(&mu_);
  if (shutting_down_ || waiters_.size() >= max_waiters_) return 0;
  const Id id = next_id_++;
  std::string scope_key = ScopeKey(scope, key);
  by_key_[scope_key].insert(id);
  if (by_time_.empty() || wake_at < by_time_.begin()->first) timer_reschedule_ = true;
  by_time_.emplace(wake_at, id);
  waiters_.emplace(id, Waiter{std::move(scope_key), wake_at, std::move(on_wake)});
  return id;
}

std::function<void()> KeyWaiters::TakeLocked(Id id) {
  auto it = waiters_.find(id);
  if (it == waiters_.end()) return nullptr;
  Waiter waiter = std::move(it->second);
  waiters_.erase(it);
  by_time_.erase({waiter.wake_at, id});
  auto ids = by_key_.find(waiter.scope_key);
  ids->second.erase(id);
  if (ids->second.empty()) by_key_.erase(ids);
  return std::move(waiter.on_wake);
}

bool KeyWaiters::Cancel(Id id) {
  absl::MutexLock lock(&mu_);
  return TakeLocked(id) != nullptr;
}

void KeyWaiters::NotifyKey(absl::string_view scope, absl::string_view key) {
  std::vector<std::function<void()>> fire;
  {
    absl::MutexLock lock(&mu_);
    auto ids = by_key_.find(ScopeKey(scope, key));
    if (ids == by_key_.end()) return;
    const std::vector<Id> matching(ids->second.begin(), ids->second.end());
    for (Id id : matching) fire.push_back(TakeLocked(id));
  }
  FireAll(fire);
}

void KeyWaiters::NotifyAll() {
  std::vector<std::function<void()>> fire;
  {
    absl::MutexLock lock(&mu_);
    while (!by_time_.empty()) fire.push_back(TakeLocked(by_time_.begin()->second));
  }
  FireAll(fire);
}

void KeyWaiters::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) return;
    shutting_down_ = true;
  }
  NotifyAll();
  timer_.join();
}

size_t KeyWaiters::size() const {
  absl::MutexLock lock(&mu_);
  return waiters_.size();
}

void KeyWaiters::TimerLoop() {
  while (true) {
    std::vector<std::function<void()>> fire;
    {
      absl::MutexLock lock(&mu_);
      const absl::Time next =
          by_time_.empty() ? absl::InfiniteFuture() : by_time_.begin()->first;
      timer_reschedule_ = false;
      auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return shutting_down_ || timer_reschedule_;
      };
      mu_.AwaitWithDeadline(absl::Condition(&woken), next);
      if (shutting_down_) return;
      const absl::Time now = absl::Now();
      while (!by_time_.empty() && by_time_.begin()->first <= now) {
        fire.push_back(TakeLocked(by_time_.begin()->second));
      }
    }
    FireAll(fire);
  }
}

}  // namespace idem
