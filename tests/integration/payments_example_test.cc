// The payments example (examples/payments) as real processes: many threads
// charge the same orders over and over, retrying, while the example is
// killed with SIGKILL in the middle of charges and restarted on the same
// port. Afterwards the ledger must hold exactly one charge per order, and
// every OK answer for an order must name that charge. Runs alone
// (RUN_SERIAL): it kills processes.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/client_context.h>
#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "examples/payments/payments.grpc.pb.h"
#include "tests/integration/idemd_process.h"
#include "tests/integration/test_env.h"

extern char** environ;

namespace idem {
namespace {

using idem::examples::payments::ChargeReply;
using idem::examples::payments::ChargeRequest;
using idem::examples::payments::Payments;
using testenv::IdemdProcess;

constexpr char kScope[] = "payments.example/Charge";  // As in the example.
constexpr int kThreads = 16;
constexpr int kOrders = 20;
constexpr int kRounds = 3;     // Times each thread charges each order.
constexpr int kMaxKills = 2;

// payments_example as a child process; SIGKILLed by Kill() or on destruction.
class ExampleProcess {
 public:
  explicit ExampleProcess(std::vector<std::string> args)
      : pid_(testenv::SpawnProcess(std::move(args))) {}
  ~ExampleProcess() { Kill(); }
  ExampleProcess(const ExampleProcess&) = delete;
  ExampleProcess& operator=(const ExampleProcess&) = delete;

  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
};

bool Retryable(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::ABORTED ||
         code == grpc::StatusCode::DEADLINE_EXCEEDED;
}

// What the callers saw for one order.
struct OrderReplies {
  absl::Mutex mu;
  int ok ABSL_GUARDED_BY(mu) = 0;
  std::set<std::string> charge_ids ABSL_GUARDED_BY(mu);
  std::set<int64_t> amounts ABSL_GUARDED_BY(mu);
};

int64_t LedgerRows(pqxx::connection& ledger) {
  return pqxx::nontransaction(ledger).exec("SELECT count(*) FROM ledger")[0][0].as<int64_t>();
}

TEST(PaymentsExampleTest, EachOrderIsChargedOnceUnderRetriesAndKill9) {
  IdemdProcess idemd(testenv::SharedDatabaseUrl());
  ASSERT_TRUE(idemd.serving());
  const std::string ledger_url = testenv::CreateDatabase();
  const std::string address = absl::StrCat("127.0.0.1:", testenv::PickFreePort());
  // A 250 ms charge, half before and half after its commit, so a kill lands
  // in either window; a 1 s lease, so the next holder takes over soon.
  const std::vector<std::string> args = {
      IDEM_TEST_PAYMENTS_EXAMPLE, "--listen=" + address, "--idem=" + idemd.address(),
      "--postgres=" + ledger_url, "--work_delay=250ms", "--lease_ttl=1s"};
  auto example = std::make_unique<ExampleProcess>(args);
  ASSERT_TRUE(testenv::WaitForHealth(address, /*serving=*/true, 15000));

  // idem's scope is fixed and its database shared: order ids unique per run.
  const std::string run = absl::StrCat(absl::Hex(std::random_device{}()));
  std::vector<ChargeRequest> orders(kOrders);
  for (int i = 0; i < kOrders; ++i) {
    orders[i].set_order_id(absl::StrCat("order-", run, "-", i));
    orders[i].set_amount_cents(1000 + 7 * i);
    orders[i].set_currency("EUR");
  }
  std::vector<OrderReplies> replies(kOrders);
  std::atomic<int> calls{0}, retries{0}, unfinished{0}, unexpected{0};
  std::atomic<int> workers_left{kThreads};
  const absl::Time give_up = absl::Now() + absl::Seconds(40);

  std::shared_ptr<grpc::Channel> channel = testenv::FastReconnectChannel(address);
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&, t] {
      std::unique_ptr<Payments::Stub> stub = Payments::NewStub(channel);
      for (int round = 0; round < kRounds; ++round) {
        for (int i = 0; i < kOrders; ++i) {
          // Threads start on different orders, so many charges run at once.
          const int o = (t + i + 5 * round) % kOrders;
          for (;;) {
            if (absl::Now() > give_up) {
              ++unfinished;
              break;
            }
            grpc::ClientContext context;
            context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
            // Wait for the example to be back rather than fail at once: a call
            // in flight also drives gRPC's reconnection (else only its backup
            // poller does, every 5 s).
            context.set_wait_for_ready(true);
            ChargeReply reply;
            ++calls;
            const grpc::Status status = stub->Charge(&context, orders[o], &reply);
            if (status.ok()) {
              absl::MutexLock lock(&replies[o].mu);
              ++replies[o].ok;
              replies[o].charge_ids.insert(reply.charge_id());
              replies[o].amounts.insert(reply.amount_cents());
              break;
            }
            if (!Retryable(status.error_code())) {
              ++unexpected;
              ADD_FAILURE() << orders[o].order_id() << ": " << status.error_code()
                            << " " << status.error_message();
              break;
            }
            ++retries;
            absl::SleepFor(absl::Milliseconds(20));
          }
        }
      }
      --workers_left;
    });
  }

  // Kill the example as soon as a charge has committed since it started
  // (that charge is in its window before Complete, others are mid-way), then
  // restart it on the same port. Twice, while charges remain.
  int kills = 0;
  {
    pqxx::connection ledger(ledger_url);
    int64_t rows_at_start = 0;
    while (workers_left.load() > 0) {
      absl::SleepFor(absl::Milliseconds(5));
      if (kills == kMaxKills) continue;
      const int64_t charged = LedgerRows(ledger);
      if (charged == rows_at_start || charged >= kOrders) continue;
      example->Kill();
      ++kills;
      rows_at_start = LedgerRows(ledger);
      example = std::make_unique<ExampleProcess>(args);
      EXPECT_TRUE(testenv::WaitForHealth(address, /*serving=*/true, 15000));
    }
  }
  for (std::thread& w : workers) w.join();
  example->Kill();

  int violations = unexpected + unfinished;
  std::map<std::string, std::vector<pqxx::row>> ledger_rows;
  pqxx::connection ledger(ledger_url);
  const pqxx::result rows = pqxx::nontransaction(ledger).exec(
      "SELECT order_id, amount_cents, currency, charge_id, lease_token FROM ledger");
  for (const pqxx::row& row : rows) ledger_rows[row[0].as<std::string>()].push_back(row);
  int takeovers = 0, charges_found_by_successor = 0;
  for (int o = 0; o < kOrders; ++o) {
    const ChargeRequest& order = orders[o];
    // Every call got an OK answer in the end, all naming one charge.
    std::string replied_charge_id;
    {
      absl::MutexLock lock(&replies[o].mu);
      if (replies[o].ok != kThreads * kRounds || replies[o].charge_ids.size() != 1 ||
          replies[o].amounts != std::set<int64_t>{order.amount_cents()}) {
        ++violations;
        ADD_FAILURE() << order.order_id() << ": " << replies[o].ok << " OK answers naming "
                      << replies[o].charge_ids.size() << " charge ids and "
                      << replies[o].amounts.size() << " amounts";
      }
      if (!replies[o].charge_ids.empty()) replied_charge_id = *replies[o].charge_ids.begin();
    }
    // The ledger: exactly one row, with the order's amount and that charge.
    const std::vector<pqxx::row>& charged = ledger_rows[order.order_id()];
    if (charged.size() != 1) {
      ++violations;
      ADD_FAILURE() << order.order_id() << " charged " << charged.size() << " times";
      continue;
    }
    const pqxx::row& row = charged[0];
    const std::string charge_id = row[3].as<std::string>();
    if (row[1].as<int64_t>() != order.amount_cents() || row[2].as<std::string>() != "EUR" ||
        charge_id != replied_charge_id) {
      ++violations;
      ADD_FAILURE() << order.order_id() << " charged " << row[1].c_str() << " "
                    << row[2].c_str() << " as " << charge_id << ", expected "
                    << order.amount_cents() << " EUR as " << replied_charge_id;
    }
    // idem holds the same reply; a later token than the ledger row's means a
    // successor found the charge of a holder that died before Complete.
    absl::StatusOr<idem::v1::Record> record = idemd.client().Get(kScope, order.order_id());
    ChargeReply stored;
    if (!record.ok() || record->status() != idem::v1::Record::COMPLETED ||
        !stored.ParseFromString(record->response()) || stored.charge_id() != charge_id) {
      ++violations;
      ADD_FAILURE() << order.order_id() << ": idem record "
                    << (record.ok() ? record->ShortDebugString() : record.status().ToString());
      continue;
    }
    if (record->attempt() > 1) ++takeovers;
    if (record->lease_token() > row[4].as<int64_t>()) ++charges_found_by_successor;
  }
  for (const auto& [order_id, charged] : ledger_rows) {
    if (order_id.rfind(absl::StrCat("order-", run, "-"), 0) != 0) {
      ++violations;
      ADD_FAILURE() << "ledger row for unknown order " << order_id;
    }
  }

  std::printf(
      "payments summary: calls=%d retries=%d kills=%d orders=%d ledger_rows=%zu "
      "takeovers=%d found_by_successor=%d violations=%d\n",
      calls.load(), retries.load(), kills, kOrders, rows.size(), takeovers,
      charges_found_by_successor, violations);
  EXPECT_GE(kills, 1) << "the example was never killed mid-run";
  EXPECT_EQ(violations, 0);
}

}  // namespace
}  // namespace idem
