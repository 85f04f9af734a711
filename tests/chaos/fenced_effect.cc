#include "tests/chaos/fenced_effect.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace idem::chaos {

namespace {

constexpr char kSchema[] = R"sql(
  CREATE TABLE IF NOT EXISTS chaos_effects (
    id                bigserial   PRIMARY KEY,
    scope             text        NOT NULL,
    key               text        NOT NULL,
    lease_token       bigint      NOT NULL,  -- the writer's token
    worker            integer     NOT NULL,
    -- What idempotency_keys held, read under its row lock in the same
    -- transaction: the checker verifies the fence from these too.
    token_seen        bigint      NOT NULL,
    locked_until_seen timestamptz NOT NULL,
    fence_checked_at  timestamptz NOT NULL,
    written_at        timestamptz NOT NULL DEFAULT clock_timestamp());
  CREATE INDEX IF NOT EXISTS chaos_effects_key ON chaos_effects (scope, key);
)sql";

}  // namespace

absl::Status FencedEffect::CreateSchema(const std::string& url) {
  try {
    pqxx::connection c(url);
    pqxx::nontransaction(c).exec(kSchema);
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot create chaos_effects: ", e.what()));
  }
}

FencedEffect::FencedEffect(std::string url, std::string scope, Mode mode)
    : url_(std::move(url)), scope_(std::move(scope)), mode_(mode) {}

absl::StatusOr<EffectResult> FencedEffect::Apply(const std::string& key, int64_t token,
                                                 int worker, absl::Duration hold) {
  try {
    if (connection_ == nullptr) {
      connection_ = std::make_unique<pqxx::connection>(url_);
      // A lock wait or a dead server must not hold the worker forever.
      pqxx::nontransaction(*connection_).exec("SET statement_timeout = '5s'");
    }
    return ApplyInTransaction(key, token, worker, hold);
  } catch (const pqxx::in_doubt_error& e) {
    connection_.reset();
    return absl::UnavailableError(absl::StrCat("effect commit in doubt: ", e.what()));
  } catch (const std::exception& e) {
    // Broken connection (PostgreSQL restarting), statement timeout, ...:
    // nothing was committed. A fresh connection next time.
    connection_.reset();
    return absl::UnavailableError(absl::StrCat("effect not written: ", e.what()));
  }
}

absl::StatusOr<EffectResult> FencedEffect::ApplyInTransaction(const std::string& key,
                                                              int64_t token, int worker,
                                                              absl::Duration hold) {
  pqxx::work tx(*connection_);
  // The fence: the key's record, locked until commit. A takeover (Begin's
  // INSERT ... ON CONFLICT DO UPDATE) waits for this lock.
  const pqxx::result lease = tx.exec_params(
      "SELECT status, lease_token, locked_until, locked_until > clock_timestamp(), "
      "       clock_timestamp() "
      "FROM idempotency_keys WHERE scope = $1 AND key = $2 AND expires_at > now() " +
          std::string(mode_ == Mode::kNoFence ? "" : "FOR UPDATE"),
      scope_, key);
  if (lease.empty()) return absl::AbortedError("stale lease: the key has no record");
  const std::string status = lease[0][0].as<std::string>();
  const int64_t current = lease[0][1].as<int64_t>();
  const bool fenced = mode_ != Mode::kNoFence;
  if (fenced && (status != "in_progress" || current != token)) {
    return absl::AbortedError(absl::StrCat("stale lease: the key is ", status,
                                           " under token ", current, ", not ", token));
  }
  if (fenced && !lease[0][3].as<bool>()) {
    return absl::AbortedError(absl::StrCat("lease ", token, " ran out"));
  }
  const pqxx::result existing = tx.exec_params(
      "SELECT id FROM chaos_effects WHERE scope = $1 AND key = $2 ORDER BY id LIMIT 1",
      scope_, key);
  EffectResult result;
  if (!existing.empty() && mode_ != Mode::kNoLookup) {
    result.effect_id = existing[0][0].as<int64_t>();
  } else {
    result.effect_id =
        tx.exec_params1(
              "INSERT INTO chaos_effects "
              "(scope, key, lease_token, worker, token_seen, locked_until_seen, "
              " fence_checked_at) "
              "VALUES ($1, $2, $3, $4, $5, $6::timestamptz, $7::timestamptz) RETURNING id",
              scope_, key, token, worker, current, lease[0][2].as<std::string>(),
              lease[0][4].as<std::string>())[0]
            .as<int64_t>();
    result.written = true;
    if (hold > absl::ZeroDuration()) absl::SleepFor(hold);
  }
  tx.commit();
  return result;
}

}  // namespace idem::chaos
