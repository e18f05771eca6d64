// Both readiness back-ends of this build (the preferred one and poll())
// give the same level-triggered answers on socket pairs.
#include <sys/socket.h>
#include <unistd.h>

#include "net.hpp"
#include "poller.hpp"
#include "test.h"

namespace {

struct Noop final : Watcher {
  void on_ready(int, unsigned) override {}
};

unsigned events_for(Poller& poller, int fd, int timeout_ms = 0) {
  std::vector<ReadyEvent> ready;
  EXPECT_TRUE(poller.wait(timeout_ms, &ready));
  unsigned events = 0;
  for (const ReadyEvent& e : ready)
    if (e.fd == fd) events |= e.events;
  return events;
}

void check_backend(std::unique_ptr<Poller> poller) {
  std::printf("  back-end %s\n", poller->name());
  Noop watcher;
  int pair[2];
  EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
  Fd a(pair[0]), b(pair[1]);
  set_nonblocking(a.get());

  poller->watch(a.get(), kReadable, &watcher);
  EXPECT_EQ(events_for(*poller, a.get()), 0u);  // nothing to read yet
  EXPECT_EQ(write(b.get(), "x", 1), 1);
  EXPECT_TRUE(events_for(*poller, a.get(), 1000) & kReadable);
  EXPECT_TRUE(events_for(*poller, a.get()) & kReadable);  // level-triggered: again

  poller->watch(a.get(), kReadable | kWritable, &watcher);
  unsigned both = events_for(*poller, a.get());
  EXPECT_TRUE((both & kReadable) && (both & kWritable));

  poller->watch(a.get(), kWritable, &watcher);
  EXPECT_EQ(events_for(*poller, a.get()) & kReadable, 0u);

  // Interest 0 means not watched at all, even once the peer has gone.
  poller->watch(a.get(), 0, &watcher);
  b.reset();
  EXPECT_EQ(events_for(*poller, a.get()), 0u);

  poller->watch(a.get(), kReadable, &watcher);
  EXPECT_TRUE(events_for(*poller, a.get(), 1000) != 0u);  // EOF is readable

  // forget() comes just before close(); after both, nothing is reported.
  int closed_fd = a.get();
  poller->forget(closed_fd);
  a.reset();
  EXPECT_EQ(events_for(*poller, closed_fd), 0u);

  // Watchers come back with their events.
  int pair2[2];
  EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, pair2), 0);
  Fd c(pair2[0]), d(pair2[1]);
  Noop other;
  poller->watch(c.get(), kWritable, &other);
  std::vector<ReadyEvent> ready;
  EXPECT_TRUE(poller->wait(1000, &ready));
  EXPECT_EQ(ready.size(), size_t(1));
  EXPECT_TRUE(!ready.empty() && ready[0].watcher == &other && ready[0].fd == c.get());
  poller->forget(c.get());
}

}  // namespace

TEST(preferred_backend_is_level_triggered) { check_backend(Poller::create()); }

TEST(portable_backend_is_level_triggered) { check_backend(Poller::create_portable()); }

TEST(many_fds_beyond_fd_setsize) {
  // No FD_SETSIZE ceiling: watch 1,500 sockets and see the last one.
  auto poller = Poller::create_portable();
  Noop watcher;
  std::vector<Fd> fds;
  for (int i = 0; i < 750; ++i) {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0) break;  // low fd limit
    fds.emplace_back(pair[0]);
    fds.emplace_back(pair[1]);
  }
  for (const Fd& fd : fds) poller->watch(fd.get(), kReadable, &watcher);
  EXPECT_EQ(write(fds.front().get(), "y", 1), 1);  // makes fds[1] readable
  EXPECT_EQ(write(fds[fds.size() - 2].get(), "z", 1), 1);  // and the last one
  std::vector<ReadyEvent> ready;
  EXPECT_TRUE(poller->wait(1000, &ready));
  EXPECT_EQ(ready.size(), size_t(2));
}

TEST_MAIN()
