// testnet.hpp: what the test and bench tools (helper, ctltool, loadgen,
// farm) share: dying with a message, the clock, strict option parsing, files
// that appear whole, splitmix64 and the position-addressed byte streams made
// from it, an owning descriptor, and non-blocking TCP sockets with bounded
// waits.
//
// Header-only (inline functions), POSIX and the C++17 standard library only.
// A tool sets g_tool and g_cmd at the top of main(): die() prefixes its
// message with "TOOL CMD: ". Every failure a tool reports goes to stderr and
// names what failed and why (the errno text), so that it shows in a test's
// output.

#ifndef BALANCE_TESTS_TESTNET_HPP
#define BALANCE_TESTS_TESTNET_HPP

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

namespace testnet {

inline const char* g_tool = "test";  // the program
inline const char* g_cmd = "test";   // its sub-command

[[noreturn]] inline void die(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::fprintf(stderr, "%s %s: ", g_tool, g_cmd);
  std::vfprintf(stderr, fmt, ap);
  std::fputc('\n', stderr);
  va_end(ap);
  std::exit(1);
}

// printf into a std::string (messages and report lines; short ones).
inline std::string fmt(const char* f, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

// The errno text of err, for messages.
inline const char* why(int err) { return std::strerror(err); }

// An owned descriptor, closed when it goes.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) reset(std::exchange(o.fd_, -1));
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  bool ok() const { return fd_ >= 0; }
  void reset(int fd = -1) {
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

inline double now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// Milliseconds for poll() until deadline (0 once past it), at most cap seconds.
inline int ms_until(double deadline, double cap = 3600) {
  double left = std::min(deadline - now(), cap);
  return left <= 0 ? 0 : static_cast<int>(left * 1000) + 1;
}

// Strict number parsing: the whole string, in range, or die.
inline uint64_t parse_u64(const char* s, const char* what) {
  if (*s < '0' || *s > '9') die("%s: not a number: %s", what, s);
  errno = 0;
  char* end = nullptr;
  unsigned long long v = std::strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0') die("%s: not a number: %s", what, s);
  return v;
}

// parse_u64 within [lo, hi].
inline uint64_t parse_range(const char* s, const char* what, uint64_t lo, uint64_t hi) {
  uint64_t v = parse_u64(s, what);
  if (v < lo || v > hi)
    die("%s: %s is out of range (%llu to %llu)", what, s, (unsigned long long)lo, (unsigned long long)hi);
  return v;
}

inline int parse_int(const char* s, const char* what, int lo, int hi) {
  return static_cast<int>(parse_range(s, what, static_cast<uint64_t>(lo), static_cast<uint64_t>(hi)));
}

inline double parse_sec(const char* s, const char* what) {
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(s, &end);
  if (errno != 0 || *end != '\0' || end == s || !std::isfinite(v) || v < 0 || v > 1e6)
    die("%s: not a number of seconds: %s", what, s);
  return v;
}

// ---- files ---------------------------------------------------------------------

// Writes content to path via a temporary file and rename(), so that a test
// polling the file never sees it half written. Nothing when path is empty.
inline void write_atomic(const std::string& path, const std::string& content) {
  if (path.empty()) return;
  std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) die("cannot write %s: %s", tmp.c_str(), std::strerror(errno));
  std::fputs(content.c_str(), f);
  if (std::fclose(f) != 0) die("cannot write %s", tmp.c_str());
  if (std::rename(tmp.c_str(), path.c_str()) != 0) die("rename %s: %s", path.c_str(), std::strerror(errno));
}

// Appends line and a newline to path. Nothing when path is empty.
inline void append_line(const std::string& path, const std::string& line) {
  if (path.empty()) return;
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd < 0) die("open %s: %s", path.c_str(), std::strerror(errno));
  std::string l = line + "\n";
  if (write(fd, l.data(), l.size()) != static_cast<ssize_t>(l.size())) die("write %s", path.c_str());
  close(fd);
}

// ---- splitmix64 ------------------------------------------------------------------

inline constexpr uint64_t kSplitmixGamma = 0x9e3779b97f4a7c15ULL;

// The output for state z: z plus the gamma, mixed.
inline uint64_t splitmix64(uint64_t z) {
  z += kSplitmixGamma;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The next word of the generator whose state is s.
inline uint64_t splitmix64_next(uint64_t& s) {
  uint64_t z = splitmix64(s);
  s += kSplitmixGamma;
  return z;
}

// ---- position-addressed byte streams ---------------------------------------------

// Byte p of stream(seed) is byte p % 8 (low byte first) of
// splitmix64(seed * K + p / 8): any offset can be regenerated on its own, so
// both ends of a connection compare bytes where they stand and a mismatch
// names the offset where a stream went wrong.
inline constexpr size_t kChunk = 64 * 1024;
inline constexpr uint64_t kNone = ~uint64_t(0);  // "no offset"

inline uint64_t stream_word(uint64_t seed, uint64_t index) { return splitmix64(seed * 0x100000001b3ULL + index); }

// Fills out with len bytes of stream(seed) from offset off.
inline void gen(uint64_t seed, uint64_t off, char* out, size_t len) {
  for (size_t i = 0; i < len;) {
    uint64_t p = off + i;
    uint64_t w = stream_word(seed, p >> 3) >> (8 * (p & 7));
    for (unsigned b = unsigned(p & 7); b < 8 && i < len; ++b, ++i, w >>= 8) out[i] = char(w & 0xff);
  }
}

// The offset within [0, len) of the first byte of data that differs from
// stream(seed) at off, or kNone.
inline uint64_t mismatch(uint64_t seed, uint64_t off, const char* data, size_t len) {
  char want[4096];
  for (size_t done = 0; done < len;) {
    size_t n = std::min(len - done, sizeof want);
    gen(seed, off + done, want, n);
    if (std::memcmp(want, data + done, n) != 0)
      for (size_t i = 0; i < n; ++i)
        if (want[i] != data[done + i]) return done + i;
    done += n;
  }
  return kNone;
}

// Little-endian integers in a byte buffer (the integrity protocol's header).
inline void put_le(char* p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) p[i] = char(v >> (8 * i));
}
inline uint64_t get_le(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t(uint8_t(p[i])) << (8 * i);
  return v;
}

// ---- sockets ---------------------------------------------------------------------

// Many idle connections need many descriptors: take the hard limit.
inline void raise_fd_limit() {
  rlimit r{};
  if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur != r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
  }
}

// Makes close() send a reset instead of a FIN.
inline void linger_reset(int fd) {
  linger l{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

inline void set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) die("fcntl: %s", std::strerror(errno));
}

// Numeric host and port only (a test never waits on a resolver); dies on error.
inline addrinfo* resolve(const std::string& host, const std::string& port, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) die("%s port %s: %s", host.c_str(), port.c_str(), gai_strerror(rc));
  return res;
}

inline int local_port(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) die("getsockname: %s", std::strerror(errno));
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
}

// A non-blocking listening socket on addr port (0: ephemeral, see local_port).
inline int listen_on(const std::string& addr, int port, int backlog) {
  addrinfo* ai = resolve(addr, std::to_string(port), true);
  int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
  if (fd < 0) die("socket: %s", std::strerror(errno));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (ai->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0)
    die("bind %s port %d: %s", addr.c_str(), port, std::strerror(errno));
  if (listen(fd, backlog) != 0) die("listen on %s port %d: %s", addr.c_str(), port, std::strerror(errno));
  freeaddrinfo(ai);
  set_nonblock(fd);
  return fd;
}

// The pending error of a socket (SO_ERROR), 0 if none.
inline int so_error(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
  return err;
}

// Starts a non-blocking connect; -1 only when no socket could be made.
// *err is 0 (connected or in progress) or the immediate error.
inline int start_connect(const addrinfo* ai, int* err) {
  int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
  if (fd < 0) {
    *err = errno;
    return -1;
  }
  set_nonblock(fd);
  *err = 0;
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) *err = errno;
  return fd;
}

// Waits until the connect started on fd is done: 0 once connected, else its
// error, ETIMEDOUT at the deadline.
inline int wait_connect(int fd, double deadline) {
  pollfd p{fd, POLLOUT, 0};
  for (;;) {
    double left = deadline - now();
    if (left <= 0) return ETIMEDOUT;
    if (poll(&p, 1, static_cast<int>(left * 1000) + 1) > 0) return so_error(fd);
  }
}

// Connects to host port before the deadline, trying each address in turn.
// Returns the non-blocking socket, or -1 with *err set.
inline int connect_tcp(const std::string& host, const std::string& port, double deadline, int* err) {
  addrinfo* res = resolve(host, port, false);
  int fd = -1;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    fd = start_connect(ai, err);
    if (fd < 0) continue;
    if (*err == 0) *err = wait_connect(fd, deadline);
    if (*err == 0) break;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  return fd;
}

// connect_tcp, or die naming the address and the error.
inline int connect_or_die(const std::string& host, const std::string& port, double deadline) {
  int err = 0;
  int fd = connect_tcp(host, port, deadline, &err);
  if (fd < 0) die("connect to %s port %s: %s", host.c_str(), port.c_str(), why(err));
  return fd;
}

}  // namespace testnet

#endif  // BALANCE_TESTS_TESTNET_HPP
