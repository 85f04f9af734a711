#include <string>

#include <grpcpp/create_channel.h>
#include <gtest/gtest.h>

#include "idem/idempotent_handler.h"

namespace idem {
namespace {

TEST(ScopeForMethodTest, DropsTheSlashAndMapsUnderscores) {
  EXPECT_EQ(IdempotentHandler::ScopeForMethod("/pkg.Service/Method").value(),
            "pkg.Service/Method");
  EXPECT_EQ(IdempotentHandler::ScopeForMethod("/my_pkg.v1.My_Service/Do_It").value(),
            "my-pkg.v1.My-Service/Do-It");
  EXPECT_EQ(IdempotentHandler::ScopeForMethod("pkg.S/M").value(), "pkg.S/M");
}

TEST(ScopeForMethodTest, LongNamesEndInAHash) {
  const std::string a = "/" + std::string(200, 'a') + ".S/M";
  const std::string b = "/" + std::string(200, 'a') + ".S/N";
  const std::string scope_a = IdempotentHandler::ScopeForMethod(a).value();
  EXPECT_EQ(scope_a.size(), 128u);
  EXPECT_EQ(scope_a[111], ':');
  EXPECT_NE(scope_a, IdempotentHandler::ScopeForMethod(b).value());
}

TEST(ScopeForMethodTest, RejectsWhatIsNoMethodName) {
  for (const char* bad : {"", "/", "/pkg.Service/Me thod", "/pkg.Service/M\xC3\xA9"}) {
    EXPECT_EQ(IdempotentHandler::ScopeForMethod(bad).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST(IdempotentHandlerCreateTest, ChecksAConfiguredScope) {
  // Never dialed: Create makes no call.
  Client client(grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials()));
  IdempotentHandlerOptions options;
  options.scope = "bad scope";
  EXPECT_EQ(IdempotentHandler::Create(&client, "/p.S/M", options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.scope = "payments";
  absl::StatusOr<IdempotentHandler> h = IdempotentHandler::Create(&client, "/p.S/M", options);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->scope(), "payments");
}

}  // namespace
}  // namespace idem
