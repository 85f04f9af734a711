// HealthService: the standard grpc.health.v1.Health service (Check and
// Watch) on gRPC's sync API, in place of gRPC's default one.
//
// gRPC's default health service runs on its callback API, and any
// callback-API service in a server makes gRPC poll the connections from
// threads of its own that then hand every arriving call to the thread of
// its completion queue (grpc_service.h says what that costs). A sync
// service adds no such threads while it is not called: a health check
// takes one of gRPC's sync threads for its length (a Watch, until the
// caller goes or the service shuts down).
//
// Semantics as gRPC's default: "" (the whole server) is known from the
// start and SERVING; Check of an unknown service is NOT_FOUND; Watch of one
// streams SERVICE_UNKNOWN, then every change; Shutdown() sets every service
// NOT_SERVING for good and ends the Watches.
//
// Thread safety: safe for concurrent use.
#ifndef IDEM_SERVER_HEALTH_SERVICE_H_
#define IDEM_SERVER_HEALTH_SERVICE_H_

#include <cstdint>
#include <string>

#include <grpcpp/health_check_service_interface.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace idem {

class HealthService final : public grpc::health::v1::Health::Service,
                            public grpc::HealthCheckServiceInterface {
 public:
  using Status = grpc::health::v1::HealthCheckResponse::ServingStatus;

  HealthService();

  // grpc::HealthCheckServiceInterface: what HealthMonitor reports.
  void SetServingStatus(const std::string& service_name, bool serving) override;
  void SetServingStatus(bool serving) override;
  void Shutdown() override;

  // grpc.health.v1.Health.
  grpc::Status Check(grpc::ServerContext* context,
                     const grpc::health::v1::HealthCheckRequest* request,
                     grpc::health::v1::HealthCheckResponse* response) override;
  grpc::Status Watch(
      grpc::ServerContext* context, const grpc::health::v1::HealthCheckRequest* request,
      grpc::ServerWriter<grpc::health::v1::HealthCheckResponse>* writer) override;

 private:
  // SERVICE_UNKNOWN when the service was never set.
  Status StatusOfLocked(const std::string& service) const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Status> statuses_ ABSL_GUARDED_BY(mu_);
  // Bumped on every change, so a Watch knows to look again.
  uint64_t version_ ABSL_GUARDED_BY(mu_) = 0;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace idem

#endif  // IDEM_SERVER_HEALTH_SERVICE_H_
