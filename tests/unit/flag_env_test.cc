#include "server/flag_env.h"

#include <cstdlib>

#include <gtest/gtest.h>

#include "absl/flags/flag.h"
#include "absl/time/time.h"

ABSL_FLAG(int, idem_test_pool_size, 8, "a flag of this file, for the tests");
ABSL_FLAG(absl::Duration, idem_test_interval, absl::Seconds(1), "another");
ABSL_FLAG(std::string, idem_test_url, "", "a URL with a password");

namespace idem {
namespace {

TEST(FlagEnvNameTest, CapitalsWithPrefix) {
  EXPECT_EQ(FlagEnvName("pool_size"), "IDEM_POOL_SIZE");
  EXPECT_EQ(FlagEnvName("metrics_listen"), "IDEM_METRICS_LISTEN");
  EXPECT_EQ(FlagEnvName("postgres"), "IDEM_POSTGRES_URL");
}

TEST(ApplyFlagsFromEnvTest, SetsThisFilesFlagsFromTheEnvironment) {
  setenv("IDEM_IDEM_TEST_POOL_SIZE", "32", 1);
  setenv("IDEM_IDEM_TEST_INTERVAL", "250ms", 1);
  ASSERT_TRUE(ApplyFlagsFromEnv(__FILE__).ok());
  EXPECT_EQ(absl::GetFlag(FLAGS_idem_test_pool_size), 32);
  EXPECT_EQ(absl::GetFlag(FLAGS_idem_test_interval), absl::Milliseconds(250));
  // Flags of other files are left alone.
  EXPECT_TRUE(ApplyFlagsFromEnv("no/such/file.cc").ok());
  unsetenv("IDEM_IDEM_TEST_POOL_SIZE");
  unsetenv("IDEM_IDEM_TEST_INTERVAL");
}

TEST(ApplyFlagsFromEnvTest, UnparsableValueNamesTheVariable) {
  setenv("IDEM_IDEM_TEST_POOL_SIZE", "lots", 1);
  const absl::Status s = ApplyFlagsFromEnv(__FILE__);
  unsetenv("IDEM_IDEM_TEST_POOL_SIZE");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("IDEM_IDEM_TEST_POOL_SIZE"), absl::string_view::npos) << s;
}

TEST(DescribeFlagsTest, ListsThisFilesFlagsWithSecretsMasked) {
  absl::SetFlag(&FLAGS_idem_test_url, "postgresql://idem:hunter2@db:5432/idem");
  const std::string described = DescribeFlags(__FILE__);
  EXPECT_NE(described.find("idem_test_pool_size="), std::string::npos) << described;
  EXPECT_NE(described.find("idem_test_url=postgresql://idem:***@db:5432/idem"),
            std::string::npos)
      << described;
  EXPECT_EQ(described.find("hunter2"), std::string::npos) << described;
}

TEST(MaskSecretsTest, MasksEveryFormOfPassword) {
  EXPECT_EQ(MaskSecrets("postgresql://u:p%40ss@h/db"), "postgresql://u:***@h/db");
  EXPECT_EQ(MaskSecrets("postgres://u@h/db?password=s3cret&sslmode=require"),
            "postgres://u@h/db?password=***&sslmode=require");
  EXPECT_EQ(MaskSecrets("host=h user=u password='a b' dbname=idem"),
            "host=h user=u password=*** dbname=idem");
  EXPECT_EQ(MaskSecrets("host=h PASSWORD = x"), "host=h PASSWORD = ***");
  EXPECT_EQ(MaskSecrets("postgresql://u@h/db"), "postgresql://u@h/db");
  EXPECT_EQ(MaskSecrets("127.0.0.1:50051"), "127.0.0.1:50051");
}

}  // namespace
}  // namespace idem
