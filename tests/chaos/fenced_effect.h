// FencedEffect: the side effect whose exactly-once the chaos harness checks.
//
// The effect is a row in chaos_effects, in the same PostgreSQL database as
// idem's records, written in ONE transaction that first locks the key's
// idempotency_keys row (SELECT ... FOR UPDATE) and checks that the key is
// in progress under this worker's lease token and that the lease has not
// run out. While that lock is held no Begin can take the key over, so
// nobody else can be acting on the key when the row is inserted (the fence).
// The same transaction looks for an effect a predecessor already wrote
// (a holder that crashed, or lost its lease, after its commit but before
// its Complete) and returns that one instead of writing a second: the
// successor then completes with the existing effect.
//
// chaos_effects has on purpose no UNIQUE on the key: a double effect must
// stay visible to the checker, not turn into an error.
//
// Example:
//   FencedEffect effect(url, "chaos/run1");
//   absl::StatusOr<EffectResult> r = effect.Apply("k17", lease.token, worker);
//   // r->effect_id names the key's one effect; ABORTED: not our lease.
//
// Thread safety: not thread-safe (one connection); one per worker thread.
#ifndef IDEM_TESTS_CHAOS_FENCED_EFFECT_H_
#define IDEM_TESTS_CHAOS_FENCED_EFFECT_H_

#include <cstdint>
#include <memory>
#include <string>

#include <pqxx/pqxx>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace idem::chaos {

struct EffectResult {
  int64_t effect_id = 0;
  bool written = false;  // false: a predecessor's effect was found
};

class FencedEffect {
 public:
  // kFenced is the harness's effect. The others break it on purpose, to
  // show that the checker catches what they do (idem-chaos --sabotage):
  // kNoFence skips the lock and the token check; kNoLookup writes a new
  // effect even when a predecessor's is there.
  enum class Mode { kFenced, kNoFence, kNoLookup };

  // Creates chaos_effects in the database at `url` (idem's, migrated).
  static absl::Status CreateSchema(const std::string& url);

  FencedEffect(std::string url, std::string scope, Mode mode = Mode::kFenced);

  // Writes (or finds) the effect of `key` as holder of `token`. ABORTED
  // (the message says why) when the key is not in progress under `token`
  // with a live lease; UNAVAILABLE when PostgreSQL could not be reached or
  // the commit's outcome is unknown. `hold` is slept inside the
  // transaction, after the insert (a fault then lands mid-transaction).
  absl::StatusOr<EffectResult> Apply(const std::string& key, int64_t token, int worker,
                                     absl::Duration hold = absl::ZeroDuration());

 private:
  absl::StatusOr<EffectResult> ApplyInTransaction(const std::string& key, int64_t token,
                                                  int worker, absl::Duration hold);

  const std::string url_;
  const std::string scope_;
  const Mode mode_;
  std::unique_ptr<pqxx::connection> connection_;  // Reopened after a failure.
};

}  // namespace idem::chaos

#endif  // IDEM_TESTS_CHAOS_FENCED_EFFECT_H_
