#include "server/record_cache.h"

#include <algorithm>

#include "absl/hash/hash.h"
#include "absl/time/clock.h"
#include "server/proto_time.h"

namespace idem {

using idem::v1::Record;

namespace {

// What an entry costs beyond its record: list node, map slot, the key
// strings' headers, the shared_ptr control block.
constexpr int64_t kEntryOverhead = 256;

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
  shard.index.erase(it->id);
  shard.lru.erase(it);
}

std::shared_ptr<const Record> RecordCache::Lookup(absl::string_view scope,
                                                  absl::string_view key,
                                                  bool count_miss) {
  if (!enabled()) return nullptr;
  Shard& shard = ShardOf(scope, key);
  const absl::Time now = options_.clock();
  absl::MutexLock lock(&shard.mu);
  auto found = shard.index.find(std::make_pair(std::string(scope), std::string(key)));
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
  return it->record;
}

void RecordCache::Insert(const Record& record) {
  if (!enabled() || !Cacheable(record)) return;
  const absl::Time now = options_.clock();
  const absl::Time serve_until =
      std::min(now + options_.max_age,
               FromProtoTimestamp(record.expires_at()) - options_.clock_margin);
  if (now >= serve_until) return;
  const int64_t charge = static_cast<int64_t>(record.ByteSizeLong()) +
                         static_cast<int64_t>(record.scope().size() + record.key().size()) +
                         kEntryOverhead;
  if (charge > shard_budget_) return;
  auto copy = std::make_shared<const Record>(record);
  Shard& shard = ShardOf(record.scope(), record.key());
  absl::MutexLock lock(&shard.mu);
  std::pair<std::string, std::string> id(record.scope(), record.key());
  if (auto found = shard.index.find(id); found != shard.index.end()) {
    EraseLocked(shard, found->second);
  }
  while (shard.bytes + charge > shard_budget_ && !shard.lru.empty()) {
    EraseLocked(shard, std::prev(shard.lru.end()));
  }
  shard.lru.push_front(Entry{id, std::move(copy), serve_until, charge});
  shard.index.emplace(std::move(id), shard.lru.begin());
  shard.bytes += charge;
  bytes_.fetch_add(charge, std::memory_order_relaxed);
}

}  // namespace idem
