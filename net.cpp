// Socket helpers (see net.hpp). Linux's accept4 and splice sit behind
// #ifdefs; the portable accept + fcntl path and the copying relay are
// kept and built with -DBALANCE_PORTABLE_1 (make PORTABLE=1).
#include "net.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

void Fd::reset(int fd) {
  if (fd_ >= 0) {
    int saved = errno;
    ::close(fd_);
    errno = saved;
  }
  fd_ = fd;
}

std::string sys_error(const char* call) { return std::string(call) + ": " + std::strerror(errno); }

bool set_nonblocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  return flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

void set_cloexec(int fd) {
  int flags = fcntl(fd, F_GETFD);
  if (flags >= 0) fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

void set_nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void set_keepalive(int fd, int idle_s, int interval_s, int count) {
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
#if defined(TCP_KEEPIDLE)
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof idle_s);
#elif defined(TCP_KEEPALIVE)  // macOS
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPALIVE, &idle_s, sizeof idle_s);
#endif
#if defined(TCP_KEEPINTVL)
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval_s, sizeof interval_s);
#endif
#if defined(TCP_KEEPCNT)
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
#endif
  (void)idle_s;
  (void)interval_s;
  (void)count;
}

void set_linger_reset(int fd) {
  linger option{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &option, sizeof option);
}

namespace {

// A socket that is non-blocking and close-on-exec from the start where
// the system allows it.
int open_socket(int family) {
#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC) && !defined(BALANCE_PORTABLE_1)
  return socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
#else
  int fd = socket(family, SOCK_STREAM, 0);
  if (fd >= 0) {
    set_nonblocking(fd);
    set_cloexec(fd);
  }
  return fd;
#endif
}

}  // namespace

Fd listen_tcp(const Address& address, bool v6only, int backlog, std::string* err) {
  Fd fd(open_socket(address.storage.ss_family));
  if (!fd) {
    *err = sys_error("socket");
    return Fd();
  }
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (address.storage.ss_family == AF_INET6) {
    int flag = v6only ? 1 : 0;
    setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &flag, sizeof flag);
  }
  if (bind(fd.get(), address.sa(), address.length) != 0) {
    *err = address.text() + ": " + sys_error("bind");
    if (errno == EACCES && address.port() < 1024)
      *err += " (ports below 1024 need root or the CAP_NET_BIND_SERVICE capability)";
    return Fd();
  }
  set_nodelay(fd.get());  // inherited by accepted sockets on most systems
  if (listen(fd.get(), backlog) != 0) {
    *err = sys_error("listen");
    return Fd();
  }
  return fd;
}

int accept_connection(int listen_fd, Address* peer) {
  peer->length = sizeof peer->storage;
#if defined(__linux__) && !defined(BALANCE_PORTABLE_1)
  return accept4(listen_fd, reinterpret_cast<sockaddr*>(&peer->storage), &peer->length,
                 SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
  int fd = accept(listen_fd, reinterpret_cast<sockaddr*>(&peer->storage), &peer->length);
  if (fd >= 0) {
    set_nonblocking(fd);
    set_cloexec(fd);
  }
  return fd;
#endif
}

Fd start_connect(const Address& to, const Address* from, bool* in_progress) {
  *in_progress = false;
  Fd fd(open_socket(to.storage.ss_family));
  if (!fd) return Fd();
  set_nodelay(fd.get());
  if (from && from->length && bind(fd.get(), from->sa(), from->length) != 0) return Fd();
  if (connect(fd.get(), to.sa(), to.length) == 0) return fd;
  if (errno == EINPROGRESS || errno == EINTR) {
    *in_progress = true;
    return fd;
  }
  return Fd();
}

int socket_error(int fd) {
  int error = 0;
  socklen_t length = sizeof error;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) return errno;
  return error;
}

#if defined(__linux__) && !defined(BALANCE_PORTABLE_1)

Pipe open_pipe() {
  int fds[2];
  Pipe pipe;
  if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return pipe;
  pipe.read_end.reset(fds[0]);
  pipe.write_end.reset(fds[1]);
  // A larger pipe moves a bulk stream in fewer calls. When the system's
  // limit refuses it, the 64 KiB default still works: splice_in() is then
  // simply cut short.
  fcntl(fds[1], F_SETPIPE_SZ, int(kPipeSize));
  return pipe;
}

long splice_in(int socket, const Pipe& pipe, size_t length) {
  return splice(socket, nullptr, pipe.write_end.get(), nullptr, length,
                SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
}

long splice_out(const Pipe& pipe, int socket, size_t length) {
  return splice(pipe.read_end.get(), nullptr, socket, nullptr, length,
                SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
}

#else

Pipe open_pipe() {
  errno = ENOSYS;
  return Pipe();
}

long splice_in(int, const Pipe&, size_t) {
  errno = ENOSYS;
  return -1;
}

long splice_out(const Pipe&, int, size_t) {
  errno = ENOSYS;
  return -1;
}

#endif
