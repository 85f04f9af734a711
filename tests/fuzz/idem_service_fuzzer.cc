// libFuzzer target: arbitrary bytes through request parsing, validation and
// IdempotencyService, against an InMemoryStore. Built only with clang
// (-DIDEM_FUZZ=ON; run by scripts/fuzz).
//
// An input is a sequence of operations, each
//   [selector byte][length: 2 bytes, little endian][payload]
// where selector % 7 picks Begin, BatchBegin, Complete, Fail, Get,
// ExtendLease (the payload is that request's protobuf bytes, as gRPC would
// hand them over) or a clock move (the payload's first byte, in seconds).
// Every input starts from an empty store; tokens are handed out from 1, so
// the fuzzer can find Complete/Fail/ExtendLease paths that hold the lease.
//
// Checked on every operation (a violation aborts, which libFuzzer reports):
//   - the status is one the contract documents for the store used here
//     (OK, INVALID_ARGUMENT, FAILED_PRECONDITION, ABORTED, NOT_FOUND);
//   - a request the validation refuses gets INVALID_ARGUMENT with the same
//     message and never reaches the store; one it accepts is never
//     INVALID_ARGUMENT;
//   - what reaches the store is what PostgreSQL can hold and the contract
//     allows, restated here independently of request_validation
//     (CheckingStore): sizes, character sets, NUL-free UTF-8, durations in
//     range, positive tokens;
//   - answers are well formed: a Begin outcome is set, ACQUIRED carries a
//     positive token equal to its record's, a live lease's token is never
//     shown to a non-holder, BatchBegin answers once per request, and the
//     answer serializes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <google/protobuf/stubs/logging.h>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "idem/v1/idempotency.pb.h"
#include "server/idempotency_service.h"
#include "server/request_validation.h"
#include "tests/fuzz/in_memory_store.h"

namespace idem {
namespace {

using idem::v1::BeginResponse;
using idem::v1::Record;

#define FUZZ_CHECK(cond)                                                    \
  do {                                                                      \
    if (!(cond)) {                                                          \
      std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__,       \
                   __LINE__, #cond);                                        \
      std::abort();                                                         \
    }                                                                       \
  } while (0)

bool Documented(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kOk:
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kNotFound:
      return true;
    default:
      return false;
  }
}

// What validation alone says, and what the service answered: refused
// requests never reach the store, accepted ones are never refused.
void CheckValidation(const absl::Status& validation, const absl::Status& answer,
                     int64_t calls_before, const InMemoryStore& store) {
  FUZZ_CHECK(Documented(answer));
  if (!validation.ok()) {
    FUZZ_CHECK(validation.code() == absl::StatusCode::kInvalidArgument);
    FUZZ_CHECK(answer == validation);
    FUZZ_CHECK(store.calls() == calls_before);
    // Messages name the rule, never echo the (possibly huge) value.
    FUZZ_CHECK(validation.message().size() < 200);
  } else {
    FUZZ_CHECK(answer.code() != absl::StatusCode::kInvalidArgument);
    FUZZ_CHECK(store.calls() > calls_before);
  }
}

void CheckBeginResponse(const BeginResponse& r) {
  FUZZ_CHECK(r.outcome() != BeginResponse::OUTCOME_UNSPECIFIED);
  if (r.outcome() == BeginResponse::ACQUIRED) {
    FUZZ_CHECK(r.lease_token() > 0);
    FUZZ_CHECK(r.record().lease_token() == r.lease_token());
    FUZZ_CHECK(r.record().status() == Record::IN_PROGRESS);
  } else {
    FUZZ_CHECK(r.lease_token() == 0);
  }
  if (r.outcome() == BeginResponse::IN_PROGRESS) {
    FUZZ_CHECK(r.record().lease_token() == 0);  // Hidden from non-holders.
    FUZZ_CHECK(r.record().owner().empty());
    FUZZ_CHECK(r.retry_after().seconds() >= 0 && r.retry_after().nanos() >= 0);
  }
  if (r.outcome() == BeginResponse::COMPLETED) {
    FUZZ_CHECK(r.record().status() == Record::COMPLETED);
  }
  if (r.outcome() == BeginResponse::FAILED) {
    FUZZ_CHECK(r.record().status() == Record::FAILED);
  }
  std::string bytes;
  FUZZ_CHECK(r.SerializeToString(&bytes));
}

// Text a PostgreSQL text column can hold: no NUL, valid UTF-8 (checked by
// protobuf's own parser for string fields, so only NUL is left to check).
bool NoNul(absl::string_view s) { return s.find('\0') == absl::string_view::npos; }

bool Printable(absl::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x21 || c > 0x7E) return false;
  }
  return true;
}

bool GoodScopeAndKey(absl::string_view scope, absl::string_view key) {
  return !scope.empty() && scope.size() <= 128 && Printable(scope) &&
         !key.empty() && key.size() <= 255 && Printable(key);
}

bool GoodLease(absl::Duration d) { return d >= absl::Seconds(1) && d <= absl::Hours(1); }

// Forwards to an InMemoryStore after checking that every input is one the
// contract lets through (a validation gap would show up here).
class CheckingStore final : public IdempotencyStore {
 public:
  explicit CheckingStore(InMemoryStore* store) : store_(store) {}

  absl::StatusOr<std::vector<absl::StatusOr<BeginResult>>> BatchBegin(
      absl::Span<const BeginParams> params, absl::Time deadline) override {
    FUZZ_CHECK(!params.empty() && params.size() <= 500);
    for (const BeginParams& p : params) {
      FUZZ_CHECK(GoodScopeAndKey(p.scope, p.key));
      FUZZ_CHECK(!p.request_hash.empty() && p.request_hash.size() <= 64);
      FUZZ_CHECK(GoodLease(p.lease_ttl));
      FUZZ_CHECK(p.retention >= absl::Seconds(1) && p.retention <= absl::Hours(720));
      FUZZ_CHECK(p.owner.size() <= 128 && (p.owner.empty() || Printable(p.owner)));
    }
    return store_->BatchBegin(params, deadline);
  }
  absl::StatusOr<Record> Complete(const idem::v1::CompleteRequest& r,
                                  absl::Time deadline) override {
    FUZZ_CHECK(GoodScopeAndKey(r.scope(), r.key()) && r.lease_token() > 0);
    FUZZ_CHECK(r.response().size() <= 4096);
    FUZZ_CHECK(r.response_metadata().size() <= 64);
    for (const auto& [name, value] : r.response_metadata()) {
      FUZZ_CHECK(!name.empty() && name.size() <= 256 && value.size() <= 16384);
      FUZZ_CHECK(NoNul(name) && NoNul(value));
    }
    return store_->Complete(r, deadline);
  }
  absl::StatusOr<Record> Fail(const idem::v1::FailRequest& r,
                              absl::Time deadline) override {
    FUZZ_CHECK(GoodScopeAndKey(r.scope(), r.key()) && r.lease_token() > 0);
    FUZZ_CHECK(r.response().size() <= 4096);
    FUZZ_CHECK(r.error().size() <= 65536 && NoNul(r.error()));
    return store_->Fail(r, deadline);
  }
  absl::StatusOr<Record> ExtendLease(const ExtendLeaseParams& p,
                                     absl::Time deadline) override {
    FUZZ_CHECK(GoodScopeAndKey(p.scope, p.key) && p.lease_token > 0);
    FUZZ_CHECK(GoodLease(p.lease_ttl));
    return store_->ExtendLease(p, deadline);
  }
  absl::StatusOr<Record> Get(absl::string_view scope, absl::string_view key,
                             absl::Time deadline) override {
    FUZZ_CHECK(GoodScopeAndKey(scope, key));
    return store_->Get(scope, key, deadline);
  }
  absl::StatusOr<int64_t> DeleteExpired(int64_t limit, absl::Time deadline) override {
    return store_->DeleteExpired(limit, deadline);
  }
  absl::Status Ping(absl::Time deadline) override { return store_->Ping(deadline); }
  absl::StatusOr<StoreStats> Stats(absl::Time deadline) override {
    return store_->Stats(deadline);
  }

 private:
  InMemoryStore* const store_;
};

template <typename Request>
bool Parse(const uint8_t* data, size_t size, Request* request) {
  // What gRPC does with a request's bytes; a failure is answered by gRPC
  // before any idem code runs.
  return request->ParseFromArray(data, static_cast<int>(size));
}

void RunOne(IdempotencyService& service, InMemoryStore& store, uint8_t selector,
            const uint8_t* data, size_t size) {
  const absl::Time deadline = absl::InfiniteFuture();
  const RequestLimits limits{4096};
  const int64_t calls = store.calls();
  switch (selector % 7) {
    case 0: {
      idem::v1::BeginRequest request;
      if (!Parse(data, size, &request)) return;
      BeginResponse response;
      const absl::Status s = service.Begin(request, deadline, &response);
      CheckValidation(ValidateBegin(request).status(), s, calls, store);
      if (s.ok()) CheckBeginResponse(response);
      return;
    }
    case 1: {
      idem::v1::BatchBeginRequest request;
      if (!Parse(data, size, &request)) return;
      idem::v1::BatchBeginResponse response;
      const absl::Status s = service.BatchBegin(request, deadline, &response);
      CheckValidation(ValidateBatchBegin(request).status(), s, calls, store);
      if (!s.ok()) return;
      FUZZ_CHECK(response.results_size() == request.requests_size());
      for (const idem::v1::BatchBeginResult& r : response.results()) {
        if (r.code() == 0) {
          CheckBeginResponse(r.response());
        } else {
          FUZZ_CHECK(r.code() == static_cast<int>(absl::StatusCode::kFailedPrecondition));
        }
      }
      return;
    }
    case 2: {
      idem::v1::CompleteRequest request;
      if (!Parse(data, size, &request)) return;
      idem::v1::CompleteResponse response;
      const absl::Status s = service.Complete(request, deadline, &response);
      CheckValidation(ValidateComplete(request, limits), s, calls, store);
      if (s.ok()) FUZZ_CHECK(response.record().status() == Record::COMPLETED);
      return;
    }
    case 3: {
      idem::v1::FailRequest request;
      if (!Parse(data, size, &request)) return;
      idem::v1::FailResponse response;
      const absl::Status s = service.Fail(request, deadline, &response);
      CheckValidation(ValidateFail(request, limits), s, calls, store);
      if (s.ok()) FUZZ_CHECK(response.record().status() == Record::FAILED);
      return;
    }
    case 4: {
      idem::v1::GetRequest request;
      if (!Parse(data, size, &request)) return;
      idem::v1::GetResponse response;
      const absl::Status s = service.Get(request, deadline, &response);
      CheckValidation(ValidateGet(request), s, calls, store);
      if (s.ok() && response.record().status() == Record::IN_PROGRESS) {
        FUZZ_CHECK(response.record().lease_token() == 0);
      }
      return;
    }
    case 5: {
      idem::v1::ExtendLeaseRequest request;
      if (!Parse(data, size, &request)) return;
      idem::v1::ExtendLeaseResponse response;
      const absl::Status s = service.ExtendLease(request, deadline, &response);
      CheckValidation(ValidateExtendLease(request).status(), s, calls, store);
      if (s.ok()) {
        FUZZ_CHECK(response.record().lease_token() == request.lease_token());
      }
      return;
    }
    default:
      store.Advance(absl::Seconds(size > 0 ? data[0] : 1));
      return;
  }
}

}  // namespace
}  // namespace idem

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // The parser logs every string field that is not valid UTF-8; refusing
  // those is expected here, and the log would drown libFuzzer's own output.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  idem::InMemoryStore store;
  idem::CheckingStore checked(&store);
  idem::IdempotencyService service(&checked, idem::RequestLimits{4096});
  size_t i = 0;
  for (int op = 0; op < 32 && i + 3 <= size; ++op) {
    const uint8_t selector = data[i];
    const size_t length = data[i + 1] | (size_t{data[i + 2]} << 8);
    i += 3;
    const size_t n = std::min(length, size - i);
    idem::RunOne(service, store, selector, data + i, n);
    i += n;
  }
  return 0;
}
