// Shared by idemd and idemctl: flags from the environment, the printed
// configuration, and glog set-up.
//
// Plan for flags: idem's binaries parse Abseil flags only. glog (built with
// gflags on Debian) is configured through its GLOG_* environment variables
// (GLOG_v=1, GLOG_minloglevel=1, ...), never on the command line, because
// absl::ParseCommandLine rejects flags it does not know.
//
// Every flag a binary defines can also be set as IDEM_<NAME IN CAPITALS>
// (--pool_size as IDEM_POOL_SIZE; --postgres as IDEM_POSTGRES_URL); the
// command line wins over the environment.
//
// Example (a main):
//   ABSL_FLAG(int, pool_size, 8, "...");
//   int main(int argc, char** argv) {
//     if (absl::Status s = idem::ApplyFlagsFromEnv(__FILE__); !s.ok()) ...
//     absl::ParseCommandLine(argc, argv);
//     LOG(INFO) << idem::DescribeFlags(__FILE__);
#ifndef IDEM_SERVER_FLAG_ENV_H_
#define IDEM_SERVER_FLAG_ENV_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace idem {

// The environment variable of flag `name`: "IDEM_" + name in capitals,
// except --postgres, whose variable is IDEM_POSTGRES_URL.
std::string FlagEnvName(absl::string_view flag_name);

// Sets each flag defined in `defining_file` (pass __FILE__ from the file
// with the ABSL_FLAGs) from its environment variable, when set. Call before
// absl::ParseCommandLine. INVALID_ARGUMENT naming the variable when a value
// does not parse.
absl::Status ApplyFlagsFromEnv(absl::string_view defining_file);

// "name=value" for each flag defined in `defining_file`, sorted, with
// passwords in URLs and key=value strings masked.
std::string DescribeFlags(absl::string_view defining_file);

// `value` with the password of a libpq URL or connection string (and any
// ?password=...) replaced by "***".
std::string MaskSecrets(absl::string_view value);

// Starts glog; logs go to stderr unless GLOG_logtostderr or GLOG_log_dir is
// set.
void InitLogging(const char* argv0);

}  // namespace idem

#endif  // IDEM_SERVER_FLAG_ENV_H_
