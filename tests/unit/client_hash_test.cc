#include <gtest/gtest.h>

#include "absl/strings/escaping.h"
#include "idem/client.h"

namespace idem {
namespace {

TEST(RequestHashTest, IsSha256) {
  // FIPS 180-2 test vectors.
  EXPECT_EQ(absl::BytesToHexString(Client::RequestHash("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(absl::BytesToHexString(Client::RequestHash("")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

}  // namespace
}  // namespace idem
