// idemctl's admin commands, run as the real binary against a fresh migrated
// database that an in-process idemd fills through the client.
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <google/protobuf/struct.pb.h>
#include <grpcpp/create_channel.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "server/proto_time.h"
#include "tests/integration/idemd_process.h"
#include "tests/integration/test_env.h"

extern char** environ;

namespace idem {
namespace {

using google::protobuf::Value;
using idem::v1::BeginResponse;

struct CtlRun {
  int exit_code = -1;
  std::string out;
  std::string err;
  absl::Duration took;
};

// Runs idemctl with `args`, capturing stdout, stderr and the exit code.
CtlRun RunIdemctl(const std::vector<std::string>& args) {
  CtlRun run;
  int out_pipe[2], err_pipe[2];
  if (pipe(out_pipe) != 0 || pipe(err_pipe) != 0) {
    ADD_FAILURE() << "pipe";
    return run;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], STDERR_FILENO);
  posix_spawn_file_actions_addclose(&actions, out_pipe[0]);
  posix_spawn_file_actions_addclose(&actions, err_pipe[0]);
  std::vector<std::string> argv_storage = {IDEM_TEST_IDEMCTL};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  const absl::Time start = absl::Now();
  pid_t pid = -1;
  const int spawned = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (spawned != 0) {
    ADD_FAILURE() << "cannot start " << argv[0];
    close(out_pipe[0]);
    close(err_pipe[0]);
    return run;
  }
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&run.out, &run.err};
  int open_fds = 2;
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      const ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        sinks[i]->append(buf, n);
      } else {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  run.took = absl::Now() - start;
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return run;
}

std::string Describe(const CtlRun& run) {
  return absl::StrCat("exit ", run.exit_code, "\nstdout:\n", run.out, "\nstderr:\n", run.err);
}

Value ParseJson(const std::string& text) {
  Value v;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(text, &v).ok()) << text;
  return v;
}

const Value& Field(const Value& object, const std::string& name) {
  static const Value* const kMissing = new Value();
  const auto& fields = object.struct_value().fields();
  auto it = fields.find(name);
  EXPECT_NE(it, fields.end()) << "no field " << name;
  return it == fields.end() ? *kMissing : it->second;
}

class IdemctlTest : public testing::Test {
 protected:
  void SetUp() override {
    url_ = testenv::CreateMigratedDatabase();
    Server::Options options = testenv::TestServerOptions(url_);
    // The stats and expiry tests count rows the sweeper must not delete yet.
    options.sweep_interval = absl::Hours(1);
    // These tests check what the database holds right after each command;
    // idemd's record cache may replay a purged record for up to
    // --record_cache_ttl (RecordCacheServerTest in server_test pins that
    // bound), so it is off here.
    options.record_cache_bytes = 0;
    idemd_ = std::make_unique<testenv::InProcessIdemd>(options);
    ASSERT_NE(idemd_->client, nullptr);
    scope_ = testenv::UniqueScope();
  }

  CtlRun Ctl(std::vector<std::string> args) {
    args.push_back("--postgres=" + url_);
    return RunIdemctl(args);
  }

  idem::v1::BeginRequest Request(const std::string& scope, const std::string& key,
                                 absl::Duration lease = absl::Seconds(60),
                                 absl::Duration retention = absl::Hours(1)) {
    idem::v1::BeginRequest r;
    r.set_scope(scope);
    r.set_key(key);
    r.set_request_hash(Client::RequestHash("charge"));
    *r.mutable_lease_ttl() = ToProtoDuration(lease);
    *r.mutable_retention() = ToProtoDuration(retention);
    return r;
  }

  int64_t Acquire(const std::string& scope, const std::string& key,
                  absl::Duration lease = absl::Seconds(60),
                  absl::Duration retention = absl::Hours(1)) {
    absl::StatusOr<BeginResponse> r = idemd_->client->Begin(Request(scope, key, lease, retention));
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return 0;
    EXPECT_EQ(r->outcome(), BeginResponse::ACQUIRED);
    return r->lease_token();
  }

  void Complete(const std::string& scope, const std::string& key, const std::string& response,
                absl::Duration retention = absl::Hours(1)) {
    idem::v1::CompleteRequest c;
    c.set_scope(scope);
    c.set_key(key);
    // A record never expires before its lease ends: keep the lease short.
    c.set_lease_token(Acquire(scope, key, std::min(absl::Seconds(60), retention), retention));
    c.set_response(response);
    c.set_response_code(201);
    ASSERT_TRUE(idemd_->client->Complete(c).ok());
  }

  void FailKey(const std::string& scope, const std::string& key) {
    idem::v1::FailRequest f;
    f.set_scope(scope);
    f.set_key(key);
    f.set_lease_token(Acquire(scope, key));
    f.set_error("card declined");
    ASSERT_TRUE(idemd_->client->Fail(f).ok());
  }

  std::string url_;
  std::unique_ptr<testenv::InProcessIdemd> idemd_;
  std::string scope_;
};

TEST_F(IdemctlTest, GetShowsARecordInTextAndJson) {
  Complete(scope_, "order-1", "paid");
  const CtlRun text = Ctl({"get", scope_, "order-1"});
  ASSERT_EQ(text.exit_code, 0) << Describe(text);
  EXPECT_NE(text.out.find("COMPLETED"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("4 bytes, code 201: \"paid\""), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("attempt:      1"), std::string::npos) << text.out;

  const CtlRun json = Ctl({"get", scope_, "order-1", "--json"});
  ASSERT_EQ(json.exit_code, 0) << Describe(json);
  const Value v = ParseJson(json.out);
  const Value& record = Field(v, "record");
  EXPECT_EQ(Field(record, "status").string_value(), "COMPLETED");
  EXPECT_EQ(Field(record, "scope").string_value(), scope_);
  EXPECT_EQ(Field(record, "response").string_value(), absl::Base64Escape("paid"));
  EXPECT_EQ(Field(record, "attempt").number_value(), 1);
  EXPECT_EQ(Field(v, "response_size").number_value(), 4);
  EXPECT_FALSE(Field(v, "expired").bool_value());
}

TEST_F(IdemctlTest, GetOfAMissingKeyExits3) {
  const CtlRun run = Ctl({"get", scope_, "nope"});
  EXPECT_EQ(run.exit_code, 3) << Describe(run);
  EXPECT_NE(run.err.find("no record"), std::string::npos) << run.err;
  EXPECT_TRUE(run.out.empty()) << run.out;

  const CtlRun json = Ctl({"get", scope_, "nope", "--json"});
  EXPECT_EQ(json.exit_code, 3) << Describe(json);
  EXPECT_EQ(Field(Field(ParseJson(json.out), "error"), "code").string_value(), "NOT_FOUND");
}

TEST_F(IdemctlTest, GetPreviewsAHugeResponse) {
  Complete(scope_, "big", std::string(200000, 'x'));
  const CtlRun run = Ctl({"get", scope_, "big"});
  ASSERT_EQ(run.exit_code, 0) << Describe(run);
  EXPECT_LT(run.out.size(), 2000u) << run.out;
  EXPECT_NE(run.out.find("200000 bytes"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("(199920 more bytes)"), std::string::npos) << run.out;
}

TEST_F(IdemctlTest, GetShowsAnExpiredRecordMarked) {
  Complete(scope_, "old", "paid", /*retention=*/absl::Seconds(1));
  absl::SleepFor(absl::Milliseconds(1300));
  // Gone for the RPCs...
  EXPECT_EQ(idemd_->client->Get(scope_, "old").status().code(), absl::StatusCode::kNotFound);
  // ...but an operator still sees it, marked.
  const CtlRun run = Ctl({"get", scope_, "old"});
  ASSERT_EQ(run.exit_code, 0) << Describe(run);
  EXPECT_NE(run.out.find("EXPIRED"), std::string::npos) << run.out;
  const CtlRun json = Ctl({"get", scope_, "old", "--json"});
  EXPECT_TRUE(Field(ParseJson(json.out), "expired").bool_value()) << json.out;
}

TEST_F(IdemctlTest, ListFiltersByPrefixStatusAgeAndLimit) {
  // '_' and '.' are LIKE-ish characters in a scope; the prefix "x_y" must not
  // match "xzy" or "x.y".
  const std::string a = scope_ + "/x_y", b = scope_ + "/xzy", c = scope_ + "/x.y";
  Complete(a, "k1", "r");
  Acquire(a, "k2");
  FailKey(a, "k3");
  Complete(b, "k1", "r");
  Complete(c, "k1", "r");

  const CtlRun all = Ctl({"list", "--scope=" + a, "--json"});
  ASSERT_EQ(all.exit_code, 0) << Describe(all);
  const Value list = ParseJson(all.out);
  ASSERT_EQ(list.list_value().values_size(), 3) << all.out;
  for (const Value& v : list.list_value().values()) {
    EXPECT_EQ(Field(Field(v, "record"), "scope").string_value(), a);
  }
  // Oldest created first.
  EXPECT_EQ(Field(Field(list.list_value().values(0), "record"), "key").string_value(), "k1");
  EXPECT_EQ(Field(Field(list.list_value().values(2), "record"), "key").string_value(), "k3");

  const CtlRun in_progress = Ctl({"list", "--scope=" + a, "--status=in_progress", "--json"});
  ASSERT_EQ(in_progress.exit_code, 0) << Describe(in_progress);
  const Value ip = ParseJson(in_progress.out);
  ASSERT_EQ(ip.list_value().values_size(), 1) << in_progress.out;
  EXPECT_EQ(Field(Field(ip.list_value().values(0), "record"), "key").string_value(), "k2");

  const CtlRun old = Ctl({"list", "--scope=" + a, "--older-than=10m", "--json"});
  ASSERT_EQ(old.exit_code, 0) << Describe(old);
  EXPECT_EQ(ParseJson(old.out).list_value().values_size(), 0) << old.out;

  absl::SleepFor(absl::Milliseconds(300));
  const CtlRun recent = Ctl({"list", "--scope=" + a, "--older_than=200ms", "--json"});
  EXPECT_EQ(ParseJson(recent.out).list_value().values_size(), 3) << recent.out;

  const CtlRun limited = Ctl({"list", "--scope=" + scope_, "--limit=2", "--json"});
  EXPECT_EQ(ParseJson(limited.out).list_value().values_size(), 2) << limited.out;

  const CtlRun text = Ctl({"list", "--scope=" + scope_});
  ASSERT_EQ(text.exit_code, 0) << Describe(text);
  EXPECT_NE(text.out.find("5 record(s), oldest created first"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find(b), std::string::npos) << text.out;
}

TEST_F(IdemctlTest, ReleaseLetsTheNextBeginTakeOver) {
  const int64_t token = Acquire(scope_, "stuck");
  // A live lease: another Begin is told to wait.
  absl::StatusOr<BeginResponse> before = idemd_->client->Begin(Request(scope_, "stuck"));
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(before->outcome(), BeginResponse::IN_PROGRESS);

  const CtlRun run = Ctl({"release", scope_, "stuck"});
  ASSERT_EQ(run.exit_code, 0) << Describe(run);
  EXPECT_NE(run.out.find("released"), std::string::npos) << run.out;

  absl::StatusOr<BeginResponse> after = idemd_->client->Begin(Request(scope_, "stuck"));
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->outcome(), BeginResponse::ACQUIRED);
  EXPECT_EQ(after->record().attempt(), 2);
  EXPECT_GT(after->lease_token(), token);
}

TEST_F(IdemctlTest, ReleaseWakesAWaitingBegin) {
  Acquire(scope_, "stuck");
  ClientOptions patient;
  patient.deadline = absl::Seconds(30);
  Client waiter_client(
      grpc::CreateChannel(idemd_->address, grpc::InsecureChannelCredentials()), patient);
  absl::StatusOr<BeginResponse> waited = absl::UnknownError("unset");
  absl::Time answered;
  std::thread waiter([&] {
    idem::v1::BeginRequest r = Request(scope_, "stuck");
    *r.mutable_wait() = ToProtoDuration(absl::Seconds(20));
    waited = waiter_client.Begin(r);
    answered = absl::Now();
  });
  for (int i = 0; i < 300 && idemd_->server->waiting_calls() == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_EQ(idemd_->server->waiting_calls(), 1u);
  const CtlRun run = Ctl({"release", scope_, "stuck"});
  const absl::Time released = absl::Now();
  waiter.join();
  ASSERT_EQ(run.exit_code, 0) << Describe(run);
  ASSERT_TRUE(waited.ok()) << waited.status();
  EXPECT_EQ(waited->outcome(), BeginResponse::ACQUIRED);
  EXPECT_EQ(waited->record().attempt(), 2);
  // Without the notification it would have answered after the 20 s wait.
  EXPECT_LT(answered - released, absl::Seconds(3));
}

TEST_F(IdemctlTest, ReleaseRefusesFinishedMissingAndNoticesARunOutLease) {
  Complete(scope_, "done", "paid");
  const CtlRun done = Ctl({"release", scope_, "done"});
  EXPECT_EQ(done.exit_code, 1) << Describe(done);
  EXPECT_NE(done.err.find("is COMPLETED"), std::string::npos) << done.err;

  FailKey(scope_, "failed");
  const CtlRun failed = Ctl({"release", scope_, "failed", "--json"});
  EXPECT_EQ(failed.exit_code, 1) << Describe(failed);
  EXPECT_EQ(Field(Field(ParseJson(failed.out), "error"), "code").string_value(),
            "FAILED_PRECONDITION");

  const CtlRun missing = Ctl({"release", scope_, "missing"});
  EXPECT_EQ(missing.exit_code, 3) << Describe(missing);

  Acquire(scope_, "ran-out", absl::Seconds(1));
  absl::SleepFor(absl::Milliseconds(1200));
  const CtlRun ran_out = Ctl({"release", scope_, "ran-out", "--json"});
  EXPECT_EQ(ran_out.exit_code, 0) << Describe(ran_out);
  EXPECT_TRUE(Field(ParseJson(ran_out.out), "already_free").bool_value()) << ran_out.out;
}

TEST_F(IdemctlTest, PurgeNeedsYes) {
  Complete(scope_, "k", "paid");
  const CtlRun refused = Ctl({"purge", scope_, "k"});
  EXPECT_EQ(refused.exit_code, 2) << Describe(refused);
  EXPECT_NE(refused.err.find("--yes"), std::string::npos) << refused.err;
  EXPECT_EQ(Ctl({"get", scope_, "k"}).exit_code, 0);

  const CtlRun purged = Ctl({"purge", scope_, "k", "--yes"});
  ASSERT_EQ(purged.exit_code, 0) << Describe(purged);
  EXPECT_NE(purged.out.find("purged"), std::string::npos) << purged.out;
  EXPECT_EQ(Ctl({"get", scope_, "k"}).exit_code, 3);
  EXPECT_EQ(Ctl({"purge", scope_, "k", "--yes"}).exit_code, 3);
  // The key is new again.
  absl::StatusOr<BeginResponse> again = idemd_->client->Begin(Request(scope_, "k"));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->outcome(), BeginResponse::ACQUIRED);
  EXPECT_EQ(again->record().attempt(), 1);
}

TEST_F(IdemctlTest, StatsCountsByStatusLeaseAndExpiry) {
  Complete(scope_, "c1", "r");
  Complete(scope_, "c2", "r");
  FailKey(scope_, "f1");
  Acquire(scope_, "live");
  Acquire(scope_, "ran-out", absl::Seconds(1));
  Complete(scope_, "expired", "r", /*retention=*/absl::Seconds(1));
  absl::SleepFor(absl::Milliseconds(1300));

  const CtlRun json = Ctl({"stats", "--json"});
  ASSERT_EQ(json.exit_code, 0) << Describe(json);
  const Value v = ParseJson(json.out);
  EXPECT_EQ(Field(v, "total_rows").number_value(), 6) << json.out;
  EXPECT_EQ(Field(v, "in_progress").number_value(), 2) << json.out;
  EXPECT_EQ(Field(v, "in_progress_past_lease").number_value(), 1) << json.out;
  EXPECT_EQ(Field(v, "completed").number_value(), 2) << json.out;
  EXPECT_EQ(Field(v, "failed").number_value(), 1) << json.out;
  EXPECT_EQ(Field(v, "expired_not_swept").number_value(), 1) << json.out;
  const Value& oldest = Field(v, "oldest_in_progress");
  EXPECT_EQ(Field(oldest, "key").string_value(), "live") << json.out;
  EXPECT_GE(Field(oldest, "age_seconds").number_value(), 1.0) << json.out;
  EXPECT_GT(Field(v, "oldest_expired_age_seconds").number_value(), 0.0) << json.out;

  const CtlRun text = Ctl({"stats"});
  ASSERT_EQ(text.exit_code, 0) << Describe(text);
  EXPECT_NE(text.out.find("6 (5 live, 1 expired not yet swept)"), std::string::npos)
      << text.out;
  EXPECT_NE(text.out.find("2 (1 past their lease)"), std::string::npos) << text.out;
}

TEST_F(IdemctlTest, StatusReportsTheSchemaAsJson) {
  const CtlRun run = Ctl({"status", "--json"});
  ASSERT_EQ(run.exit_code, 0) << Describe(run);
  const Value v = ParseJson(run.out);
  EXPECT_TRUE(Field(v, "up_to_date").bool_value()) << run.out;
  EXPECT_EQ(Field(v, "schema_version").number_value(), Field(v, "latest_version").number_value());
  EXPECT_GE(Field(v, "schema_version").number_value(), 3);
}

TEST_F(IdemctlTest, HealthOfARunningIdemdAndOfAClosedPort) {
  const CtlRun serving = RunIdemctl({"health", idemd_->address});
  EXPECT_EQ(serving.exit_code, 0) << Describe(serving);
  EXPECT_EQ(serving.out, "SERVING\n");
  const CtlRun json = RunIdemctl({"health", idemd_->address, "--json"});
  EXPECT_EQ(Field(ParseJson(json.out), "status").string_value(), "SERVING") << json.out;

  const std::string closed = absl::StrCat("127.0.0.1:", testenv::PickFreePort());
  const CtlRun down = RunIdemctl({"health", closed, "--timeout=1s"});
  EXPECT_EQ(down.exit_code, 1) << Describe(down);
  EXPECT_EQ(down.out, "UNREACHABLE\n");
  EXPECT_LT(down.took, absl::Seconds(5));
}

TEST_F(IdemctlTest, UsageErrorsExit2) {
  const std::vector<std::vector<std::string>> cases = {
      {},
      {"frobnicate"},
      {"get", scope_},
      {"get", scope_, "k", "extra"},
      {"health"},
      {"list", "--status=bogus"},
      {"list", "--limit=0"},
      {"list", "--limit=abc"},
      {"list", "--older_than=forever"},
      {"stats", "--no_such_flag"},
      {"health", "127.0.0.1:1", "--timeout=0s"},
  };
  for (const std::vector<std::string>& args : cases) {
    const CtlRun run = RunIdemctl(args);
    EXPECT_EQ(run.exit_code, 2) << absl::StrJoin(args, " ") << "\n" << Describe(run);
    EXPECT_FALSE(run.err.empty()) << absl::StrJoin(args, " ");
  }
  // No database URL anywhere is a usage error too.
  const CtlRun no_url = RunIdemctl({"stats", "--postgres="});
  if (getenv("IDEM_POSTGRES_URL") == nullptr) {
    EXPECT_EQ(no_url.exit_code, 2) << Describe(no_url);
  }
}

TEST_F(IdemctlTest, UnreachableDatabaseExits1) {
  const CtlRun run = RunIdemctl(
      {"stats", absl::StrCat("--postgres=postgresql://127.0.0.1:", testenv::PickFreePort(),
                             "/idem?connect_timeout=2")});
  EXPECT_EQ(run.exit_code, 1) << Describe(run);
  EXPECT_NE(run.err.find("database unavailable"), std::string::npos) << run.err;
}

}  // namespace
}  // namespace idem
