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
#include <dirent.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
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
#include <fstream>
#include <set>
#include <sstream>
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

// A request framed as distcc's, as balance -j reads a job's size from it:
// "DIST" and a version, then "DOTI" and the length of what follows, each
// 8 hex digits (helper client -D, the farm's jobs).
inline constexpr size_t kDistccHead = 24;
inline std::string distcc_head(uint64_t rest) {
  return fmt("DIST%08xDOTI%08llx", 1u, static_cast<unsigned long long>(rest));
}
// The length the head at the start of text announces; false when there is
// no such head.
inline bool parse_distcc_head(const std::string& text, uint64_t* rest) {
  auto hex8 = [&](size_t at, uint64_t* value) {
    *value = 0;
    for (size_t i = at; i < at + 8; ++i) {
      char ch = text[i];
      int digit = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
      if (digit < 0) return false;
      *value = *value * 16 + uint64_t(digit);
    }
    return true;
  };
  uint64_t version;
  return text.size() >= kDistccHead && text.compare(0, 4, "DIST") == 0 && hex8(4, &version) &&
         text.compare(12, 4, "DOTI") == 0 && hex8(16, rest);
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

// Starts a non-blocking connect, from the numeric address `source` (port
// 0) when it is not empty; -1 only when no socket could be made. *err is 0
// (connected or in progress) or the immediate error.
inline int start_connect(const addrinfo* ai, int* err, const std::string& source = "") {
  int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
  if (fd < 0) {
    *err = errno;
    return -1;
  }
  set_nonblock(fd);
  *err = 0;
  if (!source.empty()) {
    addrinfo* from = resolve(source, "0", true);
    int rc = bind(fd, from->ai_addr, from->ai_addrlen);
    freeaddrinfo(from);
    if (rc != 0) {
      *err = errno;
      return fd;
    }
  }
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

// Connects to host port before the deadline (from `source`, if given),
// trying each address in turn. Returns the non-blocking socket, or -1 with
// *err set.
inline int connect_tcp(const std::string& host, const std::string& port, double deadline, int* err,
                       const std::string& source = "") {
  addrinfo* res = resolve(host, port, false);
  int fd = -1;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    fd = start_connect(ai, err, source);
    if (fd < 0) continue;
    if (*err == 0) *err = wait_connect(fd, deadline);
    if (*err == 0) break;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  return fd;
}

// ---- free ports ------------------------------------------------------------------

// The kernel's ephemeral range: the ports it hands to bind(port 0) and to
// every connect() as the local port. A port chosen there and released can be
// taken by anyone before the test binds it.
inline void ephemeral_range(int* lo, int* hi) {
  *lo = 49152, *hi = 65535;  // the IANA range (BSD, macOS)
  std::ifstream f("/proc/sys/net/ipv4/ip_local_port_range");
  int a = 0, b = 0;
  if (f >> a >> b && a > 0 && b >= a && b <= 65535) *lo = a, *hi = b;
}

// True when nothing is bound to port on any address of either family:
// binds the wildcards without SO_REUSEADDR (a TIME_WAIT counts as taken).
inline bool free_everywhere(int port) {
  Fd v4(socket(AF_INET, SOCK_STREAM, 0)), v6(socket(AF_INET6, SOCK_STREAM, 0));
  if (!v4.ok()) die("socket: %s", std::strerror(errno));
  sockaddr_in a4{};
  a4.sin_family = AF_INET;
  a4.sin_port = htons(uint16_t(port));
  if (bind(v4.get(), reinterpret_cast<sockaddr*>(&a4), sizeof a4) != 0) return false;
  if (!v6.ok()) return true;  // no IPv6 here
  int one = 1;
  setsockopt(v6.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  sockaddr_in6 a6{};
  a6.sin6_family = AF_INET6;
  a6.sin6_port = htons(uint16_t(port));
  return bind(v6.get(), reinterpret_cast<sockaddr*>(&a6), sizeof a6) == 0 || errno == EADDRNOTAVAIL;
}

// A random port free on every address, below the ephemeral range (from
// 10000 up) or above it: no bind(0) or connect() anywhere on the machine is
// handed it before the caller binds it. Dies when none is found.
inline int free_port() {
  int lo = 0, hi = 0;
  ephemeral_range(&lo, &hi);
  int below = std::max(0, lo - 10000), above = 65535 - hi;
  if (below + above <= 0) die("no ports outside the ephemeral range %d-%d", lo, hi);
  uint64_t s = uint64_t(getpid()) * kSplitmixGamma ^ uint64_t(now() * 1e9);
  for (int tries = 0; tries < 1000; ++tries) {
    int k = int(splitmix64_next(s) % uint64_t(below + above));
    int port = k < below ? 10000 + k : hi + 1 + (k - below);
    if (free_everywhere(port)) return port;
  }
  die("no free port found in 1000 tries outside %d-%d", lo, hi);
}

// connect_tcp, or die naming the address and the error.
inline int connect_or_die(const std::string& host, const std::string& port, double deadline) {
  int err = 0;
  int fd = connect_tcp(host, port, deadline, &err);
  if (fd < 0) die("connect to %s port %s: %s", host.c_str(), port.c_str(), why(err));
  return fd;
}

// ---- waiting for a listener ----------------------------------------------------------

// The socket inodes among the descriptors of process pid; false when they
// cannot be read (no /proc, or not ours to see).
inline bool socket_inodes(long pid, std::set<std::string>* out) {
  std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = opendir(dir.c_str());
  if (!d) return false;
  while (dirent* e = readdir(d)) {
    char target[128];
    ssize_t n = readlink((dir + "/" + e->d_name).c_str(), target, sizeof target - 1);
    if (n <= 0) continue;
    target[n] = '\0';
    std::string t = target;
    if (t.rfind("socket:[", 0) == 0) out->insert(t.substr(8, t.size() - 9));
  }
  closedir(d);
  return true;
}

// Whether a /proc/net/tcp{,6} local address (hex words as the kernel prints
// them) is addr, or the wildcard of its family.
inline bool same_address(const std::string& hex, const std::string& addr) {
  unsigned char want[16] = {0}, got[16] = {0};
  size_t words = hex.size() / 8;
  bool v6 = words == 4;
  if ((words != 1 && words != 4) || inet_pton(v6 ? AF_INET6 : AF_INET, addr.c_str(), want) != 1) {
    // addr is of the other family: only a dual-stack wildcard takes it.
    return v6 && hex.find_first_not_of('0') == std::string::npos;
  }
  for (size_t w = 0; w < words; ++w) {
    uint32_t v = uint32_t(std::stoul(hex.substr(8 * w, 8), nullptr, 16));
    std::memcpy(got + 4 * w, &v, 4);  // the kernel printed the word as it lies in memory
  }
  bool wildcard = std::all_of(got, got + 4 * words, [](unsigned char c) { return c == 0; });
  return wildcard || std::memcmp(got, want, 4 * words) == 0;
}

// Listening sockets on addr:port in /proc (-1: no /proc here), and whether
// one of them is among the sockets mine.
inline int proc_listeners(int port, const std::string& addr, const std::set<std::string>& mine, bool* owned) {
  int found = -1;
  *owned = false;
  for (const char* path : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream f(path);
    if (!f) continue;
    found = std::max(found, 0);
    std::string line;
    std::getline(f, line);  // the header
    while (std::getline(f, line)) {
      std::istringstream in(line);
      std::string slot, local, remote, st, queues, timer, retr, uid, timeout, inode;
      in >> slot >> local >> remote >> st >> queues >> timer >> retr >> uid >> timeout >> inode;
      size_t colon = local.rfind(':');
      if (colon == std::string::npos || st != "0A") continue;
      if (std::strtol(local.c_str() + colon + 1, nullptr, 16) != port) continue;
      if (!same_address(local.substr(0, colon), addr)) continue;
      ++found;
      *owned |= mine.count(inode) > 0;
    }
  }
  return found;
}

inline bool exited(long pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  if (!f) return kill(pid_t(pid), 0) != 0 && errno == ESRCH;
  std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z';
}

// Whether addr:port listens (on a socket of pid, when pid > 0). From /proc
// where it exists, so that no connection is made that a proxy would relay;
// else by a connect.
inline bool listening(int port, const std::string& addr, long pid) {
  std::set<std::string> mine;
  bool known = pid > 0 && socket_inodes(pid, &mine);
  bool owned = false;
  int n = proc_listeners(port, addr, mine, &owned);
  if (n >= 0) return known ? owned : n > 0;
  int err = 0;
  Fd fd(connect_tcp(addr, std::to_string(port), now() + 1, &err));
  return fd.ok();
}

// Waits until addr:port listens (on a socket of process pid, when pid > 0:
// a listener of another process on that port does not count); false with
// *why at the deadline, or at once when pid exits first.
inline bool wait_listening(const std::string& addr, int port, long pid, double deadline, std::string* why) {
  for (;;) {
    if (listening(port, addr, pid)) return true;
    if (pid > 0 && exited(pid)) {
      *why = fmt("process %ld exited before listening on %s port %d", pid, addr.c_str(), port);
      return false;
    }
    if (now() >= deadline) break;
    usleep(20 * 1000);
  }
  bool owned = false;
  int others = proc_listeners(port, addr, {}, &owned);
  *why = fmt("nothing%s listens on %s port %d in time%s", pid > 0 ? fmt(" of process %ld", pid).c_str() : "",
             addr.c_str(), port, others > 0 ? " (another process does)" : "");
  return false;
}

}  // namespace testnet

#endif  // BALANCE_TESTS_TESTNET_HPP
