// grpc-floor-server: gRPC's own per-call cost for a replay, with no idemd
// work behind it. Every Begin is answered with a fixed COMPLETED record
// (64-byte response) built from the request, so idem-bench's replay mode
// runs against it unchanged (its populating Begins see COMPLETED too and
// send no Complete). The other methods are unimplemented.
//
//   grpc-floor-server --api=callback --listen=unix:/tmp/floor.sock
//   grpc-floor-server --api=async --threads=1 --listen=unix:/tmp/floor.sock
//   idem-bench --target=unix:/tmp/floor.sock --mode=replay --concurrency=32
//
// --api=callback answers on gRPC's callback API, as idemd answers a cached
// replay; --api=async answers on the completion-queue API, each of
// --threads threads polling its own queue and answering inline. The CPU
// time of this process per call (and of idem-bench) is what a replay costs
// in gRPC alone: docs/performance.md compares the two.
//
// With --api=async, --hybrid serves the other methods (and gRPC's default
// health service) on the callback API beside Begin, --health adds only the
// default health service, --reflection the (sync) reflection service: each
// shows what sharing the server with such a service costs the Begins.
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/synchronization/mutex.h"
#include "idem/v1/idempotency.grpc.pb.h"

ABSL_FLAG(std::string, listen, "unix:/tmp/grpc-floor.sock", "gRPC listen address");
ABSL_FLAG(std::string, api, "callback", "callback or async");
ABSL_FLAG(int, threads, 1, "async: threads, each polling its own completion queue");
ABSL_FLAG(bool, health, false, "async: with gRPC's default health service");
ABSL_FLAG(bool, reflection, false, "async: with gRPC's reflection service");
ABSL_FLAG(bool, hybrid, false,
          "async: also serve the other methods and health checks on the callback "
          "API (as a server with both would)");

namespace {

using idem::v1::BeginRequest;
using idem::v1::BeginResponse;
using idem::v1::Idempotency;

// What idemd answers for a completed key, as it would come from its cache.
void FillReplay(const BeginRequest& request, BeginResponse* response) {
  response->set_outcome(BeginResponse::COMPLETED);
  idem::v1::Record* record = response->mutable_record();
  record->set_scope(request.scope());
  record->set_key(request.key());
  record->set_request_hash(request.request_hash());
  record->set_status(idem::v1::Record::COMPLETED);
  record->set_response(std::string(64, 'r'));
  record->set_response_code(200);
  record->set_lease_token(1);
  record->set_attempt(1);
}

// Begin on the completion-queue API, every other method on the callback API.
using HybridService = Idempotency::WithAsyncMethod_Begin<
    Idempotency::WithCallbackMethod_BatchBegin<Idempotency::WithCallbackMethod_Complete<
        Idempotency::WithCallbackMethod_Fail<Idempotency::WithCallbackMethod_Get<
            Idempotency::WithCallbackMethod_ExtendLease<Idempotency::Service>>>>>>;

class CallbackReplayService final : public Idempotency::CallbackService {
  grpc::ServerUnaryReactor* Begin(grpc::CallbackServerContext* context,
                                  const BeginRequest* request,
                                  BeginResponse* response) override {
    FillReplay(*request, response);
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

// One Begin on the completion-queue API: requested, then answered, then
// deleted when the answer is sent. A new one is requested as each arrives.
template <typename AsyncService>
class AsyncBegin {
 public:
  AsyncBegin(AsyncService* service, grpc::ServerCompletionQueue* queue)
      : service_(service), queue_(queue), writer_(&context_) {
    service_->RequestBegin(&context_, &request_, &writer_, queue_, queue_, this);
  }

  void Proceed(bool ok) {
    if (answered_ || !ok) {
      delete this;
      return;
    }
    new AsyncBegin<AsyncService>(service_, queue_);
    answered_ = true;
    BeginResponse response;
    FillReplay(request_, &response);
    writer_.Finish(response, grpc::Status::OK, this);
  }

 private:
  AsyncService* const service_;
  grpc::ServerCompletionQueue* const queue_;
  grpc::ServerContext context_;
  BeginRequest request_;
  grpc::ServerAsyncResponseWriter<BeginResponse> writer_;
  bool answered_ = false;
};

template <typename AsyncService>
int ServeAsync(AsyncService* service, grpc::ServerBuilder* builder, int threads) {
  builder->RegisterService(service);
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> queues;
  for (int i = 0; i < threads; ++i) queues.push_back(builder->AddCompletionQueue());
  std::unique_ptr<grpc::Server> server = builder->BuildAndStart();
  if (server == nullptr) return 1;
  std::vector<std::thread> pollers;
  for (const auto& queue : queues) {
    // Enough requested calls that an arriving Begin never waits for one.
    for (int j = 0; j < 64; ++j) new AsyncBegin<AsyncService>(service, queue.get());
    pollers.emplace_back([queue = queue.get()] {
      void* tag;
      bool ok;
      while (queue->Next(&tag, &ok)) static_cast<AsyncBegin<AsyncService>*>(tag)->Proceed(ok);
    });
  }
  for (std::thread& poller : pollers) poller.join();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "gRPC's per-call floor for a replay: grpc-floor-server --api=callback|async");
  absl::ParseCommandLine(argc, argv);
  // As in idemd: Debian's Abseil checks every Mutex for deadlocks otherwise.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  const std::string api = absl::GetFlag(FLAGS_api);
  const int threads = absl::GetFlag(FLAGS_threads);
  if ((api != "callback" && api != "async") || threads < 1 || threads > 64) {
    std::cerr << "grpc-floor-server: --api must be callback or async, --threads 1 to 64\n";
    return 2;
  }
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::GetFlag(FLAGS_listen), grpc::InsecureServerCredentials());
  if (api == "callback") {
    CallbackReplayService service;
    builder.RegisterService(&service);
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    if (server == nullptr) return 1;
    server->Wait();
    return 0;
  }
  if (absl::GetFlag(FLAGS_hybrid)) {
    grpc::EnableDefaultHealthCheckService(true);
    HybridService service;
    return ServeAsync(&service, &builder, threads);
  }
  if (absl::GetFlag(FLAGS_health)) grpc::EnableDefaultHealthCheckService(true);
  if (absl::GetFlag(FLAGS_reflection)) grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  Idempotency::AsyncService service;
  return ServeAsync(&service, &builder, threads);
}
