#include "client/heartbeat.h"

#include <algorithm>
#include <utility>

namespace idem {

namespace {

// The answers that mean the lease is gone for good.
bool MeansLeaseLost(absl::StatusCode code) {
  return code == absl::StatusCode::kAborted || code == absl::StatusCode::kNotFound ||
         code == absl::StatusCode::kFailedPrecondition;
}

}  // namespace

Heartbeat::Heartbeat(Extend extend, absl::Duration interval, Lease* lease)
    : extend_(std::move(extend)),
      interval_(std::max(interval, absl::Milliseconds(10))),
      lease_(lease) {
  if (interval_ != absl::InfiniteDuration()) thread_ = std::thread([this] { Loop(); });
}

Heartbeat::~Heartbeat() {
  stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

void Heartbeat::Loop() {
  absl::Duration pause = interval_;
  while (!stop_.WaitForNotificationWithTimeout(pause)) {
    // A call never outlasts the next beat, so a slow one cannot make the
    // lease lapse unnoticed behind it.
    const absl::Status status = extend_(absl::Now() + interval_);
    if (status.ok()) {
      pause = interval_;
    } else if (MeansLeaseLost(status.code())) {
      lease_->MarkLost();
      return;
    } else {
      pause = interval_ / 4;
    }
  }
}

}  // namespace idem
