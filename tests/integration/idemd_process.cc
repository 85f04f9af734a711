#include "tests/integration/idemd_process.h"

#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <grpcpp/create_channel.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "absl/time/clock.h"
#include "tests/integration/test_env.h"

extern char** environ;

namespace idem::testenv {

pid_t SpawnProcess(std::vector<std::string> args, std::vector<std::string> env) {
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid;
  if (posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(),
                  env.empty() ? environ : envp.data()) != 0) {
    ADD_FAILURE() << "cannot start " << args[0];
    return -1;
  }
  return pid;
}

int PickFreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

std::shared_ptr<grpc::Channel> FastReconnectChannel(const std::string& address) {
  grpc::ChannelArguments args;
  // The default backoff (1 s and growing) would make tests wait seconds for
  // a server that started a moment after the first dial.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
  // Subchannels are otherwise shared process-wide, backoff state included.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

bool WaitForHealth(const std::string& address, bool serving, int timeout_ms) {
  const absl::Time give_up = absl::Now() + absl::Milliseconds(timeout_ms);
  while (absl::Now() < give_up) {
    // A new channel per probe: each probe is a fresh dial.
    auto stub = grpc::health::v1::Health::NewStub(FastReconnectChannel(address));
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Milliseconds(500)));
    grpc::health::v1::HealthCheckResponse response;
    const grpc::Status status =
        stub->Check(&context, grpc::health::v1::HealthCheckRequest(), &response);
    const bool is_serving =
        status.ok() &&
        response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
    if (is_serving == serving) return true;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return false;
}

IdemdProcess::IdemdProcess(const std::string& postgres_url,
                           std::vector<std::string> flags) {
  const int port = PickFreePort();
  address_ = absl::StrCat("127.0.0.1:", port);
  std::vector<std::string> args = {IdemdPath(), "--listen=" + address_,
                                   "--postgres=" + postgres_url,
                                   "--health_check_interval=200ms"};
  args.insert(args.end(), flags.begin(), flags.end());
  pid_ = SpawnProcess(std::move(args));
  serving_ = pid_ > 0 && WaitForHealth(address_, /*serving=*/true, 15000);
  EXPECT_TRUE(serving_) << "idemd at " << address_ << " never became SERVING";
  client_ = std::make_unique<Client>(FastReconnectChannel(address_));
}

IdemdProcess::~IdemdProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    Wait();
  }
}

void IdemdProcess::Signal(int signal) {
  if (pid_ > 0) kill(pid_, signal);
}

int IdemdProcess::Wait() {
  int status = 0;
  if (pid_ > 0) {
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }
  return status;
}

}  // namespace idem::testenv
