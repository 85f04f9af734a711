#include "server/conninfo.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace idem {

namespace {

constexpr std::pair<const char*, const char*> kDefaults[] = {
    {"connect_timeout", "5"},     {"keepalives", "1"},
    {"keepalives_idle", "10"},    {"keepalives_interval", "5"},
    {"keepalives_count", "3"},    {"tcp_user_timeout", "20000"},
};

// Whether `conninfo` sets `key` (as "key=" in a URI query, or "key =" /
// "key=" in a key=value string).
bool Sets(absl::string_view conninfo, absl::string_view key) {
  size_t pos = 0;
  while ((pos = conninfo.find(key, pos)) != absl::string_view::npos) {
    const bool starts_word = pos == 0 || conninfo[pos - 1] == '?' ||
                             conninfo[pos - 1] == '&' || conninfo[pos - 1] == ' ';
    size_t after = pos + key.size();
    while (after < conninfo.size() && conninfo[after] == ' ') ++after;
    if (starts_word && after < conninfo.size() && conninfo[after] == '=') return true;
    pos += key.size();
  }
  return false;
}

}  // namespace

std::string WithConnectionDefaults(absl::string_view url) {
  const bool is_uri = absl::StartsWith(url, "postgresql://") ||
                      absl::StartsWith(url, "postgres://");
  std::string out(url);
  for (const auto& [key, value] : kDefaults) {
    if (Sets(url, key)) continue;
    if (is_uri) {
      absl::StrAppend(&out, out.find('?') == std::string::npos ? "?" : "&", key, "=",
                      value);
    } else {
      absl::StrAppend(&out, out.empty() ? "" : " ", key, "=", value);
    }
  }
  return out;
}

}  // namespace idem
