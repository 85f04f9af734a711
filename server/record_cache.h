// RecordCache: a bounded in-process cache of final idempotency records
// (COMPLETED, or FAILED and not retryable), keyed by (scope, key).
//
// A final record never changes until it expires (the store's rules), so a
// copy can answer replays without PostgreSQL. Two things can still make a
// copy wrong, and both are bounded here:
//
//  - Expiry. An entry is served only while the local clock is at least
//    `clock_margin` before the record's expires_at (a database-clock time).
//    Assumption, documented in docs/design.md: idemd's clock is within
//    `clock_margin` of PostgreSQL's (NTP keeps them within milliseconds).
//  - Deletion behind our back (idemctl release/purge, or another replica's
//    sweeper after expiry). An entry is served at most `max_age` after it
//    was stored, so an administrative delete is seen by every replica
//    within `max_age`.
//
// Refresh ahead: a hit in the last quarter of an entry's `max_age` (when a
// fresh copy could be served longer: the record expires later) tells the
// caller, once per entry, to read the record again and Insert() it (or
// Erase() it when it is gone or no longer final). A key that is replayed
// all the time so stays cached, rather than missing every `max_age`; the
// bound above is unchanged (an entry is still never served past it).
//
// Size: entries are charged the heap their records take (protobuf's
// SpaceUsedLong: the message, its strings, timestamps and map) plus the
// entry's own bookkeeping, so `max_bytes` bounds real memory (a unit test
// checks it against the allocator); past it the least recently used are
// dropped. The map
// is split into shards, each with its own mutex and LRU list.
//
// Example:
//   RecordCache cache({.max_bytes = 32 << 20});
//   cache.Insert(completed_record);
//   std::shared_ptr<const idem::v1::Record> hit = cache.Lookup(scope, key);
//
// Thread safety: safe for concurrent use.
#ifndef IDEM_SERVER_RECORD_CACHE_H_
#define IDEM_SERVER_RECORD_CACHE_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "idem/v1/idempotency.pb.h"

namespace idem {

class RecordCache {
 public:
  struct Options {
    // Total budget; 0 turns the cache off (nothing is stored).
    int64_t max_bytes = 32 << 20;
    // An entry is not served longer than this after it was stored.
    absl::Duration max_age = absl::Seconds(5);
    // An entry is not served later than expires_at - clock_margin.
    absl::Duration clock_margin = absl::Seconds(1);
    // The local clock; tests move it.
    std::function<absl::Time()> clock;
  };

  explicit RecordCache(Options options);
  RecordCache(const RecordCache&) = delete;
  RecordCache& operator=(const RecordCache&) = delete;

  // Whether `record` is final and so may be cached.
  static bool Cacheable(const idem::v1::Record& record);

  // The cached final record of (scope, key), or null (absent, too old, or
  // too close to its expiry; such an entry is dropped). `count_miss` false:
  // a miss is not counted (the caller will look again and count it then).
  // `refresh_due` (if given) is set true on the first hit of an entry that
  // is due a refresh (see above), false otherwise.
  std::shared_ptr<const idem::v1::Record> Lookup(absl::string_view scope,
                                                 absl::string_view key,
                                                 bool count_miss = true,
                                                 bool* refresh_due = nullptr);

  // Stores `record` if it is final and fits; replaces an older entry.
  void Insert(const idem::v1::Record& record);

  // Drops the entry of (scope, key), if any.
  void Erase(absl::string_view scope, absl::string_view key);

  bool enabled() const { return options_.max_bytes > 0; }
  int64_t hits() const { return hits_.load(std::memory_order_relaxed); }
  int64_t misses() const { return misses_.load(std::memory_order_relaxed); }
  // Bytes charged by the entries held now.
  int64_t bytes() const { return bytes_.load(std::memory_order_relaxed); }

 private:
  struct Entry {
    std::shared_ptr<const idem::v1::Record> record;  // Never null.
    absl::Time serve_until;  // min(stored + max_age, expires_at - margin)
    // The last quarter of max_age, when a fresh copy could be served
    // longer; InfiniteFuture otherwise.
    absl::Time refresh_from;
    bool refresh_claimed = false;  // Some hit was told to refresh it.
    int64_t charge = 0;
  };
  using Lru = std::list<Entry>;  // Most recently used first.
  // (scope, key), viewing the strings of an entry's record: an index entry
  // is erased with the entry it points to.
  using Id = std::pair<absl::string_view, absl::string_view>;
  struct Shard {
    absl::Mutex mu;
    Lru lru ABSL_GUARDED_BY(mu);
    absl::flat_hash_map<Id, Lru::iterator> index ABSL_GUARDED_BY(mu);
    int64_t bytes ABSL_GUARDED_BY(mu) = 0;
  };
  static constexpr int kShards = 16;

  Shard& ShardOf(absl::string_view scope, absl::string_view key);
  void EraseLocked(Shard& shard, Lru::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);

  // Constant after construction.
  const Options options_;
  const int64_t shard_budget_;

  std::array<Shard, kShards> shards_;
  std::atomic<int64_t> hits_{0};
  std::atomic<int64_t> misses_{0};
  std::atomic<int64_t> bytes_{0};
};

}  // namespace idem

#endif  // IDEM_SERVER_RECORD_CACHE_H_
