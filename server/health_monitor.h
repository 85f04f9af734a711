// HealthMonitor: keeps the standard gRPC health service truthful.
//
// Pings the store every `interval` and reports SERVING for the whole server
// and for idem.v1.Idempotency only while the database answers.
//
// Thread safety: Start/Stop from one owning thread.
#ifndef IDEM_SERVER_HEALTH_MONITOR_H_
#define IDEM_SERVER_HEALTH_MONITOR_H_

#include <thread>

#include <grpcpp/health_check_service_interface.h>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "server/store.h"

namespace idem {

class HealthMonitor {
 public:
  // Both must outlive the monitor.
  HealthMonitor(IdempotencyStore* store,
                grpc::HealthCheckServiceInterface* health, absl::Duration interval);
  HealthMonitor(const HealthMonitor&) = delete;
  HealthMonitor& operator=(const HealthMonitor&) = delete;
  ~HealthMonitor();

  // Checks once right away, then every interval.
  void Start();
  // Stops checking and reports NOT_SERVING (the server is going away).
  void Stop();

 private:
  void CheckOnce();

  IdempotencyStore* const store_;
  grpc::HealthCheckServiceInterface* const health_;
  const absl::Duration interval_;
  absl::Notification stop_;
  std::thread thread_;
  bool serving_ = false;  // Used by the monitor thread only.
};

}  // namespace idem

#endif  // IDEM_SERVER_HEALTH_MONITOR_H_
