#include "server/key_change_listener.h"

#include <algorithm>

#include <glog/logging.h>
#include <pqxx/pqxx>

#include "server/conninfo.h"
#include "server/pg_errors.h"

namespace idem {

namespace {

class Receiver final : public pqxx::notification_receiver {
 public:
  Receiver(pqxx::connection& c, KeyWaiters* waiters)
      : pqxx::notification_receiver(c, KeyChangeListener::kChannel),
        waiters_(waiters) {}

  void operator()(const std::string& payload, int /*backend_pid*/) override {
    const size_t newline = payload.find('\n');
    if (newline == std::string::npos) return;
    waiters_->NotifyKey(absl::string_view(payload).substr(0, newline),
                        absl::string_view(payload).substr(newline + 1));
  }

 private:
  KeyWaiters* const waiters_;
};

}  // namespace

KeyChangeListener::KeyChangeListener(std::string url, KeyWaiters* waiters)
    : conninfo_(WithConnectionDefaults(url)), waiters_(waiters) {}

KeyChangeListener::~KeyChangeListener() { Stop(); }

void KeyChangeListener::Start() {
  thread_ = std::thread([this] { Run(); });
}

void KeyChangeListener::Stop() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

void KeyChangeListener::ListenOnce() {
  pqxx::connection c(conninfo_);
  Receiver receiver(c, waiters_);
  // LISTEN is in place: anything missed while disconnected is past.
  waiters_->NotifyAll();
  VLOG(1) << "listening on " << kChannel;
  while (!stop_.HasBeenNotified()) c.await_notification(0, 200000);
}

void KeyChangeListener::Run() {
  absl::Duration backoff = absl::Milliseconds(100);
  while (!stop_.HasBeenNotified()) {
    try {
      ListenOnce();
      return;
    } catch (...) {
      const PqxxFailure failure = ClassifyPqxxException(std::current_exception());
      LOG(WARNING) << "key-change listener lost its connection (" << failure.status
                   << "); waiters fall back to their timers until it is back";
    }
    if (stop_.WaitForNotificationWithTimeout(backoff)) return;
    backoff = std::min(backoff * 2, absl::Seconds(2));
  }
}

}  // namespace idem
