// helper: the fake back-ends and clients that balance's bats suite drives.
//
// One program, one sub-command per role, so the suite builds a single binary
// with nothing but a C++17 compiler and POSIX:
//
//   helper echo      [SERVER] [-R file]   echo every byte; on EOF finish, then shut write
//   helper sink      [SERVER] [-R file]   read to EOF, reply "COUNT HASH\n", close
//   helper source    [SERVER] -n BYTES [-s SEED] [-h] [-R file]
//                                         send BYTES pseudo-random bytes, then close
//                                         (-h: shut write only and read on to EOF)
//   helper hold      [SERVER] [-N NAME] [-m STATE] [-o LOG] [-H SEC]
//                                         greet "hello NAME\n", log the client's first
//                                         line (its id) to LOG, hold until the client's
//                                         EOF (or -H SEC), reply "bye ID\n", close;
//                                         STATE holds "CUR MAX TOTAL\n", rewritten on
//                                         every change
//   helper blackhole [SERVER]             listen, fill the accept queue, never accept:
//                                         further connects hang
//   helper mute      [SERVER]             accept, then never read or write
//   helper client    [CLIENT] HOST PORT   send, receive, verify; exit 0 only if correct
//   helper probe     [-t SEC] HOST PORT   "closed"/"reset" (exit 0) when the peer accepts
//                                         and closes without data; "open", "data",
//                                         "refused", "timeout" (exit 1) otherwise
//   helper freeport  [ADDR]               print a currently free TCP port
//   helper wait-listen [-t SEC] [-b ADDR] PORT
//                                         wait until something listens on PORT
//
// SERVER options: -b ADDR (default 127.0.0.1; ::1 for IPv6), -p PORT (default 0 =
// ephemeral), -P FILE (the port actually bound is written there atomically once
// the server is ready; "ready PORT" is also printed on stdout), -L SEC (the
// server exits by itself after SEC seconds, default 120, so nothing outlives a
// broken test run). -R FILE appends "COUNT HASH\n" of what each connection
// received, at its EOF.
//
// CLIENT options: -n BYTES to send (default 0), -s SEED (default 1), -i ID (send
// "ID\n" before the bytes), -x (shutdown(SHUT_WR) once everything is sent),
// -H SEC (hold that long before the shutdown), -g (start the hold only after
// the server's first line arrived, i.e. once really connected to a back-end),
// -A (send only after the server's EOF), -k BYTES -I SEC (trickle: one chunk
// of BYTES every SEC seconds), -m MODE (echo | sink | source:N:SEED | hold |
// print; default echo), -t SEC (overall deadline, default 10), -r FILE
// (created once connected), -c N (N clients in parallel processes; numeric IDs
// and seeds are incremented per client).
// Exit status: 0 correct, 1 wrong or failed, 2 deadline passed.
//
// Every blocking wait is bounded; all sockets are non-blocking under poll().
// HASH is FNV-1a 64 in 16 lower-case hex digits. The byte streams come from
// splitmix64, so client and server regenerate them instead of storing them.

#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "testnet.hpp"

namespace {

using namespace testnet;

// ---- deterministic bytes and their checksum ---------------------------------

const uint64_t kFnvOffset = 0xcbf29ce484222325ULL;
const uint64_t kFnvPrime = 0x100000001b3ULL;

void fnv(uint64_t& h, const char* p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    h ^= static_cast<unsigned char>(p[i]);
    h *= kFnvPrime;
  }
}

std::string sum_line(uint64_t count, uint64_t hash) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%llu %016llx\n", static_cast<unsigned long long>(count),
                static_cast<unsigned long long>(hash));
  return buf;
}

// A prefix followed by n splitmix64 bytes from seed, produced in order.
class Stream {
 public:
  Stream(std::string prefix, uint64_t n, uint64_t seed) : prefix_(std::move(prefix)), n_(n), s_(seed) {}
  uint64_t size() const { return prefix_.size() + n_; }
  uint64_t left() const { return size() - pos_; }
  uint64_t pos() const { return pos_; }
  std::string read(size_t max) {
    std::string out;
    size_t want = static_cast<size_t>(std::min<uint64_t>(max, left()));
    out.reserve(want);
    while (out.size() < want) out.push_back(next_byte());
    return out;
  }
  char next_byte() {
    uint64_t p = pos_++;
    if (p < prefix_.size()) return prefix_[p];
    if (have_ == 0) {
      word_ = splitmix64_next(s_);
      have_ = 8;
    }
    char c = static_cast<char>(word_ & 0xff);
    word_ >>= 8;
    have_--;
    return c;
  }

 private:
  std::string prefix_;
  uint64_t n_;
  uint64_t s_;
  uint64_t pos_ = 0;
  uint64_t word_ = 0;
  int have_ = 0;
};

// ---- sockets -----------------------------------------------------------------

// Connects before the deadline. Returns the fd, or -1 with *why set to a word
// the caller can print ("refused", "timeout", or the errno text).
int connect_to(const std::string& host, const std::string& port, double deadline, std::string* why) {
  int err = 0;
  int fd = connect_tcp(host, port, deadline, &err);
  if (fd < 0) *why = err == ECONNREFUSED ? "refused" : err == ETIMEDOUT ? "timeout" : std::strerror(err);
  return fd;
}

// ---- servers -----------------------------------------------------------------

enum class Mode { Echo, Sink, Source, Hold, Blackhole, Mute };

struct ServerOpts {
  std::string addr = "127.0.0.1";
  int port = 0;
  std::string portfile;
  double life = 120;
  std::string report;
  uint64_t n = 0, seed = 1;  // source
  bool half = false;         // source
  std::string name = "hold", state, log;  // hold
  double hold = 0;                        // hold
};

struct Conn {
  int fd = -1;
  std::string out;  // bytes still to send, from off
  size_t off = 0;
  bool rd_eof = false, wr_shut = false, dead = false;
  bool shut_when_drained = false, close_when_drained = false;
  uint64_t count = 0, hash = kFnvOffset;  // what was received
  std::unique_ptr<Stream> src;            // source: what is left to send
  std::string line, id;                   // hold: the first line
  bool have_id = false, said_bye = false;
  double until = 0;                       // hold: reply at this time (0 = at EOF)
  size_t pending() const { return out.size() - off; }
};

class Server {
 public:
  Server(Mode m, ServerOpts o) : mode_(m), o_(std::move(o)) {}
  int run();

 private:
  void accepted(int fd);
  void received(Conn& c, const char* p, size_t n);
  void got_eof(Conn& c);
  void flush(Conn& c);
  void progress(Conn& c);
  void finish(Conn& c);
  void save_state() {
    if (!o_.state.empty())
      write_atomic(o_.state, std::to_string(cur_) + " " + std::to_string(max_) + " " + std::to_string(total_) + "\n");
  }
  bool wants_read(const Conn& c) const {
    if (mode_ == Mode::Mute || c.rd_eof) return false;
    return mode_ != Mode::Echo || c.pending() < (1u << 20);  // echo: back-pressure
  }

  Mode mode_;
  ServerOpts o_;
  std::vector<std::unique_ptr<Conn>> conns_;
  int cur_ = 0, max_ = 0, total_ = 0;
};

void Server::accepted(int fd) {
  set_nonblock(fd);
  auto c = std::make_unique<Conn>();
  c->fd = fd;
  if (mode_ == Mode::Source) c->src = std::make_unique<Stream>("", o_.n, o_.seed);
  if (mode_ == Mode::Hold) {
    cur_++;
    total_++;
    max_ = std::max(max_, cur_);
    save_state();
    c->out = "hello " + o_.name + "\n";
    if (o_.hold > 0) c->until = now() + o_.hold;
  }
  conns_.push_back(std::move(c));
}

void Server::received(Conn& c, const char* p, size_t n) {
  c.count += n;
  fnv(c.hash, p, n);
  if (mode_ == Mode::Echo) c.out.append(p, n);
  if (mode_ == Mode::Hold && !c.have_id) {
    for (size_t i = 0; i < n && !c.have_id; i++) {
      if (p[i] == '\n') {
        c.have_id = true;
        c.id = c.line;
        append_line(o_.log, c.id);
      } else if (c.line.size() < 200) {
        c.line.push_back(p[i]);
      }
    }
  }
}

void Server::got_eof(Conn& c) {
  c.rd_eof = true;
  if (!o_.report.empty()) {
    std::string sum = sum_line(c.count, c.hash);
    sum.pop_back();
    append_line(o_.report, sum);
  }
  switch (mode_) {
    case Mode::Echo: c.shut_when_drained = true; break;
    case Mode::Sink:
      c.out += sum_line(c.count, c.hash);
      c.close_when_drained = true;
      break;
    case Mode::Hold:
      if (!c.said_bye) {
        c.said_bye = true;
        c.out += "bye " + c.id + "\n";
        c.close_when_drained = true;
      }
      break;
    default: break;
  }
}

void Server::flush(Conn& c) {
  while (c.pending() > 0) {
    ssize_t w = send(c.fd, c.out.data() + c.off, c.pending(), 0);
    if (w > 0) {
      c.off += static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    c.dead = true;  // the peer is gone (EPIPE, ECONNRESET): nothing more to do
    return;
  }
  if (c.off == c.out.size()) {
    c.out.clear();
    c.off = 0;
  } else if (c.off > (1u << 20)) {
    c.out.erase(0, c.off);
    c.off = 0;
  }
}

// Decides what a connection does once its output is drained.
void Server::progress(Conn& c) {
  if (c.dead || c.pending() > 0) return;
  if (c.src && c.src->left() > 0) {
    c.out = c.src->read(1 << 16);
    flush(c);
    return;
  }
  if (mode_ == Mode::Source && !c.wr_shut && !c.close_when_drained) {
    if (o_.half) {
      c.shut_when_drained = true;
    } else {
      char buf[4096];  // take what the client sent, so close() does not reset
      while (read(c.fd, buf, sizeof buf) > 0) {}
      c.close_when_drained = true;
    }
  }
  if (c.close_when_drained) {
    c.dead = true;
    return;
  }
  if (c.shut_when_drained && !c.wr_shut) {
    shutdown(c.fd, SHUT_WR);
    c.wr_shut = true;
  }
  if (c.wr_shut && c.rd_eof) c.dead = true;
}

void Server::finish(Conn& c) {
  close(c.fd);
  if (mode_ == Mode::Hold) {
    cur_--;
    save_state();
  }
}

int Server::run() {
  int lfd = listen_on(o_.addr, o_.port, mode_ == Mode::Blackhole ? 0 : 128);
  int port = local_port(lfd);
  std::vector<int> fillers;
  if (mode_ == Mode::Blackhole) {
    // With backlog 0 the kernel queues one or two finished handshakes; these
    // connects take them (and leave more pending), so that later SYNs are
    // dropped and a connect to this port neither succeeds nor fails.
    for (int i = 0; i < 4; i++) {
      addrinfo* ai = resolve(o_.addr, std::to_string(port), false);
      int err = 0;
      fillers.push_back(start_connect(ai, &err));
      freeaddrinfo(ai);
    }
    usleep(100 * 1000);
  }
  if (mode_ == Mode::Hold) save_state();
  write_atomic(o_.portfile, std::to_string(port) + "\n");
  std::printf("ready %d\n", port);
  std::fflush(stdout);

  double end = now() + o_.life;
  std::vector<char> buf(1 << 16);
  while (now() < end) {
    std::vector<pollfd> pfds;
    pfds.push_back({mode_ == Mode::Blackhole ? -1 : lfd, POLLIN, 0});
    for (auto& c : conns_) {
      short ev = 0;
      if (wants_read(*c)) ev |= POLLIN;
      if (c->pending() > 0) ev |= POLLOUT;
      pfds.push_back({c->fd, ev, 0});
    }
    int n = poll(pfds.data(), pfds.size(), 100);
    if (n < 0 && errno != EINTR) die("poll: %s", std::strerror(errno));
    size_t old = conns_.size();
    for (size_t i = 0; i < old; i++) {
      Conn& c = *conns_[i];
      short rev = n > 0 ? pfds[i + 1].revents : 0;
      if (rev & POLLOUT) flush(c);
      if (!c.dead && (rev & (POLLIN | POLLHUP | POLLERR)) && wants_read(c)) {
        ssize_t r = read(c.fd, buf.data(), buf.size());
        if (r > 0) received(c, buf.data(), static_cast<size_t>(r));
        else if (r == 0) got_eof(c);
        else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) c.dead = true;
      } else if ((rev & (POLLHUP | POLLERR)) && mode_ == Mode::Mute) {
        c.dead = true;
      }
      if (mode_ == Mode::Hold && c.until > 0 && !c.said_bye && now() >= c.until) {
        c.said_bye = true;
        c.out += "bye " + c.id + "\n";
        c.shut_when_drained = true;
      }
      if (!c.dead && c.pending() > 0) flush(c);
      progress(c);
    }
    if (n > 0 && (pfds[0].revents & POLLIN)) {
      for (;;) {
        int fd = accept(lfd, nullptr, nullptr);
        if (fd < 0) break;
        accepted(fd);
        if (mode_ != Mode::Mute) {
          flush(*conns_.back());
          progress(*conns_.back());
        }
      }
    }
    for (size_t i = 0; i < conns_.size();) {
      if (conns_[i]->dead) {
        finish(*conns_[i]);
        conns_.erase(conns_.begin() + static_cast<long>(i));
      } else {
        i++;
      }
    }
  }
  return 0;
}

int server_main(Mode mode, int argc, char** argv) {
  ServerOpts o;
  int ch;
  while ((ch = getopt(argc, argv, "b:p:P:L:R:n:s:hN:m:o:H:")) != -1) {
    switch (ch) {
      case 'b': o.addr = optarg; break;
      case 'p': o.port = static_cast<int>(parse_u64(optarg, "-p")); break;
      case 'P': o.portfile = optarg; break;
      case 'L': o.life = parse_sec(optarg, "-L"); break;
      case 'R': o.report = optarg; break;
      case 'n': o.n = parse_u64(optarg, "-n"); break;
      case 's': o.seed = parse_u64(optarg, "-s"); break;
      case 'h': o.half = true; break;
      case 'N': o.name = optarg; break;
      case 'm': o.state = optarg; break;
      case 'o': o.log = optarg; break;
      case 'H': o.hold = parse_sec(optarg, "-H"); break;
      default: die("bad option (see the comment at the top of helper.cpp)");
    }
  }
  if (optind != argc) die("unexpected argument: %s", argv[optind]);
  if (o.port > 65535) die("-p: port out of range");
  return Server(mode, o).run();
}

// ---- client ------------------------------------------------------------------

struct ClientOpts {
  std::string host, port;
  uint64_t n = 0, seed = 1;
  std::string id;
  bool has_id = false, shut = false, greet = false, after_eof = false;
  double hold = 0, interval = 0, timeout = 10;
  size_t chunk = 0;
  std::string mode = "echo", readyfile;
  uint64_t src_n = 0, src_seed = 0;  // mode source:N:SEED
  int parallel = 1;
};

class Client {
 public:
  explicit Client(const ClientOpts& o)
      : o_(o), tx_(o.has_id ? o.id + "\n" : "", o.n, o.seed),
        echo_(o.has_id ? o.id + "\n" : "", o.n, o.seed), source_("", o.src_n, o.src_seed) {}
  int run();

 private:
  bool verify(const char* p, size_t n);
  int fail(int code, const std::string& why) {
    std::fprintf(stderr, "helper client%s%s: %s (sent %llu of %llu, received %llu)\n", o_.has_id ? " " : "",
                 o_.id.c_str(), why.c_str(), static_cast<unsigned long long>(tx_.pos()),
                 static_cast<unsigned long long>(tx_.size()), static_cast<unsigned long long>(received_));
    return code;
  }

  const ClientOpts& o_;
  Stream tx_, echo_, source_;
  uint64_t tx_hash_ = kFnvOffset;
  uint64_t received_ = 0;
  std::string text_;  // sink / hold / print: what came back (bounded)
  std::string error_;
  double greet_at_ = -1;
};

bool Client::verify(const char* p, size_t n) {
  if (greet_at_ < 0 && std::memchr(p, '\n', n) != nullptr) greet_at_ = now();
  received_ += n;
  if (o_.mode == "echo" || o_.mode == "source") {
    Stream& want = o_.mode == "echo" ? echo_ : source_;
    for (size_t i = 0; i < n; i++) {
      if (want.left() == 0) {
        error_ = "more bytes than expected";
        return false;
      }
      uint64_t at = want.pos();
      if (want.next_byte() != p[i]) {
        error_ = "wrong byte at offset " + std::to_string(at);
        return false;
      }
    }
  } else if (o_.mode == "print") {
    if (fwrite(p, 1, n, stdout) != n) return false;
  } else if (text_.size() < 4096) {
    text_.append(p, std::min(n, 4096 - text_.size()));
  }
  return true;
}

int Client::run() {
  double start = now();
  double deadline = start + o_.timeout;
  std::string why;
  int fd = connect_to(o_.host, o_.port, deadline, &why);
  if (fd < 0) return fail(why == "timeout" ? 2 : 1, "connect " + o_.host + " " + o_.port + ": " + why);
  if (!o_.readyfile.empty()) write_atomic(o_.readyfile, "connected\n");

  std::string pend;
  bool rd_eof = false, shut_done = false;
  double sent_at = -1, next_chunk = start;
  std::vector<char> buf(1 << 16);
  for (;;) {
    double t = now();
    if (t >= deadline) { close(fd); return fail(2, "deadline passed"); }
    bool may_send = !o_.after_eof || rd_eof;
    if (may_send && pend.empty() && tx_.left() > 0) {
      if (o_.chunk == 0) {
        pend = tx_.read(1 << 16);
      } else if (t >= next_chunk) {
        pend = tx_.read(o_.chunk);
        next_chunk = t + o_.interval;
      }
      fnv(tx_hash_, pend.data(), pend.size());
    }
    if (sent_at < 0 && pend.empty() && tx_.left() == 0 && may_send) sent_at = t;
    double wake = deadline;  // the next moment something is due
    if (sent_at >= 0 && o_.shut && !shut_done) {
      double from = o_.greet ? (greet_at_ < 0 ? -1 : std::max(sent_at, greet_at_)) : sent_at;
      if (from >= 0 && t >= from + o_.hold) {
        shutdown(fd, SHUT_WR);
        shut_done = true;
      } else if (from >= 0) {
        wake = std::min(wake, from + o_.hold);
      }
    }
    if (rd_eof && sent_at >= 0 && (shut_done || !o_.shut)) break;
    if (pend.empty() && tx_.left() > 0 && o_.chunk > 0) wake = std::min(wake, next_chunk);

    pollfd p{fd, static_cast<short>((rd_eof ? 0 : POLLIN) | (pend.empty() ? 0 : POLLOUT)), 0};
    int ms = static_cast<int>(std::max(0.0, wake - t) * 1000) + 1;
    int n = poll(&p, 1, std::min(ms, 100));
    if (n < 0 && errno != EINTR) { close(fd); return fail(1, std::string("poll: ") + std::strerror(errno)); }
    if (n <= 0) continue;
    if (p.revents & POLLOUT) {
      ssize_t w = send(fd, pend.data(), pend.size(), 0);
      if (w > 0) pend.erase(0, static_cast<size_t>(w));
      else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        close(fd);
        return fail(1, std::string("send: ") + std::strerror(errno));
      }
    }
    if (!rd_eof && (p.revents & (POLLIN | POLLHUP | POLLERR))) {
      ssize_t r = read(fd, buf.data(), buf.size());
      if (r > 0) {
        if (!verify(buf.data(), static_cast<size_t>(r))) { close(fd); return fail(1, error_); }
      } else if (r == 0) {
        rd_eof = true;
        if (greet_at_ < 0) greet_at_ = now();
      } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        close(fd);
        return fail(1, std::string("read: ") + std::strerror(errno));
      }
    }
  }
  close(fd);

  if (o_.mode == "echo" && echo_.left() != 0) return fail(1, "echo ended early");
  if (o_.mode == "source" && source_.left() != 0) return fail(1, "source stream ended early");
  if (o_.mode == "sink") {
    std::string want = sum_line(tx_.size(), tx_hash_);
    if (text_ != want) return fail(1, "sink replied \"" + text_ + "\", expected \"" + want + "\"");
  }
  if (o_.mode == "hold") {
    std::istringstream in(text_);
    std::string hello, name, bye, id;
    in >> hello >> name >> bye;
    std::getline(in, id);
    if (!id.empty() && id[0] == ' ') id.erase(0, 1);
    if (hello != "hello" || bye != "bye" || id != o_.id) return fail(1, "hold replied \"" + text_ + "\"");
    std::string line = name + " " + id + "\n";
    if (write(1, line.data(), line.size()) < 0) return 1;
  }
  std::fflush(stdout);
  return 0;
}

int client_main(int argc, char** argv) {
  ClientOpts o;
  int ch;
  while ((ch = getopt(argc, argv, "n:s:i:xH:gAk:I:m:t:r:c:")) != -1) {
    switch (ch) {
      case 'n': o.n = parse_u64(optarg, "-n"); break;
      case 's': o.seed = parse_u64(optarg, "-s"); break;
      case 'i': o.id = optarg; o.has_id = true; break;
      case 'x': o.shut = true; break;
      case 'H': o.hold = parse_sec(optarg, "-H"); break;
      case 'g': o.greet = true; break;
      case 'A': o.after_eof = true; break;
      case 'k': o.chunk = parse_u64(optarg, "-k"); break;
      case 'I': o.interval = parse_sec(optarg, "-I"); break;
      case 'm': o.mode = optarg; break;
      case 't': o.timeout = parse_sec(optarg, "-t"); break;
      case 'r': o.readyfile = optarg; break;
      case 'c': o.parallel = static_cast<int>(parse_u64(optarg, "-c")); break;
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
  if (o.parallel < 1 || o.parallel > 1000) die("-c: 1 to 1000");
  if (o.parallel == 1) return Client(o).run();

  // N clients at once, one process each; numeric ids and seeds count up.
  bool numeric = o.has_id && !o.id.empty() && o.id.find_first_not_of("0123456789") == std::string::npos;
  std::vector<pid_t> kids;
  for (int k = 0; k < o.parallel; k++) {
    std::fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) die("fork: %s", std::strerror(errno));
    if (pid == 0) {
      ClientOpts mine = o;
      mine.parallel = 1;
      mine.seed = o.seed + static_cast<uint64_t>(k);
      if (o.has_id) mine.id = numeric ? std::to_string(std::stoull(o.id) + static_cast<uint64_t>(k))
                                      : o.id + "." + std::to_string(k);
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
  if (failed) {
    std::fprintf(stderr, "helper client: %d of %d clients failed\n", failed, o.parallel);
    return 1;
  }
  return 0;
}

// ---- small tools ---------------------------------------------------------------

int probe_main(int argc, char** argv) {
  double timeout = 5;
  int ch;
  while ((ch = getopt(argc, argv, "t:")) != -1) {
    if (ch == 't') timeout = parse_sec(optarg, "-t");
    else die("usage: helper probe [-t SEC] HOST PORT");
  }
  if (argc - optind != 2) die("usage: helper probe [-t SEC] HOST PORT");
  double deadline = now() + timeout;
  std::string why;
  int fd = connect_to(argv[optind], argv[optind + 1], deadline, &why);
  if (fd < 0) {
    std::printf("%s\n", why == "refused" || why == "timeout" ? why.c_str() : "error");
    return 1;
  }
  pollfd p{fd, POLLIN, 0};
  const char* what = "open";
  for (;;) {
    double left = deadline - now();
    if (left <= 0) break;
    int n = poll(&p, 1, static_cast<int>(left * 1000) + 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    char c;
    ssize_t r = read(fd, &c, 1);
    if (r > 0) what = "data";
    else if (r == 0) what = "closed";
    else if (errno == EAGAIN || errno == EINTR) continue;
    else what = errno == ECONNRESET ? "reset" : "error";
    break;
  }
  close(fd);
  std::printf("%s\n", what);
  return std::strcmp(what, "closed") == 0 || std::strcmp(what, "reset") == 0 ? 0 : 1;
}

int freeport_main(int argc, char** argv) {
  std::string addr = argc > 1 ? argv[1] : "127.0.0.1";
  int fd = listen_on(addr, 0, 1);
  std::printf("%d\n", local_port(fd));
  close(fd);
  return 0;
}

// True when a TCP socket listens on port, judged from /proc/net/tcp{,6} where
// it exists (so no connection is made that balance would relay), else by a
// connect to addr.
bool listening(int port, const std::string& addr) {
  bool have_proc = false;
  for (const char* path : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream f(path);
    if (!f) continue;
    have_proc = true;
    std::string line;
    std::getline(f, line);  // the header
    while (std::getline(f, line)) {
      std::istringstream in(line);
      std::string slot, local, remote, st;
      in >> slot >> local >> remote >> st;
      size_t colon = local.rfind(':');
      if (colon == std::string::npos || st != "0A") continue;
      if (std::strtol(local.c_str() + colon + 1, nullptr, 16) == port) return true;
    }
  }
  if (have_proc) return false;
  std::string why;
  int fd = connect_to(addr, std::to_string(port), now() + 1, &why);
  if (fd < 0) return false;
  close(fd);
  return true;
}

int wait_listen_main(int argc, char** argv) {
  double timeout = 5;
  std::string addr = "127.0.0.1";
  int ch;
  while ((ch = getopt(argc, argv, "t:b:")) != -1) {
    if (ch == 't') timeout = parse_sec(optarg, "-t");
    else if (ch == 'b') addr = optarg;
    else die("usage: helper wait-listen [-t SEC] [-b ADDR] PORT");
  }
  if (argc - optind != 1) die("usage: helper wait-listen [-t SEC] [-b ADDR] PORT");
  int port = static_cast<int>(parse_u64(argv[optind], "PORT"));
  double deadline = now() + timeout;
  for (;;) {
    if (listening(port, addr)) return 0;
    if (now() >= deadline) break;
    usleep(20 * 1000);
  }
  std::fprintf(stderr, "helper wait-listen: nothing listens on port %d after %g s\n", port, timeout);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  g_tool = g_cmd = "helper";
  signal(SIGPIPE, SIG_IGN);
  if (argc < 2) die("usage: helper echo|sink|source|hold|blackhole|mute|client|probe|freeport|wait-listen ...");
  g_cmd = argv[1];
  std::string cmd = argv[1];
  argc--;
  argv++;  // getopt now sees the sub-command as argv[0]
  if (cmd == "echo") return server_main(Mode::Echo, argc, argv);
  if (cmd == "sink") return server_main(Mode::Sink, argc, argv);
  if (cmd == "source") return server_main(Mode::Source, argc, argv);
  if (cmd == "hold") return server_main(Mode::Hold, argc, argv);
  if (cmd == "blackhole") return server_main(Mode::Blackhole, argc, argv);
  if (cmd == "mute") return server_main(Mode::Mute, argc, argv);
  if (cmd == "client") return client_main(argc, argv);
  if (cmd == "probe") return probe_main(argc, argv);
  if (cmd == "freeport") return freeport_main(argc, argv);
  if (cmd == "wait-listen") return wait_listen_main(argc, argv);
  die("unknown sub-command");
}
