// KeyChangeListener: relays PostgreSQL's NOTIFY idem_key_done to KeyWaiters.
//
// One thread and one dedicated connection per idemd LISTEN on the channel
// that migration 0003's trigger notifies when a key's lease ends early
// (Complete, Fail, release), from whichever idemd replica wrote it. After
// every (re)connect it wakes all waiters, since notifications sent while it
// was away are lost; waiters also wake on their own timers, so a listener
// that is down only delays them, never strands them.
//
// Thread safety: Start/Stop from one owning thread.
#ifndef IDEM_SERVER_KEY_CHANGE_LISTENER_H_
#define IDEM_SERVER_KEY_CHANGE_LISTENER_H_

#include <string>
#include <thread>

#include "absl/synchronization/notification.h"
#include "server/key_waiters.h"

namespace idem {

class KeyChangeListener {
 public:
  // The channel migration 0003 notifies.
  static constexpr char kChannel[] = "idem_key_done";

  // `waiters` must outlive the listener.
  KeyChangeListener(std::string url, KeyWaiters* waiters);
  KeyChangeListener(const KeyChangeListener&) = delete;
  KeyChangeListener& operator=(const KeyChangeListener&) = delete;
  ~KeyChangeListener();

  void Start();
  // Returns within about 200 ms.
  void Stop();

 private:
  void Run();
  // Listens until Stop() or a connection failure (thrown by libpqxx).
  void ListenOnce();

  const std::string conninfo_;
  KeyWaiters* const waiters_;
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace idem

#endif  // IDEM_SERVER_KEY_CHANGE_LISTENER_H_
