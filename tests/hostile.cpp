// hostile: the servers and clients of balance's hostile-conditions suite
// (tests/hostile.bats). One program, one sub-command per role; C++17 and
// POSIX only; every socket non-blocking under poll(); every wait bounded.
//
// Servers (SERVER options: -b ADDR (127.0.0.1), -p PORT (0 = ephemeral),
// -P FILE (the bound port, written atomically once ready), -L SEC (exit by
// itself after SEC, default 120), -N NAME, -R FILE (one line per connection)):
//   hostile duplex      [SERVER]    the integrity protocol below, as back-end
//   hostile echo        [SERVER]    echo every byte; at EOF drain, then FIN
//   hostile source [SERVER] -n N    send N stream bytes (-s SEED), FIN, read to EOF
//   hostile reset-after [SERVER] -n N  send N stream bytes, then a reset (SO_LINGER 0)
//                                   (N may also come last, as a bare number)
//   hostile noread      [SERVER]    accept, then never read nor write
//   hostile slowread    [SERVER] [-k BYTES] [-i SEC]
//                                   read BYTES (4096) per connection every SEC (0.1)
//   hostile blackhole   [SERVER]    listen with a full accept queue: connects hang
//
// Clients (all take HOST PORT last; -t SEC overall deadline):
//   hostile integrity [-c N] [-M MIB] [-C MIB] [-z BYTES] [-m duplex|echo]
//                     [-F FLAGS] [-s SEED] [-r FILE] [-a] HOST PORT
//       N parallel connections (64), each moving a random number of bytes
//       (uniform, up to MIB MiB, 64) each way, the sum over all of
//       them capped at -C MiB (both ways counted); -z fixes the size. Every
//       byte is compared with the regenerated stream, both ways, and every
//       stream must end exactly where it should. -r FILE is written once
//       every connection is established end to end. Prints one line per
//       failed connection and "server NAME ok=X failed=Y" per back-end,
//       then "total ...". Exit 0 only if all are correct (-a: always 0 once
//       finished, for tests that expect some failures).
//   hostile halfclose -w client|server -u UP -d DOWN HOST PORT
//       client: send UP bytes, FIN, then the back-end replies DOWN bytes.
//       server: the back-end sends DOWN bytes and its FIN first; only then
//       the client sends UP bytes (checked by the server, see -R).
//   hostile end [-n BYTES] [-x] HOST PORT
//       connect, send BYTES while reading everything; print
//       "read=R end=eof|reset|timeout secs=S quiet=Q" (Q: seconds from the
//       last byte received to the end). Exit 2 on timeout, else 0. -x: once
//       BYTES are sent, reset the connection ourselves (end=we-reset).
//   hostile push [-c N] [-n BYTES] [-S SEC] [-H SEC] [-r FILE] HOST PORT
//       N connections write BYTES each as fast as they can; once none has
//       made progress for -S SEC (1) write FILE ("written=W") and hold the
//       connections -H SEC (0). Prints "written=W of N*BYTES stalled=0|1".
//   hostile slowread-client [-c N] [-k BYTES] [-i SEC] [-H SEC] [-r FILE] [-s SEED] HOST PORT
//       N connections reading BYTES every SEC for -H SEC, checking the
//       bytes against a `source` stream of SEED. FILE once all have data.
//       Prints "read=R wrong=0|1 ended=no|eof|reset|error secs=S" (how the
//       first connection that ended did); exit 0 only if none ended.
//   hostile slowloris -n N [-H SEC] [-e] [-r FILE] [-o FILE] HOST PORT
//   hostile flood -n N [-H SEC] [-r FILE] [-o FILE] HOST PORT
//       open N idle connections (slowloris: at most 256 handshakes at once,
//       all must succeed; flood: all at once, outcomes counted), write FILE,
//       hold them -H SEC, counting those the peer closes (-e: exit as soon
//       as all are closed; -o FILE: "closed=X", rewritten as X changes).
//       Prints "connected=C failed=F pending=P closed=X ... last=S".
//   hostile whoami HOST PORT        print the name a duplex server greets with
//
// The integrity protocol (duplex). The server greets with its name, padded
// with spaces to 15 bytes, and "\n". The client sends a 32-byte header:
// "HOS1", flags (u32), UP (u64), DOWN (u64), SEED (u64), little-endian;
// then UP bytes of stream(2*SEED+1) and its FIN. The server sends DOWN
// bytes of stream(2*SEED), then, after the client's FIN, a 16-byte trailer:
// the count of bytes it received and the offset of the first wrong one
// (all ones if none); then its FIN. Flag 1: the server starts its DOWN
// bytes only after the client's FIN. Flag 2: the server sends DOWN bytes
// and its FIN at once, no trailer, and the client sends its UP bytes only
// after that FIN; the server's verdict goes to -R. Flag 4: each end sends
// one byte of TCP urgent data (MSG_OOB) halfway through its stream; it is
// not part of the stream (a relay drops it, as recv() does), so the
// streams must still arrive intact.
//
// Streams are splitmix64 words of (seed, word index), so any offset can be
// regenerated and both ends compare the bytes themselves: stronger than a
// checksum, and cheap enough for gigabytes.

#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "testnet.hpp"

namespace {

using namespace testnet;

const size_t kChunk = 64 * 1024;
const uint64_t kNone = ~uint64_t(0);

// Many idle connections need many descriptors: take the hard limit.
void raise_fd_limit() {
  rlimit r{};
  if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur != r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
  }
}

std::string fmt(const char* f, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

// ---- position-addressable byte streams -----------------------------------------

// Byte p of stream(seed) is byte p%8 (little-end first) of splitmix64(seed*K + p/8).
void gen(uint64_t seed, uint64_t off, char* out, size_t len) {
  uint64_t base = seed * 0x100000001b3ULL;
  size_t i = 0;
  while (i < len && ((off + i) & 7)) {
    uint64_t p = off + i;
    out[i++] = char(splitmix64(base + (p >> 3)) >> (8 * (p & 7)));
  }
  for (; i + 8 <= len; i += 8) {
    uint64_t w = splitmix64(base + ((off + i) >> 3));
    unsigned char* o = reinterpret_cast<unsigned char*>(out + i);
    o[0] = uint8_t(w), o[1] = uint8_t(w >> 8), o[2] = uint8_t(w >> 16), o[3] = uint8_t(w >> 24);
    o[4] = uint8_t(w >> 32), o[5] = uint8_t(w >> 40), o[6] = uint8_t(w >> 48), o[7] = uint8_t(w >> 56);
  }
  for (; i < len; ++i) {
    uint64_t p = off + i;
    out[i] = char(splitmix64(base + (p >> 3)) >> (8 * (p & 7)));
  }
}

// Offset within [0, len) of the first byte of data that differs from
// stream(seed) at off, or kNone.
uint64_t mismatch(uint64_t seed, uint64_t off, const char* data, size_t len) {
  char want[kChunk];
  for (size_t done = 0; done < len;) {
    size_t n = std::min(len - done, kChunk);
    gen(seed, off + done, want, n);
    if (std::memcmp(want, data + done, n) != 0)
      for (size_t i = 0; i < n; ++i)
        if (want[i] != data[done + i]) return done + i;
    done += n;
  }
  return kNone;
}

void put64(char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = char(v >> (8 * i));
}
void put32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = char(v >> (8 * i));
}
uint32_t get32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t(uint8_t(p[i])) << (8 * i);
  return v;
}
uint64_t get64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t(uint8_t(p[i])) << (8 * i);
  return v;
}

// ---- sockets ---------------------------------------------------------------------

// Blocking-style connect bounded by deadline; -1 with *why on failure.
int connect_by(const std::string& host, const std::string& port, double deadline, std::string* why) {
  int err = 0;
  int fd = connect_tcp(host, port, deadline, &err);
  if (fd < 0) *why = std::strerror(err);
  return fd;
}

void linger_reset(int fd) {
  linger l{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

// ---- servers ---------------------------------------------------------------------

enum class Mode { Duplex, Echo, Source, ResetAfter, NoRead, SlowRead, Blackhole };

struct ServerOpts {
  std::string addr = "127.0.0.1";
  int port = 0;
  std::string portfile, report, name = "srv";
  double life = 120;
  uint64_t n = 0, seed = 1;
  size_t slow_bytes = 4096;
  double slow_interval = 0.1;
};

struct SConn {
  int fd = -1;
  bool dead = false;
  bool rd_eof = false, wr_shut = false;
  // Bytes queued to send: an explicit buffer (greeting, echo, trailer).
  std::string out;
  size_t out_off = 0;
  std::string tail;  // duplex: the trailer, sent after the stream
  // Duplex: the header, then what is known of the exchange.
  char head[32];
  size_t head_got = 0;
  uint32_t flags = 0;
  uint64_t up = 0, down = 0, seed = 0;
  uint64_t up_got = 0, up_bad = kNone;
  uint64_t down_sent = 0;  // also: source / reset-after stream position
  bool urgent_sent = false;  // flag 4
  bool trailer_queued = false;
  uint64_t received = 0;  // source, slowread, noread: bytes read
  bool has_head() const { return head_got == sizeof head; }
  size_t pending() const { return out.size() - out_off; }
};

class Server {
 public:
  Server(Mode m, ServerOpts o) : mode_(m), o_(std::move(o)) {}
  int run();

 private:
  short interest(const SConn& c) const;
  void on_event(SConn& c, short revents);
  void on_read(SConn& c);
  void on_write(SConn& c);
  void after(SConn& c);
  void slow_tick();
  void kill(SConn& c, bool reset) {
    if (c.dead) return;
    if (reset) linger_reset(c.fd);
    close(c.fd);
    c.dead = true;
  }
  // Bytes of the generated stream still to send (duplex down / source).
  uint64_t stream_left(const SConn& c) const {
    if (mode_ == Mode::Duplex) {
      if (!c.has_head()) return 0;
      if ((c.flags & 1) && !c.rd_eof) return 0;  // reply only after the FIN
      return c.down - c.down_sent;
    }
    if (mode_ == Mode::Source || mode_ == Mode::ResetAfter) return o_.n - c.down_sent;
    return 0;
  }
  uint64_t stream_seed(const SConn& c) const { return mode_ == Mode::Duplex ? 2 * c.seed : o_.seed; }

  Mode mode_;
  ServerOpts o_;
  std::vector<std::unique_ptr<SConn>> conns_;
  uint64_t accepted_ = 0;
};

short Server::interest(const SConn& c) const {
  short ev = 0;
  switch (mode_) {
    case Mode::NoRead:
    case Mode::SlowRead:
    case Mode::Blackhole:
      return 0;  // read on a timer (slowread) or never
    case Mode::Echo:
      if (!c.rd_eof && c.pending() < (1u << 20)) ev |= POLLIN;  // back-pressure
      if (c.pending()) ev |= POLLOUT;
      return ev;
    default:
      if (!c.rd_eof) ev |= POLLIN;
      if (!c.wr_shut && (c.pending() || stream_left(c) || !c.tail.empty())) ev |= POLLOUT;
      return ev;
  }
}

void Server::on_read(SConn& c) {
  char buf[kChunk];
  for (int rounds = 0; rounds < 16 && !c.rd_eof && !c.dead; ++rounds) {
    size_t room = sizeof buf;
    if (mode_ == Mode::Echo && c.pending() >= (1u << 20)) return;  // back-pressure
    ssize_t n = read(c.fd, buf, room);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      append_line(o_.report, fmt("%s read error: %s after %llu bytes", o_.name.c_str(), std::strerror(errno),
                                 (unsigned long long)(c.up_got + c.received)));
      kill(c, false);
      return;
    }
    if (n == 0) {
      c.rd_eof = true;
      return;
    }
    const char* p = buf;
    size_t len = size_t(n);
    if (mode_ == Mode::Echo) {
      if (c.out_off > (1u << 20)) {
        c.out.erase(0, c.out_off);
        c.out_off = 0;
      }
      c.out.append(p, len);
      continue;
    }
    if (mode_ != Mode::Duplex) {
      c.received += len;
      continue;
    }
    if (!c.has_head()) {
      size_t take = std::min(len, sizeof c.head - c.head_got);
      std::memcpy(c.head + c.head_got, p, take);
      c.head_got += take;
      p += take;
      len -= take;
      if (c.has_head()) {
        if (std::memcmp(c.head, "HOS1", 4) != 0) {
          append_line(o_.report, o_.name + " bad header");
          kill(c, true);
          return;
        }
        c.flags = get32(c.head + 4);
        c.up = get64(c.head + 8);
        c.down = get64(c.head + 16);
        c.seed = get64(c.head + 24);
      }
    }
    if (len && c.up_bad == kNone) {
      uint64_t bad = mismatch(2 * c.seed + 1, c.up_got, p, len);
      if (bad != kNone) c.up_bad = c.up_got + bad;
    }
    c.up_got += len;
  }
}

// Flag 4: one urgent byte once half of `total` is sent (retried while
// the socket is full).
void urgent_halfway(int fd, uint32_t flags, uint64_t sent, uint64_t total, bool* urgent_sent) {
  if (!(flags & 4) || *urgent_sent || sent < total / 2) return;
  if (send(fd, "!", 1, MSG_OOB) == 1) *urgent_sent = true;
}

void Server::on_write(SConn& c) {
  char buf[kChunk];
  for (int rounds = 0; rounds < 16 && !c.dead && !c.wr_shut; ++rounds) {
    const char* p;
    size_t len;
    bool from_stream = false;
    if (!c.pending() && !stream_left(c) && !c.tail.empty()) {
      c.out.swap(c.tail);
      c.tail.clear();
      c.out_off = 0;
    }
    if (c.pending()) {
      p = c.out.data() + c.out_off;
      len = c.pending();
    } else if (uint64_t left = stream_left(c)) {
      urgent_halfway(c.fd, c.flags, c.down_sent, c.down_sent + left, &c.urgent_sent);
      len = size_t(std::min<uint64_t>(left, sizeof buf));
      gen(stream_seed(c), c.down_sent, buf, len);
      p = buf;
      from_stream = true;
    } else {
      return;
    }
    ssize_t n = write(c.fd, p, len);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      append_line(o_.report, fmt("%s write error: %s after %llu bytes", o_.name.c_str(), std::strerror(errno),
                                 (unsigned long long)c.down_sent));
      kill(c, false);
      return;
    }
    if (from_stream) {
      c.down_sent += uint64_t(n);
    } else {
      c.out_off += size_t(n);
      if (c.out_off == c.out.size()) c.out.clear(), c.out_off = 0;
    }
    if (size_t(n) < len) return;
  }
}

// What follows from the new state: trailers, FINs, resets, closing.
void Server::after(SConn& c) {
  if (c.dead) return;
  switch (mode_) {
    case Mode::Echo:
      if (c.rd_eof && !c.pending() && !c.wr_shut) {
        shutdown(c.fd, SHUT_WR);
        c.wr_shut = true;
      }
      if (c.rd_eof && c.wr_shut) kill(c, false);
      return;
    case Mode::Duplex: {
      if (c.rd_eof && !c.has_head()) {  // a whoami, or a client that gave up
        kill(c, false);
        return;
      }
      bool server_first = c.flags & 2;
      if (server_first && c.has_head() && !c.wr_shut && !c.pending() && !stream_left(c)) {
        shutdown(c.fd, SHUT_WR);
        c.wr_shut = true;
      }
      if (c.rd_eof && c.has_head() && !c.trailer_queued) {
        c.trailer_queued = true;
        bool ok = c.up_got == c.up && c.up_bad == kNone;
        std::string line = fmt("%s up=%llu/%llu %s", o_.name.c_str(), (unsigned long long)c.up_got,
                               (unsigned long long)c.up, ok ? "ok" : "BAD");
        if (c.up_bad != kNone) line += fmt(" first wrong byte at %llu", (unsigned long long)c.up_bad);
        append_line(o_.report, line);
        if (!server_first) {
          char t[16];
          put64(t, c.up_got);
          put64(t + 8, c.up_bad);
          c.tail.assign(t, sizeof t);
          on_write(c);
          if (c.dead) return;
        }
      }
      if (c.trailer_queued && !server_first && !c.wr_shut && !c.pending() && !stream_left(c) && c.tail.empty()) {
        shutdown(c.fd, SHUT_WR);
        c.wr_shut = true;
      }
      if (c.rd_eof && c.wr_shut) kill(c, false);
      return;
    }
    case Mode::Source:
      if (!c.wr_shut && !stream_left(c)) {
        shutdown(c.fd, SHUT_WR);
        c.wr_shut = true;
      }
      if (c.rd_eof && c.wr_shut) {
        append_line(o_.report, fmt("%s sent=%llu received=%llu", o_.name.c_str(),
                                   (unsigned long long)c.down_sent, (unsigned long long)c.received));
        kill(c, false);
      }
      return;
    case Mode::ResetAfter:
      if (!stream_left(c)) {
        append_line(o_.report, fmt("%s reset after %llu bytes", o_.name.c_str(), (unsigned long long)c.down_sent));
        kill(c, true);
      } else if (c.rd_eof) {
        kill(c, false);
      }
      return;
    default:
      return;
  }
}

void Server::on_event(SConn& c, short revents) {
  if (revents & (POLLIN | POLLHUP | POLLERR)) on_read(c);
  if (!c.dead && (revents & (POLLOUT | POLLERR))) on_write(c);
  if (!c.dead && (revents & POLLERR) && so_error(c.fd)) kill(c, false);
  after(c);
}

void Server::slow_tick() {
  char buf[kChunk];
  for (auto& cp : conns_) {
    SConn& c = *cp;
    if (c.dead) continue;
    ssize_t n = read(c.fd, buf, std::min(sizeof buf, o_.slow_bytes));
    if (n > 0) c.received += uint64_t(n);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) kill(c, false);
  }
}

int Server::run() {
  raise_fd_limit();
  int backlog = mode_ == Mode::Blackhole ? 0 : 4096;
  int lfd = listen_on(o_.addr, o_.port, backlog);
  int port = local_port(lfd);
  std::vector<int> fillers;
  if (mode_ == Mode::Blackhole) {
    // Fill the accept queue with connections nobody accepts, until one
    // more handshake no longer completes.
    for (int i = 0; i < 16; ++i) {
      std::string why;
      int fd = connect_by(o_.addr, std::to_string(port), now() + 0.3, &why);
      if (fd < 0) break;
      fillers.push_back(fd);
    }
  }
  write_atomic(o_.portfile, std::to_string(port) + "\n");
  std::printf("ready %d\n", port);
  std::fflush(stdout);
  double end = now() + o_.life;
  double next_slow = now() + o_.slow_interval;
  std::vector<pollfd> pfds;
  while (now() < end) {
    pfds.clear();
    pfds.push_back(pollfd{lfd, short(mode_ == Mode::Blackhole ? 0 : POLLIN), 0});
    // Sockets that are never read are left out of poll() altogether, so a
    // reset or hang-up on them cannot make the loop spin.
    for (auto& c : conns_) {
      short ev = interest(*c);
      pfds.push_back(pollfd{ev ? c->fd : -1, ev, 0});
    }
    double wake = end;
    if (mode_ == Mode::SlowRead) wake = std::min(wake, next_slow);
    int n = poll(pfds.data(), pfds.size(), ms_until(wake, 1.0));
    if (n < 0 && errno != EINTR) die("poll: %s", std::strerror(errno));
    for (size_t i = 1; i < pfds.size(); ++i)
      if (pfds[i].revents) on_event(*conns_[i - 1], pfds[i].revents);
    if (mode_ == Mode::SlowRead && now() >= next_slow) {
      slow_tick();
      next_slow += o_.slow_interval;
      if (next_slow < now()) next_slow = now() + o_.slow_interval;
    }
    conns_.erase(std::remove_if(conns_.begin(), conns_.end(), [](const std::unique_ptr<SConn>& c) { return c->dead; }),
                 conns_.end());
    if (pfds[0].revents & POLLIN) {
      for (int i = 0; i < 256; ++i) {
        int fd = accept(lfd, nullptr, nullptr);
        if (fd < 0) break;
        set_nonblock(fd);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        auto c = std::make_unique<SConn>();
        c->fd = fd;
        ++accepted_;
        if (mode_ == Mode::Duplex) {
          std::string greet = o_.name.substr(0, 15);
          greet.resize(15, ' ');
          c->out = greet + "\n";
        }
        SConn& ref = *c;
        conns_.push_back(std::move(c));
        if (mode_ == Mode::Duplex || mode_ == Mode::Source || mode_ == Mode::ResetAfter) {
          on_write(ref);
          after(ref);
        }
      }
    }
  }
  return 0;
}

int server_main(Mode mode, int argc, char** argv) {
  ServerOpts o;
  int ch;
  while ((ch = getopt(argc, argv, "b:p:P:L:N:R:n:s:k:i:")) != -1) {
    switch (ch) {
      case 'b': o.addr = optarg; break;
      case 'p': o.port = int(parse_u64(optarg, "-p")); break;
      case 'P': o.portfile = optarg; break;
      case 'L': o.life = parse_sec(optarg, "-L"); break;
      case 'N': o.name = optarg; break;
      case 'R': o.report = optarg; break;
      case 'n': o.n = parse_u64(optarg, "-n"); break;
      case 's': o.seed = parse_u64(optarg, "-s"); break;
      case 'k': o.slow_bytes = size_t(parse_u64(optarg, "-k")); break;
      case 'i': o.slow_interval = parse_sec(optarg, "-i"); break;
      default: die("bad option");
    }
  }
  if (mode == Mode::Source || mode == Mode::ResetAfter) {
    if (optind < argc) o.n = parse_u64(argv[optind++], "N");
  }
  if (optind != argc) die("unexpected argument %s", argv[optind]);
  if (o.slow_bytes == 0 || o.slow_bytes > kChunk) die("-k must be 1..%zu", kChunk);
  if (o.slow_interval < 0.001) die("-i too small");
  return Server(mode, o).run();
}

// ---- the integrity client (also halfclose) ---------------------------------------------

struct CConn {
  int index = 0;
  int fd = -1;
  bool connecting = true, established = false;
  uint64_t up = 0, down = 0, seed = 0;
  uint32_t flags = 0;
  char head[32];
  size_t head_sent = 0;
  uint64_t up_sent = 0;
  bool urgent_sent = false;  // flag 4
  bool wr_shut = false;
  char greet[16];
  size_t greet_got = 0;
  uint64_t down_got = 0;
  char trailer[16];
  size_t trailer_got = 0;
  bool rd_eof = false;
  bool done = false, failed = false;
  std::string why, name = "?";
  double t_end = 0;
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
  // halfclose: explicit sizes
  bool explicit_sizes = false;
  uint64_t up = 0, down = 0;
};

class Integrity {
 public:
  Integrity(IntegrityOpts o, std::string host, std::string port)
      : o_(std::move(o)), host_(std::move(host)), port_(std::move(port)) {}
  int run();

 private:
  void plan();
  void fail(CConn& c, const std::string& why) {
    if (c.done) return;
    c.failed = c.done = true;
    c.why = why;
    c.t_end = now();
    if (c.fd >= 0) close(c.fd);
    c.fd = -1;
  }
  void finish(CConn& c) {
    c.done = true;
    c.t_end = now();
    close(c.fd);
    c.fd = -1;
  }
  bool may_upload(const CConn& c) const { return !(c.flags & 2) || c.rd_eof; }
  uint64_t greet_size() const { return o_.echo ? 0 : 16; }
  uint64_t trailer_size(const CConn& c) const { return o_.echo || (c.flags & 2) ? 0 : 16; }
  uint64_t down_seed(const CConn& c) const { return o_.echo ? 2 * c.seed + 1 : 2 * c.seed; }
  bool greeted(const CConn& c) const { return c.greet_got == greet_size(); }
  void on_read(CConn& c);
  void on_write(CConn& c);
  void check_done(CConn& c);
  void consume(CConn& c, const char* p, size_t len);

  IntegrityOpts o_;
  std::string host_, port_;
  std::vector<CConn> conns_;
  bool ready_written_ = false;
};

void Integrity::plan() {
  uint64_t state = o_.seed * 7919 + 17;
  auto rnd = [&state]() { return splitmix64(state++); };
  // Uniform sizes in [0, max], plus the edge cases below.
  auto pick = [&]() -> uint64_t { return rnd() % (o_.max_bytes + 1); };
  conns_.resize(size_t(o_.conns));
  uint64_t total = 0;
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
    total += c.up + c.down;
  }
  if (o_.cap_bytes && total > o_.cap_bytes && !o_.fixed && !o_.explicit_sizes) {
    // Scale the random ones down (never the edge cases) to respect the cap.
    uint64_t fixed = 0, random = 0;
    for (auto& c : conns_) (c.index < 3 ? fixed : random) += c.up + c.down;
    double f = o_.cap_bytes > fixed && random ? double(o_.cap_bytes - fixed) / double(random) : 0;
    for (auto& c : conns_)
      if (c.index >= 3) {
        c.up = uint64_t(double(c.up) * f);
        c.down = o_.echo ? c.up : uint64_t(double(c.down) * f);
      }
  }
  for (auto& c : conns_) {
    std::memcpy(c.head, "HOS1", 4);
    put32(c.head + 4, c.flags);
    put64(c.head + 8, c.up);
    put64(c.head + 16, c.down);
    put64(c.head + 24, c.seed);
  }
}

void Integrity::consume(CConn& c, const char* p, size_t len) {
  if (!greeted(c)) {
    size_t take = std::min<size_t>(len, size_t(greet_size() - c.greet_got));
    std::memcpy(c.greet + c.greet_got, p, take);
    c.greet_got += take;
    p += take, len -= take;
    if (greeted(c) && !o_.echo) {
      std::string n(c.greet, 15);
      n.erase(n.find_last_not_of(' ') + 1);
      c.name = n;
    }
  }
  if (len && c.down_got < c.down) {
    size_t take = size_t(std::min<uint64_t>(len, c.down - c.down_got));
    uint64_t bad = mismatch(down_seed(c), c.down_got, p, take);
    if (bad != kNone) {
      fail(c, fmt("wrong byte at offset %llu of %llu received", (unsigned long long)(c.down_got + bad),
                  (unsigned long long)c.down));
      return;
    }
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

void Integrity::on_read(CConn& c) {
  char buf[kChunk];
  for (int rounds = 0; rounds < 8 && !c.done && !c.rd_eof; ++rounds) {
    ssize_t n = read(c.fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      fail(c, fmt("read: %s after %llu of %llu bytes", std::strerror(errno), (unsigned long long)c.down_got,
                  (unsigned long long)c.down));
      return;
    }
    if (n == 0) {
      c.rd_eof = true;
      if (!greeted(c) || c.down_got != c.down || c.trailer_got != trailer_size(c)) {
        fail(c, fmt("EOF early: %llu of %llu bytes, trailer %zu of %llu", (unsigned long long)c.down_got,
                    (unsigned long long)c.down, c.trailer_got, (unsigned long long)trailer_size(c)));
        return;
      }
      if (trailer_size(c)) {
        uint64_t count = get64(c.trailer), bad = get64(c.trailer + 8);
        if (count != c.up || bad != kNone) {
          fail(c, fmt("the back-end received %llu of %llu bytes, first wrong at %lld", (unsigned long long)count,
                      (unsigned long long)c.up, bad == kNone ? -1LL : (long long)bad));
          return;
        }
      }
      return;
    }
    consume(c, buf, size_t(n));
  }
}

void Integrity::on_write(CConn& c) {
  char buf[kChunk];
  for (int rounds = 0; rounds < 8 && !c.done && !c.wr_shut; ++rounds) {
    const char* p;
    size_t len;
    bool head = false;
    if (!o_.echo && c.head_sent < sizeof c.head) {
      p = c.head + c.head_sent;
      len = sizeof c.head - c.head_sent;
      head = true;
    } else if (!may_upload(c)) {
      return;
    } else if (c.up_sent < c.up) {
      urgent_halfway(c.fd, c.flags, c.up_sent, c.up, &c.urgent_sent);
      len = size_t(std::min<uint64_t>(c.up - c.up_sent, sizeof buf));
      gen(2 * c.seed + 1, c.up_sent, buf, len);
      p = buf;
    } else {
      if (shutdown(c.fd, SHUT_WR) != 0) {
        fail(c, fmt("shutdown: %s", std::strerror(errno)));
        return;
      }
      c.wr_shut = true;
      return;
    }
    ssize_t n = write(c.fd, p, len);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      fail(c, fmt("write: %s after %llu of %llu bytes", std::strerror(errno), (unsigned long long)c.up_sent,
                  (unsigned long long)c.up));
      return;
    }
    if (head)
      c.head_sent += size_t(n);
    else
      c.up_sent += uint64_t(n);
    if (size_t(n) < len) return;
  }
}

void Integrity::check_done(CConn& c) {
  if (!c.done && c.rd_eof && c.wr_shut) finish(c);
}

int Integrity::run() {
  raise_fd_limit();
  plan();
  double start = now(), deadline = start + o_.timeout;
  addrinfo* ai = resolve(host_, port_, false);
  for (auto& c : conns_) {
    int err = 0;
    c.fd = start_connect(ai, &err);
    if (c.fd < 0 || err) {
      if (c.fd >= 0) close(c.fd);
      c.fd = -1;
      fail(c, fmt("connect: %s", std::strerror(err)));
    }
  }
  freeaddrinfo(ai);
  std::vector<pollfd> pfds;
  std::vector<CConn*> which;
  for (;;) {
    pfds.clear();
    which.clear();
    bool all_established = true;
    for (auto& c : conns_) {
      if (!c.established && !c.done) all_established = false;
      if (c.done) continue;
      short ev = 0;
      if (c.connecting) {
        ev = POLLOUT;
      } else {
        if (!c.rd_eof) ev |= POLLIN;
        if (!c.wr_shut && (c.head_sent < sizeof c.head || may_upload(c))) ev |= POLLOUT;
      }
      pfds.push_back(pollfd{c.fd, ev, 0});
      which.push_back(&c);
    }
    if (all_established && !ready_written_) {
      write_atomic(o_.ready, "ready\n");
      ready_written_ = true;
    }
    if (pfds.empty()) break;
    if (now() >= deadline) {
      for (CConn* c : which)
        fail(*c, fmt("deadline: sent %llu of %llu%s, received %llu of %llu%s", (unsigned long long)c->up_sent,
                     (unsigned long long)c->up, c->wr_shut ? " and FIN" : "", (unsigned long long)c->down_got,
                     (unsigned long long)c->down, c->rd_eof ? " and EOF" : ""));
      break;
    }
    int n = poll(pfds.data(), pfds.size(), ms_until(deadline, 1.0));
    if (n < 0 && errno != EINTR) die("poll: %s", std::strerror(errno));
    for (size_t i = 0; i < pfds.size(); ++i) {
      CConn& c = *which[i];
      short re = pfds[i].revents;
      if (!re) continue;
      if (c.connecting) {
        int err = so_error(c.fd);
        if (err) {
          fail(c, fmt("connect: %s", std::strerror(err)));
          continue;
        }
        c.connecting = false;
        if (o_.echo) c.established = true;
        on_write(c);
      } else {
        if (re & (POLLIN | POLLHUP | POLLERR)) on_read(c);
        if (!c.done && (re & (POLLOUT | POLLERR))) on_write(c);
        if (!c.done && (re & POLLERR) && !(re & POLLIN)) {
          int err = so_error(c.fd);
          if (err) fail(c, fmt("socket error: %s", std::strerror(err)));
        }
      }
      if (!c.done && !o_.echo && greeted(c)) c.established = true;
      if (!c.done && c.rd_eof && (c.flags & 2)) on_write(c);  // the upload may start now
      if (!c.done) check_done(c);
    }
  }
  double secs = now() - start;
  std::map<std::string, std::pair<int, int>> per_server;
  int ok = 0, bad = 0;
  uint64_t bytes = 0;
  for (auto& c : conns_) {
    auto& s = per_server[c.name];
    if (c.failed) {
      ++bad, ++s.second;
      std::printf("conn %d (server %s, up %llu, down %llu): %s\n", c.index, c.name.c_str(),
                  (unsigned long long)c.up, (unsigned long long)c.down, c.why.c_str());
    } else {
      ++ok, ++s.first;
      bytes += c.up + c.down;
    }
  }
  for (auto& [name, s] : per_server) std::printf("server %s ok=%d failed=%d\n", name.c_str(), s.first, s.second);
  std::printf("total ok=%d failed=%d bytes=%llu secs=%.2f\n", ok, bad, (unsigned long long)bytes, secs);
  return bad && !o_.allow_fail ? 1 : 0;
}

int integrity_main(int argc, char** argv) {
  IntegrityOpts o;
  int ch;
  while ((ch = getopt(argc, argv, "c:M:C:z:m:F:s:r:at:")) != -1) {
    switch (ch) {
      case 'c': o.conns = int(parse_u64(optarg, "-c")); break;
      case 'M': o.max_bytes = parse_u64(optarg, "-M") << 20; break;
      case 'C': o.cap_bytes = parse_u64(optarg, "-C") << 20; break;
      case 'z': o.fixed = true, o.fixed_bytes = parse_u64(optarg, "-z"); break;
      case 'm':
        if (std::strcmp(optarg, "echo") == 0) o.echo = true;
        else if (std::strcmp(optarg, "duplex") != 0) die("-m: duplex or echo");
        break;
      case 'F': o.flags = uint32_t(parse_u64(optarg, "-F")); break;
      case 's': o.seed = parse_u64(optarg, "-s"); break;
      case 'r': o.ready = optarg; break;
      case 'a': o.allow_fail = true; break;
      case 't': o.timeout = parse_sec(optarg, "-t"); break;
      default: die("usage: hostile integrity [-c N] [-M MIB] [-C MIB] [-z BYTES] [-m duplex|echo] HOST PORT");
    }
  }
  if (argc - optind != 2) die("usage: hostile integrity [options] HOST PORT");
  if (o.conns < 1 || o.conns > 100000) die("-c: 1..100000");
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
      default: die("usage: hostile halfclose -w client|server -u UP -d DOWN HOST PORT");
    }
  }
  if (who == "client") o.flags = 1;
  else if (who == "server") o.flags = 2;
  else die("-w client|server");
  if (argc - optind != 2) die("usage: hostile halfclose [options] HOST PORT");
  return Integrity(o, argv[optind], argv[optind + 1]).run();
}

// ---- end: how does a connection end? -------------------------------------------------

int end_main(int argc, char** argv) {
  uint64_t send_bytes = 0;
  double timeout = 10;
  bool reset = false;
  int ch;
  while ((ch = getopt(argc, argv, "n:t:x")) != -1) {
    if (ch == 'n') send_bytes = parse_u64(optarg, "-n");
    else if (ch == 't') timeout = parse_sec(optarg, "-t");
    else if (ch == 'x') reset = true;
    else die("usage: hostile end [-n BYTES] [-t SEC] [-x] HOST PORT");
  }
  if (argc - optind != 2) die("usage: hostile end [-n BYTES] [-t SEC] HOST PORT");
  double start = now(), deadline = start + timeout;
  std::string why;
  int fd = connect_by(argv[optind], argv[optind + 1], deadline, &why);
  if (fd < 0) die("connect: %s", why.c_str());
  uint64_t got = 0, sent = 0;
  double last = now();
  const char* how = "timeout";
  char buf[kChunk];
  while (now() < deadline) {
    if (reset && sent == send_bytes) {
      linger_reset(fd);
      how = "we-reset";
      break;
    }
    pollfd p{fd, short(POLLIN | (sent < send_bytes ? POLLOUT : 0)), 0};
    poll(&p, 1, ms_until(deadline, 1.0));
    if (p.revents & POLLOUT) {
      size_t len = size_t(std::min<uint64_t>(send_bytes - sent, sizeof buf));
      gen(7, sent, buf, len);
      ssize_t n = write(fd, buf, len);
      if (n > 0) {
        sent += uint64_t(n);
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        // A reset is reported to whichever call comes first; after it
        // read() only says EOF.
        how = errno == ECONNRESET || errno == EPIPE ? "reset" : "error";
        break;
      }
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = read(fd, buf, sizeof buf);
      if (n > 0) {
        got += uint64_t(n);
        last = now();
      } else if (n == 0) {
        how = "eof";
        break;
      } else if (errno != EAGAIN && errno != EINTR) {
        how = errno == ECONNRESET ? "reset" : "error";
        break;
      }
    }
  }
  double t = now();
  std::printf("read=%llu sent=%llu end=%s secs=%.3f quiet=%.3f\n", (unsigned long long)got, (unsigned long long)sent,
              how, t - start, t - last);
  close(fd);
  return std::strcmp(how, "timeout") == 0 || std::strcmp(how, "error") == 0 ? 2 : 0;
}

// ---- push: write until the other side stops taking ------------------------------------

int push_main(int argc, char** argv) {
  int conns = 1;
  uint64_t bytes = 1ull << 30;
  double stall = 1, hold = 0, timeout = 10;
  std::string ready;
  int ch;
  while ((ch = getopt(argc, argv, "c:n:S:H:r:t:")) != -1) {
    switch (ch) {
      case 'c': conns = int(parse_u64(optarg, "-c")); break;
      case 'n': bytes = parse_u64(optarg, "-n"); break;
      case 'S': stall = parse_sec(optarg, "-S"); break;
      case 'H': hold = parse_sec(optarg, "-H"); break;
      case 'r': ready = optarg; break;
      case 't': timeout = parse_sec(optarg, "-t"); break;
      default: die("usage: hostile push [-c N] [-n BYTES] [-S SEC] [-H SEC] [-r FILE] [-t SEC] HOST PORT");
    }
  }
  if (argc - optind != 2) die("usage: hostile push [options] HOST PORT");
  raise_fd_limit();
  double start = now(), deadline = start + timeout;
  std::vector<int> fds;
  std::vector<uint64_t> sent(size_t(conns), 0);
  for (int i = 0; i < conns; ++i) {
    std::string why;
    int fd = connect_by(argv[optind], argv[optind + 1], deadline, &why);
    if (fd < 0) die("connect: %s", why.c_str());
    fds.push_back(fd);
  }
  char buf[kChunk];
  gen(3, 0, buf, sizeof buf);
  double last_progress = now();
  bool stalled = false, broken = false;
  std::vector<pollfd> pfds(fds.size());
  while (now() < deadline) {
    bool any = false;
    for (size_t i = 0; i < fds.size(); ++i) {
      pfds[i] = pollfd{fds[i], short(sent[i] < bytes ? POLLOUT : 0), 0};
      any |= sent[i] < bytes;
    }
    if (!any) break;
    poll(pfds.data(), pfds.size(), 50);
    for (size_t i = 0; i < fds.size(); ++i) {
      if (!(pfds[i].revents & (POLLOUT | POLLERR | POLLHUP))) continue;
      ssize_t n = write(fds[i], buf, size_t(std::min<uint64_t>(bytes - sent[i], sizeof buf)));
      if (n > 0) {
        sent[i] += uint64_t(n);
        last_progress = now();
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        std::fprintf(stderr, "hostile push: write: %s\n", std::strerror(errno));
        broken = true;
        sent[i] = bytes;  // stop writing there
      }
    }
    if (now() - last_progress >= stall) {
      stalled = true;
      break;
    }
  }
  uint64_t total = 0;
  for (uint64_t s : sent) total += s;
  write_atomic(ready, fmt("written=%llu\n", (unsigned long long)total));
  double until = now() + hold;
  while (now() < until) usleep(50 * 1000);
  std::printf("written=%llu of %llu stalled=%d broken=%d secs=%.2f\n", (unsigned long long)total,
              (unsigned long long)(bytes * uint64_t(conns)), stalled ? 1 : 0, broken ? 1 : 0, now() - start);
  return 0;
}

// ---- slowread-client: a client that reads slowly from a fast back-end -----------------------

int slowread_client_main(int argc, char** argv) {
  int conns = 1;
  size_t step = 4096;
  double interval = 0.1, hold = 5;
  uint64_t seed = 1;
  std::string ready;
  int ch;
  while ((ch = getopt(argc, argv, "c:k:i:H:r:s:")) != -1) {
    switch (ch) {
      case 'c': conns = int(parse_u64(optarg, "-c")); break;
      case 'k': step = size_t(parse_u64(optarg, "-k")); break;
      case 'i': interval = parse_sec(optarg, "-i"); break;
      case 'H': hold = parse_sec(optarg, "-H"); break;
      case 'r': ready = optarg; break;
      case 's': seed = parse_u64(optarg, "-s"); break;
      default: die("usage: hostile slowread-client [-c N] [-k BYTES] [-i SEC] [-H SEC] [-r FILE] HOST PORT");
    }
  }
  if (argc - optind != 2) die("usage: hostile slowread-client [options] HOST PORT");
  if (step == 0 || step > kChunk || interval < 0.001) die("bad -k or -i");
  raise_fd_limit();
  double start = now(), end = start + hold;
  std::vector<int> fds;
  std::vector<uint64_t> got(size_t(conns), 0);
  for (int i = 0; i < conns; ++i) {
    std::string why;
    int fd = connect_by(argv[optind], argv[optind + 1], now() + 5, &why);
    if (fd < 0) die("connect: %s", why.c_str());
    // A small receive buffer keeps the stall in balance, not in our kernel.
    fds.push_back(fd);
  }
  char buf[kChunk];
  bool ready_written = false, wrong = false;
  const char* ended = nullptr;  // how the first connection to end ended
  while (now() < end) {
    bool all = true;
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i] < 0) continue;
      ssize_t n = read(fds[i], buf, step);
      if (n > 0) {
        if (mismatch(seed, got[i], buf, size_t(n)) != kNone) wrong = true;
        got[i] += uint64_t(n);
      } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        if (!ended) ended = n == 0 ? "eof" : errno == ECONNRESET ? "reset" : "error";
        close(fds[i]);
        fds[i] = -1;
      }
      if (got[i] == 0) all = false;
    }
    if (all && !ready_written) {
      write_atomic(ready, "ready\n");
      ready_written = true;
    }
    usleep(useconds_t(interval * 1e6));
  }
  uint64_t total = 0;
  for (uint64_t g : got) total += g;
  std::printf("read=%llu wrong=%d ended=%s secs=%.2f\n", (unsigned long long)total, wrong ? 1 : 0,
              ended ? ended : "no", now() - start);
  return wrong || ended ? 1 : 0;
}

// ---- slowloris and flood: many idle connections ---------------------------------------------

int idle_main(bool flood, int argc, char** argv) {
  int n = 0;
  double hold = 10, timeout = 20;
  bool exit_when_closed = false;
  std::string ready, status;
  int ch;
  while ((ch = getopt(argc, argv, "n:H:er:t:o:")) != -1) {
    switch (ch) {
      case 'n': n = int(parse_u64(optarg, "-n")); break;
      case 'H': hold = parse_sec(optarg, "-H"); break;
      case 'e': exit_when_closed = true; break;
      case 'r': ready = optarg; break;
      case 'o': status = optarg; break;
      case 't': timeout = parse_sec(optarg, "-t"); break;
      default: die("usage: hostile %s -n N [-H SEC] [-e] [-r FILE] [-o FILE] HOST PORT", g_cmd);
    }
  }
  if (argc - optind != 2 || n < 1) die("usage: hostile %s -n N [-H SEC] [-e] [-r FILE] HOST PORT", g_cmd);
  raise_fd_limit();
  addrinfo* ai = resolve(argv[optind], argv[optind + 1], false);
  enum St { Pending, Connecting, Open, Closed, Failed };
  struct Idle {
    int fd = -1;
    St st = Pending;
    double since = 0;
  };
  std::vector<Idle> conns(static_cast<size_t>(n));
  const size_t batch = flood ? size_t(n) : 256;
  double start = now(), deadline = start + timeout;
  int connected = 0, failed = 0, closed = 0, resets = 0;
  std::map<std::string, int> fail_why;
  size_t next = 0, in_flight = 0;
  std::vector<pollfd> pfds;
  std::vector<size_t> which;
  // Phase 1: connect them all (bounded by -t).
  while ((next < conns.size() || in_flight) && now() < deadline) {
    while (next < conns.size() && in_flight < batch) {
      Idle& c = conns[next++];
      int err = 0;
      c.fd = start_connect(ai, &err);
      if (c.fd < 0 || err) {
        if (c.fd >= 0) close(c.fd);
        c.fd = -1;
        c.st = Failed;
        ++failed;
        ++fail_why[std::strerror(err)];
        continue;
      }
      c.st = Connecting;
      c.since = now();
      ++in_flight;
    }
    pfds.clear();
    which.clear();
    for (size_t i = 0; i < conns.size(); ++i)
      if (conns[i].st == Connecting) {
        pfds.push_back(pollfd{conns[i].fd, POLLOUT, 0});
        which.push_back(i);
      }
    if (pfds.empty()) continue;
    poll(pfds.data(), pfds.size(), ms_until(deadline, 0.1));
    for (size_t k = 0; k < pfds.size(); ++k) {
      if (!pfds[k].revents) continue;
      Idle& c = conns[which[k]];
      int err = so_error(c.fd);
      --in_flight;
      if (err) {
        close(c.fd);
        c.fd = -1;
        c.st = Failed;
        ++failed;
        ++fail_why[std::strerror(err)];
      } else {
        c.st = Open;
        ++connected;
      }
    }
  }
  int never = 0;  // handshakes still pending at the deadline
  for (auto& c : conns)
    if (c.st == Connecting || c.st == Pending) ++never;
  freeaddrinfo(ai);
  double all_up = now();
  write_atomic(ready, fmt("connected=%d failed=%d pending=%d\n", connected, failed, never));
  int reported = -1;
  // Phase 2: hold; count what the peer closes. Pending handshakes still count.
  double until = now() + hold, last_close = 0;
  char buf[4096];
  while (now() < until) {
    pfds.clear();
    which.clear();
    for (size_t i = 0; i < conns.size(); ++i)
      if (conns[i].st == Open || conns[i].st == Connecting) {
        pfds.push_back(pollfd{conns[i].fd, short(conns[i].st == Open ? POLLIN : POLLOUT), 0});
        which.push_back(i);
      }
    if (closed != reported) {
      write_atomic(status, fmt("closed=%d\n", closed));
      reported = closed;
    }
    if (exit_when_closed && pfds.empty()) break;
    poll(pfds.data(), pfds.size(), ms_until(until, 0.2));
    for (size_t k = 0; k < pfds.size(); ++k) {
      if (!pfds[k].revents) continue;
      Idle& c = conns[which[k]];
      if (c.st == Connecting) {
        int err = so_error(c.fd);
        if (err) {
          close(c.fd), c.fd = -1, c.st = Failed, ++failed, --never;
        } else {
          c.st = Open, ++connected, --never;
        }
        continue;
      }
      ssize_t r = read(c.fd, buf, sizeof buf);
      if (r > 0) continue;  // data from an idle back-end? ignore it
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (r < 0) ++resets;
      close(c.fd);
      c.fd = -1;
      c.st = Closed;
      ++closed;
      last_close = now() - all_up;
    }
  }
  std::string whys;
  for (auto& [w, k] : fail_why) whys += fmt(" [%s: %d]", w.c_str(), k);
  std::printf("connected=%d failed=%d pending=%d closed=%d resets=%d connect_secs=%.2f last=%.2f%s\n", connected,
              failed, never, closed, resets, all_up - start, last_close, whys.c_str());
  std::fflush(stdout);
  if (flood) return 0;
  if (failed || never) return 1;
  if (exit_when_closed && closed != n) return 1;
  return 0;
}

// ---- whoami ------------------------------------------------------------------------------

int whoami_main(int argc, char** argv) {
  double timeout = 5;
  int ch;
  while ((ch = getopt(argc, argv, "t:")) != -1) {
    if (ch == 't') timeout = parse_sec(optarg, "-t");
    else die("usage: hostile whoami [-t SEC] HOST PORT");
  }
  if (argc - optind != 2) die("usage: hostile whoami [-t SEC] HOST PORT");
  double deadline = now() + timeout;
  std::string why;
  int fd = connect_by(argv[optind], argv[optind + 1], deadline, &why);
  if (fd < 0) die("connect: %s", why.c_str());
  char greet[16];
  size_t got = 0;
  while (got < sizeof greet && now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    poll(&p, 1, ms_until(deadline, 1.0));
    ssize_t n = read(fd, greet + got, sizeof greet - got);
    if (n == 0) die("EOF after %zu bytes of the greeting", got);
    if (n < 0 && errno != EAGAIN && errno != EINTR) die("read: %s", std::strerror(errno));
    if (n > 0) got += size_t(n);
  }
  if (got < sizeof greet) die("no greeting within %g s", timeout);
  close(fd);
  std::string name(greet, 15);
  name.erase(name.find_last_not_of(' ') + 1);
  std::printf("%s\n", name.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  g_tool = g_cmd = "hostile";
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, nullptr, _IOLBF, 0);
  if (argc < 2)
    die("usage: hostile duplex|echo|source|reset-after|noread|slowread|blackhole|integrity|halfclose|end|push|"
        "slowread-client|slowloris|flood|whoami ...");
  g_cmd = argv[1];
  std::string cmd = argv[1];
  argc--;
  argv++;  // getopt now sees the sub-command as argv[0]
  if (cmd == "duplex") return server_main(Mode::Duplex, argc, argv);
  if (cmd == "echo") return server_main(Mode::Echo, argc, argv);
  if (cmd == "source") return server_main(Mode::Source, argc, argv);
  if (cmd == "reset-after") return server_main(Mode::ResetAfter, argc, argv);
  if (cmd == "noread") return server_main(Mode::NoRead, argc, argv);
  if (cmd == "slowread") return server_main(Mode::SlowRead, argc, argv);
  if (cmd == "blackhole") return server_main(Mode::Blackhole, argc, argv);
  if (cmd == "integrity") return integrity_main(argc, argv);
  if (cmd == "halfclose") return halfclose_main(argc, argv);
  if (cmd == "end") return end_main(argc, argv);
  if (cmd == "push") return push_main(argc, argv);
  if (cmd == "slowread-client") return slowread_client_main(argc, argv);
  if (cmd == "slowloris") return idle_main(false, argc, argv);
  if (cmd == "flood") return idle_main(true, argc, argv);
  if (cmd == "whoami") return whoami_main(argc, argv);
  die("unknown sub-command");
}
