#include "server/flag_env.h"

#include <cstdlib>

#include <glog/logging.h>

namespace idem {

void InitLogging(const char* argv0) {
  if (std::getenv("GLOG_logtostderr") == nullptr &&
      std::getenv("GLOG_log_dir") == nullptr) {
    FLAGS_logtostderr = true;
  }
  google::InitGoogleLogging(argv0);
}

std::string PostgresUrlOrEnv(const std::string& flag_value) {
  if (!flag_value.empty()) return flag_value;
  const char* env = std::getenv("IDEM_POSTGRES_URL");
  return env == nullptr ? "" : env;
}

}  // namespace idem
