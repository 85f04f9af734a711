// LoadGenerator: drives idemd with many calls in flight from one process.
//
// `concurrency` slots each run one operation at a time, on gRPC's
// completion-queue API (default: `completion_queue_threads` threads each
// drain one queue, and a slot's calls all go to one queue; with one thread
// the load generator is one serial loop, as pgbench's one thread is) or on
// its callback API. Either way the completion records the operation and starts the
// slot's next one, so no thread waits per call. The run stops by itself after
// warmup + duration: each slot finishes its operation in flight and stops;
// Run() returns when every slot has stopped (every call has a deadline).
#ifndef IDEM_BENCH_LOAD_GENERATOR_H_
#define IDEM_BENCH_LOAD_GENERATOR_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/channel.h>
#include <grpcpp/completion_queue.h>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "bench/latency_recorder.h"
#include "idem/v1/idempotency.grpc.pb.h"

namespace idem::bench {

// What one operation is.
enum class OpKind {
  kBegin = 0,      // Begin on a new key
  kReplay = 1,     // Begin on a pre-populated completed key
  kCycle = 2,      // Begin then Complete on a new key
  kContended = 3,  // Begin on one of a few shared keys
};
constexpr int kOpKinds = 4;
const char* OpKindName(OpKind kind);

enum class Mode { kBegin, kReplay, kCycle, kContended, kMixed };
bool ParseMode(const std::string& text, Mode* mode);
const char* ModeName(Mode mode);

// Which gRPC client API issues the calls.
enum class ClientApi {
  // Completion queues drained by threads of our own: a completion is
  // handled on the thread that polled it (as pgbench's one thread does).
  kCompletionQueue,
  // Callbacks, run on gRPC's own threads.
  kCallback,
};
bool ParseClientApi(const std::string& text, ClientApi* api);
const char* ClientApiName(ClientApi api);

struct LoadOptions {
  Mode mode = Mode::kCycle;
  int concurrency = 8;
  absl::Duration warmup = absl::Seconds(1);
  absl::Duration duration = absl::Seconds(10);
  // Pre-populated keys for replay (and mixed's replay share).
  int replay_keys = 1000;
  // Shared keys for contended (and mixed's contended share).
  int contended_keys = 4;
  // Size of the response Complete stores.
  int response_bytes = 64;
  std::string scope_prefix;
  absl::Duration deadline = absl::Seconds(5);
  // Retention of every key written (so the sweeper cleans up after runs).
  absl::Duration retention = absl::Hours(1);
  // mixed: percentages of cycle, replay and contended operations.
  int mix_cycle = 50;
  int mix_replay = 30;
  int mix_contended = 20;
  uint64_t seed = 1;
  ClientApi client_api = ClientApi::kCompletionQueue;
  // kCompletionQueue: threads, each draining its own queue.
  int completion_queue_threads = 1;
};

// Counters of one run (the measured part, after warmup).
struct LoadResult {
  double measured_seconds = 0;
  uint64_t operations = 0;  // finished without error
  // Failed operations by gRPC status code (0..16).
  std::array<uint64_t, 17> errors{};
  // Begin outcomes (BeginResponse::Outcome 0..4) by operation kind.
  std::array<std::array<uint64_t, 5>, kOpKinds> outcomes{};
  // Operations that finished without error, by kind.
  std::array<uint64_t, kOpKinds> operations_by_kind{};
  uint64_t error_total() const;
};

class LoadGenerator {
 public:
  // One stub per channel; slots are spread over them round-robin.
  LoadGenerator(std::vector<std::shared_ptr<grpc::Channel>> channels,
                LoadOptions options);
  ~LoadGenerator();

  // Pre-populates the replay keys (replay and mixed), then runs warmup and
  // the measured duration. An error when populating fails.
  absl::Status Run(LoadResult* result);

  // Latency of measured operations, per kind and overall.
  const LatencyRecorder& latency(OpKind kind) const;
  const LatencyRecorder& overall_latency() const { return overall_; }

 private:
  class Slot;
  friend class Slot;
  struct Op;
  struct Phase;

  absl::Status Populate();
  void RunPhase(Phase* phase);
  idem::v1::Idempotency::Stub* stub(int slot) const;
  // kCompletionQueue: the queue of a slot's calls; null on kCallback.
  grpc::CompletionQueue* queue(int slot) const;
  // Handles every completion of `queue` until it is shut down and drained.
  static void DrainQueue(grpc::CompletionQueue* queue);

  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<idem::v1::Idempotency::Stub>> stubs_;
  LoadOptions options_;
  std::string request_hash_;
  std::string response_;
  std::array<std::unique_ptr<LatencyRecorder>, kOpKinds> latency_;
  LatencyRecorder overall_;
  std::atomic<uint64_t> operations_{0};
  std::array<std::atomic<uint64_t>, kOpKinds> operations_by_kind_{};
  std::array<std::atomic<uint64_t>, 17> errors_{};
  std::array<std::array<std::atomic<uint64_t>, 5>, kOpKinds> outcomes_{};
  std::vector<std::unique_ptr<Phase>> phases_;
  std::vector<std::vector<std::unique_ptr<Slot>>> slots_;
  // kCompletionQueue only; shut down and joined by the destructor, after
  // every phase has drained.
  std::vector<std::unique_ptr<grpc::CompletionQueue>> queues_;
  std::vector<std::thread> queue_threads_;
};

}  // namespace idem::bench

#endif  // IDEM_BENCH_LOAD_GENERATOR_H_
