#include "server/idemctl_format.h"

#include <algorithm>
#include <utility>

#include <google/protobuf/util/json_util.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "server/proto_time.h"

namespace idem::ctl {

using google::protobuf::Value;
using idem::v1::Record;

namespace {

constexpr size_t kPreviewBytes = 80;

std::string UtcTime(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

std::string TimeField(const google::protobuf::Timestamp& ts) {
  return UtcTime(FromProtoTimestamp(ts));
}

// "(5m ago)" or "(in 5m)" relative to the database's clock.
std::string Relative(absl::Time t, absl::Time now) {
  return t <= now ? absl::StrCat("(", FormatAge(now - t), " ago)")
                  : absl::StrCat("(in ", FormatAge(t - now), ")");
}

std::string Quoted(absl::string_view s) { return absl::StrCat("'", absl::CHexEscape(s), "'"); }

Value Str(absl::string_view s) {
  Value v;
  v.set_string_value(std::string(s));
  return v;
}
Value Num(double n) {
  Value v;
  v.set_number_value(n);
  return v;
}
Value Bool(bool b) {
  Value v;
  v.set_bool_value(b);
  return v;
}
Value Null() {
  Value v;
  v.set_null_value(google::protobuf::NULL_VALUE);
  return v;
}
google::protobuf::Struct& Obj(Value& v) { return *v.mutable_struct_value(); }
void Put(Value& object, const std::string& name, Value field) {
  (*Obj(object).mutable_fields())[name] = std::move(field);
}

}  // namespace

std::string FormatAge(absl::Duration d) {
  if (d < absl::ZeroDuration()) d = -d;
  if (d < absl::Seconds(1)) return absl::StrCat(absl::ToInt64Milliseconds(d), "ms");
  return absl::FormatDuration(absl::Trunc(d, absl::Seconds(1)));
}

std::string Preview(absl::string_view bytes, size_t max_bytes) {
  const absl::string_view head = bytes.substr(0, std::min(bytes.size(), max_bytes));
  std::string out = absl::StrCat("\"", absl::CHexEscape(head), "\"");
  if (head.size() < bytes.size()) {
    absl::StrAppend(&out, "... (", bytes.size() - head.size(), " more bytes)");
  }
  return out;
}

std::string RecordText(const AdminRecord& a) {
  const Record& r = a.record;
  std::string out;
  const auto line = [&out](absl::string_view name, absl::string_view value) {
    absl::StrAppend(&out, absl::StrFormat("%-14s%s\n", absl::StrCat(name, ":"), value));
  };
  line("scope", r.scope());
  line("key", absl::CHexEscape(r.key()));
  std::string status = Record::Status_Name(r.status());
  if (a.expired) {
    absl::StrAppend(&status, " (EXPIRED: unknown to every RPC; the sweeper will delete it)");
  } else if (a.lease_ran_out) {
    absl::StrAppend(&status, " (lease ran out: the next Begin takes over)");
  } else if (r.status() == Record::IN_PROGRESS) {
    absl::StrAppend(&status, " (lease live)");
  }
  line("status", status);
  line("attempt", absl::StrCat(r.attempt()));
  line("lease token", absl::StrCat(r.lease_token()));
  line("owner", r.owner().empty() ? "(none)" : Quoted(r.owner()));
  line("request hash", absl::BytesToHexString(r.request_hash()));
  line("created", absl::StrCat(TimeField(r.created_at()), " ",
                               Relative(FromProtoTimestamp(r.created_at()), a.db_now)));
  line("updated", absl::StrCat(TimeField(r.updated_at()), " ",
                               Relative(FromProtoTimestamp(r.updated_at()), a.db_now)));
  if (r.has_locked_until()) {
    line("locked until",
         absl::StrCat(TimeField(r.locked_until()), " ",
                      Relative(FromProtoTimestamp(r.locked_until()), a.db_now)));
  }
  line("expires", absl::StrCat(TimeField(r.expires_at()), " ",
                               Relative(FromProtoTimestamp(r.expires_at()), a.db_now),
                               a.expired ? " EXPIRED" : ""));
  if (r.status() != Record::IN_PROGRESS || !r.response().empty()) {
    line("response", absl::StrCat(r.response().size(), " bytes, code ", r.response_code(),
                                  r.response().empty() ? "" : ": ",
                                  r.response().empty() ? "" : Preview(r.response(), kPreviewBytes)));
  }
  if (!r.response_metadata().empty()) {
    std::vector<std::pair<std::string, std::string>> sorted(r.response_metadata().begin(),
                                                            r.response_metadata().end());
    std::sort(sorted.begin(), sorted.end());
    std::vector<std::string> items;
    for (const auto& [name, value] : sorted) {
      items.push_back(absl::StrCat(name, "=", Preview(value, kPreviewBytes)));
    }
    line("metadata", absl::StrJoin(items, ", "));
  }
  if (r.status() == Record::FAILED) {
    line("error", absl::StrCat(Preview(r.error(), 200),
                               r.retryable() ? " (retryable)" : " (not retryable)"));
  }
  return out;
}

std::string ListText(const std::vector<AdminRecord>& records, int limit) {
  std::string out = absl::StrFormat("%-24s %-10s %-11s %7s  %s\n", "CREATED (UTC)", "AGE",
                                    "STATUS", "ATTEMPT", "SCOPE KEY [NOTE]");
  for (const AdminRecord& a : records) {
    const Record& r = a.record;
    std::string note;
    if (a.expired) {
      note = " [expired]";
    } else if (a.lease_ran_out) {
      note = " [lease ran out]";
    }
    absl::StrAppend(
        &out, absl::StrFormat("%-24s %-10s %-11s %7d  %s %s%s\n", TimeField(r.created_at()),
                              FormatAge(a.db_now - FromProtoTimestamp(r.created_at())),
                              Record::Status_Name(r.status()), r.attempt(), r.scope(),
                              absl::CHexEscape(r.key()), note));
  }
  absl::StrAppend(&out, records.size(), " record(s), oldest created first",
                  static_cast<int>(records.size()) >= limit
                      ? absl::StrCat("; stopped at --limit=", limit)
                      : "",
                  "\n");
  return out;
}

std::string ReleaseText(const ReleaseResult& result) {
  const Record& r = result.record.record;
  if (result.already_free) {
    return absl::StrCat("scope '", r.scope(), "' key '", absl::CHexEscape(r.key()),
                        "': its lease had already run out at ", TimeField(r.locked_until()),
                        "; nothing to do, the next Begin takes over (as attempt ",
                        r.attempt() + 1, ")\n");
  }
  return absl::StrCat("released scope '", r.scope(), "' key '", absl::CHexEscape(r.key()),
                      "' (attempt ", r.attempt(), ", lease token ", r.lease_token(),
                      r.owner().empty() ? "" : absl::StrCat(", owner ", Quoted(r.owner())),
                      "): the next Begin takes over as attempt ", r.attempt() + 1,
                      "; waiting Begins were woken. The old holder's Complete or Fail "
                      "succeeds only until then.\n");
}

std::string PurgeText(const AdminRecord& a) {
  const Record& r = a.record;
  return absl::StrCat("purged scope '", r.scope(), "' key '", absl::CHexEscape(r.key()),
                      "' (was ", Record::Status_Name(r.status()),
                      a.expired ? ", expired" : "", ", attempt ", r.attempt(),
                      "): the next Begin starts afresh\n");
}

std::string StatsText(const AdminStats& s) {
  std::string out;
  const auto line = [&out](absl::string_view name, absl::string_view value) {
    absl::StrAppend(&out, absl::StrFormat("%-22s%s\n", absl::StrCat(name, ":"), value));
  };
  line("rows", absl::StrCat(s.total_rows, " (", s.in_progress + s.completed + s.failed,
                            " live, ", s.expired_not_swept, " expired not yet swept)"));
  line("in progress", absl::StrCat(s.in_progress, " (", s.in_progress_past_lease,
                                   " past their lease)"));
  line("completed", absl::StrCat(s.completed));
  line("failed", absl::StrCat(s.failed));
  if (s.oldest_in_progress.has_value()) {
    const Record& r = s.oldest_in_progress->record;
    line("oldest in progress",
         absl::StrCat(FormatAge(s.db_now - FromProtoTimestamp(r.created_at())), " old: scope '",
                      r.scope(), "' key '", absl::CHexEscape(r.key()), "' (attempt ",
                      r.attempt(),
                      s.oldest_in_progress->lease_ran_out ? ", lease ran out)" : ", lease live)"));
  } else {
    line("oldest in progress", "none");
  }
  if (s.oldest_expired_at.has_value()) {
    line("oldest expired", absl::StrCat("expired ", FormatAge(s.db_now - *s.oldest_expired_at),
                                        " ago (sweeper lag)"));
  } else {
    line("oldest expired", "none");
  }
  return out;
}

std::string SchemaText(const SchemaState& s) {
  std::string out = absl::StrFormat("schema version: %d\nlatest known:   %d\n",
                                    s.current_version, s.latest_version);
  for (const Migration& m : s.pending) absl::StrAppend(&out, "pending:        ", m.name, "\n");
  if (s.pending.empty()) absl::StrAppend(&out, "up to date\n");
  return out;
}

Value RecordJson(const AdminRecord& a) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string record_json;
  Value record;
  // Neither can fail for a Record of valid UTF-8 strings (checked by idemd's
  // validation); a failure leaves "record" null rather than a broken object.
  if (!google::protobuf::util::MessageToJsonString(a.record, &record_json, options).ok() ||
      !google::protobuf::util::JsonStringToMessage(record_json, &record).ok()) {
    record = Null();
  }
  Value out;
  Put(out, "record", std::move(record));
  Put(out, "expired", Bool(a.expired));
  Put(out, "lease_ran_out", Bool(a.lease_ran_out));
  Put(out, "response_size", Num(static_cast<double>(a.record.response().size())));
  Put(out, "db_now", Str(UtcTime(a.db_now)));
  return out;
}

Value ListJson(const std::vector<AdminRecord>& records) {
  Value out;
  auto* list = out.mutable_list_value();
  for (const AdminRecord& a : records) *list->add_values() = RecordJson(a);
  return out;
}

Value ReleaseJson(const ReleaseResult& r) {
  Value out = RecordJson(r.record);
  Put(out, "released", Bool(!r.already_free));
  Put(out, "already_free", Bool(r.already_free));
  return out;
}

Value StatsJson(const AdminStats& s) {
  Value out;
  Put(out, "db_now", Str(UtcTime(s.db_now)));
  Put(out, "total_rows", Num(s.total_rows));
  Put(out, "in_progress", Num(s.in_progress));
  Put(out, "completed", Num(s.completed));
  Put(out, "failed", Num(s.failed));
  Put(out, "in_progress_past_lease", Num(s.in_progress_past_lease));
  Put(out, "expired_not_swept", Num(s.expired_not_swept));
  if (s.oldest_in_progress.has_value()) {
    const AdminRecord& a = *s.oldest_in_progress;
    Value oldest;
    Put(oldest, "scope", Str(a.record.scope()));
    Put(oldest, "key", Str(a.record.key()));
    Put(oldest, "created_at", Str(TimeField(a.record.created_at())));
    Put(oldest, "age_seconds",
        Num(absl::ToDoubleSeconds(s.db_now - FromProtoTimestamp(a.record.created_at()))));
    Put(oldest, "lease_ran_out", Bool(a.lease_ran_out));
    Put(out, "oldest_in_progress", std::move(oldest));
  } else {
    Put(out, "oldest_in_progress", Null());
  }
  Put(out, "oldest_expired_age_seconds",
      s.oldest_expired_at.has_value()
          ? Num(absl::ToDoubleSeconds(s.db_now - *s.oldest_expired_at))
          : Null());
  return out;
}

Value SchemaJson(const SchemaState& s) {
  Value out;
  Put(out, "schema_version", Num(s.current_version));
  Put(out, "latest_version", Num(s.latest_version));
  Value pending;
  pending.mutable_list_value();
  for (const Migration& m : s.pending) *pending.mutable_list_value()->add_values() = Str(m.name);
  Put(out, "pending", std::move(pending));
  Put(out, "up_to_date", Bool(s.pending.empty()));
  return out;
}

Value MigrateJson(const std::vector<int>& applied) {
  Value out;
  Value versions;
  versions.mutable_list_value();
  for (int v : applied) *versions.mutable_list_value()->add_values() = Num(v);
  Put(out, "applied", std::move(versions));
  return out;
}

Value ErrorJson(const absl::Status& status) {
  Value error;
  Put(error, "code", Str(absl::StatusCodeToString(status.code())));
  Put(error, "message", Str(status.message()));
  Value out;
  Put(out, "error", std::move(error));
  return out;
}

Value HealthJson(absl::string_view address, absl::string_view serving_status,
                 const absl::Status& call_status) {
  Value out = call_status.ok() ? Value() : ErrorJson(call_status);
  Put(out, "address", Str(address));
  Put(out, "status", Str(serving_status));
  return out;
}

std::string ToJson(const Value& value) {
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(value, &json).ok()) {
    return "{\"error\":{\"code\":\"INTERNAL\",\"message\":\"cannot print JSON\"}}";
  }
  return json;
}

}  // namespace idem::ctl
