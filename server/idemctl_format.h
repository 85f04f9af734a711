// idemctl's output: the human format and the --json format of each command.
// Pure functions from results to text; idemctl_main.cc prints them.
//
// Human output never holds a whole response: a short escaped preview and
// the size. JSON output is one object (or array) per command; records are
// protobuf's JSON mapping of idem.v1.Record with the proto's field names
// (bytes in base64, int64 as strings, every field present), wrapped with
// what an operator needs besides: {"record": {...}, "expired": false,
// "lease_ran_out": false, "response_size": 4, "db_now": "..."}.
//
// Thread safety: stateless.
#ifndef IDEM_SERVER_IDEMCTL_FORMAT_H_
#define IDEM_SERVER_IDEMCTL_FORMAT_H_

#include <cstddef>
#include <string>
#include <vector>

#include <google/protobuf/struct.pb.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/admin_store.h"
#include "server/migrator.h"

namespace idem::ctl {

// "2m5s", "450ms": a duration rounded for people.
std::string FormatAge(absl::Duration d);
// At most `max_bytes` of `bytes`, C-escaped and quoted, then how many bytes
// were left out.
std::string Preview(absl::string_view bytes, size_t max_bytes);

std::string RecordText(const AdminRecord& r);
std::string ListText(const std::vector<AdminRecord>& records, int limit);
std::string ReleaseText(const ReleaseResult& r);
std::string PurgeText(const AdminRecord& r);
std::string StatsText(const AdminStats& s);
std::string SchemaText(const SchemaState& s);

google::protobuf::Value RecordJson(const AdminRecord& r);
google::protobuf::Value ListJson(const std::vector<AdminRecord>& records);
google::protobuf::Value ReleaseJson(const ReleaseResult& r);
google::protobuf::Value StatsJson(const AdminStats& s);
google::protobuf::Value SchemaJson(const SchemaState& s);
google::protobuf::Value MigrateJson(const std::vector<int>& applied);
// {"error": {"code": "NOT_FOUND", "message": "..."}}
google::protobuf::Value ErrorJson(const absl::Status& status);
// {"address": ..., "status": "SERVING"} plus "error" when the call failed.
google::protobuf::Value HealthJson(absl::string_view address,
                                   absl::string_view serving_status,
                                   const absl::Status& call_status);

// One line of compact JSON.
std::string ToJson(const google::protobuf::Value& value);

}  // namespace idem::ctl

#endif  // IDEM_SERVER_IDEMCTL_FORMAT_H_
