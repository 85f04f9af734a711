#include "server/health_service.h"

#include "absl/time/time.h"

namespace idem {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

namespace {

// How often a Watch looks whether its caller has gone, between changes.
constexpr absl::Duration kWatchCancelCheck = absl::Milliseconds(200);

HealthCheckResponse::ServingStatus ServingStatus(bool serving) {
  return serving ? HealthCheckResponse::SERVING : HealthCheckResponse::NOT_SERVING;
}

}  // namespace

HealthService::HealthService() { statuses_[""] = HealthCheckResponse::SERVING; }

void HealthService::SetServingStatus(const std::string& service_name, bool serving) {
  absl::MutexLock lock(&mu_);
  if (shut_down_) return;
  Status& status = statuses_[service_name];
  if (status == ServingStatus(serving)) return;
  status = ServingStatus(serving);
  ++version_;
}

void HealthService::SetServingStatus(bool serving) {
  absl::MutexLock lock(&mu_);
  if (shut_down_) return;
  for (auto& [name, status] : statuses_) status = ServingStatus(serving);
  ++version_;
}

void HealthService::Shutdown() {
  absl::MutexLock lock(&mu_);
  if (shut_down_) return;
  for (auto& [name, status] : statuses_) status = HealthCheckResponse::NOT_SERVING;
  shut_down_ = true;
  ++version_;
}

HealthService::Status HealthService::StatusOfLocked(const std::string& service) const {
  auto it = statuses_.find(service);
  return it == statuses_.end() ? HealthCheckResponse::SERVICE_UNKNOWN : it->second;
}

grpc::Status HealthService::Check(grpc::ServerContext*, const HealthCheckRequest* request,
                                  HealthCheckResponse* response) {
  absl::ReaderMutexLock lock(&mu_);
  const Status status = StatusOfLocked(request->service());
  if (status == HealthCheckResponse::SERVICE_UNKNOWN) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        "unknown service \"" + request->service() + "\"");
  }
  response->set_status(status);
  return grpc::Status::OK;
}

grpc::Status HealthService::Watch(grpc::ServerContext* context,
                                  const HealthCheckRequest* request,
                                  grpc::ServerWriter<HealthCheckResponse>* writer) {
  uint64_t seen = 0;
  bool first = true;
  Status sent = HealthCheckResponse::UNKNOWN;
  while (!context->IsCancelled()) {
    HealthCheckResponse response;
    bool last;
    {
      absl::MutexLock lock(&mu_);
      auto changed = [this, seen]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return version_ != seen;
      };
      if (!first && !mu_.AwaitWithTimeout(absl::Condition(&changed), kWatchCancelCheck)) {
        continue;
      }
      seen = version_;
      last = shut_down_;
      response.set_status(StatusOfLocked(request->service()));
    }
    // Another service changed: nothing to tell this caller.
    if (!first && !last && response.status() == sent) continue;
    first = false;
    sent = response.status();
    if (!writer->Write(response) || last) break;
  }
  return grpc::Status::OK;
}

}  // namespace idem
