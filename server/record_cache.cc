#include "server/record_cache.h"

#include <algorithm>

#include "absl/hash/hash.h"
#include "absl/time/clock.h"
#include "server/proto_time.h"

namespace idem {

using idem::v1::Record;

namespace {

// What an entry costs beyond its record's SpaceUsedLong(): the LRU list
// node, the index slot (at the map's load factor), the shared_ptr control
// block, and the allocator's header on each of the record's allocations.
// ItsByteBudgetBoundsTheHeapItTakes (record_cache_test) checks the total
// against the allocator.
constexpr int64_t kEntryOverhead = 448;

}  // namespace

RecordCache::RecordCache(Options options)
    : options_([&] {
        if (!options.clock) options.clock = [] { return absl::Now(); };
        return std::move(options);
      }()),
      shard_budget_(std::max<int64_t>(options_.max_bytes / kShards, 0)) {}

bool RecordCache::Cacheable(const Record& record) {
  return record.status() == Record::COMPLETED ||
         (record.status() == Record::FAILED && !record.retryable());
}

RecordCache::Shard& RecordCache::ShardOf(absl::string_view scope,
                                         absl::string_view key) {
  return shards_[absl::HashOf(scope, key) % kShards];
}

void RecordCache::EraseLocked(Shard& shard, Lru::iterator it) {
  shard.bytes -= it->charge;
  bytes_.fetch_sub(it->charge, std::memory_order_relaxed);
  shard.index.erase(Id(it->record->scope(), it->record->key()));
  shard.lru.erase(it);
}

std::shared_ptr<const Record> RecordCache::Lookup(absl::string_view scope,
                                                  absl::string_view key,
                                                  bool count_miss,
                                                  bool* refresh_due) {
  if (refresh_due != nullptr) *refresh_due = false;
  if (!enabled()) return nullptr;
  Shard& shard = ShardOf(scope, key);
  const absl::Time now = options_.clock();
  absl::MutexLock lock(&shard.mu);
  auto found = shard.index.find(Id(scope, key));
  if (found == shard.index.end()) {
    if (count_miss) misses_.fetch_add(1, std::memory_order_relaxed);
    return nullptr;
  }
  Lru::iterator it = found->second;
  if (now >= it->serve_until) {
    EraseLocked(shard, it);
    if (count_miss) misses_.fetch_add(1, std::memory_order_relaxed);
    return nullptr;
  }
  shard.lru.splice(shard.lru.begin(), shard.lru, it);
  hits_.fetch_add(1, std::memory_order_relaxed);
  if (refresh_due != nullptr && now >= it->refresh_from && !it->refresh_claimed) {
    it->refresh_claimed = true;
    *refresh_due = true;
  }
  return it->record;
}

void RecordCache::Erase(absl::string_view scope, absl::string_view key) {
  if (!enabled()) return;
  Shard& shard = ShardOf(scope, key);
  absl::MutexLock lock(&shard.mu);
  if (auto found = shard.index.find(Id(scope, key)); found != shard.index.end()) {
    EraseLocked(shard, found->second);
  }
}

void RecordCache::Insert(const Record& record) {
  if (!enabled() || !Cacheable(record)) return;
  const absl::Time now = options_.clock();
  const absl::Time last_serve =
      FromProtoTimestamp(record.expires_at()) - options_.clock_margin;
  const absl::Time serve_until = std::min(now + options_.max_age, last_serve);
  if (now >= serve_until) return;
  // Worth refreshing only if a copy read later could be served longer.
  const absl::Time refresh_from = serve_until < last_serve
                                      ? serve_until - options_.max_age / 4
                                      : absl::InfiniteFuture();
  auto copy = std::make_shared<const Record>(record);
  const int64_t charge = static_cast<int64_t>(copy->SpaceUsedLong()) + kEntryOverhead;
  if (charge > shard_budget_) return;
  Shard& shard = ShardOf(record.scope(), record.key());
  absl::MutexLock lock(&shard.mu);
  if (auto found = shard.index.find(Id(record.scope(), record.key()));
      found != shard.index.end()) {
    EraseLocked(shard, found->second);
  }
  while (shard.bytes + charge > shard_budget_ && !shard.lru.empty()) {
    EraseLocked(shard, std::prev(shard.lru.end()));
  }
  const Id id(copy->scope(), copy->key());
  shard.lru.push_front(Entry{std::move(copy), serve_until, refresh_from, false, charge});
  shard.index.emplace(id, shard.lru.begin());
  shard.bytes += charge;
  bytes_.fetch_add(charge, std::memory_order_relaxed);
}

}  // namespace idem
