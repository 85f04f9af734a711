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

KeyWaiters::Id KeyWaiters::Prepare(absl::string_view scope, absl::string_view key) {
  absl::MutexLock lock(&mu_);
  if (shutting_down_ || waiters_.size() >= max_waiters_) return 0;
  const Id id = next_id_++;
  std::string scope_key = ScopeKey(scope, key);
  by_key_[scope_key].insert(id);
  waiters_.emplace(id, Waiter{std::move(scope_key)});
  return id;
}

KeyWaiters::ParkResult KeyWaiters::Park(Id id, absl::Time wake_at,
                                        std::function<void()> on_wake) {
  absl::MutexLock lock(&mu_);
  auto it = waiters_.find(id);
  if (it == waiters_.end()) return ParkResult::kNotified;
  if (it->second.notified) {
    TakeLocked(id);
    return ParkResult::kNotified;
  }
  it->second.wake_at = wake_at;
  it->second.on_wake = std::move(on_wake);
  if (by_time_.empty() || wake_at < by_time_.begin()->first) timer_reschedule_ = true;
  by_time_.emplace(wake_at, id);
  return ParkResult::kParked;
}

std::function<void()> KeyWaiters::TakeLocked(Id id) {
  auto it = waiters_.find(id);
  if (it == waiters_.end()) return nullptr;
  Waiter waiter = std::move(it->second);
  waiters_.erase(it);
  if (waiter.on_wake) by_time_.erase({waiter.wake_at, id});
  auto ids = by_key_.find(waiter.scope_key);
  ids->second.erase(id);
  if (ids->second.empty()) by_key_.erase(ids);
  return std::move(waiter.on_wake);
}

void KeyWaiters::NotifyLocked(Id id, std::vector<std::function<void()>>* fire) {
  Waiter& waiter = waiters_.at(id);
  if (waiter.on_wake) {
    fire->push_back(TakeLocked(id));
  } else {
    waiter.notified = true;
  }
}

bool KeyWaiters::Cancel(Id id) {
  absl::MutexLock lock(&mu_);
  if (!waiters_.contains(id)) return false;
  TakeLocked(id);
  return true;
}

void KeyWaiters::NotifyKey(absl::string_view scope, absl::string_view key) {
  std::vector<std::function<void()>> fire;
  {
    absl::MutexLock lock(&mu_);
    auto ids = by_key_.find(ScopeKey(scope, key));
    if (ids == by_key_.end()) return;
    const std::vector<Id> matching(ids->second.begin(), ids->second.end());
    for (Id id : matching) NotifyLocked(id, &fire);
  }
  FireAll(fire);
}

void KeyWaiters::NotifyAll() {
  std::vector<std::function<void()>> fire;
  {
    absl::MutexLock lock(&mu_);
    std::vector<Id> all;
    for (const auto& [id, waiter] : waiters_) all.push_back(id);
    for (Id id : all) NotifyLocked(id, &fire);
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
