// Both readiness back-ends of this build (the preferred one and poll())
// give the same level-triggered answers on socket pairs.
#include <fcntl.h>
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

// Counts the entries for fd in one wait(): a back-end reports an fd once
// a pass, with all its events, as poll() does.
size_t entries_for(Poller& poller, int fd, unsigned* events, int timeout_ms = 0) {
  std::vector<ReadyEvent> ready;
  EXPECT_TRUE(poller.wait(timeout_ms, &ready));
  size_t count = 0;
  *events = 0;
  for (const ReadyEvent& e : ready)
    if (e.fd == fd) {
      ++count;
      *events |= e.events;
    }
  return count;
}

// A socket whose peer holds unread data and can take more: readable and
// writable, so a stale filter of either kind would show.
void busy_pair(Fd* mine, Fd* peer) {
  int pair[2];
  EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
  mine->reset(pair[0]);
  peer->reset(pair[1]);
  set_nonblocking(mine->get());
  EXPECT_EQ(write(peer->get(), "x", 1), 1);
}

// Moves fd to the given free number, so that a test reuses exactly the
// number it has just closed whatever else is open.
Fd at_number(int fd, int number) {
  if (fd != number) {
    EXPECT_EQ(dup2(fd, number), number);
    close(fd);
  }
  return Fd(number);
}

// A new socket (with its peer) under the number of a closed one.
Fd reuse_number(int number, Fd* peer) {
  int pair[2];
  EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
  peer->reset(pair[1]);
  Fd fresh = at_number(pair[0], number);
  set_nonblocking(fresh.get());
  return fresh;
}

void check_reuse(std::unique_ptr<Poller> poller) {
  std::printf("  back-end %s\n", poller->name());
  Noop old_watcher, new_watcher;
  Fd a, b;
  busy_pair(&a, &b);
  poller->watch(a.get(), kReadable | kWritable, &old_watcher);
  unsigned events = 0;
  EXPECT_EQ(entries_for(*poller, a.get(), &events, 1000), size_t(1));  // one entry, both events
  EXPECT_EQ(events, kReadable | kWritable);

  // Forgotten, closed and reused within one pass: the new socket has no
  // data and is watched for reading only, so nothing may be reported.
  int number = a.get();
  poller->forget(number);
  a.reset();
  Fd peer;
  Fd c = reuse_number(number, &peer);
  poller->watch(c.get(), kReadable, &new_watcher);
  EXPECT_EQ(entries_for(*poller, number, &events), size_t(0));
  // It still reports what it is watched for, to its own watcher.
  EXPECT_EQ(write(peer.get(), "y", 1), 1);
  std::vector<ReadyEvent> ready;
  EXPECT_TRUE(poller->wait(1000, &ready));
  EXPECT_EQ(ready.size(), size_t(1));
  EXPECT_TRUE(!ready.empty() && ready[0].fd == number && ready[0].watcher == &new_watcher &&
              ready[0].events == kReadable);
  poller->watch(c.get(), kWritable, &new_watcher);
  EXPECT_EQ(entries_for(*poller, number, &events, 1000), size_t(1));
  EXPECT_EQ(events, unsigned(kWritable));

  // Forgotten and closed with a wait() before the number is reused: the
  // wait reports nothing for it, and the next owner starts clean too.
  poller->forget(number);
  c.reset();
  EXPECT_EQ(entries_for(*poller, number, &events), size_t(0));
  Fd other_peer;
  Fd d = reuse_number(number, &other_peer);
  poller->watch(d.get(), kWritable, &old_watcher);
  EXPECT_EQ(entries_for(*poller, number, &events, 1000), size_t(1));
  EXPECT_EQ(events, unsigned(kWritable));

  // Watched, forgotten and closed before any wait(): nothing is reported
  // for it, and the others still are.
  Fd e, e_peer;
  busy_pair(&e, &e_peer);
  int gone = e.get();
  poller->watch(gone, kReadable | kWritable, &old_watcher);
  poller->forget(gone);
  e.reset();
  EXPECT_TRUE(poller->wait(1000, &ready));
  EXPECT_EQ(ready.size(), size_t(1));
  EXPECT_TRUE(!ready.empty() && ready[0].fd == number && ready[0].events == kWritable);
  poller->forget(number);
  d.reset();

  // Reused first by a file that cannot be polled (balance keeps /dev/null
  // open as a spare descriptor), then by a socket again: still clean,
  // also when the interest dropped to nothing just before forget().
  for (bool unwatched_first : {false, true}) {
    busy_pair(&e, &e_peer);
    number = e.get();
    poller->watch(number, kReadable | kWritable, &old_watcher);
    EXPECT_EQ(entries_for(*poller, number, &events, 1000), size_t(1));
    if (unwatched_first) poller->watch(number, 0, &old_watcher);
    poller->forget(number);
    e.reset();
    Fd null_file = at_number(open("/dev/null", O_RDONLY), number);
    EXPECT_EQ(entries_for(*poller, number, &events), size_t(0));
    null_file.reset();
    Fd f = reuse_number(number, &peer);
    EXPECT_EQ(write(peer.get(), "z", 1), 1);
    poller->watch(f.get(), kReadable | kWritable, &new_watcher);
    EXPECT_TRUE(poller->wait(1000, &ready));
    EXPECT_EQ(ready.size(), size_t(1));
    EXPECT_TRUE(!ready.empty() && ready[0].fd == number && ready[0].watcher == &new_watcher &&
                ready[0].events == (kReadable | kWritable));
    poller->forget(number);
  }
}

// Hundreds of sockets forgotten and closed in one pass, some of them
// watched in that same pass, then a new one: more changes than kqueue
// takes in one call. The wait after them neither fails nor loses the new
// socket.
void check_mass_close(std::unique_ptr<Poller> poller) {
  std::printf("  back-end %s\n", poller->name());
  Noop watcher;
  std::vector<Fd> mine, peers;
  auto watch_more = [&](int count) {
    for (int i = 0; i < count; ++i) {
      Fd a, b;
      busy_pair(&a, &b);
      poller->watch(a.get(), kReadable | kWritable, &watcher);
      mine.push_back(std::move(a));
      peers.push_back(std::move(b));
    }
  };
  watch_more(200);
  std::vector<ReadyEvent> ready;
  EXPECT_TRUE(poller->wait(1000, &ready));
  EXPECT_TRUE(!ready.empty());
  watch_more(200);
  for (Fd& fd : mine) {
    poller->forget(fd.get());
    fd.reset();
  }
  Fd peer, e;
  busy_pair(&e, &peer);
  poller->watch(e.get(), kReadable, &watcher);
  unsigned events = 0;
  EXPECT_EQ(entries_for(*poller, e.get(), &events, 1000), size_t(1));
  EXPECT_EQ(events, unsigned(kReadable));
  EXPECT_TRUE(poller->wait(0, &ready));
  EXPECT_EQ(ready.size(), size_t(1));  // the closed ones are gone
  poller->forget(e.get());
}

}  // namespace

TEST(preferred_backend_forgets_a_closed_fd_whose_number_is_reused) {
  check_reuse(Poller::create());
}

TEST(portable_backend_forgets_a_closed_fd_whose_number_is_reused) {
  check_reuse(Poller::create_portable());
}

TEST(preferred_backend_survives_hundreds_of_fds_closed_in_one_pass) {
  check_mass_close(Poller::create());
}

TEST(portable_backend_survives_hundreds_of_fds_closed_in_one_pass) {
  check_mass_close(Poller::create_portable());
}

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
