#include "server/cache_refresher.h"

#include <map>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "server/proto_time.h"
#include "tests/unit/fake_store.h"

namespace idem {
namespace {

using idem::v1::Record;

Record Completed(const std::string& key, const std::string& response) {
  Record r;
  r.set_scope("s");
  r.set_key(key);
  r.set_request_hash("h");
  r.set_status(Record::COMPLETED);
  r.set_response(response);
  SetTimestampFromUnixMicros(absl::ToUnixMicros(absl::Now() + absl::Hours(1)),
                             r.mutable_expires_at());
  return r;
}

// Holds records of scope "s" by key and answers BatchGet from them (or
// fails every read while `failing`); counts its reads.
class RecordsStore : public FakeStore {
 public:
  void Put(const Record& r) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    records_[r.key()] = r;
  }
  void Remove(const std::string& key) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    records_.erase(key);
  }
  void set_failing(bool failing) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    failing_ = failing;
  }
  // The size of each BatchGet, in order.
  std::vector<size_t> reads() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return reads_;
  }

  absl::StatusOr<std::vector<std::optional<Record>>> BatchGet(
      absl::Span<const RecordId> ids, absl::Time) override {
    absl::MutexLock lock(&mu_);
    reads_.push_back(ids.size());
    if (failing_) return absl::UnavailableError("database down");
    std::vector<std::optional<Record>> out;
    for (const RecordId& id : ids) {
      auto it = records_.find(id.key);
      out.push_back(it == records_.end() ? std::nullopt
                                         : std::optional<Record>(it->second));
    }
    return out;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, Record> records_ ABSL_GUARDED_BY(mu_);
  bool failing_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<size_t> reads_ ABSL_GUARDED_BY(mu_);
};

class CacheRefresherTest : public testing::Test {
 protected:
  CacheRefresherTest()
      : cache_(RecordCache::Options{1 << 20, absl::Seconds(5), absl::Seconds(1), nullptr}) {}

  // Caches a record of `key` answering "old"; the store holds a newer one
  // answering `stored`.
  void CacheThenChange(const std::string& key, const std::string& stored) {
    cache_.Insert(Completed(key, "old"));
    store_.Put(Completed(key, stored));
  }
  std::string CachedResponse(const std::string& key) {
    std::shared_ptr<const Record> hit = cache_.Lookup("s", key);
    return hit == nullptr ? "(none)" : hit->response();
  }

  RecordsStore store_;
  RecordCache cache_;
};

TEST_F(CacheRefresherTest, ReadsEveryQueuedKeyInStatementsOfAtMostBatchKeys) {
  CacheRefresher refresher(&store_, &cache_, CacheRefresher::Options{
                                                 absl::Milliseconds(100), /*batch=*/2});
  for (const char* key : {"a", "b", "c", "d", "e"}) {
    CacheThenChange(key, std::string("new-") + key);
    ASSERT_TRUE(refresher.Request("s", key));
  }
  refresher.RefreshQueued();
  EXPECT_EQ(store_.reads(), (std::vector<size_t>{2, 2, 1}));
  for (const char* key : {"a", "b", "c", "d", "e"}) {
    EXPECT_EQ(CachedResponse(key), std::string("new-") + key);
  }
  EXPECT_EQ(refresher.refreshed(), 5);
  refresher.RefreshQueued();  // The queue was emptied: nothing is read again.
  EXPECT_EQ(store_.reads().size(), 3u);
}

TEST_F(CacheRefresherTest, AKeyGoneOrNoLongerFinalLosesItsEntry) {
  CacheRefresher refresher(&store_, &cache_, CacheRefresher::Options{});
  cache_.Insert(Completed("gone", "old"));  // Purged: not in the store.
  CacheThenChange("taken", "old");
  Record taken = Completed("taken", "");
  taken.set_status(Record::IN_PROGRESS);  // Purged, then begun again.
  store_.Put(taken);
  CacheThenChange("kept", "new");
  for (const char* key : {"gone", "taken", "kept"}) refresher.Request("s", key);
  refresher.RefreshQueued();
  EXPECT_EQ(CachedResponse("gone"), "(none)");
  EXPECT_EQ(CachedResponse("taken"), "(none)");
  EXPECT_EQ(CachedResponse("kept"), "new");
}

TEST_F(CacheRefresherTest, AFailedReadLeavesTheEntriesAndCountsAnError) {
  CacheRefresher refresher(&store_, &cache_, CacheRefresher::Options{});
  CacheThenChange("k", "new");
  store_.set_failing(true);
  refresher.Request("s", "k");
  refresher.RefreshQueued();
  EXPECT_EQ(refresher.errors(), 1);
  EXPECT_EQ(refresher.refreshed(), 0);
  EXPECT_EQ(CachedResponse("k"), "old");  // Served until its own end.
}

TEST_F(CacheRefresherTest, RequestRefusesWhenTheQueueIsFullAndAfterStop) {
  CacheRefresher::Options options;
  options.max_queued = 2;
  CacheRefresher refresher(&store_, &cache_, options);
  EXPECT_TRUE(refresher.Request("s", "a"));
  EXPECT_TRUE(refresher.Request("s", "b"));
  EXPECT_FALSE(refresher.Request("s", "c"));
  refresher.RefreshQueued();
  EXPECT_TRUE(refresher.Request("s", "c"));
  refresher.Stop();
  EXPECT_FALSE(refresher.Request("s", "d"));
  refresher.RefreshQueued();  // Stop dropped "c".
  EXPECT_EQ(store_.reads(), (std::vector<size_t>{2}));
}

TEST_F(CacheRefresherTest, ItsThreadReadsTheKeysQueuedWithinAGatherTogether) {
  CacheRefresher refresher(&store_, &cache_,
                           CacheRefresher::Options{absl::Milliseconds(200)});
  refresher.Start();
  CacheThenChange("a", "new-a");
  CacheThenChange("b", "new-b");
  refresher.Request("s", "a");
  refresher.Request("s", "b");  // Within the gather that "a" began.
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  while (refresher.refreshed() < 2 && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  refresher.Stop();
  EXPECT_EQ(store_.reads(), (std::vector<size_t>{2}));
  EXPECT_EQ(CachedResponse("a"), "new-a");
  EXPECT_EQ(CachedResponse("b"), "new-b");
}

TEST_F(CacheRefresherTest, StopEndsAnIdleThreadAndIsIdempotent) {
  CacheRefresher refresher(&store_, &cache_, CacheRefresher::Options{});
  refresher.Start();
  refresher.Stop();
  refresher.Stop();
  EXPECT_TRUE(store_.reads().empty());
}

}  // namespace
}  // namespace idem
