#include "tests/fuzz/in_memory_store.h"

#include <algorithm>

#include "server/proto_time.h"

namespace idem {

using idem::v1::BeginResponse;
using idem::v1::Record;

namespace {

void SetTime(absl::Time t, google::protobuf::Timestamp* out) {
  SetTimestampFromUnixMicros(absl::ToUnixMicros(t), out);
}

bool SameMetadata(const google::protobuf::Map<std::string, std::string>& a,
                  const google::protobuf::Map<std::string, std::string>& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [name, value] : a) {
    auto it = b.find(name);
    if (it == b.end() || it->second != value) return false;
  }
  return true;
}

}  // namespace

int64_t InMemoryStore::calls() const {
  absl::MutexLock lock(&mu_);
  return calls_;
}

size_t InMemoryStore::size() const {
  absl::MutexLock lock(&mu_);
  return entries_.size();
}

void InMemoryStore::Advance(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  now_ += d;
}

InMemoryStore::Entry* InMemoryStore::Live(absl::string_view scope,
                                          absl::string_view key) {
  auto it = entries_.find(Id(scope, key));
  if (it == entries_.end() || it->second.expires_at <= now_) return nullptr;
  return &it->second;
}

void InMemoryStore::Touch(Entry* e) { SetTime(now_, e->record.mutable_updated_at()); }

absl::StatusOr<BeginResult> InMemoryStore::BeginOne(const BeginParams& p) {
  Entry* live = Live(p.scope, p.key);
  BeginResult result;
  result.outcome = BeginResponse::ACQUIRED;
  if (live == nullptr) {
    Entry& e = entries_[Id(p.scope, p.key)];
    e = Entry{};
    Record& r = e.record;
    r.set_scope(std::string(p.scope));
    r.set_key(std::string(p.key));
    r.set_request_hash(std::string(p.request_hash));
    r.set_status(Record::IN_PROGRESS);
    r.set_lease_token(next_token_++);
    r.set_attempt(1);
    r.set_owner(std::string(p.owner));
    e.locked_until = now_ + p.lease_ttl;
    e.expires_at = std::max(now_ + p.retention, e.locked_until);
    SetTime(now_, r.mutable_created_at());
    Touch(&e);
    SetTime(e.locked_until, r.mutable_locked_until());
    SetTime(e.expires_at, r.mutable_expires_at());
    result.record = r;
    return result;
  }
  Record& r = live->record;
  if (r.request_hash() != p.request_hash) {
    return BeginDecisionStatus(BeginDecision::kRequestMismatch);
  }
  const bool lease_live = live->locked_until > now_;
  const bool reentry = r.status() == Record::IN_PROGRESS && lease_live &&
                       !p.owner.empty() && r.owner() == p.owner;
  const bool takeover = (r.status() == Record::IN_PROGRESS && !lease_live) ||
                        (r.status() == Record::FAILED && r.retryable());
  if (reentry || takeover) {
    if (takeover) {
      r.set_lease_token(next_token_++);
      r.set_attempt(r.attempt() + 1);
    }
    r.set_status(Record::IN_PROGRESS);
    r.clear_response();
    r.clear_response_code();
    r.clear_response_metadata();
    r.clear_error();
    r.clear_retryable();
    r.set_owner(std::string(p.owner));
    live->locked_until = now_ + p.lease_ttl;
    live->expires_at = std::max(live->expires_at, live->locked_until);
    Touch(live);
    SetTime(live->locked_until, r.mutable_locked_until());
    SetTime(live->expires_at, r.mutable_expires_at());
    result.reentered = reentry;
    result.record = r;
    return result;
  }
  switch (r.status()) {
    case Record::COMPLETED:
      result.outcome = BeginResponse::COMPLETED;
      break;
    case Record::FAILED:
      result.outcome = BeginResponse::FAILED;
      break;
    default:
      result.outcome = BeginResponse::IN_PROGRESS;
      result.retry_after = live->locked_until - now_;
      break;
  }
  result.record = r;
  return result;
}

absl::StatusOr<std::vector<absl::StatusOr<BeginResult>>> InMemoryStore::BatchBegin(
    absl::Span<const BeginParams> params, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  ++calls_;
  std::vector<absl::StatusOr<BeginResult>> results;
  results.reserve(params.size());
  for (const BeginParams& p : params) results.push_back(BeginOne(p));
  return results;
}

absl::StatusOr<InMemoryStore::Entry*> InMemoryStore::Writable(
    WriteKind kind, absl::string_view scope, absl::string_view key,
    int64_t lease_token) {
  Entry* e = Live(scope, key);
  if (e == nullptr) {
    return WriteDecisionStatus(kind, WriteDecision::kNotFound, lease_token);
  }
  if (e->record.lease_token() != lease_token) {
    return WriteDecisionStatus(kind, WriteDecision::kLeaseLost, lease_token);
  }
  return e;
}

absl::StatusOr<Record> InMemoryStore::Complete(const idem::v1::CompleteRequest& request,
                                               absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  ++calls_;
  absl::StatusOr<Entry*> e = Writable(WriteKind::kComplete, request.scope(),
                                      request.key(), request.lease_token());
  if (!e.ok()) return e.status();
  Record& r = (*e)->record;
  if (r.status() != Record::IN_PROGRESS) {
    const bool same = r.status() == Record::COMPLETED &&
                      r.response() == request.response() &&
                      r.response_code() == request.response_code() &&
                      SameMetadata(r.response_metadata(), request.response_metadata());
    if (same) return r;
    return WriteDecisionStatus(WriteKind::kComplete, WriteDecision::kAlreadyFinished,
                               request.lease_token());
  }
  r.set_status(Record::COMPLETED);
  r.set_response(request.response());
  r.set_response_code(request.response_code());
  *r.mutable_response_metadata() = request.response_metadata();
  r.clear_locked_until();
  Touch(*e);
  return r;
}

absl::StatusOr<Record> InMemoryStore::Fail(const idem::v1::FailRequest& request,
                                           absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  ++calls_;
  absl::StatusOr<Entry*> e = Writable(WriteKind::kFail, request.scope(),
                                      request.key(), request.lease_token());
  if (!e.ok()) return e.status();
  Record& r = (*e)->record;
  if (r.status() != Record::IN_PROGRESS) {
    const bool same = r.status() == Record::FAILED && r.error() == request.error() &&
                      r.retryable() == request.retryable() &&
                      r.response() == request.response() &&
                      r.response_code() == request.response_code();
    if (same) return r;
    return WriteDecisionStatus(WriteKind::kFail, WriteDecision::kAlreadyFinished,
                               request.lease_token());
  }
  r.set_status(Record::FAILED);
  r.set_error(request.error());
  r.set_retryable(request.retryable());
  r.set_response(request.response());
  r.set_response_code(request.response_code());
  r.clear_locked_until();
  Touch(*e);
  return r;
}

absl::StatusOr<Record> InMemoryStore::ExtendLease(const ExtendLeaseParams& params,
                                                  absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  ++calls_;
  absl::StatusOr<Entry*> e = Writable(WriteKind::kExtendLease, params.scope,
                                      params.key, params.lease_token);
  if (!e.ok()) return e.status();
  Entry* entry = *e;
  if (entry->record.status() != Record::IN_PROGRESS) {
    return WriteDecisionStatus(WriteKind::kExtendLease,
                               WriteDecision::kAlreadyFinished, params.lease_token);
  }
  entry->locked_until = now_ + params.lease_ttl;
  entry->expires_at = std::max(entry->expires_at, entry->locked_until);
  SetTime(entry->locked_until, entry->record.mutable_locked_until());
  SetTime(entry->expires_at, entry->record.mutable_expires_at());
  Touch(entry);
  return entry->record;
}

absl::StatusOr<Record> InMemoryStore::Get(absl::string_view scope, absl::string_view key,
                                          absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  ++calls_;
  Entry* e = Live(scope, key);
  if (e == nullptr) {
    return WriteDecisionStatus(WriteKind::kComplete, WriteDecision::kNotFound, 0);
  }
  return e->record;
}

absl::StatusOr<int64_t> InMemoryStore::DeleteExpired(int64_t limit, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  ++calls_;
  int64_t deleted = 0;
  for (auto it = entries_.begin(); it != entries_.end() && deleted < limit;) {
    if (it->second.expires_at <= now_) {
      it = entries_.erase(it);
      ++deleted;
    } else {
      ++it;
    }
  }
  return deleted;
}

}  // namespace idem
