// RunOnce and a CANCELLED it did not cause. gRPC's server answers CANCELLED
// to a call that arrives as the server begins shutting down, before any
// handler runs (grpc/grpc#41785); idem-chaos saw RunOnce fail that way when
// an idemd replica got SIGTERM. RunOnce never cancels its own calls, so it
// must retry such an answer like UNAVAILABLE. A stand-in idem service
// answers the first Begin and the first Complete CANCELLED, like a replica
// going away; the real server cannot be made to hit that window on demand.
#include <atomic>
#include <memory>
#include <string>

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "idem/client.h"

namespace idem {
namespace {

using idem::v1::BeginRequest;
using idem::v1::BeginResponse;
using idem::v1::CompleteRequest;
using idem::v1::CompleteResponse;
using idem::v1::Record;

class CancelsFirstCallOfEach final : public idem::v1::Idempotency::Service {
 public:
  grpc::Status Begin(grpc::ServerContext*, const BeginRequest*,
                     BeginResponse* response) override {
    if (begins_++ == 0) return {grpc::StatusCode::CANCELLED, "CANCELLED"};
    response->set_outcome(BeginResponse::ACQUIRED);
    response->set_lease_token(7);
    response->mutable_record()->set_status(Record::IN_PROGRESS);
    response->mutable_record()->set_attempt(1);
    return grpc::Status::OK;
  }

  grpc::Status Complete(grpc::ServerContext*, const CompleteRequest* request,
                        CompleteResponse* response) override {
    if (completes_++ == 0) return {grpc::StatusCode::CANCELLED, "CANCELLED"};
    Record* record = response->mutable_record();
    record->set_status(Record::COMPLETED);
    record->set_lease_token(request->lease_token());
    record->set_response(request->response());
    return grpc::Status::OK;
  }

  std::atomic<int> begins_{0};
  std::atomic<int> completes_{0};
};

TEST(RunOnceCancelledTest, ACancelledItDidNotCauseIsRetried) {
  CancelsFirstCallOfEach service;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  Client client(grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                    grpc::InsecureChannelCredentials()));

  int runs = 0;
  RunOnceOptions options;
  options.initial_backoff = absl::Milliseconds(1);
  options.deadline = absl::Seconds(10);
  absl::StatusOr<RunOnceResult> result = client.RunOnce(
      "payments", "order-1", "request",
      [&](const Lease& lease) -> absl::StatusOr<WorkResult> {
        ++runs;
        return WorkResult{absl::StrCat("done under ", lease.token), 200, {}};
      },
      options);

  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->executed);
  EXPECT_EQ(result->record.status(), Record::COMPLETED);
  EXPECT_EQ(result->record.response(), "done under 7");
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(service.begins_.load(), 2);
  EXPECT_EQ(service.completes_.load(), 2);
  server->Shutdown();
}

}  // namespace
}  // namespace idem
