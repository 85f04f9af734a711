// ChaosChecker: after the load and the faults, decides whether idem kept
// its promises. For every key:
//
//   1. Exactly once: chaos_effects holds exactly one row for the key.
//   2. The fence held: that row was written under the token the key's
//      record held at that moment, with a live lease (token_seen,
//      locked_until_seen), and by a lease some worker was handed; and no
//      worker was handed a newer lease of the key before that row was
//      written (a takeover must wait for the effect's transaction).
//   3. Durability: idem's record (Get, read after the final PostgreSQL
//      crash) is COMPLETED with response "effect:<that row's id>".
//   4. Every COMPLETED answer any worker got for the key (acknowledged
//      Completes and replays alike) names that same response and the
//      record's token: no second completion, nothing acknowledged lost.
//
// Each failed check is one violation line.
//
// Thread safety: Check() runs on one thread.
#ifndef IDEM_TESTS_CHAOS_CHAOS_CHECKER_H_
#define IDEM_TESTS_CHAOS_CHAOS_CHECKER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "idem/client.h"
#include "tests/chaos/chaos_journal.h"

namespace idem::chaos {

struct CheckReport {
  int64_t effects = 0;  // chaos_effects rows in the run's scope
  std::vector<std::string> violations;
};

CheckReport CheckRun(const std::string& database_url, const std::string& scope, int keys,
                     const ChaosJournal& journal, Client& client);

}  // namespace idem::chaos

#endif  // IDEM_TESTS_CHAOS_CHAOS_CHECKER_H_
