#include "server/rpc_log.h"

#include <glog/logging.h>
#include <gtest/gtest.h>

namespace idem {
namespace {

TEST(DescribeRequestTest, NamesTheKeyButNeverThePayload) {
  idem::v1::CompleteRequest c;
  c.set_scope("payments");
  c.set_key("order-42");
  c.set_lease_token(7);
  c.set_response("secret card data");
  (*c.mutable_response_metadata())["authorization"] = "Bearer x";
  const std::string d = DescribeRequest(c);
  EXPECT_EQ(d, "scope=\"payments\" key=\"order-42\" token=7");
  idem::v1::FailRequest f;
  f.set_error("declined for customer 123");
  EXPECT_EQ(DescribeRequest(f).find("declined"), std::string::npos);
}

TEST(DescribeRequestTest, EscapesAndCapsHostileValues) {
  idem::v1::BeginRequest b;
  b.set_scope(std::string("a\nb\0c\"", 6));
  b.set_key(std::string(1000, 'k'));
  const std::string d = DescribeRequest(b);
  EXPECT_EQ(d.find('\n'), std::string::npos) << d;
  EXPECT_NE(d.find(R"(scope="a\nb\x00\x63\"")"), std::string::npos) << d;
  EXPECT_LT(d.size(), 300u);
  EXPECT_NE(d.find("...\""), std::string::npos) << d;
}

TEST(DescribeRequestTest, BatchIsCounted) {
  idem::v1::BatchBeginRequest batch;
  batch.add_requests();
  batch.add_requests();
  EXPECT_EQ(DescribeRequest(batch), "requests=2");
}

// The line (and so DescribeRequest's work) only for INTERNAL, or with -v 1.
TEST(RpcLogWantedTest, InternalAlwaysOthersOnlyWhenVerbose) {
  const int saved = FLAGS_v;
  const grpc::Status internal(grpc::StatusCode::INTERNAL, "bug");
  const grpc::Status refused(grpc::StatusCode::INVALID_ARGUMENT, "bad key");
  FLAGS_v = 0;
  EXPECT_TRUE(RpcLogWanted(internal));
  EXPECT_FALSE(RpcLogWanted(grpc::Status::OK));
  EXPECT_FALSE(RpcLogWanted(refused));
  FLAGS_v = 1;
  EXPECT_TRUE(RpcLogWanted(grpc::Status::OK));
  EXPECT_TRUE(RpcLogWanted(refused));
  FLAGS_v = saved;
}

}  // namespace
}  // namespace idem
