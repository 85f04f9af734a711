// Shared by idemd and idemctl: glog set-up and the PostgreSQL URL fallback.
//
// Plan for flags: idem's binaries parse Abseil flags only. glog (built with
// gflags on Debian) is configured through its GLOG_* environment variables
// (GLOG_v=1, GLOG_minloglevel=1, ...), never on the command line, because
// absl::ParseCommandLine rejects flags it does not know.
#ifndef IDEM_SERVER_FLAG_ENV_H_
#define IDEM_SERVER_FLAG_ENV_H_

#include <string>

namespace idem {

// Starts glog; logs go to stderr unless GLOG_logtostderr or GLOG_log_dir is
// set.
void InitLogging(const char* argv0);

// `flag_value` when set, else $IDEM_POSTGRES_URL, else "".
std::string PostgresUrlOrEnv(const std::string& flag_value);

}  // namespace idem

#endif  // IDEM_SERVER_FLAG_ENV_H_
