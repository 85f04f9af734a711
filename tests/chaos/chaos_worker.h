// ChaosWorker: one thread of load for the chaos harness. Each operation
// picks a key (KeyPicker: a window sliding over the keys, so several workers
// are on each key at once) and makes its FencedEffect happen through idem,
// in one of two ways:
//
//   - RunOnce (Client::RunOnce): usually plain, with the heartbeat; some
//     runs turn the heartbeat off and sleep past their lease, before or
//     after writing the effect, so leases run out mid-work and are taken
//     over.
//   - The raw RPCs (Begin with wait, Complete, Fail) on gRPC's callback
//     API, some of them cancelled mid-call (ClientContext::TryCancel); a
//     cancelled Begin is sometimes retried with the same owner (re-entry), a
//     cancelled Complete retried with the same token or abandoned.
//
// Everything seen goes to the ChaosJournal: acquisitions, COMPLETED answers,
// each call's time against its deadline, and violations (an answer a
// correct idem never gives: FAILED records, INTERNAL, NOT_FOUND, ...).
//
// Thread safety: a ChaosWorker is used by one thread; KeyPicker is shared.
#ifndef IDEM_TESTS_CHAOS_CHAOS_WORKER_H_
#define IDEM_TESTS_CHAOS_CHAOS_WORKER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include <grpcpp/channel.h>

#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "idem/client.h"
#include "idem/v1/idempotency.grpc.pb.h"
#include "tests/chaos/chaos_journal.h"
#include "tests/chaos/fenced_effect.h"

namespace idem::chaos {

// Key names and request bytes, shared by workers and checker.
std::string KeyName(int key);
std::string RequestBytes(int key);
// A COMPLETED record's response: "effect:<chaos_effects.id>".
std::string EffectResponse(int64_t effect_id);

// Hands out keys from a window that slides over [0, keys) as operations are
// taken, about `visits` operations per key, then wraps around (replays).
class KeyPicker {
 public:
  KeyPicker(int keys, int window, int visits)
      : keys_(keys), window_(window), visits_(visits) {}
  int Next(absl::BitGen& random);

 private:
  const int keys_, window_, visits_;
  std::atomic<int64_t> taken_{0};
};

struct WorkerOptions {
  std::string scope;
  absl::Duration lease_ttl = absl::Seconds(1);
  // Per-operation odds.
  double raw_rpcs = 0.3;        // raw RPCs instead of RunOnce
  double cancel = 0.15;         // a raw call is cancelled mid-call
  double sleep_past_lease = 0.1;  // a RunOnce's work outlives its lease
  FencedEffect::Mode effect_mode = FencedEffect::Mode::kFenced;
};

class ChaosWorker {
 public:
  ChaosWorker(int id, std::shared_ptr<grpc::Channel> channel,
              const std::string& effects_url, ChaosJournal* journal,
              WorkerOptions options);

  // Operations until `stop`.
  void Run(KeyPicker* keys, const std::atomic<bool>& stop);
  // RunOnce on `key` (heartbeat on, no faults of its own) until it answers
  // a COMPLETED record or `give_up` passes.
  absl::Status DriveToCompletion(int key, absl::Time give_up);

 private:
  // One RunOnce; `sleep_past_lease` makes work outlive the lease. Returns
  // what RunOnce returned (violations already journaled).
  absl::Status RunOnceOperation(int key, bool sleep_past_lease);
  void RawOperation(int key);
  // The effect as holder of `token`: its response, or why not.
  absl::StatusOr<std::string> Effect(int key, int64_t token, absl::Duration hold);
  // A raw call's final status, judged: anything outside `expected` codes
  // is a violation.
  void JudgeStatus(const char* what, int key, const grpc::Status& status, bool cancelled,
                   const std::string& peer, absl::Duration took);
  absl::Duration MaybeCancelAfter();

  const int id_;
  const std::shared_ptr<grpc::Channel> channel_;
  Client client_;
  const std::unique_ptr<idem::v1::Idempotency::Stub> stub_;
  FencedEffect effect_;
  ChaosJournal* const journal_;
  const WorkerOptions options_;
  absl::BitGen random_;
};

}  // namespace idem::chaos

#endif  // IDEM_TESTS_CHAOS_CHAOS_WORKER_H_
