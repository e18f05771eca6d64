// loadgen: back-end server and load generator for benchmarking balance
// (bench/run.sh). C++17, POSIX and the standard library (Linux: epoll, /proc).
//
//   loadgen server PORT [--host H]        back-end: echo / sink / source
//   loadgen short    --port P [--conns 20000] [--conc 32] [--size 64] [--pid PID]
//   loadgen pingpong --port P [--conns 1] [--size 64] [--secs 3] [--idle 0] [--pid PID]
//   loadgen bulk     --port P --dir up|down [--conns 4] [--bytes N] [--pid PID]
//   loadgen queue    --port P --pid PID [--waiters 1000] [--holders 1] [--rounds 1] [--size 64] [--conc 128]
//   loadgen freeport                      print a free TCP port (tests/testnet.hpp)
//   loadgen wait PORT [SECS]              wait until PORT listens (tests/testnet.hpp)
//   loadgen rss PID                       print VmRSS (kB) of PID
// Numbers are whole and checked (a k, M or G suffix multiplies by 2^10,
// 2^20, 2^30); --stall SEC (10) bounds every wait for progress.
//
// Wire protocol (client -> back-end), decided by the first byte:
//   'E' ...            echo: every byte received (including the 'E') is echoed.
//   'S' seed8 len8     sink: the server reads len bytes of the stream(seed) and
//                      verifies them, then answers 'O' or 'F' + first bad offset (8 B).
//   'R' seed8 len8     source: the server sends len bytes of stream(seed).
// stream(seed): 64-bit words w[i] = base[i % 4096] ^ (i * K) ^ seed (little
// endian), a position-dependent pattern cheaper than the tests' splitmix
// stream (the load generator shares two cores with the proxy it measures):
// loss, duplication, reordering or cross-talk between connections (each has
// its own seed) is detected by the receiver.
//
// Results are printed as one line of key=value pairs on stdout; on failure
// the line holds error=... (run.sh keeps it in its report), the message
// goes to stderr, and the exit status is 1.

#include <dirent.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>

#include <cinttypes>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <vector>

#include "../tests/testnet.hpp"

namespace {

using namespace testnet;

const uint64_t kNoMismatch = UINT64_MAX;

// ---------------------------------------------------------------- utilities

// The run failed: "error=..." on stdout for run.sh's table, then the message.
[[noreturn]] void fail(const char* f, ...) __attribute__((format(printf, 1, 2)));
void fail(const char* f, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(msg, sizeof msg, f, ap);
  va_end(ap);
  std::string word = msg;
  std::replace(word.begin(), word.end(), ' ', '_');
  std::printf("error=%s\n", word.c_str());
  std::fflush(stdout);
  die("%s", msg);
}

void set_nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

sockaddr_in make_addr(const std::string& host, int port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(uint16_t(port));
  if (inet_pton(AF_INET, host.c_str(), &sa.sin_addr) != 1) fail("bad address %s", host.c_str());
  return sa;
}

// CPU time of a process in microseconds from its tasks' schedstat (the
// scheduler's nanosecond run time), -1 when the kernel keeps none.
long long schedstat_cpu_us(int pid) {
  std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* tasks = opendir(dir.c_str());
  if (!tasks) return -1;
  unsigned long long ns = 0;
  while (dirent* t = readdir(tasks)) {
    if (t->d_name[0] == '.') continue;
    std::ifstream f(dir + "/" + t->d_name + "/schedstat");
    unsigned long long run = 0;
    if (f >> run) ns += run;
  }
  closedir(tasks);
  return ns > 0 ? (long long)(ns / 1000) : -1;
}

// CPU time of a process in microseconds, -1 if unknown: schedstat where the
// kernel keeps it, else utime+stime, which counts in 10 ms ticks.
long long proc_cpu_us(int pid) {
  if (pid <= 0) return -1;
  long long us = schedstat_cpu_us(pid);
  if (us >= 0) return us;
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s;
  if (!std::getline(f, s)) return -1;
  size_t p = s.rfind(')');
  if (p == std::string::npos) return -1;
  std::istringstream is(s.substr(p + 2));
  std::string field;
  // The fields after ')' start with field 3 (state); utime is 14, stime 15.
  unsigned long long ut = 0, st = 0;
  for (int i = 3; i <= 15 && (is >> field); ++i) {
    if (i == 14) ut = std::stoull(field);
    if (i == 15) st = std::stoull(field);
  }
  return (long long)((ut + st) * 1000000ULL / (unsigned long long)sysconf(_SC_CLK_TCK));
}

long proc_rss_kb(int pid) {
  if (pid <= 0) return -1;
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.compare(0, 6, "VmRSS:") == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  return -1;
}

bool proc_alive(int pid) { return pid <= 0 || kill(pid, 0) == 0; }

// ---------------------------------------------------------------- stream pattern

struct Pattern {
  uint64_t base[4096];
  Pattern() {
    uint64_t x = 0x243F6A8885A308D3ULL;
    for (auto& b : base) b = splitmix64_next(x);
  }
  uint64_t word(uint64_t seed, uint64_t i) const { return base[i & 4095] ^ (i * 0xD6E8FEB86659FD93ULL) ^ seed; }
  uint8_t byte(uint64_t seed, uint64_t off) const { return uint8_t(word(seed, off >> 3) >> ((off & 7) * 8)); }

  void gen(uint8_t* out, uint64_t off, size_t n, uint64_t seed) const {
    for (; n && (off & 7); --n) *out++ = byte(seed, off++);
    for (; n >= 8; n -= 8, out += 8, off += 8) {
      uint64_t w = word(seed, off >> 3);
      std::memcpy(out, &w, 8);
    }
    for (; n; --n) *out++ = byte(seed, off++);
  }

  // The offset of the first byte of in that differs, or kNoMismatch.
  uint64_t check(const uint8_t* in, uint64_t off, size_t n, uint64_t seed) const {
    for (; n && (off & 7); --n, ++in, ++off)
      if (*in != byte(seed, off)) return off;
    for (; n >= 8; n -= 8, in += 8, off += 8) {
      uint64_t w;
      std::memcpy(&w, in, 8);
      if (w == word(seed, off >> 3)) continue;
      for (int k = 0; k < 8; ++k)
        if (in[k] != byte(seed, off + k)) return off + k;
    }
    for (; n; --n, ++in, ++off)
      if (*in != byte(seed, off)) return off;
    return kNoMismatch;
  }
};
const Pattern pat;

void put64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
uint64_t get64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// ---------------------------------------------------------------- arguments

// A whole number with an optional k, M or G suffix (powers of two).
uint64_t parse_size(const std::string& s, const char* what) {
  static const std::string kSuffix = "kKmMgG";
  size_t digits = s.size();
  int shift = 0;
  size_t at = s.empty() ? std::string::npos : kSuffix.find(s.back());
  if (at != std::string::npos) {
    digits--;
    shift = 10 * int(at / 2 + 1);
  }
  uint64_t v = parse_u64(s.substr(0, digits).c_str(), what);
  if (v > (UINT64_MAX >> shift)) die("%s: %s is too large", what, s.c_str());
  return v << shift;
}

struct Args {
  std::map<std::string, std::string> kv;
  std::vector<std::string> pos;

  Args(int argc, char** argv, int start) {
    for (int i = start; i < argc; ++i) {
      std::string a = argv[i];
      if (a.size() > 2 && a[0] == '-' && a[1] == '-') {
        if (i + 1 >= argc) die("option %s needs a value", a.c_str());
        kv[a.substr(2)] = argv[++i];
      } else {
        pos.push_back(a);
      }
    }
  }
  std::string str(const std::string& k, const std::string& d) const {
    auto it = kv.find(k);
    return it == kv.end() ? d : it->second;
  }
  uint64_t num(const std::string& k, uint64_t d, uint64_t hi = UINT64_MAX) const {
    auto it = kv.find(k);
    if (it == kv.end()) return d;
    uint64_t v = parse_size(it->second, ("--" + k).c_str());
    if (v > hi) die("--%s: %s is over %llu", k.c_str(), it->second.c_str(), (unsigned long long)hi);
    return v;
  }
  int count(const std::string& k, int d) const { return int(num(k, uint64_t(d), 1000000)); }
  double secs(const std::string& k, double d) const {
    auto it = kv.find(k);
    return it == kv.end() ? d : parse_sec(it->second.c_str(), ("--" + k).c_str());
  }
};

// ---------------------------------------------------------------- back-end server

class Backend {
 public:
  Backend(const std::string& host, int port);
  [[noreturn]] void run();

 private:
  struct Conn {
    int fd = -1;
    char mode = 0;
    uint8_t hdr[17];
    int hlen = 0;
    uint64_t seed = 0, len = 0, done = 0;
    uint64_t bad = kNoMismatch;
    std::vector<uint8_t> out;  // pending output
    size_t outpos = 0;
    bool out_armed = false;
    bool verdict_sent = false;
  };

  void accept_all();
  void on_event(Conn& c, uint32_t e);
  bool read_some(Conn& c);
  void drop(Conn& c);
  void arm(Conn& c, bool want_out);
  bool flush(Conn& c);
  bool pump_source(Conn& c);
  bool send_verdict(Conn& c);
  bool consume(Conn& c, uint8_t* p, size_t n);
  bool echo(Conn& c, uint8_t* p, size_t n);
  bool sink(Conn& c, uint8_t* p, size_t n);

  Fd lfd_, ep_;
  std::vector<std::unique_ptr<Conn>> conns_;  // by descriptor
  std::vector<uint8_t> buf_ = std::vector<uint8_t>(256 * 1024);
};

Backend::Backend(const std::string& host, int port) {
  lfd_.reset(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!lfd_.ok()) die("socket: %s", why(errno));
  int one = 1;
  setsockopt(lfd_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa = make_addr(host, port);
  if (bind(lfd_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) fail("bind %d: %s", port, why(errno));
  if (listen(lfd_.get(), 4096) < 0) fail("listen: %s", why(errno));
  ep_.reset(epoll_create1(EPOLL_CLOEXEC));
  if (!ep_.ok()) die("epoll_create1: %s", why(errno));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = lfd_.get();
  epoll_ctl(ep_.get(), EPOLL_CTL_ADD, lfd_.get(), &ev);
}

void Backend::drop(Conn& c) {
  int fd = c.fd;
  close(fd);
  conns_[size_t(fd)].reset();
}

// Output pending: wait for writability (an echo stops reading meanwhile:
// back-pressure); else wait for input only.
void Backend::arm(Conn& c, bool want_out) {
  if (c.out_armed == want_out) return;
  epoll_event e{};
  e.events = want_out ? (c.mode == 'E' ? EPOLLOUT : (EPOLLIN | EPOLLOUT)) : EPOLLIN;
  e.data.fd = c.fd;
  epoll_ctl(ep_.get(), EPOLL_CTL_MOD, c.fd, &e);
  c.out_armed = want_out;
}

// Writes pending output; false when the connection died.
bool Backend::flush(Conn& c) {
  while (c.outpos < c.out.size()) {
    ssize_t n = write(c.fd, c.out.data() + c.outpos, c.out.size() - c.outpos);
    if (n < 0 && errno == EAGAIN) return true;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    c.outpos += size_t(n);
  }
  c.out.clear();
  c.outpos = 0;
  return true;
}

// Source: generates and writes until blocked or done.
bool Backend::pump_source(Conn& c) {
  while (c.done < c.len) {
    size_t n = size_t(std::min<uint64_t>(buf_.size(), c.len - c.done));
    pat.gen(buf_.data(), c.done, n, c.seed);
    ssize_t w = write(c.fd, buf_.data(), n);
    if (w < 0 && errno == EAGAIN) {
      arm(c, true);
      return true;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return false;
    c.done += uint64_t(w);
  }
  arm(c, false);
  return true;
}

bool Backend::send_verdict(Conn& c) {
  uint8_t v[9] = {'O'};
  size_t n = 1;
  if (c.bad != kNoMismatch) {
    v[0] = 'F';
    put64(v + 1, c.bad);
    n = 9;
  }
  c.verdict_sent = true;
  c.out.insert(c.out.end(), v, v + n);
  if (!flush(c)) return false;
  arm(c, !c.out.empty());
  return true;
}

bool Backend::echo(Conn& c, uint8_t* p, size_t n) {
  if (!c.out.empty()) {
    c.out.insert(c.out.end(), p, p + n);
    return true;
  }
  size_t off = 0;
  while (off < n) {
    ssize_t w = write(c.fd, p + off, n - off);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) break;
    if (w < 0) return false;
    off += size_t(w);
  }
  if (off < n) {
    c.out.assign(p + off, p + n);
    c.outpos = 0;
    arm(c, true);
  }
  return true;
}

bool Backend::sink(Conn& c, uint8_t* p, size_t n) {
  if (c.verdict_sent || c.done + n > c.len) {
    if (c.bad == kNoMismatch) c.bad = c.done + std::min<uint64_t>(n, c.len - c.done);
    std::fprintf(stderr, "loadgen server: sink got more than %" PRIu64 " bytes\n", c.len);
    return false;
  }
  if (c.bad == kNoMismatch) c.bad = pat.check(p, c.done, n, c.seed);
  c.done += n;
  return c.done == c.len ? send_verdict(c) : true;
}

// Received bytes; false to close.
bool Backend::consume(Conn& c, uint8_t* p, size_t n) {
  if (c.mode == 0) {
    c.mode = char(p[0]);
    if (c.mode != 'E' && c.mode != 'S' && c.mode != 'R') {
      std::fprintf(stderr, "loadgen server: unknown mode byte 0x%02x\n", p[0]);
      return false;
    }
  }
  if (c.mode == 'E') return echo(c, p, n);
  for (; c.hlen < 17 && n; --n) {  // S or R: the header first
    c.hdr[c.hlen++] = *p++;
    if (c.hlen < 17) continue;
    c.seed = get64(c.hdr + 1);
    c.len = get64(c.hdr + 9);
    if (c.mode == 'R') return pump_source(c);
    if (c.len == 0) return send_verdict(c);
  }
  if (!n) return true;
  if (c.mode == 'R') {
    std::fprintf(stderr, "loadgen server: unexpected %zu bytes on source connection\n", n);
    return false;
  }
  return sink(c, p, n);
}

void Backend::accept_all() {
  for (;;) {
    int cfd = accept4(lfd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0) {
      if (errno == EMFILE || errno == ENFILE) std::fprintf(stderr, "loadgen server: accept: %s\n", why(errno));
      return;
    }
    set_nodelay(cfd);
    if (size_t(cfd) >= conns_.size()) conns_.resize(size_t(cfd) + 1024);
    conns_[size_t(cfd)] = std::make_unique<Conn>();
    conns_[size_t(cfd)]->fd = cfd;
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.fd = cfd;
    epoll_ctl(ep_.get(), EPOLL_CTL_ADD, cfd, &e);
  }
}

// Reads up to four buffers; false to close.
bool Backend::read_some(Conn& c) {
  for (int rounds = 0; rounds < 4; ++rounds) {
    ssize_t n = read(c.fd, buf_.data(), buf_.size());
    if (n == 0) return false;
    if (n < 0) return errno == EAGAIN || errno == EINTR;
    if (!consume(c, buf_.data(), size_t(n))) return false;
    if (size_t(n) < buf_.size() || (c.mode == 'E' && c.out_armed)) return true;
  }
  return true;
}

void Backend::on_event(Conn& c, uint32_t e) {
  bool ok = true;
  if (e & EPOLLOUT) {
    if (c.mode == 'R' && c.done < c.len) {
      ok = pump_source(c);
    } else {
      ok = flush(c);
      if (ok && c.out.empty()) arm(c, false);
    }
  }
  if (ok && (e & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !(c.mode == 'E' && c.out_armed)) ok = read_some(c);
  else if (ok && (e & (EPOLLHUP | EPOLLERR))) ok = false;
  if (!ok) drop(c);
}

void Backend::run() {
  std::vector<epoll_event> evs(512);
  for (;;) {
    int k = epoll_wait(ep_.get(), evs.data(), int(evs.size()), -1);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) fail("epoll_wait: %s", why(errno));
    for (int i = 0; i < k; ++i) {
      int fd = evs[size_t(i)].data.fd;
      if (fd == lfd_.get()) accept_all();
      else if (conns_[size_t(fd)]) on_event(*conns_[size_t(fd)], evs[size_t(i)].events);
    }
  }
}

int cmd_server(const Args& a) {
  if (a.pos.empty()) die("server needs a port");
  Backend(a.str("host", "127.0.0.1"), parse_int(a.pos[0].c_str(), "PORT", 1, 65535)).run();
}

// ---------------------------------------------------------------- client helpers

struct Client {
  sockaddr_in addr;
  Fd ep;
  double stall;
  int pid;

  explicit Client(const Args& a) {
    int port = int(a.num("port", 0, 65535));
    if (port <= 0) fail("--port is required");
    addr = make_addr(a.str("host", "127.0.0.1"), port);
    ep.reset(epoll_create1(EPOLL_CLOEXEC));
    if (!ep.ok()) die("epoll_create1: %s", why(errno));
    stall = a.secs("stall", 10);
    pid = int(a.num("pid", 0, 1u << 30));
  }
  // A non-blocking connect, registered for EPOLLOUT with tag as its data.
  int start_connect(uint64_t tag) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) fail("socket: %s", why(errno));
    set_nodelay(fd);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 && errno != EINPROGRESS)
      fail("connect: %s", why(errno));
    add(fd, EPOLLOUT, tag);
    return fd;
  }
  void add(int fd, uint32_t events, uint64_t tag) { ctl(EPOLL_CTL_ADD, fd, events, tag); }
  void mod(int fd, uint32_t events, uint64_t tag) { ctl(EPOLL_CTL_MOD, fd, events, tag); }
  void ctl(int op, int fd, uint32_t events, uint64_t tag) {
    epoll_event e{};
    e.events = events;
    e.data.u64 = tag;
    epoll_ctl(ep.get(), op, fd, &e);
  }
  // A blocking connect bounded by the stall time; non-blocking afterwards.
  int connect_blocking() {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail("socket: %s", why(errno));
    set_nodelay(fd);
    timeval tv{time_t(stall), 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) fail("connect: %s", why(errno));
    set_nonblock(fd);
    return fd;
  }
  int wait(std::vector<epoll_event>& evs) { return epoll_wait(ep.get(), evs.data(), int(evs.size()), 100); }
};

// Writes all of a small message on a non-blocking fd.
bool write_all_nb(int fd, const uint8_t* p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) {
      usleep(100);
      continue;
    }
    if (w < 0) return false;
    p += w, n -= size_t(w);
  }
  return true;
}

void fill_msg(uint8_t* m, size_t size, uint64_t conn, uint64_t counter) {
  for (size_t i = 0; i < size; ++i) m[i] = uint8_t(conn * 131 + counter * 7 + i);
  m[0] = 'E';
  if (size >= 17) {
    put64(m + 1, conn);
    put64(m + 9, counter);
  }
}

// ---------------------------------------------------------------- idle connections

const size_t kIdleMsg = 16;
const uint64_t kIdleTag = 1ULL << 40;  // epoll data of an idle connection: kIdleTag | index

// Opens n connections, each does one 16-byte echo exchange (so the proxy has
// relayed it to the back-end), then stays open. Returns the fds.
class IdleOpener {
 public:
  IdleOpener(Client& cl, int n) : cl_(cl), fds_(size_t(n), -1), got_(size_t(n), 0), state_(size_t(n), 0) {}
  std::vector<int> open(int conc);

 private:
  void on_event(int id);

  Client& cl_;
  std::vector<int> fds_, got_, state_;  // state: 0 connecting, 1 waiting for the echo, 2 done
  int done_ = 0, inflight_ = 0;
  double last_ = 0;
};

void IdleOpener::on_event(int id) {
  int fd = fds_[size_t(id)];
  uint8_t buf[64], msg[kIdleMsg];
  if (state_[size_t(id)] == 0) {
    if (int err = so_error(fd)) fail("idle connect %d: %s", id, why(err));
    fill_msg(msg, kIdleMsg, uint64_t(id), 0);
    if (!write_all_nb(fd, msg, kIdleMsg)) fail("idle write: %s", why(errno));
    state_[size_t(id)] = 1;
    cl_.mod(fd, EPOLLIN, uint64_t(id));
    return;
  }
  if (state_[size_t(id)] != 1) return;
  ssize_t r = read(fd, buf, sizeof buf);
  if (r == 0) fail("idle connection %d closed by peer during setup", id);
  if (r < 0 && errno == EAGAIN) return;
  if (r < 0) fail("idle read: %s", why(errno));
  got_[size_t(id)] += int(r);
  if (got_[size_t(id)] > int(kIdleMsg)) fail("idle connection %d: too many bytes", id);
  if (got_[size_t(id)] < int(kIdleMsg)) return;
  state_[size_t(id)] = 2;
  // Stay registered: any later event means the proxy broke the idle connection.
  cl_.mod(fd, EPOLLIN | EPOLLRDHUP, uint64_t(id) | kIdleTag);
  ++done_, --inflight_;
  last_ = now();
}

std::vector<int> IdleOpener::open(int conc) {
  int n = int(fds_.size()), started = 0;
  last_ = now();
  std::vector<epoll_event> evs(256);
  while (done_ < n) {
    for (; inflight_ < conc && started < n; ++started, ++inflight_)
      fds_[size_t(started)] = cl_.start_connect(uint64_t(started));
    int k = cl_.wait(evs);
    for (int i = 0; i < k; ++i) on_event(int(evs[size_t(i)].data.u64));
    if (now() - last_ > cl_.stall) fail("stall opening idle connections (%d of %d done)", done_, n);
  }
  return fds_;
}

// The final check: one more echo exchange on every idle connection; how many failed.
int check_idle(std::vector<int>& fds) {
  uint8_t msg[kIdleMsg], buf[64];
  int bad = 0;
  for (size_t i = 0; i < fds.size(); ++i) {
    fill_msg(msg, kIdleMsg, i, 1);
    if (!write_all_nb(fds[i], msg, kIdleMsg)) ++bad;
  }
  double t0 = now();
  for (size_t i = 0; i < fds.size(); ++i) {
    size_t got = 0;
    while (got < kIdleMsg) {
      ssize_t r = read(fds[i], buf, sizeof buf);
      if (r > 0) {
        got += size_t(r);
        continue;
      }
      if (r < 0 && errno == EAGAIN && now() - t0 < 10) {
        usleep(200);
        continue;
      }
      break;
    }
    if (got != kIdleMsg) ++bad;
  }
  return bad;
}

// ---------------------------------------------------------------- short connections

// conc slots, each running one connection after the other: connect, send
// size bytes, read the echo, close.
class ShortRun {
 public:
  ShortRun(const Args& a)
      : cl_(a), total_(a.count("conns", 20000)), size_(size_t(a.num("size", 64, 1 << 20))),
        slots_(size_t(a.count("conc", 32))), msg_(size_), buf_(std::max<size_t>(size_, 4096)) {
    lat_.reserve(size_t(total_));
  }
  int run();

 private:
  struct Slot {
    int fd = -1;
    int state = 0;  // 0 connecting, 1 reading the echo
    size_t got = 0;
    double t0 = 0;
    uint64_t id = 0;
  };
  void launch(Slot& s);
  void failed(Slot& s, const char* why);
  void on_event(int slot);
  void on_echo(Slot& s);
  int report(double el, long long cpu0);

  Client cl_;
  int total_;
  size_t size_;
  std::vector<Slot> slots_;
  std::vector<uint8_t> msg_, buf_;
  std::vector<double> lat_;
  int started_ = 0, completed_ = 0, errors_ = 0;
  double last_ = 0;
  std::string first_error_;
};

void ShortRun::failed(Slot& s, const char* why) {
  ++errors_;
  if (first_error_.empty()) first_error_ = fmt("conn_%" PRIu64 "_%s", s.id, why).substr(0, 127);
  close(s.fd);
  s.fd = -1;
  ++completed_;
  last_ = now();
}

void ShortRun::launch(Slot& s) {
  s.id = uint64_t(started_++);
  s.state = 0;
  s.got = 0;
  s.t0 = now();
  s.fd = cl_.start_connect(uint64_t(&s - slots_.data()));
}

void ShortRun::on_echo(Slot& s) {
  ssize_t r = read(s.fd, buf_.data(), buf_.size());
  if (r < 0 && errno == EAGAIN) return;
  if (r <= 0) return failed(s, r == 0 ? "eof_before_echo" : why(errno));
  fill_msg(msg_.data(), size_, s.id, 0);
  if (s.got + size_t(r) > size_ || std::memcmp(buf_.data(), msg_.data() + s.got, size_t(r)) != 0)
    return failed(s, "bad_echo");
  s.got += size_t(r);
  if (s.got < size_) return;
  double t = now();
  lat_.push_back(t - s.t0);
  close(s.fd);
  s.fd = -1;
  ++completed_;
  last_ = t;
}

void ShortRun::on_event(int slot) {
  Slot& s = slots_[size_t(slot)];
  if (s.fd < 0) return;
  if (s.state != 0) return on_echo(s);
  if (int err = so_error(s.fd)) return failed(s, why(err));
  fill_msg(msg_.data(), size_, s.id, 0);
  if (write(s.fd, msg_.data(), size_) != ssize_t(size_)) return failed(s, "write");
  s.state = 1;
  cl_.mod(s.fd, EPOLLIN, uint64_t(slot));
}

int ShortRun::report(double el, long long cpu0) {
  long long cpu1 = proc_cpu_us(cl_.pid);
  std::sort(lat_.begin(), lat_.end());
  auto pct = [&](double p) {
    return lat_.empty() ? 0 : lat_[std::min(lat_.size() - 1, size_t(p * double(lat_.size())))] * 1e6;
  };
  std::printf("rate=%.1f p50_us=%.1f p99_us=%.1f conns=%d errors=%d secs=%.3f", total_ / el, pct(0.50), pct(0.99),
              total_, errors_, el);
  if (cpu0 >= 0 && cpu1 >= 0) std::printf(" cpu_us=%lld cpu_per_unit=%.2f", cpu1 - cpu0, double(cpu1 - cpu0) / total_);
  if (errors_) std::printf(" error=%d_failed_connections_first:%s", errors_, first_error_.c_str());
  std::printf("\n");
  if (!proc_alive(cl_.pid)) {
    std::printf("error=proxy_died\n");
    return 1;
  }
  return errors_ ? 1 : 0;
}

int ShortRun::run() {
  std::vector<epoll_event> evs(256);
  long long cpu0 = proc_cpu_us(cl_.pid);
  double t0 = now();
  last_ = t0;
  for (auto& s : slots_)
    if (started_ < total_) launch(s);
  while (completed_ < total_) {
    int k = cl_.wait(evs);
    for (int i = 0; i < k; ++i) on_event(int(evs[size_t(i)].data.u64));
    // Free slots (after a completion) take the next connection.
    for (auto& s : slots_)
      if (s.fd < 0 && started_ < total_) launch(s);
    if (now() - last_ > cl_.stall)
      fail("stall: %d of %d connections completed, %d errors", completed_, total_, errors_);
  }
  return report(now() - t0, cpu0);
}

// ---------------------------------------------------------------- ping-pong

// nconn connections each echoing one message of size bytes after the
// other for secs (after 0.2 s of warm-up), optionally with nidle idle
// relayed connections open meanwhile.
class PingPong {
 public:
  explicit PingPong(const Args& a)
      : a_(a), cl_(a), nconn_(a.count("conns", 1)), size_(std::max<size_t>(17, size_t(a.num("size", 64, 1 << 20)))),
        secs_(a.secs("secs", 3)), nidle_(a.count("idle", 0)), ps_(size_t(nconn_)),
        buf_(std::max<size_t>(size_ * 2, 65536)) {}
  int run();

 private:
  struct Peer {
    int fd = -1;
    uint64_t counter = 0;
    size_t got = 0;
    std::vector<uint8_t> msg;
  };
  void open_idle();
  void send_next(int i);
  void on_idle_event(uint64_t tag);
  void on_echo(uint64_t tag, double t);
  bool all_answered() const;
  int report(double el, long long cpu0);

  const Args& a_;
  Client cl_;
  int nconn_;
  size_t size_;
  double secs_;
  int nidle_;
  std::vector<Peer> ps_;
  std::vector<uint8_t> buf_;
  std::vector<int> idle_;
  long rss0_ = -1, rss1_ = -1;
  double idle_secs_ = 0;
  uint64_t rts_ = 0;
  int idle_broken_ = 0;
  bool measuring_ = false;
  double tend_ = 0, last_ = 0;
};

void PingPong::open_idle() {
  rss0_ = proc_rss_kb(cl_.pid);
  double t = now();
  idle_ = IdleOpener(cl_, nidle_).open(a_.count("idleconc", 64));
  idle_secs_ = now() - t;
  usleep(300000);
  rss1_ = proc_rss_kb(cl_.pid);
}

void PingPong::send_next(int i) {
  Peer& p = ps_[size_t(i)];
  fill_msg(p.msg.data(), size_, uint64_t(i), p.counter);
  p.got = 0;
  if (!write_all_nb(p.fd, p.msg.data(), size_)) fail("pingpong write: %s", why(errno));
}

// An idle connection got an event: the proxy broke it.
void PingPong::on_idle_event(uint64_t tag) {
  int fd = idle_[tag & 0xFFFFFFFF];
  ssize_t r = read(fd, buf_.data(), buf_.size());
  if (r == 0 || (r < 0 && errno != EAGAIN)) {
    ++idle_broken_;
    epoll_ctl(cl_.ep.get(), EPOLL_CTL_DEL, fd, nullptr);
  }
}

void PingPong::on_echo(uint64_t tag, double t) {
  Peer& p = ps_[tag];
  ssize_t r = read(p.fd, buf_.data(), buf_.size());
  if (r < 0 && errno == EAGAIN) return;
  if (r <= 0)
    fail("pingpong connection %d: %s after %" PRIu64 " round trips", int(tag), r == 0 ? "closed by peer" : why(errno),
         rts_);
  if (p.got + size_t(r) > size_ || std::memcmp(buf_.data(), p.msg.data() + p.got, size_t(r)) != 0)
    fail("pingpong connection %d: bad echo data at round trip %" PRIu64, int(tag), p.counter);
  p.got += size_t(r);
  if (p.got != size_) return;
  ++p.counter;
  if (measuring_) ++rts_;
  last_ = t;
  if (t < tend_ || !measuring_) send_next(int(tag));
}

bool PingPong::all_answered() const {
  return std::all_of(ps_.begin(), ps_.end(), [&](const Peer& p) { return p.got == size_; });
}

int PingPong::report(double el, long long cpu0) {
  long long cpu1 = proc_cpu_us(cl_.pid);
  int idle_bad = idle_.empty() ? 0 : check_idle(idle_);
  uint64_t rts_total = 0;  // including warm-up (for syscall counting)
  for (auto& p : ps_) rts_total += p.counter;
  std::printf("rate=%.1f rt_us=%.2f rts=%" PRIu64 " rts_total=%" PRIu64 " conns=%d size=%zu secs=%.3f",
              double(rts_) / el, el / double(rts_) * 1e6 * nconn_, rts_, rts_total, nconn_, size_, el);
  if (cpu0 >= 0 && cpu1 >= 0)
    std::printf(" cpu_us=%lld cpu_per_unit=%.3f", cpu1 - cpu0, double(cpu1 - cpu0) / double(rts_));
  if (nidle_ > 0) {
    std::printf(" idle=%d idle_open_secs=%.3f", nidle_, idle_secs_);
    if (rss0_ >= 0 && rss1_ >= 0)
      std::printf(" rss0_kb=%ld rss1_kb=%ld idle_bytes_per_conn=%.0f", rss0_, rss1_,
                  double(rss1_ - rss0_) * 1024.0 / nidle_);
    std::printf(" idle_broken=%d idle_check_failed=%d", idle_broken_, idle_bad);
  }
  int rc = 0;
  if (idle_broken_ || idle_bad) {
    std::printf(" error=%d_idle_connections_broken", idle_broken_ + idle_bad);
    rc = 1;
  }
  std::printf("\n");
  for (int fd : idle_) close(fd);
  if (!proc_alive(cl_.pid)) {
    std::printf("error=proxy_died\n");
    return 1;
  }
  return rc;
}

int PingPong::run() {
  raise_fd_limit();
  if (nidle_ > 0) open_idle();
  for (int i = 0; i < nconn_; ++i) {
    Peer& p = ps_[size_t(i)];
    p.fd = cl_.connect_blocking();
    p.msg.resize(size_);
    cl_.add(p.fd, EPOLLIN | EPOLLRDHUP, uint64_t(i));
  }
  std::vector<epoll_event> evs(256);
  double t0 = now();
  tend_ = t0 + 0.2;  // 0.2 s of warm-up
  last_ = t0;
  long long cpu0 = -1;
  for (int i = 0; i < nconn_; ++i) send_next(i);
  for (;;) {
    int k = cl_.wait(evs);
    double t = now();
    for (int i = 0; i < k; ++i) {
      uint64_t tag = evs[size_t(i)].data.u64;
      if (tag >> 40) on_idle_event(tag);
      else on_echo(tag, t);
    }
    if (!measuring_ && t >= tend_) {
      // The warm-up is over: everything is in flight again; measure.
      measuring_ = true;
      cpu0 = proc_cpu_us(cl_.pid);
      t0 = now();
      tend_ = t0 + secs_;
      rts_ = 0;
    }
    if (measuring_ && t >= tend_ && all_answered()) break;
    if (t - last_ > cl_.stall) fail("stall: no echo for %.0f s after %" PRIu64 " round trips", cl_.stall, rts_);
  }
  return report(now() - t0, cpu0);
}

// ---------------------------------------------------------------- bulk

// nconn connections each sending (up: to a sink that verifies) or
// receiving (down: from a source, verified here) bytes of their own stream.
class Bulk {
 public:
  explicit Bulk(const Args& a)
      : cl_(a), dir_(a.str("dir", "up")), up_(dir_ == "up"), bytes_(a.num("bytes", 512ULL << 20)),
        bs_(size_t(a.count("conns", 4))), rbuf_(kChunk) {
    if (!up_ && dir_ != "down") fail("--dir must be up or down");
  }
  int run();

 private:
  static const size_t kChunk = 256 * 1024;
  struct Stream {
    Fd fd;
    uint64_t seed = 0, off = 0;
    std::vector<uint8_t> buf;
    size_t bpos = 0, blen = 0;
    uint8_t verdict[9];
    int vlen = 0;
    bool done = false;
  };
  void start(int id, uint64_t seed);
  void send_some(int id);
  void read_some(int id);
  bool take_verdict(int id, ssize_t r);
  bool take_data(int id, ssize_t r);
  void finished(Stream& b) {
    b.done = true;
    ++ndone_;
  }

  Client cl_;
  std::string dir_;
  bool up_;
  uint64_t bytes_;
  std::vector<Stream> bs_;
  std::vector<uint8_t> rbuf_;
  int ndone_ = 0;
  double last_ = 0;
};

void Bulk::start(int id, uint64_t seed) {
  Stream& b = bs_[size_t(id)];
  b.fd.reset(cl_.connect_blocking());
  b.seed = seed;
  uint8_t h[17];
  h[0] = up_ ? 'S' : 'R';
  put64(h + 1, b.seed);
  put64(h + 9, bytes_);
  if (!write_all_nb(b.fd.get(), h, 17)) fail("bulk header write: %s", why(errno));
  if (up_) b.buf.resize(kChunk);
  cl_.add(b.fd.get(), up_ ? (EPOLLIN | EPOLLOUT) : EPOLLIN, uint64_t(id));
}

// Up: writes the next chunks of the stream until the socket is full.
void Bulk::send_some(int id) {
  Stream& b = bs_[size_t(id)];
  while (b.off < bytes_) {
    if (b.bpos == b.blen) {
      b.blen = size_t(std::min<uint64_t>(kChunk, bytes_ - b.off));
      pat.gen(b.buf.data(), b.off, b.blen, b.seed);
      b.bpos = 0;
    }
    ssize_t w = write(b.fd.get(), b.buf.data() + b.bpos, b.blen - b.bpos);
    if (w < 0 && errno == EAGAIN) break;
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) fail("bulk up conn %d: write: %s at offset %" PRIu64, id, why(errno), b.off);
    b.bpos += size_t(w);
    b.off += uint64_t(w);
    last_ = now();
    if (b.bpos == b.blen) b.bpos = b.blen = 0;
  }
  if (b.off >= bytes_) cl_.mod(b.fd.get(), EPOLLIN, uint64_t(id));
}

// Up: the sink's verdict; true once it is complete.
bool Bulk::take_verdict(int id, ssize_t r) {
  Stream& b = bs_[size_t(id)];
  if (b.vlen + r > 9) fail("bulk up conn %d: unexpected bytes from server", id);
  std::memcpy(b.verdict + b.vlen, rbuf_.data(), size_t(r));
  b.vlen += int(r);
  if (b.verdict[0] == 'O' && b.vlen == 1) return true;
  if (b.verdict[0] == 'F' && b.vlen == 9)
    fail("bulk up conn %d: server saw corrupt data at offset %" PRIu64 " (sent %" PRIu64 ")", id,
         get64(b.verdict + 1), b.off);
  if (b.verdict[0] != 'O' && b.verdict[0] != 'F') fail("bulk up conn %d: bad verdict byte", id);
  return false;
}

// Down: checks the bytes; true once all have come.
bool Bulk::take_data(int id, ssize_t r) {
  Stream& b = bs_[size_t(id)];
  if (b.off + uint64_t(r) > bytes_) fail("bulk down conn %d: got more than %" PRIu64 " bytes", id, bytes_);
  uint64_t bad = pat.check(rbuf_.data(), b.off, size_t(r), b.seed);
  if (bad != kNoMismatch) fail("bulk down conn %d: corrupt data at offset %" PRIu64, id, bad);
  b.off += uint64_t(r);
  return b.off == bytes_;
}

void Bulk::read_some(int id) {
  Stream& b = bs_[size_t(id)];
  for (int rounds = 0; rounds < 8; ++rounds) {
    ssize_t r = read(b.fd.get(), rbuf_.data(), rbuf_.size());
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (r < 0) fail("bulk %s conn %d: read: %s at offset %" PRIu64, dir_.c_str(), id, why(errno), b.off);
    if (r == 0)
      fail("bulk %s conn %d: closed by peer at offset %" PRIu64 " of %" PRIu64, dir_.c_str(), id, b.off, bytes_);
    last_ = now();
    if (up_ ? take_verdict(id, r) : take_data(id, r)) return finished(b);
    if (!up_ && size_t(r) < rbuf_.size()) return;
  }
}

int Bulk::run() {
  long long cpu0 = proc_cpu_us(cl_.pid);
  double t0 = now();
  last_ = t0;
  std::mt19937_64 rng(uint64_t(getpid()) * 7919 + uint64_t(t0 * 1e6));
  for (size_t i = 0; i < bs_.size(); ++i) start(int(i), rng());
  std::vector<epoll_event> evs(64);
  while (ndone_ < int(bs_.size())) {
    int k = cl_.wait(evs);
    for (int i = 0; i < k; ++i) {
      int id = int(evs[size_t(i)].data.u64);
      uint32_t ev = evs[size_t(i)].events;
      if (bs_[size_t(id)].done) continue;
      if (up_ && (ev & EPOLLOUT) && bs_[size_t(id)].off < bytes_) send_some(id);
      if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) read_some(id);
    }
    if (now() - last_ > cl_.stall) {
      std::string st;
      for (auto& b : bs_) st += std::to_string(b.off) + (b.done ? "(done)" : "") + ",";
      fail("stall: no progress for %.0f s; per-connection offsets %s", cl_.stall, st.c_str());
    }
  }
  double el = now() - t0;
  long long cpu1 = proc_cpu_us(cl_.pid);
  bs_.clear();  // closes them
  double total = double(bytes_) * double(ndone_);
  std::printf("rate=%.1f bytes=%.0f secs=%.3f verified=1", total / el / 1e6, total, el);
  if (cpu0 >= 0 && cpu1 >= 0)
    std::printf(" cpu_us=%lld cpu_per_unit=%.2f", cpu1 - cpu0, double(cpu1 - cpu0) / 1000.0 / (total / 1e9));
  std::printf("\n");
  if (!proc_alive(cl_.pid)) {
    std::printf("error=proxy_died\n");
    return 1;
  }
  return 0;
}

// ---------------------------------------------------------------- queue

// The number of open descriptors of a process, -1 if unknown.
long proc_fd_count(int pid) {
  DIR* d = opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
  if (!d) return -1;
  long n = 0;
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') ++n;
  closedir(d);
  return n;
}

// The wait queue under load (the proxy's farm limited by maxc), in rounds
// of: holders connections take every slot (each relays one echo, so it
// holds its slot); then waiters clients connect, and once the proxy has
// accepted them all (its descriptor count in /proc says so) they wait in
// its queue; then each sends one size-byte echo request, which the proxy
// reads and keeps. The holders close, and each freed slot serves the next
// waiter, which reads its echo and closes, freeing the slot again.
// Reports the proxy's CPU per served waiter (from the holders' release to
// the last echo) and per queued one (accepting it and reading its
// request), summed over the rounds (several rounds give a small queue as
// many samples as a large one), and its memory per waiting client without
// and with its request, read in the first round while they wait.
class QueueRun {
 public:
  explicit QueueRun(const Args& a)
      : cl_(a), nwait_(a.count("waiters", 1000)), nhold_(a.count("holders", 1)), rounds_(a.count("rounds", 1)),
        size_(std::max<size_t>(17, size_t(a.num("size", 64, 65536)))), conc_(std::max(1, a.count("conc", 128))),
        ws_(size_t(nwait_)), msg_(size_), buf_(65536) {
    if (cl_.pid <= 0) fail("queue needs --pid (the proxy's descriptors tell when all clients wait)");
    if (nwait_ < 1 || rounds_ < 1) fail("--waiters and --rounds must be at least 1");
  }
  int run();

 private:
  struct Waiter {
    int fd = -1;
    int state = 0;  // 0 connecting, 1 waiting for its echo, 2 served and closed
    size_t got = 0;
  };
  void round(bool first);
  void settle_fds();
  void hold();
  void connect_waiters();
  void wait_accepted(long base);
  void send_requests();
  void pump(double secs);
  void on_event(int id);
  int report();

  Client cl_;
  int nwait_, nhold_, rounds_;
  size_t size_;
  int conc_;
  std::vector<Waiter> ws_;
  std::vector<int> holders_;
  std::vector<uint8_t> msg_, buf_;
  int connected_ = 0, inflight_ = 0, served_ = 0;
  bool released_ = false;
  long idle_fds_ = -1;  // the proxy's descriptors before the first round
  long rss0_ = -1, rss1_ = -1, rss2_ = -1;
  long long enq_cpu_ = 0, serve_cpu_ = 0;  // summed over the rounds, -1 if unknown
  double serve_secs_ = 0, last_ = 0;
};

// Every holder relays one echo (bounded by the stall time) and stays open.
void QueueRun::hold() {
  for (int i = 0; i < nhold_; ++i) {
    int fd = cl_.connect_blocking();
    holders_.push_back(fd);
    fill_msg(msg_.data(), size_, uint64_t(nwait_ + i), 0);
    if (!write_all_nb(fd, msg_.data(), size_)) fail("holder %d: write: %s", i, why(errno));
    size_t got = 0;
    double t0 = now();
    while (got < size_) {
      pollfd p{fd, POLLIN, 0};
      if (now() - t0 > cl_.stall) fail("holder %d got no echo within %.0f s: is the farm up?", i, cl_.stall);
      if (poll(&p, 1, 100) <= 0) continue;
      ssize_t r = read(fd, buf_.data(), size_ - got);
      if (r == 0) fail("holder %d closed by the proxy", i);
      if (r < 0 && errno != EAGAIN && errno != EINTR) fail("holder %d: read: %s", i, why(errno));
      if (r > 0) got += size_t(r);
    }
  }
}

void QueueRun::on_event(int id) {
  Waiter& w = ws_[size_t(id)];
  if (w.state == 0) {
    if (int err = so_error(w.fd)) fail("waiter %d: connect: %s", id, why(err));
    w.state = 1;
    cl_.mod(w.fd, EPOLLIN | EPOLLRDHUP, uint64_t(id));
    ++connected_, --inflight_;
    last_ = now();
    return;
  }
  if (w.state != 1) return;
  ssize_t r = read(w.fd, buf_.data(), buf_.size());
  if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (!released_)
    fail("waiter %d %s before any slot was freed: the farm has more slots than holders, or the queue "
         "is too short (-q)",
         id, r > 0 ? "was served" : "was closed");
  if (r <= 0) fail("waiter %d: %s before its echo", id, r == 0 ? "closed by the proxy" : why(errno));
  fill_msg(msg_.data(), size_, uint64_t(id), 0);
  if (w.got + size_t(r) > size_ || std::memcmp(buf_.data(), msg_.data() + w.got, size_t(r)) != 0)
    fail("waiter %d: bad echo", id);
  w.got += size_t(r);
  last_ = now();
  if (w.got < size_) return;
  close(w.fd);
  w.fd = -1;
  w.state = 2;
  ++served_;
}

// Handles events for secs.
void QueueRun::pump(double secs) {
  std::vector<epoll_event> evs(256);
  double end = now() + secs;
  for (double t = now(); t < end; t = now()) {
    int k = epoll_wait(cl_.ep.get(), evs.data(), int(evs.size()), int((end - t) * 1000) + 1);
    for (int i = 0; i < k; ++i) on_event(int(evs[size_t(i)].data.u64));
  }
}

// Connects every waiter, conc handshakes at a time (more would overflow
// the listen backlog and wait out SYN retransmissions).
void QueueRun::connect_waiters() {
  std::vector<epoll_event> evs(256);
  int started = 0;
  last_ = now();
  while (connected_ < nwait_) {
    for (; inflight_ < conc_ && started < nwait_; ++started, ++inflight_)
      ws_[size_t(started)].fd = cl_.start_connect(uint64_t(started));
    int k = cl_.wait(evs);
    for (int i = 0; i < k; ++i) on_event(int(evs[size_t(i)].data.u64));
    if (now() - last_ > cl_.stall) fail("stall: %d of %d waiters connected", connected_, nwait_);
  }
}

// A connection is in the queue once the proxy has accepted it: waits until
// the proxy holds a descriptor for every waiter.
void QueueRun::wait_accepted(long base) {
  double t0 = now();
  long n = 0;
  while ((n = proc_fd_count(cl_.pid)) >= 0 && n < base + nwait_) {
    if (now() - t0 > cl_.stall) fail("the proxy accepted only %ld of %d waiters", n - base, nwait_);
    pump(0.005);
  }
  if (n < 0) fail("cannot read /proc/%d/fd", cl_.pid);
}

void QueueRun::send_requests() {
  for (int id = 0; id < nwait_; ++id) {
    fill_msg(msg_.data(), size_, uint64_t(id), 0);
    if (!write_all_nb(ws_[size_t(id)].fd, msg_.data(), size_)) fail("waiter %d: write: %s", id, why(errno));
  }
}

// The proxy closes a served waiter's sockets a little after the waiter has
// its echo: the next round counts descriptors once they are closed (or
// after a second, when the proxy keeps some).
void QueueRun::settle_fds() {
  double t0 = now();
  while (proc_fd_count(cl_.pid) > idle_fds_ && now() - t0 < 1) usleep(1000);
}

void QueueRun::round(bool first) {
  for (auto& w : ws_) w = Waiter();
  connected_ = inflight_ = served_ = 0;
  released_ = false;
  holders_.clear();
  if (first) idle_fds_ = proc_fd_count(cl_.pid);
  else settle_fds();
  hold();
  long base = proc_fd_count(cl_.pid);
  if (first) rss0_ = proc_rss_kb(cl_.pid);
  long long c0 = proc_cpu_us(cl_.pid);
  connect_waiters();
  wait_accepted(base);
  if (first) {
    pump(0.2);
    rss1_ = proc_rss_kb(cl_.pid);
  }
  send_requests();
  // Time for the proxy to read the requests (about 2 µs each).
  pump(first ? 0.3 : std::max(0.02, nwait_ * 20e-6));
  if (first) rss2_ = proc_rss_kb(cl_.pid);
  long long cpu0 = proc_cpu_us(cl_.pid);
  enq_cpu_ = c0 >= 0 && cpu0 >= 0 && enq_cpu_ >= 0 ? enq_cpu_ + cpu0 - c0 : -1;
  double t0 = now();
  released_ = true;
  for (int fd : holders_) close(fd);
  std::vector<epoll_event> evs(256);
  last_ = t0;
  while (served_ < nwait_) {
    int k = cl_.wait(evs);
    for (int i = 0; i < k; ++i) on_event(int(evs[size_t(i)].data.u64));
    if (now() - last_ > cl_.stall) fail("stall: %d of %d waiters served", served_, nwait_);
  }
  serve_secs_ += now() - t0;
  long long cpu1 = proc_cpu_us(cl_.pid);
  serve_cpu_ = cpu0 >= 0 && cpu1 >= 0 && serve_cpu_ >= 0 ? serve_cpu_ + cpu1 - cpu0 : -1;
}

int QueueRun::report() {
  double total = double(nwait_) * rounds_;
  std::printf("rate=%.1f waiters=%d holders=%d rounds=%d size=%zu secs=%.3f", total / serve_secs_, nwait_, nhold_,
              rounds_, size_, serve_secs_);
  if (serve_cpu_ >= 0) std::printf(" cpu_us=%lld cpu_per_unit=%.2f", serve_cpu_, double(serve_cpu_) / total);
  if (enq_cpu_ >= 0) std::printf(" enqueue_cpu_per_unit=%.2f", double(enq_cpu_) / total);
  if (rss0_ >= 0 && rss1_ >= 0 && rss2_ >= 0)
    std::printf(" rss0_kb=%ld rss1_kb=%ld rss2_kb=%ld wait_bytes_per_client=%.0f request_bytes_per_client=%.0f", rss0_,
                rss1_, rss2_, double(rss1_ - rss0_) * 1024.0 / nwait_, double(rss2_ - rss1_) * 1024.0 / nwait_);
  std::printf("\n");
  if (!proc_alive(cl_.pid)) {
    std::printf("error=proxy_died\n");
    return 1;
  }
  return 0;
}

int QueueRun::run() {
  raise_fd_limit();
  for (int r = 0; r < rounds_; ++r) round(r == 0);
  return report();
}

// ---------------------------------------------------------------- small commands

int cmd_wait(const Args& a) {
  if (a.pos.empty()) die("wait needs a port");
  int port = parse_int(a.pos[0].c_str(), "PORT", 1, 65535);
  double secs = a.pos.size() > 1 ? parse_sec(a.pos[1].c_str(), "SECS") : 5;
  std::string why;
  if (wait_listening(a.str("host", "127.0.0.1"), port, 0, now() + secs, &why)) return 0;
  std::fprintf(stderr, "loadgen wait: %s (%.1f s)\n", why.c_str(), secs);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  g_tool = g_cmd = "loadgen";
  signal(SIGPIPE, SIG_IGN);
  raise_fd_limit();
  setvbuf(stdout, nullptr, _IOLBF, 0);
  if (argc < 2) {
    std::fprintf(stderr, "usage: loadgen server|short|pingpong|bulk|queue|freeport|wait|rss ...\n");
    return 2;
  }
  std::string cmd = argv[1];
  g_cmd = argv[1];
  Args a(argc, argv, 2);
  if (cmd == "server") return cmd_server(a);
  if (cmd == "short") return ShortRun(a).run();
  if (cmd == "pingpong") return PingPong(a).run();
  if (cmd == "bulk") return Bulk(a).run();
  if (cmd == "queue") return QueueRun(a).run();
  if (cmd == "freeport") return std::printf("%d\n", free_port()) < 0;
  if (cmd == "wait") return cmd_wait(a);
  if (cmd == "rss") {
    if (a.pos.empty()) die("rss needs a pid");
    std::printf("%ld\n", proc_rss_kb(parse_int(a.pos[0].c_str(), "PID", 1, 1 << 30)));
    return 0;
  }
  std::fprintf(stderr, "loadgen: unknown command %s\n", cmd.c_str());
  return 2;
}
