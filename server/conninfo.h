// Safe defaults for a libpq connection string.
#ifndef IDEM_SERVER_CONNINFO_H_
#define IDEM_SERVER_CONNINFO_H_

#include <string>

#include "absl/strings/string_view.h"

namespace idem {

// Returns `url` (a postgres:// URI or a key=value string) with the settings
// below added where it does not set them itself. Without them, libpq waits
// forever to connect, and a request on a silently dead TCP peer blocks for
// many minutes: a network partition would hang idemd's workers.
//   connect_timeout=5 keepalives=1 keepalives_idle=10 keepalives_interval=5
//   keepalives_count=3 tcp_user_timeout=20000
std::string WithConnectionDefaults(absl::string_view url);

}  // namespace idem

#endif  // IDEM_SERVER_CONNINFO_H_
