#include "server/authorizer.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

namespace idem {
namespace {

using Strings = std::vector<absl::string_view>;

std::string Line(absl::string_view token, absl::string_view prefixes) {
  return absl::StrCat(Authorizer::TokenHash(token), " ", prefixes, "\n");
}

TEST(AuthorizerTest, TokenHashIsSha256Hex) {
  EXPECT_EQ(Authorizer::TokenHash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(AuthorizerTest, PrefixesMatchWholeSegments) {
  struct Case {
    const char* prefix;
    const char* scope;
    bool allowed;
  };
  const Case cases[] = {
      {"tenant-a", "tenant-a", true},
      {"tenant-a", "tenant-a/x", true},
      {"tenant-a", "tenant-a/x/y", true},
      {"tenant-a", "tenant-ab", false},
      {"tenant-a", "tenant-ab/x", false},
      {"tenant-a", "tenant-", false},
      {"tenant-a", "", false},
      {"tenant-a", "x/tenant-a", false},
      {"tenant-a/", "tenant-a", true},
      {"tenant-a/", "tenant-a/x", true},
      {"tenant-a/", "tenant-ab", false},
      {"tenant-a/x", "tenant-a", false},
      {"tenant-a/x", "tenant-a/x", true},
      {"tenant-a/x", "tenant-a/xy", false},
      {"tenant-a/x", "tenant-a/x/z", true},
      {"Tenant-A", "tenant-a", false},  // case-sensitive, as scopes are
      {"*", "anything/at/all", true},
      {"*", "", true},
      {"/", "x", false},
      {"", "", false},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(Authorizer::PrefixAllows(c.prefix, c.scope), c.allowed)
        << "prefix \"" << c.prefix << "\" scope \"" << c.scope << "\"";
  }
}

TEST(AuthorizerTest, ChecksTokenThenEveryScope) {
  const std::string file = absl::StrCat(
      "# callers\n\n", Line("token-a", "tenant-a"),
      "  ", Line("token-b", "tenant-b/orders,tenant-b/refunds/"),
      Line("token-b", "shared  # a second line adds to the first"),
      Line("root", "*"));
  absl::StatusOr<std::unique_ptr<Authorizer>> auth = Authorizer::Parse(file);
  ASSERT_TRUE(auth.ok()) << auth.status();
  EXPECT_EQ((*auth)->callers(), 3u);

  // Owned here: Case holds string_views, and a temporary in the array's
  // initializer would be destroyed before the loop reads it (ASan found it).
  const std::string bearer_hash = absl::StrCat("Bearer ", Authorizer::TokenHash("token-a"));
  struct Case {
    Strings authorization;
    Strings scopes;
    absl::StatusCode code;
  };
  const Case cases[] = {
      {{}, {"tenant-a"}, absl::StatusCode::kUnauthenticated},
      {{"Bearer wrong"}, {"tenant-a"}, absl::StatusCode::kUnauthenticated},
      {{"Bearer "}, {"tenant-a"}, absl::StatusCode::kUnauthenticated},
      {{"Basic token-a"}, {"tenant-a"}, absl::StatusCode::kUnauthenticated},
      {{"token-a"}, {"tenant-a"}, absl::StatusCode::kUnauthenticated},
      {{"Bearer token-a", "Bearer token-a"}, {"tenant-a"},
       absl::StatusCode::kUnauthenticated},
      // The hash itself is not a token.
      {{bearer_hash}, {"tenant-a"},
       absl::StatusCode::kUnauthenticated},
      {{"Bearer token-a"}, {"tenant-a"}, absl::StatusCode::kOk},
      {{"bearer token-a"}, {"tenant-a/x"}, absl::StatusCode::kOk},
      {{"Bearer token-a"}, {"tenant-ab"}, absl::StatusCode::kPermissionDenied},
      {{"Bearer token-a"}, {"tenant-b/orders"}, absl::StatusCode::kPermissionDenied},
      {{"Bearer token-a"}, {}, absl::StatusCode::kOk},
      {{"Bearer token-a"}, {"tenant-a/1", "tenant-b/orders", "tenant-a/2"},
       absl::StatusCode::kPermissionDenied},
      {{"Bearer token-b"}, {"tenant-b/orders/1", "tenant-b/refunds", "shared"},
       absl::StatusCode::kOk},
      {{"Bearer token-b"}, {"tenant-b"}, absl::StatusCode::kPermissionDenied},
      {{"Bearer token-b"}, {"tenant-b/ordersx"}, absl::StatusCode::kPermissionDenied},
      {{"Bearer root"}, {"tenant-a", "tenant-b/x"}, absl::StatusCode::kOk},
  };
  for (const Case& c : cases) {
    const absl::Status status = (*auth)->Check(c.authorization, c.scopes);
    EXPECT_EQ(status.code(), c.code)
        << (c.authorization.empty() ? "(none)" : c.authorization[0]) << " "
        << status;
    // Never the token, nor its hash, nor the caller's own prefixes.
    for (absl::string_view secret :
         {"token-a", "token-b", "root", "tenant-b/refunds", "shared"}) {
      if (c.code == absl::StatusCode::kOk) continue;
      EXPECT_EQ(status.message().find(Authorizer::TokenHash(secret)),
                absl::string_view::npos);
      if (secret.rfind("token", 0) == 0) {
        EXPECT_EQ(status.message().find(secret), absl::string_view::npos) << status;
      }
    }
  }
  const absl::Status denied =
      (*auth)->Check(Strings{"Bearer token-a"}, Strings{"tenant-a/1", "tenant-b/orders"});
  EXPECT_EQ(denied.message(), "caller may not use scope \"tenant-b/orders\"");
}

TEST(AuthorizerTest, RejectsMalformedFilesNamingTheLine) {
  const std::string hash = Authorizer::TokenHash("t");
  struct Case {
    std::string text;
    const char* line;
  };
  const Case cases[] = {
      {"plain-token tenant-a\n", "line 1"},
      {absl::StrCat("\n# c\n", hash, "\n"), "line 3"},
      {absl::StrCat(hash, " a b\n"), "line 1"},
      {absl::StrCat(hash, " a,,b\n"), "line 1"},
      {absl::StrCat(hash, " /\n"), "line 1"},
      {absl::StrCat(hash.substr(1), " a\n"), "line 1"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::unique_ptr<Authorizer>> auth = Authorizer::Parse(c.text);
    ASSERT_FALSE(auth.ok()) << c.text;
    EXPECT_EQ(auth.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(auth.status().message().find(c.line), absl::string_view::npos)
        << auth.status();
    EXPECT_EQ(auth.status().message().find("plain-token"), absl::string_view::npos);
  }
  EXPECT_TRUE(Authorizer::Parse("").ok());
  EXPECT_TRUE(Authorizer::Parse(absl::StrCat(hash, "\ta\r\n")).ok());
}

TEST(AuthorizerTest, UnreadableFileNamesTheFlag) {
  absl::StatusOr<std::unique_ptr<Authorizer>> auth =
      Authorizer::LoadFile("/nonexistent/auth");
  ASSERT_FALSE(auth.ok());
  EXPECT_NE(auth.status().message().find("--auth_file"), absl::string_view::npos);
}

}  // namespace
}  // namespace idem
