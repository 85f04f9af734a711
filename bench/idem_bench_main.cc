// idem-bench: a gRPC load generator for idemd. Flags, then one run, then a
// report on stdout (and with --json, a JSON object in a file).
//
//   idem-bench --mode=cycle --concurrency=32 --duration=10s
//
// Exit status: 0 when every operation succeeded, 1 when any failed (or
// populating the replay keys failed), 2 for a bad flag.
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/load_generator.h"
#include "bench/report.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051", "idemd's gRPC address");
ABSL_FLAG(std::string, mode, "cycle",
          "begin (Begin on new keys), replay (Begin on --keys pre-populated "
          "completed keys), cycle (Begin then Complete on new keys), contended "
          "(Begin on --keys shared keys), mixed (cycle, replay and contended "
          "by --mix)");
ABSL_FLAG(int, concurrency, 8, "operations kept in flight");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(10), "measured time");
ABSL_FLAG(absl::Duration, warmup, absl::Seconds(1),
          "time under load before measuring starts");
ABSL_FLAG(int, keys, 0,
          "replay: completed keys to pre-populate (0: 1000); contended: shared "
          "keys (0: 4). mixed uses the defaults of each");
ABSL_FLAG(int, response_bytes, 64, "size of the response each Complete stores");
ABSL_FLAG(std::string, scope_prefix, "",
          "prefix of every scope written (empty: bench-<pid>-<unix time>, "
          "unique per run)");
ABSL_FLAG(std::string, json, "", "also write the result as a JSON object to this path");
ABSL_FLAG(absl::Duration, deadline, absl::Seconds(5), "deadline of each call");
ABSL_FLAG(absl::Duration, retention, absl::Hours(1),
          "retention of the keys written (the sweeper deletes them after)");
ABSL_FLAG(std::string, mix, "50,30,20",
          "mixed: percentages of cycle, replay and contended operations");
ABSL_FLAG(int, channels, 1, "gRPC channels (TCP connections) to spread calls over");
ABSL_FLAG(std::string, client, "cq",
          "gRPC client API: cq (completion queues drained by --client_threads "
          "threads of idem-bench's own) or callback (gRPC's callback API, on "
          "gRPC's threads)");
ABSL_FLAG(int, client_threads, 1,
          "cq: threads, each draining its own completion queue");

namespace {

int Usage(const std::string& message) {
  std::cerr << "idem-bench: " << message << "\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("A load generator for idemd: idem-bench --mode=cycle --concurrency=32");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  // As in idemd: Debian's Abseil checks every Mutex acquisition (gRPC's
  // too) for deadlocks unless told not to; a load generator should not pay.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  if (rest.size() > 1) return Usage(absl::StrCat("unexpected argument ", rest[1]));

  using idem::bench::LoadOptions;
  using idem::bench::Mode;
  LoadOptions options;
  if (!idem::bench::ParseMode(absl::GetFlag(FLAGS_mode), &options.mode)) {
    return Usage(absl::StrCat("unknown --mode ", absl::GetFlag(FLAGS_mode)));
  }
  options.concurrency = absl::GetFlag(FLAGS_concurrency);
  if (options.concurrency < 1 || options.concurrency > 100000) {
    return Usage("--concurrency must be 1 to 100000");
  }
  options.duration = absl::GetFlag(FLAGS_duration);
  options.warmup = absl::GetFlag(FLAGS_warmup);
  options.deadline = absl::GetFlag(FLAGS_deadline);
  options.retention = absl::GetFlag(FLAGS_retention);
  if (options.duration <= absl::ZeroDuration() || options.duration > absl::Hours(24)) {
    return Usage("--duration must be more than 0 and at most 24h");
  }
  if (options.warmup < absl::ZeroDuration() || options.warmup > absl::Hours(1)) {
    return Usage("--warmup must be 0 to 1h");
  }
  if (options.deadline <= absl::ZeroDuration() || options.deadline > absl::Minutes(10)) {
    return Usage("--deadline must be more than 0 and at most 10m");
  }
  if (options.retention < absl::Seconds(1) || options.retention > absl::Hours(24 * 30)) {
    return Usage("--retention must be 1s to 720h (idemd's limits)");
  }
  int keys = absl::GetFlag(FLAGS_keys);
  if (keys < 0 || keys > 10000000) return Usage("--keys must be 0 to 10000000");
  if (keys > 0 && options.mode == Mode::kReplay) options.replay_keys = keys;
  if (keys > 0 && options.mode == Mode::kContended) options.contended_keys = keys;
  options.response_bytes = absl::GetFlag(FLAGS_response_bytes);
  if (options.response_bytes < 0 || options.response_bytes > (1 << 20)) {
    return Usage("--response_bytes must be 0 to 1048576");
  }
  std::vector<std::string> mix = absl::StrSplit(absl::GetFlag(FLAGS_mix), ',');
  if (mix.size() != 3 || !absl::SimpleAtoi(mix[0], &options.mix_cycle) ||
      !absl::SimpleAtoi(mix[1], &options.mix_replay) ||
      !absl::SimpleAtoi(mix[2], &options.mix_contended) || options.mix_cycle < 0 ||
      options.mix_replay < 0 || options.mix_contended < 0 ||
      options.mix_cycle + options.mix_replay + options.mix_contended <= 0) {
    return Usage("--mix must be three non-negative percentages, e.g. 50,30,20");
  }
  int channel_count = absl::GetFlag(FLAGS_channels);
  if (channel_count < 1 || channel_count > 64) return Usage("--channels must be 1 to 64");
  if (!idem::bench::ParseClientApi(absl::GetFlag(FLAGS_client), &options.client_api)) {
    return Usage(absl::StrCat("unknown --client ", absl::GetFlag(FLAGS_client),
                              " (cq or callback)"));
  }
  options.completion_queue_threads = absl::GetFlag(FLAGS_client_threads);
  if (options.completion_queue_threads < 1 || options.completion_queue_threads > 64) {
    return Usage("--client_threads must be 1 to 64");
  }
  options.scope_prefix = absl::GetFlag(FLAGS_scope_prefix);
  if (options.scope_prefix.empty()) {
    options.scope_prefix = absl::StrCat("bench-", getpid(), "-", absl::ToUnixSeconds(absl::Now()));
  }
  options.seed = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));

  std::string target = absl::GetFlag(FLAGS_target);
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < channel_count; ++i) {
    grpc::ChannelArguments args;
    // Its own subchannel pool, so each channel is its own connection.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    channels.push_back(
        grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args));
  }

  idem::bench::RunInfo info{target, options.scope_prefix, options};
  idem::bench::LoadGenerator generator(channels, options);
  idem::bench::LoadResult result;
  absl::Status run = generator.Run(&result);
  if (!run.ok()) {
    std::cerr << "idem-bench: " << run << "\n";
    return 1;
  }
  idem::bench::PrintReport(info, result, generator, std::cout);
  std::cout.flush();
  if (!absl::GetFlag(FLAGS_json).empty()) {
    std::ofstream file(absl::GetFlag(FLAGS_json), std::ios::trunc);
    file << idem::bench::ReportJson(info, result, generator);
    file.close();
    if (!file) {
      std::cerr << "idem-bench: cannot write " << absl::GetFlag(FLAGS_json) << "\n";
      return 1;
    }
  }
  return result.error_total() == 0 ? 0 : 1;
}
