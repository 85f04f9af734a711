#include "client/error_text.h"

#include <string>

#include <gtest/gtest.h>

namespace idem {
namespace {

TEST(ToStorableErrorTest, KeepsValidUtf8) {
  EXPECT_EQ(ToStorableError("card declined"), "card declined");
  EXPECT_EQ(ToStorableError("\xC3\xA9t\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x92\xB3"),
            "\xC3\xA9t\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x92\xB3");
}

TEST(ToStorableErrorTest, ReplacesNulAndInvalidBytes) {
  EXPECT_EQ(ToStorableError(std::string("a\0b", 3)), "a?b");
  EXPECT_EQ(ToStorableError("\xFF\xC3"), "??");             // bad lead, cut sequence
  EXPECT_EQ(ToStorableError("\xC0\xAF"), "??");             // overlong
  EXPECT_EQ(ToStorableError("\xED\xA0\x80"), "???");        // surrogate
  EXPECT_EQ(ToStorableError("\xF4\x90\x80\x80"), "????");   // above U+10FFFF
}

TEST(ToStorableErrorTest, CutsAtACharacterBoundary) {
  const std::string euro = "\xE2\x82\xAC";
  std::string long_text;
  while (long_text.size() < kMaxErrorBytes + 10) long_text += euro;
  const std::string out = ToStorableError(long_text);
  EXPECT_LE(out.size(), kMaxErrorBytes);
  EXPECT_EQ(out.size() % 3, 0u);
  EXPECT_EQ(out, ToStorableError(out));
}

}  // namespace
}  // namespace idem
