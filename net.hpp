// Socket helpers: an owning file descriptor and the few socket calls
// balance makes, each reporting the system call that failed.
#ifndef BALANCE_NET_HPP
#define BALANCE_NET_HPP

#include <cerrno>
#include <string>

#include "address.hpp"

// Owns one file descriptor; closes it exactly once.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// "call: strerror(errno)".
std::string sys_error(const char* call);

bool set_nonblocking(int fd);
void set_cloexec(int fd);
void set_nodelay(int fd);
// TCP keepalive: probes after idle_s seconds without traffic, every
// interval_s, giving up after count (where the system lets each be set).
void set_keepalive(int fd, int idle_s, int interval_s, int count);
// Makes close() send a reset, so a reset on one side reaches the other.
void set_linger_reset(int fd);

// A listening TCP socket on `address` (non-blocking, SO_REUSEADDR; IPv6
// wildcard sockets take IPv4 too unless v6only).
Fd listen_tcp(const Address& address, bool v6only, int backlog, std::string* err);

// Accepts one connection: non-blocking, close-on-exec. Returns -1 with
// errno set (EAGAIN when there is nothing to accept).
int accept_connection(int listen_fd, Address* peer);

// Starts a non-blocking connect. Returns the socket with *in_progress
// set, or an invalid Fd with errno set when the connect failed at once.
Fd start_connect(const Address& to, const Address* from, bool* in_progress);

// The pending error of a socket (SO_ERROR), 0 when none.
int socket_error(int fd);

// A non-blocking call failed only for now (nothing to read, no room, or a
// signal): try again at the next readiness.
inline bool would_block(int error) {
  return error == EAGAIN || error == EWOULDBLOCK || error == EINTR;
}

// Linux can move relayed bytes socket -> pipe -> socket without copying
// them through user space (splice). Elsewhere, and with PORTABLE=1,
// kHaveSplice is false, open_pipe() fails and the relay copies instead.
#if defined(__linux__) && !defined(BALANCE_PORTABLE_1)
constexpr bool kHaveSplice = true;
#else
constexpr bool kHaveSplice = false;
#endif

struct Pipe {
  Fd read_end, write_end;
  explicit operator bool() const { return bool(read_end); }
};

// A non-blocking pipe holding up to kPipeSize bytes; an invalid Pipe
// with errno set when none can be had.
constexpr size_t kPipeSize = 256 * 1024;
Pipe open_pipe();
// Moves up to `length` bytes between a socket and a pipe; read()'s and
// write()'s results (0 = EOF on the socket, -1 with errno).
long splice_in(int socket, const Pipe& pipe, size_t length);
long splice_out(const Pipe& pipe, int socket, size_t length);

#endif
