#include "server/health_monitor.h"

#include <glog/logging.h>

#include "absl/time/clock.h"
#include "idem/v1/idempotency.grpc.pb.h"

namespace idem {

HealthMonitor::HealthMonitor(IdempotencyStore* store,
                             grpc::HealthCheckServiceInterface* health,
                             absl::Duration interval)
    : store_(store), health_(health), interval_(interval) {}

HealthMonitor::~HealthMonitor() { Stop(); }

void HealthMonitor::Start() {
  CheckOnce();
  thread_ = std::thread([this] {
    while (!stop_.WaitForNotificationWithTimeout(interval_)) CheckOnce();
  });
}

void HealthMonitor::Stop() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (thread_.joinable()) {
    thread_.join();
    health_->SetServingStatus(false);
  }
}

void HealthMonitor::CheckOnce() {
  const absl::Status status = store_->Ping(absl::Now() + interval_);
  const bool serving = status.ok();
  if (serving != serving_) {
    if (serving) {
      LOG(INFO) << "database reachable: SERVING";
    } else {
      LOG(WARNING) << "database unreachable: NOT_SERVING (" << status << ")";
    }
  }
  serving_ = serving;
  health_->SetServingStatus(serving);
  health_->SetServingStatus(idem::v1::Idempotency::service_full_name(), serving);
}

}  // namespace idem
