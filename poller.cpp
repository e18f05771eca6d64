// The three readiness back-ends (see poller.hpp). Each keeps a table
// indexed by fd with the current interest and watcher, so watch() only
// reaches the kernel when the interest really changes.
#include "poller.hpp"

#include <poll.h>

#include <cerrno>

// POLLER=poll forces poll(); POLLER=kqueue forces kqueue (for a build
// against libkqueue or a syntax check off the BSDs).
#if !defined(BALANCE_POLLER_poll)
#if defined(__linux__) && !defined(BALANCE_POLLER_kqueue)
#define BALANCE_USE_EPOLL 1
#include <sys/epoll.h>
#include <unistd.h>
#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || \
    defined(__NetBSD__) || defined(__DragonFly__) || defined(BALANCE_POLLER_kqueue)
#define BALANCE_USE_KQUEUE 1
#include <sys/event.h>
#include <sys/time.h>
#include <sys/types.h>
#include <unistd.h>
#endif
#endif

namespace {

struct Slot {
  unsigned interest = 0;
  Watcher* watcher = nullptr;
  int index = -1;  // position in the poll() array
};

Slot& slot_for(std::vector<Slot>& slots, int fd) {
  if (size_t(fd) >= slots.size()) slots.resize(size_t(fd) + 64);
  return slots[size_t(fd)];
}

// The portable core: a pollfd array kept in step with the table, so a
// pass costs one poll() call and no rebuilding.
class PollPoller final : public Poller {
 public:
  const char* name() const override { return "poll"; }

  void watch(int fd, unsigned interest, Watcher* watcher) override {
    Slot& slot = slot_for(slots_, fd);
    slot.watcher = watcher;
    if (interest == 0) {
      forget(fd);
      return;
    }
    slot.interest = interest;
    if (slot.index < 0) {
      slot.index = int(fds_.size());
      fds_.push_back(pollfd{fd, 0, 0});
    }
    short events = 0;
    if (interest & kReadable) events |= POLLIN;
#ifdef POLLRDHUP
    if (interest & kHangup) events |= POLLRDHUP;  // Linux: the peer shut down its sending side
#endif
    if (interest & kWritable) events |= POLLOUT;
    fds_[size_t(slot.index)].events = events;
  }

  void forget(int fd) override {
    if (size_t(fd) >= slots_.size()) return;
    Slot& slot = slots_[size_t(fd)];
    slot.interest = 0;
    if (slot.index < 0) return;
    size_t last = fds_.size() - 1;
    if (size_t(slot.index) != last) {
      fds_[size_t(slot.index)] = fds_[last];
      slots_[size_t(fds_[last].fd)].index = slot.index;
    }
    fds_.pop_back();
    slot.index = -1;
  }

  bool wait(int timeout_ms, std::vector<ReadyEvent>* ready) override {
    ready->clear();
    int n = ::poll(fds_.data(), nfds_t(fds_.size()), timeout_ms);
    if (n < 0) return errno == EINTR;
    for (const pollfd& p : fds_) {
      if (n == 0) break;
      if (!p.revents) continue;
      --n;
      unsigned events = 0;
      if (p.revents & POLLIN) events |= kReadable;
      if (p.revents & POLLOUT) events |= kWritable;
      if (p.revents & (POLLHUP | POLLERR | POLLNVAL)) events |= kHangup;
#ifdef POLLRDHUP
      if (p.revents & POLLRDHUP) events |= kHangup;
#endif
      ready->push_back(ReadyEvent{p.fd, events, slots_[size_t(p.fd)].watcher});
    }
    return true;
  }

 private:
  std::vector<Slot> slots_;
  std::vector<pollfd> fds_;
};

#if defined(BALANCE_USE_EPOLL)
class EpollPoller final : public Poller {
 public:
  EpollPoller() : epfd_(epoll_create1(EPOLL_CLOEXEC)) {}
  ~EpollPoller() override {
    if (epfd_ >= 0) close(epfd_);
  }
  bool ok() const { return epfd_ >= 0; }
  const char* name() const override { return "epoll"; }

  void watch(int fd, unsigned interest, Watcher* watcher) override {
    Slot& slot = slot_for(slots_, fd);
    slot.watcher = watcher;
    if (interest == slot.interest) return;
    if (interest == 0) {
      epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
      slot.interest = 0;
      return;
    }
    epoll_event event{};
    if (interest & kReadable) event.events |= EPOLLIN;
    if (interest & kHangup) event.events |= EPOLLRDHUP;  // the peer shut down its sending side
    if (interest & kWritable) event.events |= EPOLLOUT;
    event.data.fd = fd;
    if (epoll_ctl(epfd_, slot.interest ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &event) != 0 &&
        errno == ENOENT)
      epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &event);
    slot.interest = interest;
  }

  // Closing the fd takes it out of the epoll set; no system call here.
  void forget(int fd) override {
    if (size_t(fd) < slots_.size()) slots_[size_t(fd)].interest = 0;
  }

  bool wait(int timeout_ms, std::vector<ReadyEvent>* ready) override {
    ready->clear();
    if (events_.size() < 256) events_.resize(256);
    int n = epoll_wait(epfd_, events_.data(), int(events_.size()), timeout_ms);
    if (n < 0) return errno == EINTR;
    for (int i = 0; i < n; ++i) {
      const epoll_event& e = events_[size_t(i)];
      if (slots_[size_t(e.data.fd)].interest == 0) continue;  // forgotten in this pass
      unsigned events = 0;
      if (e.events & EPOLLIN) events |= kReadable;
      if (e.events & EPOLLOUT) events |= kWritable;
      if (e.events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP)) events |= kHangup;
      ready->push_back(ReadyEvent{e.data.fd, events, slots_[size_t(e.data.fd)].watcher});
    }
    return true;
  }

 private:
  int epfd_;
  std::vector<Slot> slots_;
  std::vector<epoll_event> events_;
};
#endif

#if defined(BALANCE_USE_KQUEUE)
// Changes of interest are queued and go to the kernel with the next
// kevent() call that waits, in the order they were made, so a pass costs
// one system call however many fds changed. slot.interest is the set of
// filters an fd has once the queue is applied; slot.index is its entry in
// *ready during wait().
//
// forget() deletes the fd's filters at once, while the fd is still open,
// instead of trusting close() to drop them: the BSD kernels do, but
// libkqueue (kqueue on Linux) keeps them, and the socket that gets the
// number next would inherit them. Nor can the deletion wait for the next
// kevent(): by then the number may belong to something else, and libkqueue
// fails to delete a filter whose number now names a file epoll cannot poll
// (such as /dev/null), leaving its state corrupt.
class KqueuePoller final : public Poller {
 public:
  KqueuePoller() : kq_(kqueue()) {}
  ~KqueuePoller() override {
    if (kq_ >= 0) close(kq_);
  }
  bool ok() const { return kq_ >= 0; }
  const char* name() const override { return "kqueue"; }

  void watch(int fd, unsigned interest, Watcher* watcher) override {
    Slot& slot = slot_for(slots_, fd);
    slot.watcher = watcher;
    // kqueue has no filter for "errors only"; such fds are simply not
    // watched and their hang-up is found at the next read or write.
    interest &= kReadable | kWritable;
    change(fd, EVFILT_READ, slot.interest & kReadable, interest & kReadable);
    change(fd, EVFILT_WRITE, slot.interest & kWritable, interest & kWritable);
    slot.interest = interest;
  }

  void forget(int fd) override {
    if (size_t(fd) >= slots_.size()) return;
    watch(fd, 0, slots_[size_t(fd)].watcher);
    // Whatever is queued for the fd, this deletion or an earlier change,
    // reaches the kernel before close().
    for (const struct kevent& e : changes_) {
      if (e.ident == uintptr_t(fd)) {
        apply();
        return;
      }
    }
  }

  bool wait(int timeout_ms, std::vector<ReadyEvent>* ready) override {
    ready->clear();
    // Room for an error entry per change besides the events: a BSD kernel
    // stops applying the changes at an error it has no room to report.
    events_.resize(changes_.size() + kMaxEvents);
    timespec timeout{timeout_ms / 1000, long(timeout_ms % 1000) * 1000000L};
    int n = kevent(kq_, changes_.data(), int(changes_.size()), events_.data(),
                   int(events_.size()), timeout_ms < 0 ? nullptr : &timeout);
    // Applied even when the wait was interrupted: changes come first.
    changes_.clear();
    if (n < 0) return errno == EINTR;
    for (int i = 0; i < n; ++i) {
      const struct kevent& e = events_[size_t(i)];
      // A change that failed, not readiness: the fd's watcher must not
      // hear of it.
      if (e.flags & EV_ERROR) continue;
      int fd = int(e.ident);
      unsigned events = e.filter == EVFILT_READ ? kReadable : kWritable;
      // A failed connect shows as EOF on the write filter (the error in
      // fflags): a hang-up, as poll() and epoll report it.
      if (e.filter == EVFILT_WRITE && (e.flags & EV_EOF)) events |= kHangup;
      // The read and write filters are separate entries; an fd gets one
      // ReadyEvent with both, as from poll() and epoll, so that its watcher
      // is not called again for an fd it closed in the first call.
      Slot& slot = slots_[size_t(fd)];
      if (slot.index >= 0) {
        (*ready)[size_t(slot.index)].events |= events;
      } else {
        slot.index = int(ready->size());
        ready->push_back(ReadyEvent{fd, events, slot.watcher});
      }
    }
    for (const ReadyEvent& event : *ready) slots_[size_t(event.fd)].index = -1;
    return true;
  }

 private:
  // kMaxChanges + kMaxEvents stays within libkqueue's limit on one call's
  // eventlist (512), past which it stops applying changes that fail.
  static constexpr size_t kMaxChanges = 256;
  static constexpr size_t kMaxEvents = 256;

  void change(int fd, short filter, unsigned had, unsigned wants) {
    if (bool(had) == bool(wants)) return;
    if (changes_.size() == kMaxChanges) apply();
    struct kevent e;
    EV_SET(&e, uintptr_t(fd), filter, wants ? EV_ADD : EV_DELETE, 0, 0, 0);
    changes_.push_back(e);
  }

  // Applies the queue now, without waiting. EV_RECEIPT makes the kernel
  // answer each change (an EV_ERROR entry, data 0 when it worked) and leave
  // pending events for the next wait(); without it, events that come back
  // are dropped, which loses nothing as they are level-triggered.
  void apply() {
    if (changes_.empty()) return;
#if defined(EV_RECEIPT)
    for (struct kevent& e : changes_) e.flags |= EV_RECEIPT;
#endif
    events_.resize(changes_.size());
    const timespec now{0, 0};
    kevent(kq_, changes_.data(), int(changes_.size()), events_.data(), int(events_.size()),
           &now);
    changes_.clear();
  }

  int kq_;
  std::vector<Slot> slots_;
  std::vector<struct kevent> changes_;
  std::vector<struct kevent> events_;
};
#endif

}  // namespace

std::unique_ptr<Poller> Poller::create() {
#if defined(BALANCE_USE_EPOLL)
  auto epoll = std::make_unique<EpollPoller>();
  if (epoll->ok()) return epoll;
#elif defined(BALANCE_USE_KQUEUE)
  auto kq = std::make_unique<KqueuePoller>();
  if (kq->ok()) return kq;
#endif
  return std::make_unique<PollPoller>();
}

std::unique_ptr<Poller> Poller::create_portable() { return std::make_unique<PollPoller>(); }
