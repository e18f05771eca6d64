// Readiness behind one thin interface. The semantics are poll()'s,
// level-triggered: an fd is reported while it is ready for what it is
// watched for. poll() is the portable core; epoll (Linux) or kqueue (the
// BSDs, macOS) replace it at build time because poll() scans every fd on
// every call. `make POLLER=poll` forces the portable one.
//
// Interest is a set of bits; an fd watched with no bits is not watched at
// all (so a hung-up socket nobody reads cannot spin the loop), and one
// watched with kHangup alone reports only errors and hang-ups, including,
// where the system tells (epoll, Linux poll), a peer that shut down its
// sending side while data it sent is still unread.
#ifndef BALANCE_POLLER_HPP
#define BALANCE_POLLER_HPP

#include <memory>
#include <vector>

enum : unsigned {
  kReadable = 1,  // interest and event
  kWritable = 2,  // interest and event
  kHangup = 4,    // interest: errors/hang-up only; event: peer closed or error
};

class Watcher {
 public:
  virtual void on_ready(int fd, unsigned events) = 0;

 protected:
  ~Watcher() = default;
};

struct ReadyEvent {
  int fd;
  unsigned events;
  Watcher* watcher;
};

class Poller {
 public:
  static std::unique_ptr<Poller> create();
  // The portable poll() back-end, whatever the build prefers.
  static std::unique_ptr<Poller> create_portable();
  virtual ~Poller() = default;
  virtual const char* name() const = 0;
  // Sets fd's interest; cheap when it does not change.
  virtual void watch(int fd, unsigned interest, Watcher* watcher) = 0;
  // The fd is about to be closed: it is no longer watched. (epoll drops a
  // closed fd by itself, so this costs it nothing; kqueue deletes the fd's
  // filters before the close, as libkqueue keeps them past close().)
  virtual void forget(int fd) = 0;
  // The same for an fd whose file stays open in another process (a
  // hand-over): closing this copy would not end epoll's registration, so
  // it is deleted first.
  void forget_shared(int fd) {
    watch(fd, 0, nullptr);
    forget(fd);
  }
  // Waits up to timeout_ms (-1 = forever) and fills *ready. Returns false
  // only on an unexpected error (EINTR is not one).
  virtual bool wait(int timeout_ms, std::vector<ReadyEvent>* ready) = 0;
};

#endif
