#include "server/record_row.h"

#include <string>

#include <google/protobuf/util/json_util.h>
#include <pqxx/binarystring>
#include <pqxx/field>

#include "server/proto_time.h"

namespace idem {

using idem::v1::Record;

namespace {

// Sets the timestamp only for a non-NULL column, so NULL stays unset.
template <typename MutableTimestamp>
void SetTimestampColumn(const pqxx::field& f, MutableTimestamp mutable_timestamp) {
  if (!f.is_null()) SetTimestampFromUnixMicros(f.as<int64_t>(), mutable_timestamp());
}

}  // namespace

Record::Status StatusFromColumn(const std::string& s) {
  if (s == "in_progress") return Record::IN_PROGRESS;
  if (s == "completed") return Record::COMPLETED;
  if (s == "failed") return Record::FAILED;
  return Record::STATUS_UNSPECIFIED;
}

RecordRow ParseRecordRow(const pqxx::row& row, int first_column) {
  RecordRow out;
  Record& r = out.record;
  const auto col = [&row, first_column](int i) { return row[first_column + i]; };
  r.set_scope(col(0).c_str());
  r.set_key(col(1).c_str());
  r.set_request_hash(pqxx::binarystring(col(2)).str());
  r.set_status(StatusFromColumn(col(3).c_str()));
  r.set_response(pqxx::binarystring(col(4)).str());
  r.set_response_code(col(5).as<int32_t>());
  Record metadata;
  if (google::protobuf::util::JsonStringToMessage(col(6).c_str(), &metadata).ok()) {
    r.mutable_response_metadata()->swap(*metadata.mutable_response_metadata());
  }
  r.set_error(col(7).c_str());
  r.set_retryable(col(8).as<bool>());
  r.set_lease_token(col(9).as<int64_t>());
  r.set_attempt(col(10).as<int32_t>());
  SetTimestampColumn(col(11), [&r] { return r.mutable_created_at(); });
  SetTimestampColumn(col(12), [&r] { return r.mutable_updated_at(); });
  SetTimestampColumn(col(13), [&r] { return r.mutable_locked_until(); });
  SetTimestampColumn(col(14), [&r] { return r.mutable_expires_at(); });
  out.db_now = absl::FromUnixMicros(col(15).as<int64_t>());
  r.set_owner(col(16).c_str());
  return out;
}

}  // namespace idem
