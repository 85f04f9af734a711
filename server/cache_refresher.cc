#include "server/cache_refresher.h"

#include <algorithm>
#include <string>
#include <utility>

#include <glog/logging.h>

#include "absl/time/clock.h"

namespace idem {

using idem::v1::Record;

CacheRefresher::CacheRefresher(IdempotencyStore* store, RecordCache* cache,
                               Options options)
    : store_(store), cache_(cache), options_(options) {}

CacheRefresher::~CacheRefresher() { Stop(); }

bool CacheRefresher::Request(absl::string_view scope, absl::string_view key) {
  absl::MutexLock lock(&mu_);
  if (stopping_ || queued_.size() >= options_.max_queued) return false;
  queued_.push_back(RecordId{std::string(scope), std::string(key)});
  return true;
}

void CacheRefresher::Start() {
  thread_ = std::thread([this] { Run(); });
}

void CacheRefresher::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    queued_.clear();
  }
  if (thread_.joinable()) thread_.join();
}

void CacheRefresher::Run() {
  mu_.Lock();
  while (true) {
    mu_.Await(absl::Condition(this, &CacheRefresher::WorkOrStopping));
    if (stopping_) break;
    // Gather: the keys due in the next moment share the read.
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.gather);
    if (stopping_) break;
    mu_.Unlock();
    RefreshQueued();
    mu_.Lock();
  }
  mu_.Unlock();
}

void CacheRefresher::RefreshQueued() {
  std::vector<RecordId> ids;
  {
    absl::MutexLock lock(&mu_);
    ids.swap(queued_);
  }
  const absl::Span<const RecordId> all(ids);
  const size_t batch = std::max<size_t>(options_.batch, 1);
  for (size_t start = 0; start < all.size(); start += batch) {
    const absl::Span<const RecordId> chunk = all.subspan(start, batch);
    absl::StatusOr<std::vector<std::optional<Record>>> fresh =
        store_->BatchGet(chunk, absl::Now() + options_.read_timeout);
    if (!fresh.ok()) {
      // The entries live out their time; the next hit after that reads again.
      errors_.fetch_add(1, std::memory_order_relaxed);
      LOG_EVERY_N(WARNING, 100) << "record cache refresh of " << chunk.size()
                                << " keys failed: " << fresh.status();
      continue;
    }
    for (size_t i = 0; i < chunk.size(); ++i) {
      const std::optional<Record>& record = (*fresh)[i];
      if (record.has_value() && RecordCache::Cacheable(*record)) {
        cache_->Insert(*record);
      } else {
        cache_->Erase(chunk[i].scope, chunk[i].key);  // Gone, or not final.
      }
    }
    refreshed_.fetch_add(static_cast<int64_t>(chunk.size()), std::memory_order_relaxed);
  }
}

}  // namespace idem
