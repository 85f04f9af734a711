#include "server/caching_store.h"

#include <map>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "server/proto_time.h"
#include "tests/unit/fake_store.h"

namespace idem {
namespace {

using idem::v1::BeginResponse;
using idem::v1::Record;

// An inner store holding records by key: Begin answers a held final record
// (or FAILED_PRECONDITION on another hash) and acquires anything else;
// Complete stores a COMPLETED record. Counts the keys it was asked about.
class RecordMapStore : public FakeStore {
 public:
  std::map<std::pair<std::string, std::string>, Record> records;
  int keys_asked = 0;

  absl::StatusOr<std::vector<absl::StatusOr<BeginResult>>> BatchBegin(
      absl::Span<const BeginParams> params, absl::Time) override {
    std::vector<absl::StatusOr<BeginResult>> out;
    for (const BeginParams& p : params) {
      ++keys_asked;
      auto it = records.find({std::string(p.scope), std::string(p.key)});
      BeginResult r;
      if (it == records.end()) {
        r.outcome = BeginResponse::ACQUIRED;
        r.record.set_scope(std::string(p.scope));
        r.record.set_key(std::string(p.key));
        r.record.set_status(Record::IN_PROGRESS);
      } else if (it->second.request_hash() != p.request_hash) {
        out.push_back(absl::FailedPreconditionError("mismatch"));
        continue;
      } else {
        r.outcome = it->second.status() == Record::COMPLETED ? BeginResponse::COMPLETED
                                                             : BeginResponse::FAILED;
        r.record = it->second;
      }
      out.push_back(std::move(r));
    }
    return out;
  }
  absl::StatusOr<Record> Complete(const idem::v1::CompleteRequest& c,
                                  absl::Time) override {
    ++keys_asked;
    Record r = Completed(c.scope(), c.key(), "h", c.response());
    records[{c.scope(), c.key()}] = r;
    return r;
  }
  absl::StatusOr<Record> Get(absl::string_view scope, absl::string_view key,
                             absl::Time) override {
    ++keys_asked;
    auto it = records.find({std::string(scope), std::string(key)});
    if (it == records.end()) return absl::NotFoundError("none");
    return it->second;
  }

  static Record Completed(const std::string& scope, const std::string& key,
                          const std::string& hash, const std::string& response) {
    Record r;
    r.set_scope(scope);
    r.set_key(key);
    r.set_request_hash(hash);
    r.set_status(Record::COMPLETED);
    r.set_response(response);
    SetTimestampFromUnixMicros(absl::ToUnixMicros(absl::Now() + absl::Hours(1)),
                               r.mutable_expires_at());
    return r;
  }
};

BeginParams Params(const std::string& key, const std::string& hash = "h") {
  static std::string scope = "s";
  static std::map<std::string, std::string> keep;  // Owns the views' strings.
  keep[key] = key;
  keep["#" + hash] = hash;
  return BeginParams{scope, keep[key], keep["#" + hash], absl::Seconds(30),
                     absl::Hours(1), ""};
}

class CachingStoreTest : public testing::Test {
 protected:
  CachingStoreTest() : cache_(RecordCache::Options{1 << 20, absl::Seconds(5),
                                                    absl::Seconds(1), nullptr}),
                       store_(&inner_, &cache_) {}
  RecordMapStore inner_;
  RecordCache cache_;
  CachingStore store_;
};

TEST_F(CachingStoreTest, AReplayAfterBeginSawTheRecordSkipsTheInnerStore) {
  inner_.records[{"s", "done"}] = RecordMapStore::Completed("s", "done", "h", "r1");
  absl::StatusOr<BeginResult> first = store_.Begin(Params("done"), absl::Now());
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->outcome, BeginResponse::COMPLETED);
  EXPECT_EQ(inner_.keys_asked, 1);
  absl::StatusOr<BeginResult> again = store_.Begin(Params("done"), absl::Now());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->outcome, BeginResponse::COMPLETED);
  EXPECT_EQ(again->record.response(), "r1");
  EXPECT_EQ(inner_.keys_asked, 1);
  // Another request under the same key: refused from the cache too.
  absl::StatusOr<BeginResult> other = store_.Begin(Params("done", "h2"), absl::Now());
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(inner_.keys_asked, 1);
}

TEST_F(CachingStoreTest, CompleteFillsTheCacheAndInProgressIsNeverCached) {
  absl::StatusOr<BeginResult> acquired = store_.Begin(Params("k"), absl::Now());
  ASSERT_TRUE(acquired.ok());
  EXPECT_EQ(acquired->outcome, BeginResponse::ACQUIRED);
  idem::v1::CompleteRequest c;
  c.set_scope("s");
  c.set_key("k");
  c.set_response("done");
  ASSERT_TRUE(store_.Complete(c, absl::Now()).ok());
  EXPECT_EQ(inner_.keys_asked, 2);
  absl::StatusOr<BeginResult> replay = store_.Begin(Params("k"), absl::Now());
  ASSERT_TRUE(replay.ok());
  EXPECT_EQ(replay->outcome, BeginResponse::COMPLETED);
  EXPECT_EQ(replay->record.response(), "done");
  absl::StatusOr<Record> got = store_.Get("s", "k", absl::Now());
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->response(), "done");
  EXPECT_EQ(inner_.keys_asked, 2);
  // A key in progress is asked about every time.
  ASSERT_TRUE(store_.Begin(Params("busy"), absl::Now()).ok());
  ASSERT_TRUE(store_.Begin(Params("busy"), absl::Now()).ok());
  EXPECT_EQ(inner_.keys_asked, 4);
}

TEST_F(CachingStoreTest, ABatchSendsOnlyTheMissesInward) {
  inner_.records[{"s", "a"}] = RecordMapStore::Completed("s", "a", "h", "ra");
  ASSERT_TRUE(store_.Get("s", "a", absl::Now()).ok());
  EXPECT_EQ(inner_.keys_asked, 1);
  std::vector<BeginParams> batch = {Params("a"), Params("new"), Params("a", "other")};
  auto results = store_.BatchBegin(batch, absl::Now());
  ASSERT_TRUE(results.ok());
  EXPECT_EQ(inner_.keys_asked, 2);
  ASSERT_EQ(results->size(), 3u);
  EXPECT_EQ((*results)[0]->outcome, BeginResponse::COMPLETED);
  EXPECT_EQ((*results)[1]->outcome, BeginResponse::ACQUIRED);
  EXPECT_EQ((*results)[2].status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(CachingStoreTest, TryBeginFromMemoryAnswersOnlyCachedKeys) {
  inner_.records[{"s", "done"}] = RecordMapStore::Completed("s", "done", "h", "r1");
  EXPECT_FALSE(store_.TryBeginFromMemory(Params("done")).has_value());
  EXPECT_EQ(cache_.misses(), 0) << "the caller looks again and counts the miss then";
  ASSERT_TRUE(store_.Begin(Params("done"), absl::Now()).ok());
  const int asked = inner_.keys_asked;
  std::optional<absl::StatusOr<BeginResult>> hit = store_.TryBeginFromMemory(Params("done"));
  ASSERT_TRUE(hit.has_value());
  ASSERT_TRUE(hit->ok());
  EXPECT_EQ((*hit)->outcome, BeginResponse::COMPLETED);
  EXPECT_EQ((*hit)->record.response(), "r1");
  std::optional<absl::StatusOr<BeginResult>> other =
      store_.TryBeginFromMemory(Params("done", "h2"));
  ASSERT_TRUE(other.has_value());
  EXPECT_EQ(other->status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(store_.TryBeginFromMemory(Params("unknown")).has_value());
  EXPECT_EQ(inner_.keys_asked, asked);
}

TEST_F(CachingStoreTest, AnInnerFailureIsPassedOn) {
  FakeStore failing;
  failing.begin_result = absl::UnavailableError("down");
  CachingStore store(&failing, &cache_);
  EXPECT_EQ(store.Begin(Params("x"), absl::Now()).status().code(),
            absl::StatusCode::kUnavailable);
}

struct TestClock {
  absl::Time now = absl::Now();
};

class RefreshAheadTest : public testing::Test {
 protected:
  RefreshAheadTest()
      : cache_(RecordCache::Options{1 << 20, absl::Seconds(5), absl::Seconds(1),
                                    [this] { return clock_.now; }}),
        refresher_(&inner_, &cache_, CacheRefresher::Options{}),
        store_(&inner_, &cache_, &refresher_) {
    inner_.records[{"s", "k"}] = RecordMapStore::Completed("s", "k", "h", "r1");
  }
  // A replay of "k": how many keys the inner store was asked about after it.
  int Replay() {
    absl::StatusOr<BeginResult> r = store_.Begin(Params("k"), absl::Now());
    EXPECT_TRUE(r.ok()) << r.status();
    return inner_.keys_asked;
  }
  TestClock clock_;
  RecordMapStore inner_;
  RecordCache cache_;
  CacheRefresher refresher_;  // Not started: the test runs RefreshQueued.
  CachingStore store_;
};

TEST_F(RefreshAheadTest, AHotKeyIsReadAgainBeforeItsEntryEndsAndNeverMisses) {
  EXPECT_EQ(Replay(), 1);  // The miss that fills the cache.
  clock_.now += absl::Seconds(4);
  EXPECT_EQ(Replay(), 1);  // Answered from the cache; a refresh is queued.
  EXPECT_EQ(Replay(), 1);  // The entry's refresh is claimed: not queued again.
  refresher_.RefreshQueued();
  EXPECT_EQ(inner_.keys_asked, 2);  // The refresh read the key once.
  // Past the first copy's max_age: the refreshed copy answers.
  clock_.now += absl::Seconds(2);
  EXPECT_EQ(Replay(), 2);
}

TEST_F(RefreshAheadTest, ARefreshThatFindsTheKeyGoneDropsTheEntry) {
  EXPECT_EQ(Replay(), 1);
  clock_.now += absl::Seconds(4);
  EXPECT_EQ(Replay(), 1);
  inner_.records.clear();  // Purged by an operator.
  refresher_.RefreshQueued();
  absl::StatusOr<BeginResult> r = store_.Begin(Params("k"), absl::Now());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->outcome, BeginResponse::ACQUIRED);  // Not the stale COMPLETED.
}

TEST_F(RefreshAheadTest, ARefreshThatFindsTheKeyInProgressDropsTheEntry) {
  EXPECT_EQ(Replay(), 1);
  clock_.now += absl::Seconds(4);
  EXPECT_EQ(Replay(), 1);
  Record taken = inner_.records[{"s", "k"}];
  taken.set_status(Record::IN_PROGRESS);  // Purged, then begun again.
  inner_.records[{"s", "k"}] = taken;
  refresher_.RefreshQueued();
  EXPECT_EQ(cache_.Lookup("s", "k"), nullptr);
}

}  // namespace
}  // namespace idem
