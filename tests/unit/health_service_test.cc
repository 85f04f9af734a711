#include "server/health_service.h"

#include <memory>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

namespace idem {
namespace {

using grpc::health::v1::Health;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

// HealthService in an in-process gRPC server, and a stub to it.
class HealthServiceTest : public testing::Test {
 protected:
  HealthServiceTest() {
    grpc::EnableDefaultHealthCheckService(false);
    grpc::ServerBuilder builder;
    builder.RegisterService(&health_);
    server_ = builder.BuildAndStart();
    stub_ = Health::NewStub(server_->InProcessChannel(grpc::ChannelArguments()));
  }
  ~HealthServiceTest() override {
    health_.Shutdown();
    server_->Shutdown();
  }

  // The status Check answers for `service`; NOT_FOUND as SERVICE_UNKNOWN.
  HealthCheckResponse::ServingStatus Check(const std::string& service) {
    grpc::ClientContext context;
    HealthCheckRequest request;
    request.set_service(service);
    HealthCheckResponse response;
    const grpc::Status status = stub_->Check(&context, request, &response);
    if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
      return HealthCheckResponse::SERVICE_UNKNOWN;
    }
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.status();
  }

  HealthService health_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<Health::Stub> stub_;
};

TEST_F(HealthServiceTest, CheckAnswersTheStatusSetAndNotFoundForAnUnknownService) {
  EXPECT_EQ(Check(""), HealthCheckResponse::SERVING);
  EXPECT_EQ(Check("idem.v1.Idempotency"), HealthCheckResponse::SERVICE_UNKNOWN);
  health_.SetServingStatus("idem.v1.Idempotency", true);
  EXPECT_EQ(Check("idem.v1.Idempotency"), HealthCheckResponse::SERVING);
  health_.SetServingStatus(false);  // Every known service.
  EXPECT_EQ(Check(""), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Check("idem.v1.Idempotency"), HealthCheckResponse::NOT_SERVING);
  health_.SetServingStatus("idem.v1.Idempotency", true);
  EXPECT_EQ(Check("idem.v1.Idempotency"), HealthCheckResponse::SERVING);
  EXPECT_EQ(Check(""), HealthCheckResponse::NOT_SERVING);
}

TEST_F(HealthServiceTest, ShutdownIsNotServingForGood) {
  health_.SetServingStatus("idem.v1.Idempotency", true);
  health_.Shutdown();
  health_.SetServingStatus(true);
  health_.SetServingStatus("idem.v1.Idempotency", true);
  EXPECT_EQ(Check(""), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Check("idem.v1.Idempotency"), HealthCheckResponse::NOT_SERVING);
}

TEST_F(HealthServiceTest, WatchStreamsTheStatusThenEachChangeOfItsServiceAndEndsAtShutdown) {
  grpc::ClientContext context;
  HealthCheckRequest request;
  request.set_service("idem.v1.Idempotency");
  std::unique_ptr<grpc::ClientReader<HealthCheckResponse>> reader =
      stub_->Watch(&context, request);
  HealthCheckResponse response;
  ASSERT_TRUE(reader->Read(&response));
  EXPECT_EQ(response.status(), HealthCheckResponse::SERVICE_UNKNOWN);

  health_.SetServingStatus("other", false);  // Not this service: nothing sent.
  health_.SetServingStatus("idem.v1.Idempotency", true);
  ASSERT_TRUE(reader->Read(&response));
  EXPECT_EQ(response.status(), HealthCheckResponse::SERVING);
  health_.SetServingStatus("idem.v1.Idempotency", false);
  ASSERT_TRUE(reader->Read(&response));
  EXPECT_EQ(response.status(), HealthCheckResponse::NOT_SERVING);

  health_.SetServingStatus("idem.v1.Idempotency", true);
  ASSERT_TRUE(reader->Read(&response));
  EXPECT_EQ(response.status(), HealthCheckResponse::SERVING);
  health_.Shutdown();
  ASSERT_TRUE(reader->Read(&response));
  EXPECT_EQ(response.status(), HealthCheckResponse::NOT_SERVING);
  EXPECT_FALSE(reader->Read(&response));  // The stream ends.
  EXPECT_TRUE(reader->Finish().ok());
}

TEST_F(HealthServiceTest, AWatchWhoseCallerGoesEnds) {
  auto context = std::make_unique<grpc::ClientContext>();
  std::unique_ptr<grpc::ClientReader<HealthCheckResponse>> reader =
      stub_->Watch(context.get(), HealthCheckRequest());
  HealthCheckResponse response;
  ASSERT_TRUE(reader->Read(&response));
  EXPECT_EQ(response.status(), HealthCheckResponse::SERVING);
  context->TryCancel();
  EXPECT_FALSE(reader->Read(&response));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  // The service still answers others.
  EXPECT_EQ(Check(""), HealthCheckResponse::SERVING);
}

}  // namespace
}  // namespace idem
