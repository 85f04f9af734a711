#include "server/conninfo.h"

#include <gtest/gtest.h>

namespace idem {
namespace {

constexpr char kAllDefaults[] =
    "connect_timeout=5&keepalives=1&keepalives_idle=10&keepalives_interval=5&"
    "keepalives_count=3&tcp_user_timeout=20000";

TEST(WithConnectionDefaultsTest, AddsToAUriWithoutQuery) {
  EXPECT_EQ(WithConnectionDefaults("postgresql://u@db:5432/idem"),
            std::string("postgresql://u@db:5432/idem?") + kAllDefaults);
}

TEST(WithConnectionDefaultsTest, AddsToAUriWithQueryAndKeepsItsOwnSettings) {
  EXPECT_EQ(WithConnectionDefaults(
                "postgres:///idem?host=/tmp/s&connect_timeout=1&keepalives_count=9"),
            "postgres:///idem?host=/tmp/s&connect_timeout=1&keepalives_count=9"
            "&keepalives=1&keepalives_idle=10&keepalives_interval=5"
            "&tcp_user_timeout=20000");
}

TEST(WithConnectionDefaultsTest, AddsToAKeyValueString) {
  EXPECT_EQ(WithConnectionDefaults("host=db dbname=idem connect_timeout = 2"),
            "host=db dbname=idem connect_timeout = 2 keepalives=1 "
            "keepalives_idle=10 keepalives_interval=5 keepalives_count=3 "
            "tcp_user_timeout=20000");
}

TEST(WithConnectionDefaultsTest, AKeyInsideAnotherIsNotASetting) {
  // "keepalives" occurs inside "keepalives_idle": it is still added.
  const std::string out = WithConnectionDefaults("host=db keepalives_idle=30");
  EXPECT_NE(out.find(" keepalives=1"), std::string::npos) << out;
  EXPECT_EQ(out.find("keepalives_idle=10"), std::string::npos) << out;
}

}  // namespace
}  // namespace idem
