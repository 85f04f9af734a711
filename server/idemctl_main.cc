// idemctl: administration of an idem database, and idemd's health check.
// Argument handling and printing only: the database work is in
// admin_store.h and migrator.h, the output formats in idemctl_format.h.
//
// Exit codes: 0 ok; 1 operational failure (database unreachable, NOT_SERVING,
// a refused release, ...); 2 usage error; 3 not found.
#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "server/admin_store.h"
#include "server/flag_env.h"
#include "server/idemctl_format.h"
#include "server/migration_list.h"
#include "server/migrator.h"

ABSL_FLAG(std::string, postgres, "",
          "PostgreSQL libpq URL (also $IDEM_POSTGRES_URL)");
ABSL_FLAG(bool, json, false, "print one JSON object (or array) instead of text");
ABSL_FLAG(std::string, scope, "", "list: records whose scope starts with this");
ABSL_FLAG(std::string, status, "",
          "list: only records in this status (in_progress, completed, failed)");
ABSL_FLAG(absl::Duration, older_than, absl::ZeroDuration(),
          "list: only records created at least this long ago (e.g. 10m)");
ABSL_FLAG(int, limit, 100, "list: at most this many records (1-10000)");
ABSL_FLAG(bool, yes, false, "purge: confirm the deletion");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(2), "health: the call's deadline");

namespace {

constexpr char kUsage[] =
    "idemctl: administration of an idem database.\n"
    "  idemctl migrate            apply pending schema migrations\n"
    "  idemctl status             schema version and pending migrations\n"
    "  idemctl get SCOPE KEY      one record (expired ones too, marked)\n"
    "  idemctl list --scope=PREFIX [--status=in_progress|completed|failed]\n"
    "               [--older_than=10m] [--limit=100]   oldest created first\n"
    "  idemctl release SCOPE KEY  end an in-progress key's lease now\n"
    "  idemctl purge SCOPE KEY --yes   delete a record\n"
    "  idemctl stats              counts by status, oldest in progress, expired\n"
    "  idemctl health ADDR [--timeout=2s]   gRPC health check of an idemd\n"
    "Database commands take --postgres=URL (or $IDEM_POSTGRES_URL); every\n"
    "command takes --json. Flags may be spelled with - or _ (--older-than).\n"
    "Exit codes: 0 ok, 1 failure, 2 usage error, 3 not found.";

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
constexpr int kExitNotFound = 3;

int ExitCode(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return kExitOk;
    case absl::StatusCode::kInvalidArgument:
      return kExitUsage;
    case absl::StatusCode::kNotFound:
      return kExitNotFound;
    default:
      return kExitFailure;
  }
}

void PrintJson(const google::protobuf::Value& value) {
  std::printf("%s\n", idem::ctl::ToJson(value).c_str());
}

// The message on stderr; with --json also {"error": ...} on stdout.
int Fail(const absl::Status& status) {
  std::fprintf(stderr, "idemctl: %s\n", std::string(status.message()).c_str());
  if (absl::GetFlag(FLAGS_json)) PrintJson(idem::ctl::ErrorJson(status));
  return ExitCode(status);
}

// With `full_usage` the whole usage text follows the message, else a hint.
int UsageError(const std::string& message, bool full_usage = false) {
  std::fprintf(stderr, "idemctl: %s\n%s\n", message.c_str(),
               full_usage ? kUsage : "(run idemctl without arguments for usage)");
  if (absl::GetFlag(FLAGS_json)) {
    PrintJson(idem::ctl::ErrorJson(absl::InvalidArgumentError(message)));
  }
  return kExitUsage;
}

// Prints `text`, or `json` with --json.
int Print(const std::string& text, const google::protobuf::Value& json) {
  if (absl::GetFlag(FLAGS_json)) {
    PrintJson(json);
  } else {
    std::fputs(text.c_str(), stdout);
  }
  return kExitOk;
}

// Abseil's parser exits with status 1 on an unknown flag or a bad value;
// idemctl promises 2 for usage errors, so it checks every flag first. It
// also turns dashes in flag names into underscores (--older-than).
absl::Status NormalizeAndCheckFlags(std::vector<std::string>& args) {
  static const std::set<std::string> kAbseilBuiltins = {
      "help", "helpfull", "helpshort", "helppackage", "version", "only_check_args",
      "flagfile", "fromenv", "tryfromenv", "undefok"};
  for (size_t i = 1; i < args.size(); ++i) {
    std::string& arg = args[i];
    if (arg == "--") break;
    if (!absl::StartsWith(arg, "-") || arg == "-") continue;
    const size_t dashes = absl::StartsWith(arg, "--") ? 2 : 1;
    const size_t eq = arg.find('=');
    std::string name = arg.substr(dashes, eq == std::string::npos ? std::string::npos
                                                                   : eq - dashes);
    for (char& c : name) {
      if (c == '-') c = '_';
    }
    arg = absl::StrCat(std::string(dashes, '-'), name,
                       eq == std::string::npos ? "" : arg.substr(eq));
    if (kAbseilBuiltins.count(name)) continue;
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    std::string value;
    if (flag == nullptr && absl::StartsWith(name, "no") && eq == std::string::npos) {
      flag = absl::FindCommandLineFlag(name.substr(2));
      if (flag == nullptr || !flag->IsOfType<bool>()) flag = nullptr;
      value = "false";
    } else if (flag != nullptr && eq != std::string::npos) {
      value = arg.substr(arg.find('=') + 1);
    } else if (flag != nullptr && flag->IsOfType<bool>()) {
      value = "true";
    } else if (flag != nullptr) {
      // "--limit 5": Abseil takes the next argument as the value.
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
      }
      value = args[++i];
    }
    if (flag == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad value for --", name, ": ", error));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> PostgresUrl() {
  std::string url = absl::GetFlag(FLAGS_postgres);
  if (url.empty()) {
    return absl::InvalidArgumentError(
        "no PostgreSQL URL: set --postgres or IDEM_POSTGRES_URL");
  }
  return url;
}

int Migrate(const std::string& url) {
  absl::StatusOr<std::vector<int>> applied =
      idem::Migrator(url, idem::EmbeddedMigrations()).Migrate();
  if (!applied.ok()) return Fail(applied.status());
  return Print(applied->empty()
                   ? "schema up to date; nothing to apply\n"
                   : absl::StrCat("applied migration(s): ", absl::StrJoin(*applied, ", "),
                                  "\n"),
               idem::ctl::MigrateJson(*applied));
}

int Status(const std::string& url) {
  absl::StatusOr<idem::SchemaState> state =
      idem::Migrator(url, idem::EmbeddedMigrations()).State();
  if (!state.ok()) return Fail(state.status());
  return Print(idem::ctl::SchemaText(*state), idem::ctl::SchemaJson(*state));
}

absl::StatusOr<idem::ListQuery> ListQueryFromFlags() {
  idem::ListQuery query;
  query.scope_prefix = absl::GetFlag(FLAGS_scope);
  const std::string status = absl::AsciiStrToLower(absl::GetFlag(FLAGS_status));
  if (status == "in_progress") {
    query.status = idem::v1::Record::IN_PROGRESS;
  } else if (status == "completed") {
    query.status = idem::v1::Record::COMPLETED;
  } else if (status == "failed") {
    query.status = idem::v1::Record::FAILED;
  } else if (!status.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--status must be in_progress, completed or failed, not '", status, "'"));
  }
  query.older_than = absl::GetFlag(FLAGS_older_than);
  if (query.older_than < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--older_than must not be negative");
  }
  query.limit = absl::GetFlag(FLAGS_limit);
  if (query.limit < 1 || query.limit > 10000) {
    return absl::InvalidArgumentError("--limit must be between 1 and 10000");
  }
  return query;
}

int Health(const std::string& address) {
  const absl::Duration timeout = absl::GetFlag(FLAGS_timeout);
  if (timeout <= absl::ZeroDuration()) return UsageError("--timeout must be positive");
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status call =
      stub->Check(&context, grpc::health::v1::HealthCheckRequest(), &response);
  if (!call.ok()) {
    const absl::Status status(static_cast<absl::StatusCode>(call.error_code()),
                              call.error_message());
    const std::string message =
        absl::StrCat(address, ": no answer (", absl::StatusCodeToString(status.code()),
                     ": ", status.message(), ")");
    std::fprintf(stderr, "idemctl: %s\n", message.c_str());
    if (absl::GetFlag(FLAGS_json)) {
      PrintJson(idem::ctl::HealthJson(address, "UNREACHABLE", status));
    } else {
      std::printf("UNREACHABLE\n");
    }
    return kExitFailure;
  }
  const std::string serving =
      grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status());
  Print(absl::StrCat(serving, "\n"),
        idem::ctl::HealthJson(address, serving, absl::OkStatus()));
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING
             ? kExitOk
             : kExitFailure;
}

struct Command {
  const char* name;
  // Positional arguments after the command's name.
  size_t args;
  const char* synopsis;
};

constexpr Command kCommands[] = {
    {"migrate", 0, "migrate"},          {"status", 0, "status"},
    {"get", 2, "get SCOPE KEY"},        {"list", 0, "list --scope=PREFIX ..."},
    {"release", 2, "release SCOPE KEY"}, {"purge", 2, "purge SCOPE KEY --yes"},
    {"stats", 0, "stats"},              {"health", 1, "health ADDR"},
};

int Run(const std::vector<char*>& args) {
  if (args.size() < 2) return UsageError("no command", /*full_usage=*/true);
  const std::string command = args[1];
  const Command* spec = nullptr;
  for (const Command& c : kCommands) {
    if (command == c.name) spec = &c;
  }
  if (spec == nullptr) {
    return UsageError(absl::StrCat("unknown command '", command, "'"), /*full_usage=*/true);
  }
  if (args.size() - 2 != spec->args) {
    return UsageError(absl::StrCat("usage: idemctl ", spec->synopsis));
  }
  if (command == "health") return Health(args[2]);

  // Check the flags before connecting, so a usage error is reported as one.
  absl::StatusOr<idem::ListQuery> query = ListQueryFromFlags();
  if (command == "list" && !query.ok()) return UsageError(std::string(query.status().message()));
  if (command == "purge" && !absl::GetFlag(FLAGS_yes)) {
    return UsageError(
        "purge deletes the record for good: a repeat of its request then runs the work "
        "again. Run again with --yes to confirm");
  }
  absl::StatusOr<std::string> url = PostgresUrl();
  if (!url.ok()) return UsageError(std::string(url.status().message()));
  if (command == "migrate") return Migrate(*url);
  if (command == "status") return Status(*url);

  const idem::AdminStore store(idem::AdminStore::Options{*url});
  if (command == "list") {
    absl::StatusOr<std::vector<idem::AdminRecord>> records = store.List(*query);
    if (!records.ok()) return Fail(records.status());
    return Print(idem::ctl::ListText(*records, query->limit), idem::ctl::ListJson(*records));
  }
  if (command == "stats") {
    absl::StatusOr<idem::AdminStats> stats = store.Stats();
    if (!stats.ok()) return Fail(stats.status());
    return Print(idem::ctl::StatsText(*stats), idem::ctl::StatsJson(*stats));
  }
  const std::string scope = args[2], key = args[3];
  if (command == "get") {
    absl::StatusOr<idem::AdminRecord> record = store.Get(scope, key);
    if (!record.ok()) return Fail(record.status());
    return Print(idem::ctl::RecordText(*record), idem::ctl::RecordJson(*record));
  }
  if (command == "release") {
    absl::StatusOr<idem::ReleaseResult> released = store.Release(scope, key);
    if (!released.ok()) return Fail(released.status());
    return Print(idem::ctl::ReleaseText(*released), idem::ctl::ReleaseJson(*released));
  }
  // purge
  absl::StatusOr<idem::AdminRecord> purged = store.Purge(scope, key);
  if (!purged.ok()) return Fail(purged.status());
  return Print(idem::ctl::PurgeText(*purged), idem::ctl::RecordJson(*purged));
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  // Environment first (IDEM_<FLAG>, e.g. IDEM_POSTGRES_URL), so the command
  // line wins.
  if (absl::Status from_env = idem::ApplyFlagsFromEnv(__FILE__); !from_env.ok()) {
    return UsageError(std::string(from_env.message()));
  }
  std::vector<std::string> arg_storage(argv, argv + argc);
  if (absl::Status flags = NormalizeAndCheckFlags(arg_storage); !flags.ok()) {
    return UsageError(std::string(flags.message()));
  }
  std::vector<char*> normalized;
  for (std::string& a : arg_storage) normalized.push_back(a.data());
  std::vector<char*> args =
      absl::ParseCommandLine(static_cast<int>(normalized.size()), normalized.data());
  idem::InitLogging(argv[0]);
  return Run(args);
}
