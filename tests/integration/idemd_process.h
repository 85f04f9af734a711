// IdemdProcess: an idemd binary run as a child process, for tests that kill
// it, run several at once, or restart its database underneath it.
#ifndef IDEM_TESTS_INTEGRATION_IDEMD_PROCESS_H_
#define IDEM_TESTS_INTEGRATION_IDEMD_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/channel.h>

#include "idem/client.h"

namespace idem::testenv {

class IdemdProcess {
 public:
  // Starts idemd on a free port against `postgres_url` with extra flags,
  // and waits until its health service says SERVING.
  IdemdProcess(const std::string& postgres_url, std::vector<std::string> flags = {});
  ~IdemdProcess();

  // Sends `signal`; with Wait() the exit status (as from waitpid).
  void Signal(int signal);
  int Wait();

  bool serving() const { return serving_; }
  const std::string& address() const { return address_; }
  Client& client() { return *client_; }

 private:
  pid_t pid_ = -1;
  std::string address_;
  bool serving_ = false;
  std::unique_ptr<Client> client_;
};

// A channel that redials within 200 ms (gRPC's default backoff is seconds).
std::shared_ptr<grpc::Channel> FastReconnectChannel(const std::string& address);

// Starts args[0] with `args`, and `env` (or, when empty, this process's
// environment). Returns its pid, or -1 after recording a test failure.
pid_t SpawnProcess(std::vector<std::string> args, std::vector<std::string> env = {});

// A TCP port on 127.0.0.1 that was free a moment ago.
int PickFreePort();

// Waits up to `timeout_ms` for the standard health check of `address` to
// answer SERVING (or, with serving = false, anything else).
bool WaitForHealth(const std::string& address, bool serving, int timeout_ms);

}  // namespace idem::testenv

#endif  // IDEM_TESTS_INTEGRATION_IDEMD_PROCESS_H_
