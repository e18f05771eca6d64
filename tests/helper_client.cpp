// helper_client.cpp: the helper's clients that move byte streams and check
// every byte where it stands: `client` (one connection against echo, sink,
// source or hold, or N of them in parallel processes) and `integrity` /
// `halfclose` (many connections at once against duplex or echo, under one
// poll loop).

#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "helper.hpp"

namespace helper {
namespace {

using namespace testnet;

// A prefix followed by n bytes of stream(seed), taken or checked in order.
class Stream {
 public:
  Stream(std::string prefix, uint64_t n, uint64_t seed) : prefix_(std::move(prefix)), n_(n), seed_(seed) {}
  uint64_t size() const { return prefix_.size() + n_; }
  uint64_t left() const { return size() - pos_; }
  uint64_t pos() const { return pos_; }

  // The next bytes, at most max.
  std::string read(size_t max) {
    std::string out(size_t(std::min<uint64_t>(max, left())), '\0');
    size_t i = 0;
    for (; i < out.size() && pos_ < prefix_.size(); ++i) out[i] = prefix_[pos_++];
    gen(seed_, pos_ - prefix_.size(), &out[i], out.size() - i);
    pos_ += out.size() - i;
    return out;
  }

  // Checks that p[0, n) are the next bytes; if not, *why says where.
  bool expect(const char* p, size_t n, std::string* why) {
    if (n > left()) {
      *why = fmt("%llu bytes more than the %llu expected", (unsigned long long)(n - left()), (unsigned long long)size());
      return false;
    }
    size_t i = 0;
    for (; i < n && pos_ < prefix_.size(); ++i, ++pos_)
      if (p[i] != prefix_[pos_]) return wrong(pos_, why);
    uint64_t bad = mismatch(seed_, pos_ - prefix_.size(), p + i, n - i);
    if (bad != kNone) return wrong(pos_ + bad, why);
    pos_ += n - i;
    return true;
  }

 private:
  static bool wrong(uint64_t at, std::string* why) {
    *why = fmt("wrong byte at offset %llu", (unsigned long long)at);
    return false;
  }

  std::string prefix_;
  uint64_t n_, seed_;
  uint64_t pos_ = 0;
};

// ---- client ----------------------------------------------------------------------

struct ClientOpts {
  std::string host, port;
  uint64_t n = 0, seed = 1;
  std::string id;
  bool has_id = false, shut = false, greet = false, after_eof = false;
  bool distcc = false;  // -D: framed as a distcc request
  double hold = 0, interval = 0, timeout = 10;
  size_t chunk = 0;
  std::string mode = "echo", readyfile;
  std::string source;  // -B: connect from this address
  uint64_t src_n = 0, src_seed = 0;  // mode source:N:SEED
  int parallel = 1;
};

class Client {
 public:
  explicit Client(const ClientOpts& o)
      : o_(o), tx_(prefix(o), o.n, o.seed), echo_(prefix(o), o.n, o.seed), source_("", o.src_n, o.src_seed) {}
  int run();

 private:
  static std::string prefix(const ClientOpts& o) {
    std::string line = o.has_id ? o.id + "\n" : "";
    return o.distcc ? distcc_head(line.size() + o.n) + line : line;
  }
  int fail(int code, const std::string& why) const {
    std::fprintf(stderr, "helper client%s%s: %s (sent %llu of %llu, received %llu)\n", o_.has_id ? " " : "",
                 o_.id.c_str(), why.c_str(), (unsigned long long)tx_.pos(), (unsigned long long)tx_.size(),
                 (unsigned long long)received_);
    return code;
  }
  bool take(const char* p, size_t n);
  void next_piece(double t);
  bool shut_due(double t, double* wake);
  int io(short revents);
  int verdict() const;

  const ClientOpts& o_;
  int fd_ = -1;
  Stream tx_, echo_, source_;
  std::string pend_;  // bytes taken from tx_, not yet sent
  uint64_t received_ = 0;
  std::string text_;  // sink / hold: what came back (bounded)
  std::string error_;
  bool rd_eof_ = false, shut_done_ = false;
  double greet_at_ = -1, sent_at_ = -1, next_chunk_ = 0;
};

// Checks (echo, source), keeps (sink, hold) or prints what came back.
bool Client::take(const char* p, size_t n) {
  if (greet_at_ < 0 && std::memchr(p, '\n', n) != nullptr) greet_at_ = now();
  received_ += n;
  if (o_.mode == "echo") return echo_.expect(p, n, &error_);
  if (o_.mode == "source") return source_.expect(p, n, &error_);
  if (o_.mode == "print") {
    if (fwrite(p, 1, n, stdout) == n) return true;
    error_ = fmt("stdout: %s", why(errno));
    return false;
  }
  if (text_.size() < 4096) text_.append(p, std::min(n, 4096 - text_.size()));
  return true;
}

// Takes the next piece to send: all at once, or one -k chunk every -I seconds.
void Client::next_piece(double t) {
  bool may_send = !o_.after_eof || rd_eof_;
  if (!may_send || !pend_.empty() || tx_.left() == 0) return;
  if (o_.chunk == 0) {
    pend_ = tx_.read(kChunk);
  } else if (t >= next_chunk_) {
    pend_ = tx_.read(o_.chunk);
    next_chunk_ = t + o_.interval;
  }
}

// True when the write side is to be shut now; else *wake is when.
bool Client::shut_due(double t, double* wake) {
  if (sent_at_ < 0 || !o_.shut || shut_done_) return false;
  double from = o_.greet ? (greet_at_ < 0 ? -1 : std::max(sent_at_, greet_at_)) : sent_at_;
  if (from < 0) return false;
  if (t >= from + o_.hold) return true;
  *wake = std::min(*wake, from + o_.hold);
  return false;
}

// One round of reading and writing; 0 to go on, else the exit status.
int Client::io(short revents) {
  if (revents & POLLOUT) {
    ssize_t w = send(fd_, pend_.data(), pend_.size(), 0);
    if (w > 0) pend_.erase(0, size_t(w));
    else if (w < 0 && !try_again(errno)) return fail(1, fmt("send: %s", why(errno)));
  }
  if (rd_eof_ || !(revents & (POLLIN | POLLHUP | POLLERR))) return 0;
  char buf[kChunk];
  ssize_t r = read(fd_, buf, sizeof buf);
  if (r > 0 && !take(buf, size_t(r))) return fail(1, error_);
  if (r == 0) {
    rd_eof_ = true;
    if (greet_at_ < 0) greet_at_ = now();
  }
  if (r < 0 && !try_again(errno)) return fail(1, fmt("read: %s", why(errno)));
  return 0;
}

int Client::verdict() const {
  if (o_.mode == "echo" && echo_.left() != 0)
    return fail(1, fmt("echo ended early: %llu of %llu bytes", (unsigned long long)echo_.pos(),
                       (unsigned long long)echo_.size()));
  if (o_.mode == "source" && source_.left() != 0)
    return fail(1, fmt("source stream ended early: %llu of %llu bytes", (unsigned long long)source_.pos(),
                       (unsigned long long)source_.size()));
  if (o_.mode == "sink") {
    std::string want = fmt("%llu ok\n", (unsigned long long)tx_.size());
    if (text_ != want) return fail(1, "sink replied \"" + text_ + "\", expected \"" + want + "\"");
  }
  if (o_.mode == "hold") {
    std::istringstream in(text_);
    std::string hello, name, bye, id;
    in >> hello >> name >> bye;
    std::getline(in, id);
    if (!id.empty() && id[0] == ' ') id.erase(0, 1);
    if (hello != "hello" || bye != "bye" || id != o_.id) return fail(1, "hold replied \"" + text_ + "\"");
    std::printf("%s %s\n", name.c_str(), id.c_str());
  }
  std::fflush(stdout);
  return 0;
}

int Client::run() {
  double deadline = now() + o_.timeout;
  next_chunk_ = now();
  int err = 0;
  fd_ = connect_tcp(o_.host, o_.port, deadline, &err, o_.source);
  if (fd_ < 0) return fail(err == ETIMEDOUT ? 2 : 1, fmt("connect to %s port %s: %s", o_.host.c_str(), o_.port.c_str(), why(err)));
  Fd owner(fd_);
  if (!o_.readyfile.empty()) write_atomic(o_.readyfile, "connected\n");
  for (;;) {
    double t = now();
    if (t >= deadline) return fail(2, fmt("deadline of %g s passed", o_.timeout));
    next_piece(t);
    if (sent_at_ < 0 && pend_.empty() && tx_.left() == 0 && (!o_.after_eof || rd_eof_)) sent_at_ = t;
    double wake = deadline;
    if (shut_due(t, &wake)) {
      shutdown(fd_, SHUT_WR);
      shut_done_ = true;
    }
    if (rd_eof_ && sent_at_ >= 0 && (shut_done_ || !o_.shut)) break;
    if (pend_.empty() && tx_.left() > 0 && o_.chunk > 0) wake = std::min(wake, next_chunk_);
    pollfd p{fd_, short((rd_eof_ ? 0 : POLLIN) | (pend_.empty() ? 0 : POLLOUT)), 0};
    int n = poll(&p, 1, ms_until(wake, 0.1));
    if (n < 0 && errno != EINTR) return fail(1, fmt("poll: %s", why(errno)));
    if (n <= 0) continue;
    if (int status = io(p.revents)) return status;
  }
  return verdict();
}

// N clients at once, one process each; numeric ids and seeds count up.
int parallel_clients(const ClientOpts& o) {
  bool numeric = o.has_id && !o.id.empty() && o.id.find_first_not_of("0123456789") == std::string::npos;
  std::vector<pid_t> kids;
  for (int k = 0; k < o.parallel; k++) {
    std::fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) die("fork: %s", why(errno));
    if (pid == 0) {
      ClientOpts mine = o;
      mine.parallel = 1;
      mine.seed = o.seed + uint64_t(k);
      if (o.has_id) mine.id = numeric ? std::to_string(std::stoull(o.id) + uint64_t(k)) : o.id + "." + std::to_string(k);
      if (!o.readyfile.empty()) mine.readyfile = o.readyfile + "." + std::to_string(k);
      std::_Exit(Client(mine).run());
    }
    kids.push_back(pid);
  }
  int failed = 0;
  for (pid_t pid : kids) {
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) failed++;
  }
  if (failed == 0) return 0;
  std::fprintf(stderr, "helper client: %d of %d clients failed\n", failed, o.parallel);
  return 1;
}

}  // namespace

int client_main(int argc, char** argv) {
  ClientOpts o;
  int ch;
  while ((ch = getopt(argc, argv, "n:s:i:xH:gAk:I:m:t:r:c:B:D")) != -1) {
    switch (ch) {
      case 'n': o.n = parse_u64(optarg, "-n"); break;
      case 's': o.seed = parse_u64(optarg, "-s"); break;
      case 'i': o.id = optarg, o.has_id = true; break;
      case 'x': o.shut = true; break;
      case 'H': o.hold = parse_sec(optarg, "-H"); break;
      case 'g': o.greet = true; break;
      case 'A': o.after_eof = true; break;
      case 'k': o.chunk = size_t(parse_range(optarg, "-k", 1, kChunk)); break;
      case 'I': o.interval = parse_sec(optarg, "-I"); break;
      case 'm': o.mode = optarg; break;
      case 't': o.timeout = parse_sec(optarg, "-t"); break;
      case 'r': o.readyfile = optarg; break;
      case 'c': o.parallel = parse_int(optarg, "-c", 1, 1000); break;
      case 'B': o.source = optarg; break;
      case 'D': o.distcc = true; break;
      default: die("bad option (see the comment at the top of helper.cpp)");
    }
  }
  if (argc - optind != 2) die("usage: helper client [options] HOST PORT");
  o.host = argv[optind];
  o.port = argv[optind + 1];
  if (o.mode.rfind("source:", 0) == 0) {
    std::string spec = o.mode.substr(7);
    size_t colon = spec.find(':');
    if (colon == std::string::npos) die("-m source:N:SEED");
    o.src_n = parse_u64(spec.substr(0, colon).c_str(), "source N");
    o.src_seed = parse_u64(spec.substr(colon + 1).c_str(), "source SEED");
    o.mode = "source";
  }
  if (o.mode != "echo" && o.mode != "sink" && o.mode != "source" && o.mode != "hold" && o.mode != "print")
    die("-m: unknown mode %s", o.mode.c_str());
  if (o.mode == "hold" && !o.has_id) die("-m hold needs -i ID");
  if (o.mode == "sink" && o.has_id) die("-m sink checks the stream from its first byte: no -i");
  return o.parallel == 1 ? Client(o).run() : parallel_clients(o);
}

// ---- integrity and halfclose ---------------------------------------------------------

namespace {

struct CConn {
  int index = 0;
  int fd = -1;
  bool connecting = true, established = false;
  uint64_t up = 0, down = 0, seed = 0;
  uint32_t flags = 0;
  char head[kHeader];
  size_t head_sent = 0;
  uint64_t up_sent = 0;
  bool urgent_sent = false;  // flag 4
  bool wr_shut = false;
  char greet[kGreeting];
  size_t greet_got = 0;
  uint64_t down_got = 0;
  char trailer[kTrailer];
  size_t trailer_got = 0;
  bool rd_eof = false;
  bool done = false, failed = false;
  std::string why, name = "?";
};

struct IntegrityOpts {
  int conns = 64;
  uint64_t max_bytes = 64ull << 20;
  uint64_t cap_bytes = 0;  // 0: no cap
  bool fixed = false;
  uint64_t fixed_bytes = 0;
  bool echo = false;
  uint32_t flags = 0;
  uint64_t seed = 1;
  std::string ready;
  bool allow_fail = false;
  double timeout = 60;
  bool explicit_sizes = false;  // halfclose: -u and -d
  uint64_t up = 0, down = 0;
};

class Integrity {
 public:
  Integrity(IntegrityOpts o, std::string host, std::string port)
      : o_(std::move(o)), host_(std::move(host)), port_(std::move(port)) {}
  int run();

 private:
  void plan();
  void scale_to_cap();
  void connect_all();
  void fail(CConn& c, const std::string& why) {
    if (c.done) return;
    c.failed = c.done = true;
    c.why = why;
    if (c.fd >= 0) close(c.fd);
    c.fd = -1;
  }
  bool may_upload(const CConn& c) const { return !(c.flags & kServerFirst) || c.rd_eof; }
  uint64_t greet_size() const { return o_.echo ? 0 : kGreeting; }
  uint64_t trailer_size(const CConn& c) const { return o_.echo || (c.flags & kServerFirst) ? 0 : kTrailer; }
  uint64_t reply_seed(const CConn& c) const { return o_.echo ? up_seed(c.seed) : down_seed(c.seed); }
  bool greeted(const CConn& c) const { return c.greet_got == greet_size(); }
  void on_event(CConn& c, short revents);
  void on_read(CConn& c);
  void on_eof(CConn& c);
  void on_write(CConn& c);
  void consume(CConn& c, const char* p, size_t len);
  void fail_all_at_deadline();
  int summary(double secs) const;

  IntegrityOpts o_;
  std::string host_, port_;
  std::vector<CConn> conns_;
};

void Integrity::plan() {
  uint64_t state = o_.seed * 7919 + 17;
  // Uniform sizes in [0, max], after the edge cases of connections 0 to 2.
  auto pick = [&]() -> uint64_t { return splitmix64(state++) % (o_.max_bytes + 1); };
  conns_.resize(size_t(o_.conns));
  for (int i = 0; i < o_.conns; ++i) {
    CConn& c = conns_[size_t(i)];
    c.index = i;
    c.seed = o_.seed * 1000003 + uint64_t(i);
    c.flags = o_.flags;
    if (o_.explicit_sizes) {
      c.up = o_.up, c.down = o_.down;
    } else if (o_.fixed) {
      c.up = c.down = o_.fixed_bytes;
    } else if (i == 0) {
      c.up = c.down = o_.max_bytes;  // the largest, both ways
    } else if (i == 1) {
      c.up = 0, c.down = o_.max_bytes > 1 ? 1 : 0;
    } else if (i == 2) {
      c.up = 1, c.down = 0;
    } else {
      c.up = pick(), c.down = pick();
    }
    if (o_.echo) c.down = c.up;
  }
  if (o_.cap_bytes && !o_.fixed && !o_.explicit_sizes) scale_to_cap();
  for (auto& c : conns_) {
    std::memcpy(c.head, "HOS1", 4);
    put_le(c.head + 4, c.flags, 4);
    put_le(c.head + 8, c.up, 8);
    put_le(c.head + 16, c.down, 8);
    put_le(c.head + 24, c.seed, 8);
  }
}

// Scales the random sizes down (never the edge cases) to respect -C.
void Integrity::scale_to_cap() {
  uint64_t total = 0, fixed = 0, random = 0;
  for (auto& c : conns_) {
    total += c.up + c.down;
    (c.index < 3 ? fixed : random) += c.up + c.down;
  }
  if (total <= o_.cap_bytes) return;
  double f = o_.cap_bytes > fixed && random ? double(o_.cap_bytes - fixed) / double(random) : 0;
  for (auto& c : conns_)
    if (c.index >= 3) {
      c.up = uint64_t(double(c.up) * f);
      c.down = o_.echo ? c.up : uint64_t(double(c.down) * f);
    }
}

void Integrity::consume(CConn& c, const char* p, size_t len) {
  if (!greeted(c)) {
    size_t take = std::min<size_t>(len, size_t(greet_size() - c.greet_got));
    std::memcpy(c.greet + c.greet_got, p, take);
    c.greet_got += take;
    p += take, len -= take;
    if (greeted(c) && !o_.echo) {
      std::string n(c.greet, kGreeting - 1);
      n.erase(n.find_last_not_of(' ') + 1);
      c.name = n;
    }
  }
  if (len && c.down_got < c.down) {
    size_t take = size_t(std::min<uint64_t>(len, c.down - c.down_got));
    uint64_t bad = mismatch(reply_seed(c), c.down_got, p, take);
    if (bad != kNone)
      return fail(c, fmt("wrong byte at offset %llu of %llu received", (unsigned long long)(c.down_got + bad),
                         (unsigned long long)c.down));
    c.down_got += take;
    p += take, len -= take;
  }
  if (len && c.trailer_got < trailer_size(c)) {
    size_t take = std::min<size_t>(len, size_t(trailer_size(c) - c.trailer_got));
    std::memcpy(c.trailer + c.trailer_got, p, take);
    c.trailer_got += take;
    p += take, len -= take;
  }
  if (len) fail(c, fmt("%zu bytes more than expected after the end of the stream", len));
}

void Integrity::on_eof(CConn& c) {
  c.rd_eof = true;
  if (!greeted(c) || c.down_got != c.down || c.trailer_got != trailer_size(c))
    return fail(c, fmt("EOF early: %llu of %llu bytes, trailer %zu of %llu", (unsigned long long)c.down_got,
                       (unsigned long long)c.down, c.trailer_got, (unsigned long long)trailer_size(c)));
  if (!trailer_size(c)) return;
  uint64_t count = get_le(c.trailer, 8), bad = get_le(c.trailer + 8, 8);
  if (count != c.up || bad != kNone)
    fail(c, fmt("the back-end received %llu of %llu bytes, first wrong at %lld", (unsigned long long)count,
                (unsigned long long)c.up, bad == kNone ? -1LL : (long long)bad));
}

void Integrity::on_read(CConn& c) {
  char buf[kChunk];
  for (int rounds = 0; rounds < 8 && !c.done && !c.rd_eof; ++rounds) {
    ssize_t n = read(c.fd, buf, sizeof buf);
    if (n < 0) {
      if (try_again(errno)) return;
      return fail(c, fmt("read: %s after %llu of %llu bytes", why(errno), (unsigned long long)c.down_got,
                         (unsigned long long)c.down));
    }
    if (n == 0) return on_eof(c);
    consume(c, buf, size_t(n));
  }
}

void Integrity::on_write(CConn& c) {
  char buf[kChunk];
  for (int rounds = 0; rounds < 8 && !c.done && !c.wr_shut; ++rounds) {
    const char* p = buf;
    size_t len;
    bool head = !o_.echo && c.head_sent < kHeader;
    if (head) {
      p = c.head + c.head_sent;
      len = kHeader - c.head_sent;
    } else if (!may_upload(c)) {
      return;
    } else if (c.up_sent < c.up) {
      urgent_halfway(c.fd, c.flags, c.up_sent, c.up, &c.urgent_sent);
      len = size_t(std::min<uint64_t>(c.up - c.up_sent, sizeof buf));
      gen(up_seed(c.seed), c.up_sent, buf, len);
    } else {
      if (shutdown(c.fd, SHUT_WR) != 0) return fail(c, fmt("shutdown: %s", why(errno)));
      c.wr_shut = true;
      return;
    }
    ssize_t n = write(c.fd, p, len);
    if (n < 0) {
      if (try_again(errno)) return;
      return fail(c, fmt("write: %s after %llu of %llu bytes", why(errno), (unsigned long long)c.up_sent,
                         (unsigned long long)c.up));
    }
    if (head) c.head_sent += size_t(n);
    else c.up_sent += uint64_t(n);
    if (size_t(n) < len) return;
  }
}

void Integrity::on_event(CConn& c, short re) {
  if (c.connecting) {
    if (int err = so_error(c.fd)) return fail(c, fmt("connect: %s", why(err)));
    c.connecting = false;
    if (o_.echo) c.established = true;
    on_write(c);
  } else {
    if (re & (POLLIN | POLLHUP | POLLERR)) on_read(c);
    if (!c.done && (re & (POLLOUT | POLLERR))) on_write(c);
    if (!c.done && (re & POLLERR) && !(re & POLLIN))
      if (int err = so_error(c.fd)) fail(c, fmt("socket error: %s", why(err)));
  }
  if (!c.done && !o_.echo && greeted(c)) c.established = true;
  if (!c.done && c.rd_eof && (c.flags & kServerFirst)) on_write(c);  // the upload may start now
  if (!c.done && c.rd_eof && c.wr_shut) {
    c.done = true;
    close(c.fd);
    c.fd = -1;
  }
}

void Integrity::connect_all() {
  addrinfo* ai = resolve(host_, port_, false);
  for (auto& c : conns_) {
    int err = 0;
    c.fd = start_connect(ai, &err);
    if (c.fd >= 0 && err == 0) continue;
    if (c.fd >= 0) close(c.fd);
    c.fd = -1;
    fail(c, fmt("connect: %s", why(err)));
  }
  freeaddrinfo(ai);
}

void Integrity::fail_all_at_deadline() {
  for (auto& c : conns_)
    if (!c.done)
      fail(c, fmt("deadline: sent %llu of %llu%s, received %llu of %llu%s", (unsigned long long)c.up_sent,
                  (unsigned long long)c.up, c.wr_shut ? " and FIN" : "", (unsigned long long)c.down_got,
                  (unsigned long long)c.down, c.rd_eof ? " and EOF" : ""));
}

int Integrity::summary(double secs) const {
  std::map<std::string, std::pair<int, int>> per_server;
  int ok = 0, bad = 0;
  uint64_t bytes = 0;
  for (auto& c : conns_) {
    auto& s = per_server[c.name];
    if (c.failed) {
      ++bad, ++s.second;
      std::printf("conn %d (server %s, up %llu, down %llu): %s\n", c.index, c.name.c_str(), (unsigned long long)c.up,
                  (unsigned long long)c.down, c.why.c_str());
    } else {
      ++ok, ++s.first;
      bytes += c.up + c.down;
    }
  }
  for (auto& [name, s] : per_server) std::printf("server %s ok=%d failed=%d\n", name.c_str(), s.first, s.second);
  std::printf("total ok=%d failed=%d bytes=%llu secs=%.2f\n", ok, bad, (unsigned long long)bytes, secs);
  if (bad && !o_.allow_fail) std::fprintf(stderr, "helper %s: %d of %d connections failed\n", g_cmd, bad, ok + bad);
  return bad && !o_.allow_fail ? 1 : 0;
}

int Integrity::run() {
  raise_fd_limit();
  plan();
  double start = now(), deadline = start + o_.timeout;
  connect_all();
  std::vector<pollfd> pfds;
  std::vector<CConn*> which;
  bool ready_written = false;
  for (;;) {
    pfds.clear();
    which.clear();
    bool all_established = true;
    for (auto& c : conns_) {
      all_established &= c.established || c.done;
      if (c.done) continue;
      short ev = POLLOUT;
      if (!c.connecting) {
        ev = c.rd_eof ? 0 : POLLIN;
        if (!c.wr_shut && (c.head_sent < kHeader || may_upload(c))) ev |= POLLOUT;
      }
      pfds.push_back(pollfd{c.fd, ev, 0});
      which.push_back(&c);
    }
    if (all_established && !ready_written) {
      write_atomic(o_.ready, "ready\n");
      ready_written = true;
    }
    if (pfds.empty()) break;
    if (now() >= deadline) {
      fail_all_at_deadline();
      break;
    }
    int n = poll(pfds.data(), pfds.size(), ms_until(deadline, 1.0));
    if (n < 0 && errno != EINTR) die("poll: %s", why(errno));
    for (size_t i = 0; i < pfds.size(); ++i)
      if (pfds[i].revents) on_event(*which[i], pfds[i].revents);
  }
  return summary(now() - start);
}

}  // namespace

int integrity_main(int argc, char** argv) {
  IntegrityOpts o;
  int ch;
  while ((ch = getopt(argc, argv, "c:M:C:z:m:F:s:r:at:")) != -1) {
    switch (ch) {
      case 'c': o.conns = parse_int(optarg, "-c", 1, 100000); break;
      case 'M': o.max_bytes = parse_range(optarg, "-M", 0, 1 << 20) << 20; break;
      case 'C': o.cap_bytes = parse_range(optarg, "-C", 0, 1 << 20) << 20; break;
      case 'z': o.fixed = true, o.fixed_bytes = parse_u64(optarg, "-z"); break;
      case 'm':
        if (std::strcmp(optarg, "echo") == 0) o.echo = true;
        else if (std::strcmp(optarg, "duplex") != 0) die("-m: duplex or echo");
        break;
      case 'F': o.flags = uint32_t(parse_range(optarg, "-F", 0, 7)); break;
      case 's': o.seed = parse_u64(optarg, "-s"); break;
      case 'r': o.ready = optarg; break;
      case 'a': o.allow_fail = true; break;
      case 't': o.timeout = parse_sec(optarg, "-t"); break;
      default: die("usage: helper integrity [-c N] [-M MIB] [-C MIB] [-z BYTES] [-m duplex|echo] HOST PORT");
    }
  }
  if (argc - optind != 2) die("usage: helper integrity [options] HOST PORT");
  if (o.echo && o.flags) die("-F needs -m duplex");
  return Integrity(o, argv[optind], argv[optind + 1]).run();
}

int halfclose_main(int argc, char** argv) {
  IntegrityOpts o;
  o.conns = 1;
  o.explicit_sizes = true;
  o.timeout = 30;
  std::string who;
  int ch;
  while ((ch = getopt(argc, argv, "w:u:d:t:s:")) != -1) {
    switch (ch) {
      case 'w': who = optarg; break;
      case 'u': o.up = parse_u64(optarg, "-u"); break;
      case 'd': o.down = parse_u64(optarg, "-d"); break;
      case 't': o.timeout = parse_sec(optarg, "-t"); break;
      case 's': o.seed = parse_u64(optarg, "-s"); break;
      default: die("usage: helper halfclose -w client|server -u UP -d DOWN HOST PORT");
    }
  }
  if (who == "client") o.flags = kReplyAfterFin;
  else if (who == "server") o.flags = kServerFirst;
  else die("-w client|server");
  if (argc - optind != 2) die("usage: helper halfclose [options] HOST PORT");
  return Integrity(o, argv[optind], argv[optind + 1]).run();
}

}  // namespace helper
