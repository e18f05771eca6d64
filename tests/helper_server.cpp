// helper_server.cpp: the helper's fake back-ends. One poll loop serves every
// mode; a mode only decides what a connection reads, what it sends and when
// it is done.
//
// Invariants: every socket is non-blocking; a connection is in the poll set
// only while it wants to read (room to) or has something to send, so a
// socket that is never read (mute, slowread) cannot make the loop spin; a
// connection whose mode has queued its last byte (`finished`) sends a FIN
// once drained and is closed once the peer's EOF has come too.

#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "helper.hpp"

namespace helper {
namespace {

using namespace testnet;

const size_t kEchoBacklog = 1u << 20;  // echo: stop reading while this much waits

struct ServerOpts {
  std::string addr = "127.0.0.1";
  int port = 0;
  std::string portfile, report, name = "srv";
  double life = 120;
  uint64_t n = 0, seed = 1;    // source, reset-after: N bytes of stream(seed)
  uint64_t upload_seed = 1;    // sink, source: what the client sends
  bool check_upload = false;   // source: -u given
  bool half = false;           // source: FIN, not close, once sent
  std::string state, log;      // hold
  double hold = 0;             // hold
  size_t slow_bytes = 4096;    // slowread
  double slow_interval = 0.1;  // slowread
};

struct Conn {
  int fd = -1;
  bool dead = false, rd_eof = false, wr_shut = false;
  bool finished = false;  // nothing more will be queued: FIN once drained
  bool reported = false;  // duplex: the verdict on the upload is written
  std::string out;        // bytes to send before the stream (greeting, echo, replies)
  size_t off = 0;
  std::string tail;       // bytes to send after the stream (duplex trailer)
  uint64_t got = 0;       // bytes received (duplex: after the header)
  uint64_t bad = kNone;   // offset of the first received byte that is wrong
  uint64_t sent = 0;      // stream bytes sent
  // duplex: the header, as far as it came
  char head[kHeader];
  size_t head_got = 0;
  uint32_t flags = 0;
  uint64_t up = 0, down = 0, seed = 0;
  bool urgent_sent = false;
  // hold: the client's first line, and when to say bye without its EOF
  std::string id;
  bool have_id = false;
  double until = 0;

  size_t pending() const { return out.size() - off; }
  bool has_head() const { return head_got == kHeader; }
};

class Server {
 public:
  Server(Mode m, ServerOpts o) : mode_(m), o_(std::move(o)) {}
  int run();

 private:
  int listen_socket();
  void accept_all(int lfd);
  void accepted(int fd);
  short interest(const Conn& c) const;
  void on_event(Conn& c, short revents);
  void on_read(Conn& c);
  void received(Conn& c, const char* p, size_t len);
  void duplex_received(Conn& c, const char* p, size_t len);
  void hold_received(Conn& c, const char* p, size_t len);
  void on_write(Conn& c);
  void after(Conn& c);
  void mode_after(Conn& c);
  void slow_tick();
  double next_wake(double end, double next_slow) const;
  void drop(Conn& c, bool reset);
  void save_state() const;
  void report(const std::string& line) const { append_line(o_.report, line); }
  uint64_t stream_left(const Conn& c) const;
  uint64_t stream_seed(const Conn& c) const { return mode_ == Mode::Duplex ? down_seed(c.seed) : o_.seed; }
  std::string upload_verdict(const Conn& c) const;
  std::string source_line(const Conn& c) const;
  void take_unread(Conn& c);

  Mode mode_;
  ServerOpts o_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<int> fillers_;  // blackhole: the connections that fill its queue
  int cur_ = 0, max_ = 0, total_ = 0;  // hold: connections now, at most, in all
};

// Stream bytes still to send now (duplex down, source, reset-after).
uint64_t Server::stream_left(const Conn& c) const {
  if (mode_ == Mode::Duplex) {
    if (!c.has_head()) return 0;
    if ((c.flags & kReplyAfterFin) && !c.rd_eof) return 0;
    return c.down - c.sent;
  }
  if (mode_ == Mode::Source || mode_ == Mode::ResetAfter) return o_.n - c.sent;
  return 0;
}

std::string Server::source_line(const Conn& c) const {
  return fmt("%s sent=%llu received=%llu", o_.name.c_str(), (unsigned long long)c.sent, (unsigned long long)c.got) +
         upload_verdict(c);
}

// Reads what the client has sent so far, as if it came through the loop.
void Server::take_unread(Conn& c) {
  char buf[kChunk];
  ssize_t n;
  while ((n = read(c.fd, buf, sizeof buf)) > 0) received(c, buf, size_t(n));
}

std::string Server::upload_verdict(const Conn& c) const {
  if (c.bad != kNone) return fmt(" first wrong byte at %llu", (unsigned long long)c.bad);
  return mode_ == Mode::Duplex || o_.check_upload ? " intact" : "";
}

void Server::save_state() const {
  if (mode_ == Mode::Hold) write_atomic(o_.state, fmt("%d %d %d\n", cur_, max_, total_));
}

void Server::drop(Conn& c, bool reset) {
  if (c.dead) return;
  if (reset) linger_reset(c.fd);
  close(c.fd);
  c.dead = true;
  if (mode_ == Mode::Hold) {
    cur_--;
    save_state();
  }
}

short Server::interest(const Conn& c) const {
  if (mode_ == Mode::Mute || mode_ == Mode::SlowRead || mode_ == Mode::Blackhole) return 0;
  short ev = 0;
  bool room = mode_ != Mode::Echo || c.pending() < kEchoBacklog;
  if (!c.rd_eof && room) ev |= POLLIN;
  if (!c.wr_shut && (c.pending() || stream_left(c) || !c.tail.empty())) ev |= POLLOUT;
  return ev;
}

void Server::on_read(Conn& c) {
  char buf[kChunk];
  for (int rounds = 0; rounds < 16 && !c.rd_eof && !c.dead && (interest(c) & POLLIN); ++rounds) {
    ssize_t n = read(c.fd, buf, sizeof buf);
    if (n < 0) {
      if (try_again(errno)) return;
      report(fmt("%s read error: %s after %llu bytes", o_.name.c_str(), why(errno), (unsigned long long)c.got));
      drop(c, false);
      return;
    }
    if (n == 0) {
      c.rd_eof = true;
      return;
    }
    received(c, buf, size_t(n));
  }
}

void Server::received(Conn& c, const char* p, size_t len) {
  switch (mode_) {
    case Mode::Echo:
      if (c.off > kEchoBacklog) {
        c.out.erase(0, c.off);
        c.off = 0;
      }
      c.out.append(p, len);
      return;
    case Mode::Duplex: return duplex_received(c, p, len);
    case Mode::Hold: return hold_received(c, p, len);
    default:
      if (c.bad == kNone && (mode_ == Mode::Sink || o_.check_upload)) {
        uint64_t bad = mismatch(o_.upload_seed, c.got, p, len);
        if (bad != kNone) c.bad = c.got + bad;
      }
      c.got += len;
  }
}

void Server::duplex_received(Conn& c, const char* p, size_t len) {
  if (!c.has_head()) {
    size_t take = std::min(len, kHeader - c.head_got);
    std::memcpy(c.head + c.head_got, p, take);
    c.head_got += take;
    p += take;
    len -= take;
    if (!c.has_head()) return;
    if (std::memcmp(c.head, "HOS1", 4) != 0) {
      report(o_.name + " bad header");
      drop(c, true);
      return;
    }
    c.flags = uint32_t(get_le(c.head + 4, 4));
    c.up = get_le(c.head + 8, 8);
    c.down = get_le(c.head + 16, 8);
    c.seed = get_le(c.head + 24, 8);
    if (c.flags & kServerFirst) c.finished = true;  // FIN right after the stream
  }
  if (len && c.bad == kNone) {
    uint64_t bad = mismatch(up_seed(c.seed), c.got, p, len);
    if (bad != kNone) c.bad = c.got + bad;
  }
  c.got += len;
}

// The client's first line is its id: logged, and said back with "bye".
void Server::hold_received(Conn& c, const char* p, size_t len) {
  for (size_t i = 0; i < len && !c.have_id; i++) {
    if (p[i] == '\n') {
      c.have_id = true;
      // A client's distcc framing (helper client -D) is not its id.
      uint64_t rest;
      if (parse_distcc_head(c.id, &rest)) c.id.erase(0, kDistccHead);
      append_line(o_.log, c.id);
    } else if (c.id.size() < 200) {
      c.id.push_back(p[i]);
    }
  }
}

void Server::on_write(Conn& c) {
  char buf[kChunk];
  for (int rounds = 0; rounds < 16 && !c.dead && !c.wr_shut; ++rounds) {
    if (!c.pending() && !stream_left(c) && !c.tail.empty()) {
      c.out.swap(c.tail);
      c.tail.clear();
      c.off = 0;
    }
    const char* p = c.out.data() + c.off;
    size_t len = c.pending();
    bool from_stream = false;
    if (len == 0) {
      uint64_t left = stream_left(c);
      if (left == 0) return;
      urgent_halfway(c.fd, c.flags, c.sent, c.sent + left, &c.urgent_sent);
      len = size_t(std::min<uint64_t>(left, sizeof buf));
      gen(stream_seed(c), c.sent, buf, len);
      p = buf;
      from_stream = true;
    }
    ssize_t n = write(c.fd, p, len);
    if (n < 0) {
      if (try_again(errno)) return;
      report(fmt("%s write error: %s after %llu bytes", o_.name.c_str(), why(errno), (unsigned long long)c.sent));
      drop(c, false);
      return;
    }
    if (from_stream) {
      c.sent += uint64_t(n);
    } else if ((c.off += size_t(n)) == c.out.size()) {
      c.out.clear();
      c.off = 0;
    }
    if (size_t(n) < len) return;
  }
}

// What a mode makes of a connection's new state: replies, trailers, resets.
void Server::mode_after(Conn& c) {
  switch (mode_) {
    case Mode::Echo:
      c.finished = c.rd_eof;
      return;
    case Mode::Sink:
      if (c.rd_eof && !c.finished) {
        c.out += c.bad == kNone ? fmt("%llu ok\n", (unsigned long long)c.got)
                                : fmt("%llu wrong at %llu\n", (unsigned long long)c.got, (unsigned long long)c.bad);
        c.finished = true;
      }
      return;
    case Mode::Source:
      if (stream_left(c) || c.finished) return;
      if (o_.half) {
        c.finished = true;
        return;
      }
      take_unread(c);  // so that close() sends no reset
      report(source_line(c));
      drop(c, false);
      return;
    case Mode::ResetAfter:
      if (!stream_left(c)) {
        report(fmt("%s reset after %llu bytes", o_.name.c_str(), (unsigned long long)c.sent));
        drop(c, true);
      } else if (c.rd_eof) {
        drop(c, false);
      }
      return;
    case Mode::Hold:
      if (!c.finished && (c.rd_eof || (c.until > 0 && now() >= c.until))) {
        c.out += "bye " + c.id + "\n";
        c.finished = true;
      }
      return;
    case Mode::Duplex:
      if (c.rd_eof && !c.has_head()) {  // a whoami, or a client that gave up
        drop(c, false);
        return;
      }
      if (c.rd_eof && !c.reported) {
        c.reported = true;
        report(fmt("%s up=%llu/%llu %s", o_.name.c_str(), (unsigned long long)c.got, (unsigned long long)c.up,
                   c.got == c.up && c.bad == kNone ? "ok" : "BAD") +
               (c.bad == kNone ? "" : upload_verdict(c)));
        if (c.flags & kServerFirst) return;  // its FIN went first; no trailer
        char t[kTrailer];
        put_le(t, c.got, 8);
        put_le(t + 8, c.bad, 8);
        c.tail.assign(t, sizeof t);
        c.finished = true;
      }
      return;
    default:
      return;
  }
}

void Server::after(Conn& c) {
  if (c.dead) return;
  mode_after(c);
  if (c.dead) return;
  if (c.pending() || !c.tail.empty()) on_write(c);
  if (c.dead) return;
  if (c.finished && !c.wr_shut && !c.pending() && c.tail.empty() && !stream_left(c)) {
    shutdown(c.fd, SHUT_WR);
    c.wr_shut = true;
  }
  if (c.rd_eof && c.wr_shut) {
    if (mode_ == Mode::Source) report(source_line(c));
    drop(c, false);
  }
}

void Server::on_event(Conn& c, short revents) {
  if (revents & (POLLIN | POLLHUP | POLLERR)) on_read(c);
  if (!c.dead && (revents & (POLLOUT | POLLERR))) on_write(c);
  if (!c.dead && (revents & POLLERR) && so_error(c.fd)) drop(c, false);
  after(c);
}

// slowread: a few bytes from every connection per tick.
void Server::slow_tick() {
  char buf[kChunk];
  for (auto& cp : conns_) {
    Conn& c = *cp;
    if (c.dead) continue;
    ssize_t n = read(c.fd, buf, std::min(sizeof buf, o_.slow_bytes));
    if (n > 0) c.got += uint64_t(n);
    if (n == 0 || (n < 0 && !try_again(errno))) drop(c, false);
  }
}

void Server::accepted(int fd) {
  set_nonblock(fd);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  auto c = std::make_unique<Conn>();
  c->fd = fd;
  if (mode_ == Mode::Duplex) {
    std::string greet = o_.name.substr(0, kGreeting - 1);
    greet.resize(kGreeting - 1, ' ');
    c->out = greet + "\n";
  }
  if (mode_ == Mode::Hold) {
    cur_++;
    total_++;
    max_ = std::max(max_, cur_);
    save_state();
    c->out = "hello " + o_.name + "\n";
    if (o_.hold > 0) c->until = now() + o_.hold;
  }
  Conn& ref = *c;
  conns_.push_back(std::move(c));
  if (mode_ != Mode::Mute && mode_ != Mode::SlowRead) {
    on_write(ref);
    after(ref);
  }
}

void Server::accept_all(int lfd) {
  for (int i = 0; i < 256; ++i) {
    int fd = accept(lfd, nullptr, nullptr);
    if (fd < 0) {
      if (!try_again(errno) && errno != ECONNABORTED) report(fmt("%s accept: %s", o_.name.c_str(), why(errno)));
      return;
    }
    accepted(fd);
  }
}

int Server::listen_socket() {
  int lfd = listen_on(o_.addr, o_.port, mode_ == Mode::Blackhole ? 0 : 4096);
  if (mode_ != Mode::Blackhole) return lfd;
  // Fill the accept queue with connections nobody accepts, until one more
  // handshake no longer completes: later connects neither succeed nor fail.
  std::string port = std::to_string(local_port(lfd));
  for (int i = 0; i < 16; ++i) {
    int err = 0;
    int fd = connect_tcp(o_.addr, port, now() + 0.3, &err);
    if (fd < 0) break;
    fillers_.push_back(fd);
  }
  return lfd;
}

// The next moment the loop has something to do without an event.
double Server::next_wake(double end, double next_slow) const {
  double wake = end;
  if (mode_ == Mode::SlowRead) wake = std::min(wake, next_slow);
  for (auto& c : conns_)
    if (c->until > 0 && !c->finished) wake = std::min(wake, c->until);
  return wake;
}

int Server::run() {
  raise_fd_limit();
  int lfd = listen_socket();
  int port = local_port(lfd);
  save_state();
  write_atomic(o_.portfile, std::to_string(port) + "\n");
  std::printf("ready %d\n", port);
  std::fflush(stdout);
  double end = now() + o_.life;
  double next_slow = now() + o_.slow_interval;
  std::vector<pollfd> pfds;
  while (now() < end) {
    pfds.clear();
    pfds.push_back(pollfd{lfd, short(mode_ == Mode::Blackhole ? 0 : POLLIN), 0});
    for (auto& c : conns_) {
      short ev = interest(*c);
      pfds.push_back(pollfd{ev ? c->fd : -1, ev, 0});
    }
    int n = poll(pfds.data(), pfds.size(), ms_until(next_wake(end, next_slow), 1.0));
    if (n < 0 && errno != EINTR) die("poll: %s", why(errno));
    for (size_t i = 1; i < pfds.size(); ++i) {
      Conn& c = *conns_[i - 1];
      if (pfds[i].revents) on_event(c, pfds[i].revents);
      else if (c.until > 0) after(c);  // hold: -H may have run out
    }
    if (mode_ == Mode::SlowRead && now() >= next_slow) {
      slow_tick();
      next_slow = std::max(next_slow + o_.slow_interval, now());
    }
    conns_.erase(std::remove_if(conns_.begin(), conns_.end(), [](const std::unique_ptr<Conn>& c) { return c->dead; }),
                 conns_.end());
    if (n > 0 && (pfds[0].revents & POLLIN)) accept_all(lfd);
  }
  return 0;
}

}  // namespace

int server_main(Mode mode, int argc, char** argv) {
  ServerOpts o;
  int ch;
  while ((ch = getopt(argc, argv, "b:p:P:L:N:R:n:s:u:hm:o:H:k:i:")) != -1) {
    switch (ch) {
      case 'b': o.addr = optarg; break;
      case 'p': o.port = parse_int(optarg, "-p", 0, 65535); break;
      case 'P': o.portfile = optarg; break;
      case 'L': o.life = parse_sec(optarg, "-L"); break;
      case 'N': o.name = optarg; break;
      case 'R': o.report = optarg; break;
      case 'n': o.n = parse_u64(optarg, "-n"); break;
      case 's': o.seed = parse_u64(optarg, "-s"); break;
      case 'u': o.upload_seed = parse_u64(optarg, "-u"), o.check_upload = true; break;
      case 'h': o.half = true; break;
      case 'm': o.state = optarg; break;
      case 'o': o.log = optarg; break;
      case 'H': o.hold = parse_sec(optarg, "-H"); break;
      case 'k': o.slow_bytes = size_t(parse_range(optarg, "-k", 1, kChunk)); break;
      case 'i': o.slow_interval = parse_sec(optarg, "-i"); break;
      default: die("bad option (see the comment at the top of helper.cpp)");
    }
  }
  // reset-after N: N may also come last, as a bare number.
  if ((mode == Mode::Source || mode == Mode::ResetAfter) && optind < argc) o.n = parse_u64(argv[optind++], "N");
  if (optind != argc) die("unexpected argument: %s", argv[optind]);
  if (o.slow_interval < 0.001) die("-i: at least 0.001 s");
  return Server(mode, o).run();
}

}  // namespace helper
