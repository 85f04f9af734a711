#include "server/flag_env.h"

#include <cstdlib>
#include <regex>
#include <vector>

#include <glog/logging.h>

#include "absl/algorithm/container.h"
#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"

namespace idem {

namespace {

// Abseil reports a flag's file with leading slashes stripped.
absl::string_view WithoutLeadingSlashes(absl::string_view path) {
  while (absl::ConsumePrefix(&path, "/")) {
  }
  return path;
}

std::vector<absl::CommandLineFlag*> FlagsOf(absl::string_view defining_file) {
  std::vector<absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (WithoutLeadingSlashes(flag->Filename()) == WithoutLeadingSlashes(defining_file)) {
      flags.push_back(flag);
    }
  }
  absl::c_sort(flags, [](const absl::CommandLineFlag* a, const absl::CommandLineFlag* b) {
    return a->Name() < b->Name();
  });
  return flags;
}

}  // namespace

std::string FlagEnvName(absl::string_view flag_name) {
  // The database URL's variable keeps its documented, self-explaining name.
  if (flag_name == "postgres") return "IDEM_POSTGRES_URL";
  return absl::StrCat("IDEM_", absl::AsciiStrToUpper(flag_name));
}

absl::Status ApplyFlagsFromEnv(absl::string_view defining_file) {
  for (absl::CommandLineFlag* flag : FlagsOf(defining_file)) {
    const std::string env = FlagEnvName(flag->Name());
    const char* value = std::getenv(env.c_str());
    if (value == nullptr) continue;
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      return absl::InvalidArgumentError(
          absl::StrCat("environment variable ", env, ": ", error));
    }
  }
  return absl::OkStatus();
}

std::string DescribeFlags(absl::string_view defining_file) {
  std::vector<std::string> parts;
  for (const absl::CommandLineFlag* flag : FlagsOf(defining_file)) {
    parts.push_back(absl::StrCat(flag->Name(), "=", MaskSecrets(flag->CurrentValue())));
  }
  return absl::StrJoin(parts, " ");
}

std::string MaskSecrets(absl::string_view value) {
  // scheme://user:PASSWORD@host, password=PASSWORD (key=value or ?query).
  static const auto* const kUrlPassword =
      new std::regex(R"(([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@?\s]*:)[^@\s]*@)");
  static const auto* const kPasswordSetting =
      new std::regex(R"((\bpassword\s*=\s*)('[^']*'|[^&\s]*))", std::regex::icase);
  std::string out = std::regex_replace(std::string(value), *kUrlPassword, "$1***@");
  return std::regex_replace(out, *kPasswordSetting, "$1***");
}

void InitLogging(const char* argv0) {
  if (std::getenv("GLOG_logtostderr") == nullptr &&
      std::getenv("GLOG_log_dir") == nullptr) {
    FLAGS_logtostderr = true;
  }
  google::InitGoogleLogging(argv0);
}

}  // namespace idem
