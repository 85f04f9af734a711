#include "tests/chaos/chaos_checker.h"

#include <map>

#include <pqxx/pqxx>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tests/chaos/chaos_worker.h"

namespace idem::chaos {

namespace {

using idem::v1::Record;

struct EffectRow {
  int64_t id = 0;
  int64_t token = 0;
  int64_t token_seen = 0;
  bool lease_was_live = false;
  absl::Time written_at;
};

// The record of `key`, retried while idem is unreachable.
absl::StatusOr<Record> GetRecord(Client& client, const std::string& scope,
                                 const std::string& key) {
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  while (true) {
    absl::StatusOr<Record> record = client.Get(scope, key);
    if (record.ok() || record.status().code() != absl::StatusCode::kUnavailable ||
        absl::Now() > give_up) {
      return record;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
}

void CheckKey(int key, const std::vector<EffectRow>& effects, const Record* record,
              const ChaosJournal& journal, std::vector<std::string>* violations) {
  const std::string name = KeyName(key);
  auto violation = [&](const std::string& what) {
    violations->push_back(absl::StrCat(name, ": ", what));
  };
  // 1. Exactly once.
  if (effects.size() != 1) {
    violation(absl::StrCat(effects.size(), " effects, not exactly one"));
    if (effects.empty()) return;
  }
  const EffectRow& effect = effects.front();
  // 2. The fence.
  const std::vector<Acquisition> acquisitions = journal.Acquisitions(key);
  bool writer_found = false;
  for (const EffectRow& e : effects) {
    if (e.token_seen != e.token || !e.lease_was_live) {
      violation(absl::StrCat("effect ", e.id, " written under token ", e.token,
                             " while the record held token ", e.token_seen,
                             e.lease_was_live ? "" : " with its lease run out"));
    }
  }
  for (const Acquisition& a : acquisitions) {
    writer_found = writer_found || a.token == effect.token;
    if (a.token > effect.token && a.acquired_at < effect.written_at) {
      violation(absl::StrCat("lease ", a.token, " was handed out ",
                             absl::FormatDuration(effect.written_at - a.acquired_at),
                             " before effect ", effect.id, " of older lease ",
                             effect.token, " was written"));
    }
  }
  if (!writer_found) {
    violation(absl::StrCat("effect ", effect.id, " written under token ", effect.token,
                           ", which no worker was handed"));
  }
  // 3. Durability.
  const std::string expected = EffectResponse(effect.id);
  if (record == nullptr) return;  // Reported by the caller.
  if (record->status() != Record::COMPLETED || record->response() != expected) {
    violation(absl::StrCat("record is ", Record::Status_Name(record->status()),
                           " with response '", record->response(), "', expected '",
                           expected, "'"));
  }
  // 4. Every COMPLETED answer agrees with the record.
  for (const CompletedAnswer& answer : journal.Answers(key)) {
    if (answer.response != record->response() || answer.token != record->lease_token()) {
      violation(absl::StrCat(answer.acknowledged ? "acknowledged Complete" : "replay",
                             " answered token ", answer.token, " response '",
                             answer.response, "', the record has token ",
                             record->lease_token(), " response '", record->response(),
                             "'"));
    }
  }
}

}  // namespace

CheckReport CheckRun(const std::string& database_url, const std::string& scope, int keys,
                     const ChaosJournal& journal, Client& client) {
  CheckReport report;
  std::map<std::string, std::vector<EffectRow>> effects;
  try {
    pqxx::connection c(database_url);
    pqxx::nontransaction tx(c);
    const pqxx::result rows = tx.exec_params(
        "SELECT key, id, lease_token, token_seen, locked_until_seen > fence_checked_at, "
        "       (extract(epoch FROM written_at) * 1000000)::bigint "
        "FROM chaos_effects WHERE scope = $1 ORDER BY key, id",
        scope);
    for (const pqxx::row& row : rows) {
      EffectRow e;
      e.id = row[1].as<int64_t>();
      e.token = row[2].as<int64_t>();
      e.token_seen = row[3].as<int64_t>();
      e.lease_was_live = row[4].as<bool>();
      e.written_at = absl::FromUnixMicros(row[5].as<int64_t>());
      effects[row[0].as<std::string>()].push_back(e);
      ++report.effects;
    }
  } catch (const std::exception& e) {
    report.violations.push_back(absl::StrCat("cannot read chaos_effects: ", e.what()));
    return report;
  }
  if (static_cast<int>(effects.size()) > keys) {
    report.violations.push_back(absl::StrCat("effects for ", effects.size(),
                                             " keys, only ", keys, " exist"));
  }
  for (int key = 0; key < keys; ++key) {
    absl::StatusOr<Record> record = GetRecord(client, scope, KeyName(key));
    if (!record.ok()) {
      report.violations.push_back(
          absl::StrCat(KeyName(key), ": Get failed: ", record.status().ToString()));
    }
    CheckKey(key, effects[KeyName(key)], record.ok() ? &*record : nullptr, journal,
             &report.violations);
  }
  return report;
}

}  // namespace idem::chaos
