#include "bench/load_generator.h"

#include <algorithm>
#include <chrono>
#include <random>
#include <utility>

#include <grpcpp/client_context.h>
#include <grpcpp/support/async_unary_call.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace idem::bench {
namespace {

using Clock = std::chrono::steady_clock;
using idem::v1::BeginResponse;

std::chrono::nanoseconds ToChrono(absl::Duration d) {
  return std::chrono::nanoseconds(absl::ToInt64Nanoseconds(d));
}

void SetDuration(absl::Duration d, google::protobuf::Duration* out) {
  int64_t nanos = absl::ToInt64Nanoseconds(d);
  out->set_seconds(nanos / 1000000000);
  out->set_nanos(static_cast<int32_t>(nanos % 1000000000));
}

}  // namespace

const char* OpKindName(OpKind kind) {
  switch (kind) {
    case OpKind::kBegin: return "begin";
    case OpKind::kReplay: return "replay";
    case OpKind::kCycle: return "cycle";
    case OpKind::kContended: return "contended";
  }
  return "?";
}

bool ParseMode(const std::string& text, Mode* mode) {
  static const std::pair<const char*, Mode> kModes[] = {
      {"begin", Mode::kBegin}, {"replay", Mode::kReplay}, {"cycle", Mode::kCycle},
      {"contended", Mode::kContended}, {"mixed", Mode::kMixed}};
  for (const auto& [name, m] : kModes) {
    if (text == name) {
      *mode = m;
      return true;
    }
  }
  return false;
}

const char* ModeName(Mode mode) {
  switch (mode) {
    case Mode::kBegin: return "begin";
    case Mode::kReplay: return "replay";
    case Mode::kCycle: return "cycle";
    case Mode::kContended: return "contended";
    case Mode::kMixed: return "mixed";
  }
  return "?";
}

bool ParseClientApi(const std::string& text, ClientApi* api) {
  if (text == "cq") {
    *api = ClientApi::kCompletionQueue;
  } else if (text == "callback") {
    *api = ClientApi::kCallback;
  } else {
    return false;
  }
  return true;
}

const char* ClientApiName(ClientApi api) {
  return api == ClientApi::kCompletionQueue ? "cq" : "callback";
}

uint64_t LoadResult::error_total() const {
  uint64_t total = 0;
  for (uint64_t n : errors) total += n;
  return total;
}

// One run of all slots: either populating the replay keys (each slot takes
// the next key index until none is left) or the timed load.
struct LoadGenerator::Phase {
  bool populate = false;
  std::atomic<int> next_key{0};
  Clock::time_point measure_from;
  Clock::time_point stop_at;
  std::atomic<uint64_t> populate_errors{0};
  std::atomic<int> first_error_code{0};
  absl::Mutex mu;
  int active ABSL_GUARDED_BY(mu) = 0;
};

// One operation in flight: its calls' contexts and messages. On the
// completion-queue API it is also the tag of its call in flight.
struct LoadGenerator::Op {
  OpKind kind;
  Clock::time_point start;
  grpc::ClientContext begin_context;
  idem::v1::BeginRequest begin;
  idem::v1::BeginResponse begun;
  std::unique_ptr<grpc::ClientContext> complete_context;
  idem::v1::CompleteRequest complete;
  idem::v1::CompleteResponse completed;
  // Completion-queue API only.
  Slot* slot = nullptr;
  bool completing = false;  // The call in flight is the Complete.
  grpc::Status status;
  std::unique_ptr<grpc::ClientAsyncResponseReader<idem::v1::BeginResponse>> begin_call;
  std::unique_ptr<grpc::ClientAsyncResponseReader<idem::v1::CompleteResponse>>
      complete_call;
};

// A caller that keeps one operation in flight: each completion starts the
// next, until the phase ends. Touched by one callback at a time.
class LoadGenerator::Slot {
 public:
  Slot(LoadGenerator* gen, Phase* phase, int index)
      : gen_(gen), phase_(phase), index_(index),
        rng_(gen->options_.seed * 1000003 + index),
        stub_(gen->stub(index)),
        queue_(gen->queue(index)) {}

  // Completion-queue API: `op`'s call has finished.
  void OnCallDone(Op* op) {
    grpc::Status status = std::move(op->status);
    if (op->completing) {
      Finish(std::unique_ptr<Op>(op), status);
    } else {
      OnBegun(op, std::move(status));
    }
  }

  // Starts the next operation, or reports this slot done.
  void Next() {
    const LoadOptions& o = gen_->options_;
    auto op = std::make_unique<Op>();
    if (phase_->populate) {
      int i = phase_->next_key.fetch_add(1, std::memory_order_relaxed);
      if (i >= o.replay_keys) return Done();
      op->kind = OpKind::kCycle;
      FillBegin(op.get(), "replay", ReplayKey(i));
    } else {
      if (Clock::now() >= phase_->stop_at) return Done();
      op->kind = PickKind();
      switch (op->kind) {
        case OpKind::kBegin:
          FillBegin(op.get(), "begin", absl::StrCat("s", index_, "-", counter_++));
          break;
        case OpKind::kCycle:
          FillBegin(op.get(), "cycle", absl::StrCat("s", index_, "-", counter_++));
          break;
        case OpKind::kReplay:
          FillBegin(op.get(), "replay", ReplayKey(Uniform(o.replay_keys)));
          break;
        case OpKind::kContended:
          FillBegin(op.get(), "contended",
                    absl::StrCat("c-", Uniform(o.contended_keys)));
          // A short lease, so the keys change hands during the run.
          SetDuration(absl::Seconds(1), op->begin.mutable_lease_ttl());
          break;
      }
    }
    op->start = Clock::now();
    SetDeadline(&op->begin_context);
    Op* raw = op.release();
    if (queue_ != nullptr) {
      raw->slot = this;
      raw->begin_call = stub_->PrepareAsyncBegin(&raw->begin_context, raw->begin, queue_);
      raw->begin_call->StartCall();
      raw->begin_call->Finish(&raw->begun, &raw->status, raw);
      return;
    }
    stub_->async()->Begin(&raw->begin_context, &raw->begin, &raw->begun,
                          [this, raw](grpc::Status status) { OnBegun(raw, std::move(status)); });
  }

 private:
  void OnBegun(Op* raw, grpc::Status status) {
    std::unique_ptr<Op> op(raw);
    bool completes = op->kind == OpKind::kCycle;
    if (!status.ok() || !completes || op->begun.outcome() != BeginResponse::ACQUIRED) {
      return Finish(std::move(op), status);
    }
    op->complete.set_scope(op->begin.scope());
    op->complete.set_key(op->begin.key());
    op->complete.set_lease_token(op->begun.lease_token());
    op->complete.set_response(gen_->response_);
    op->complete.set_response_code(200);
    op->complete_context = std::make_unique<grpc::ClientContext>();
    SetDeadline(op->complete_context.get());
    raw = op.release();
    if (queue_ != nullptr) {
      raw->completing = true;
      raw->complete_call =
          stub_->PrepareAsyncComplete(raw->complete_context.get(), raw->complete, queue_);
      raw->complete_call->StartCall();
      raw->complete_call->Finish(&raw->completed, &raw->status, raw);
      return;
    }
    stub_->async()->Complete(raw->complete_context.get(), &raw->complete, &raw->completed,
                             [this, raw](grpc::Status status) {
                               Finish(std::unique_ptr<Op>(raw), status);
                             });
  }

  void Finish(std::unique_ptr<Op> op, const grpc::Status& status) {
    Clock::time_point end = Clock::now();
    int code = static_cast<int>(status.error_code());
    if (code < 0 || code > 16) code = 2;  // UNKNOWN
    int kind = static_cast<int>(op->kind);
    if (phase_->populate) {
      if (!status.ok()) {
        phase_->populate_errors.fetch_add(1, std::memory_order_relaxed);
        int none = 0;
        phase_->first_error_code.compare_exchange_strong(none, code);
      }
    } else if (!status.ok()) {
      // Errors count in warmup too: any error fails the run.
      gen_->errors_[code].fetch_add(1, std::memory_order_relaxed);
    } else if (op->start >= phase_->measure_from) {
      int64_t nanos =
          std::chrono::duration_cast<std::chrono::nanoseconds>(end - op->start).count();
      gen_->latency_[kind]->Record(nanos);
      gen_->overall_.Record(nanos);
      gen_->operations_.fetch_add(1, std::memory_order_relaxed);
      gen_->operations_by_kind_[kind].fetch_add(1, std::memory_order_relaxed);
      int outcome = static_cast<int>(op->begun.outcome());
      if (outcome >= 0 && outcome < 5) {
        gen_->outcomes_[kind][outcome].fetch_add(1, std::memory_order_relaxed);
      }
    }
    op.reset();
    Next();
  }

  void FillBegin(Op* op, const char* scope_suffix, std::string key) {
    op->begin.set_scope(absl::StrCat(gen_->options_.scope_prefix, "/", scope_suffix));
    op->begin.set_key(std::move(key));
    op->begin.set_request_hash(gen_->request_hash_);
    SetDuration(gen_->options_.retention, op->begin.mutable_retention());
  }

  void SetDeadline(grpc::ClientContext* context) {
    context->set_deadline(std::chrono::system_clock::now() +
                          ToChrono(gen_->options_.deadline));
    // Wait for a (re)connecting channel within the deadline rather than
    // failing at once, so a slot never spins on UNAVAILABLE.
    context->set_wait_for_ready(true);
  }

  OpKind PickKind() {
    switch (gen_->options_.mode) {
      case Mode::kBegin: return OpKind::kBegin;
      case Mode::kReplay: return OpKind::kReplay;
      case Mode::kCycle: return OpKind::kCycle;
      case Mode::kContended: return OpKind::kContended;
      case Mode::kMixed: break;
    }
    const LoadOptions& o = gen_->options_;
    int roll = Uniform(o.mix_cycle + o.mix_replay + o.mix_contended);
    if (roll < o.mix_cycle) return OpKind::kCycle;
    if (roll < o.mix_cycle + o.mix_replay) return OpKind::kReplay;
    return OpKind::kContended;
  }

  int Uniform(int n) {
    if (n <= 1) return 0;
    return static_cast<int>(rng_() % static_cast<uint64_t>(n));
  }

  static std::string ReplayKey(int i) { return absl::StrCat("r-", i); }

  void Done() {
    absl::MutexLock lock(&phase_->mu);
    --phase_->active;
  }

  LoadGenerator* const gen_;
  Phase* const phase_;
  const int index_;
  std::mt19937_64 rng_;
  idem::v1::Idempotency::Stub* const stub_;
  grpc::CompletionQueue* const queue_;  // Null: the callback API.
  uint64_t counter_ = 0;
};

LoadGenerator::LoadGenerator(std::vector<std::shared_ptr<grpc::Channel>> channels,
                             LoadOptions options)
    : channels_(std::move(channels)), options_(std::move(options)) {
  for (const auto& channel : channels_) {
    stubs_.push_back(idem::v1::Idempotency::NewStub(channel));
  }
  for (auto& recorder : latency_) recorder = std::make_unique<LatencyRecorder>();
  // A fixed 32-byte fingerprint: every caller of a key sends the same one.
  request_hash_ = std::string(32, '\x5a');
  response_ = std::string(static_cast<size_t>(options_.response_bytes), 'r');
  if (options_.client_api == ClientApi::kCompletionQueue) {
    for (int i = 0; i < std::max(options_.completion_queue_threads, 1); ++i) {
      queues_.push_back(std::make_unique<grpc::CompletionQueue>());
      queue_threads_.emplace_back(&LoadGenerator::DrainQueue, queues_.back().get());
    }
  }
}

// Every phase has drained (Run returned), so no call is in flight.
LoadGenerator::~LoadGenerator() {
  for (auto& queue : queues_) queue->Shutdown();
  for (std::thread& thread : queue_threads_) thread.join();
}

void LoadGenerator::DrainQueue(grpc::CompletionQueue* queue) {
  void* tag;
  bool ok;  // Always true for a unary call's Finish.
  while (queue->Next(&tag, &ok)) {
    Op* op = static_cast<Op*>(tag);
    op->slot->OnCallDone(op);
  }
}

grpc::CompletionQueue* LoadGenerator::queue(int slot) const {
  if (queues_.empty()) return nullptr;
  return queues_[static_cast<size_t>(slot) % queues_.size()].get();
}

idem::v1::Idempotency::Stub* LoadGenerator::stub(int slot) const {
  return stubs_[static_cast<size_t>(slot) % stubs_.size()].get();
}

const LatencyRecorder& LoadGenerator::latency(OpKind kind) const {
  return *latency_[static_cast<int>(kind)];
}

void LoadGenerator::RunPhase(Phase* phase) {
  // Slots (and phases) live as long as the generator: a slot's last
  // callback may still be unlocking phase->mu when Await returns.
  std::vector<std::unique_ptr<Slot>>& slots = slots_.emplace_back();
  {
    absl::MutexLock lock(&phase->mu);
    phase->active = options_.concurrency;
  }
  for (int i = 0; i < options_.concurrency; ++i) {
    slots.push_back(std::make_unique<Slot>(this, phase, i));
  }
  for (auto& slot : slots) slot->Next();
  // Every call has a deadline, so every slot stops within one operation
  // (at most two deadlines) of stop_at; populating ends when keys run out.
  absl::MutexLock lock(&phase->mu);
  auto drained = [phase]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(phase->mu) {
    return phase->active == 0;
  };
  phase->mu.Await(absl::Condition(&drained));
}

absl::Status LoadGenerator::Populate() {
  Phase& phase = *phases_.emplace_back(std::make_unique<Phase>());
  phase.populate = true;
  RunPhase(&phase);
  uint64_t failed = phase.populate_errors.load();
  if (failed != 0) {
    return absl::UnavailableError(absl::StrCat(
        "populating ", options_.replay_keys, " replay keys: ", failed,
        " operations failed, the first with gRPC code ", phase.first_error_code.load()));
  }
  return absl::OkStatus();
}

absl::Status LoadGenerator::Run(LoadResult* result) {
  if (options_.mode == Mode::kReplay || options_.mode == Mode::kMixed) {
    absl::Status populated = Populate();
    if (!populated.ok()) return populated;
  }
  Phase& phase = *phases_.emplace_back(std::make_unique<Phase>());
  Clock::time_point start = Clock::now();
  phase.measure_from = start + ToChrono(options_.warmup);
  phase.stop_at = phase.measure_from + ToChrono(options_.duration);
  RunPhase(&phase);

  *result = LoadResult();
  result->measured_seconds = absl::ToDoubleSeconds(options_.duration);
  result->operations = operations_.load();
  for (int i = 0; i < 17; ++i) result->errors[i] = errors_[i].load();
  for (int k = 0; k < kOpKinds; ++k) {
    result->operations_by_kind[k] = operations_by_kind_[k].load();
    for (int o = 0; o < 5; ++o) result->outcomes[k][o] = outcomes_[k][o].load();
  }
  return absl::OkStatus();
}

}  // namespace idem::bench
