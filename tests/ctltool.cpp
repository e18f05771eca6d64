// ctltool: hostile and well-behaved clients for balance's control socket
// and its HTTP statistics listener, driven by control.bats and security.bats.
//
//   ctltool send [-t SEC] [-n REPLIES] [-q SEC] [-w SEC] [-i] [-g N] [-l N] [-p N] [-z SEED]
//                [-a TEXT]... [-x] [-c] [-S] [-N] TARGET
//       Sends, in this order: stdin (-i), N pseudo-random bytes (-g), a line of
//       N 'x' bytes and a newline (-l), N 'y' bytes without a newline (-p), and
//       each TEXT (-a; \n \r \t \0 \\ \xHH are decoded; with -w SEC, each TEXT
//       goes out SEC seconds after the one before). It reads all the while
//       and stops at the peer's EOF, after REPLIES replies (-n), once nothing
//       has come for SEC seconds after all was sent (-q SEC), or at the
//       deadline (-t, default 5 s). -x shuts the write side once all is sent.
//       Prints what came back; -S prints "replies=R errors=E end=eof|count|quiet|timeout"
//       instead. -N never reads (a client that does not take its replies).
//       -c: exit 1 unless what came back is whole replies (each one
//       non-empty text lines ended by one empty line).
//   ctltool readers [-n N] [-k BYTES] [-I SEC] [-H SEC] [-p PATH] HOST PORT
//       N slow HTTP readers of PATH (/metrics): each takes at most BYTES
//       (1024) every SEC (0.05) for HOLD seconds (2), then all close.
//       Prints "opened=O read=R ended=E".
//   ctltool hold [-n N] [-H SEC] [-a TEXT] [-r FILE] [-t SEC] [-E] TARGET
//       Opens N connections (default 100), sends TEXT on each, creates FILE once
//       all are open, holds them SEC seconds (default 2), then prints
//       "opened=O closed=C data=D": how many connected, how many the peer
//       closed meanwhile, how many received some bytes. -E: a UNIX
//       socket's full backlog fails a connect instead of being retried.
//   ctltool http [-t SEC] [-m METHOD] [-d BODY] [-O N] [-R] [-k BYTES -I SEC] [-H]
//                HOST PORT [PATH]
//       A tiny HTTP/1.0 client: prints the status line, then the body (-H: the
//       whole response). -O N adds a header of N bytes; -R sends stdin as the
//       request instead; -k/-I trickle it BYTES at a time every SEC seconds.
//   ctltool fuzz [-n COUNT] [-z SEED] [-t SEC] [-v] PATH
//       Sends COUNT command lines (generated: hostile numbers, empty fields,
//       prefixes, unicode, NULs, control bytes, over-long lines; and, among
//       them, lines with known outcomes), one at a time and in pipelined
//       batches, and checks every reply from the outside (see "fuzz" below):
//       whole text lines ended by one empty line, an error for every line
//       with a byte that is not text or over 4096 bytes, the known outcomes,
//       and the session usable to the end. It stays out of group 0 and never
//       sends kill, so the proxy's own channels are untouched. Prints
//       "lines=L replies=R errors=E reconnects=K failures=F"; exit 0 only if
//       every check held.
//
// TARGET is a UNIX socket PATH, or HOST PORT. Every wait is bounded. Exit
// status: 0 as described, 1 failure (or a malformed reply), 2 deadline passed.
// POSIX and the C++17 standard library only.

#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <string>
#include <vector>

#include "testnet.hpp"

namespace {

using namespace testnet;

// Decodes \n \r \t \0 \\ \xHH in a command-line argument.
std::string unescape(const std::string& in) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '\\' || i + 1 == in.size()) {
      out += in[i];
      continue;
    }
    char c = in[++i];
    switch (c) {
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case '0': out += '\0'; break;
      case '\\': out += '\\'; break;
      case 'x':
        if (i + 2 < in.size() && std::isxdigit((unsigned char)in[i + 1]) &&
            std::isxdigit((unsigned char)in[i + 2])) {
          out += char(std::strtoul(in.substr(i + 1, 2).c_str(), nullptr, 16));
          i += 2;
          break;
        }
        [[fallthrough]];
      default:
        out += '\\';
        out += c;
    }
  }
  return out;
}

// splitmix64: deterministic, seedable, good enough to pick test inputs.
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t next() { return splitmix64_next(s); }
  size_t below(size_t n) { return n ? size_t(next() % n) : 0; }
  bool chance(unsigned percent) { return below(100) < percent; }
};

// ---- connecting -----------------------------------------------------------------

struct Target {
  std::string path;        // UNIX socket, or empty
  std::string host, port;  // TCP
  std::string text() const { return path.empty() ? host + " " + port : path; }
};

Target target_from(int argc, char** argv, int first) {
  Target t;
  int n = argc - first;
  if (n == 1) t.path = argv[first];
  else if (n == 2) t.host = argv[first], t.port = argv[first + 1];
  else die("expected a socket PATH or HOST PORT");
  return t;
}

// Connects before the deadline; -1 with *why set on failure. The socket is
// non-blocking on return. retry_full: a UNIX socket's full backlog
// (EAGAIN) is tried again; without it, that is a failure.
int connect_target(const Target& t, double deadline, std::string* why, bool retry_full = true) {
  int fd = -1;
  int rc, err;
  if (!t.path.empty()) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (t.path.size() >= sizeof sa.sun_path) die("%s: path too long", t.path.c_str());
    std::memcpy(sa.sun_path, t.path.data(), t.path.size());
    // A UNIX socket whose backlog is full refuses a non-blocking connect
    // with EAGAIN (nothing is in progress then): try again until the deadline.
    for (;;) {
      fd = socket(AF_UNIX, SOCK_STREAM, 0);
      if (fd < 0) die("socket: %s", std::strerror(errno));
      set_nonblock(fd);
      rc = connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
      if (rc == 0 || errno != EAGAIN || !retry_full || now() >= deadline) break;
      close(fd);
      usleep(5000);
    }
    if (rc != 0 && errno == EAGAIN) {
      *why = "timeout (the listen backlog stayed full)";
      close(fd);
      return -1;
    }
    err = rc == 0 ? 0 : errno;
    if (err == EINPROGRESS) err = wait_connect(fd, deadline);
  } else {
    addrinfo* res = resolve(t.host, t.port, false);
    fd = start_connect(res, &err);
    freeaddrinfo(res);
    if (fd < 0) die("socket: %s", std::strerror(err));
    if (err == 0) err = wait_connect(fd, deadline);
  }
  if (err != 0) {
    *why = err == ETIMEDOUT ? "timeout" : std::strerror(err);
    close(fd);
    return -1;
  }
  return fd;
}

// Reads what is there now; false at EOF or on an error.
bool read_some(int fd, std::string* into) {
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
      into->append(buf, size_t(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    if (n < 0 && errno == EINTR) continue;
    return false;
  }
}

// Writes as much of *pending as the socket takes; false on an error.
bool write_some(int fd, std::string* pending, size_t max = SIZE_MAX) {
  size_t want = std::min(max, pending->size());
  size_t done = 0;
  while (done < want) {
    ssize_t n = write(fd, pending->data() + done, want - done);
    if (n > 0) {
      done += size_t(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    pending->erase(0, done);
    return false;
  }
  pending->erase(0, done);
  return true;
}

// ---- replies ----------------------------------------------------------------------

struct ReplyScan {
  size_t replies = 0, errors = 0;
  bool malformed = false;
  std::string why;
};

// Splits a control-socket transcript into replies (text lines ended by an
// empty line) and reports whether it is made only of whole ones.
ReplyScan scan_replies(const std::string& text) {
  ReplyScan scan;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find("\n\n", pos);
    if (text.compare(pos, 1, "\n") == 0) {
      scan.malformed = true;
      scan.why = "an empty reply (a lone empty line)";
      return scan;
    }
    if (end == std::string::npos) {
      scan.malformed = true;
      scan.why = "the last reply does not end with an empty line";
      return scan;
    }
    std::string reply = text.substr(pos, end + 1 - pos);
    for (unsigned char c : reply)
      if ((c < 32 && c != '\n' && c != '\t') || c == 127) {
        scan.malformed = true;
        scan.why = "a reply holds a control byte";
        return scan;
      }
    ++scan.replies;
    if (reply.compare(0, 7, "error: ") == 0) ++scan.errors;
    pos = end + 2;
  }
  return scan;
}

// ---- send -------------------------------------------------------------------------

int send_main(int argc, char** argv) {
  double timeout = 5, quiet = 0, gap = 0;
  long want_replies = -1;
  bool from_stdin = false, shut = false, check = false, summary = false, deaf = false;
  uint64_t garbage = 0, line = 0, partial = 0, seed = 1;
  std::vector<std::string> texts;
  int ch;
  while ((ch = getopt(argc, argv, "t:n:q:w:ig:l:p:z:a:xcSN")) != -1) {
    switch (ch) {
      case 't': timeout = parse_sec(optarg, "-t"); break;
      case 'n': want_replies = long(parse_u64(optarg, "-n")); break;
      case 'q': quiet = parse_sec(optarg, "-q"); break;
      case 'w': gap = parse_sec(optarg, "-w"); break;
      case 'i': from_stdin = true; break;
      case 'g': garbage = parse_u64(optarg, "-g"); break;
      case 'l': line = parse_u64(optarg, "-l"); break;
      case 'p': partial = parse_u64(optarg, "-p"); break;
      case 'z': seed = parse_u64(optarg, "-z"); break;
      case 'a': texts.push_back(unescape(optarg)); break;
      case 'x': shut = true; break;
      case 'c': check = true; break;
      case 'S': summary = true; break;
      case 'N': deaf = true; break;
      default: die("usage: ctltool send [-t SEC] [-n REPLIES] [-q SEC] [-w SEC] [-i] [-g N] [-l N] [-p N] [-z SEED] [-a TEXT] [-x] [-c] [-S] [-N] TARGET");
    }
  }
  Target target = target_from(argc, argv, optind);
  std::string out;
  if (from_stdin) {
    char buf[65536];
    ssize_t n;
    while ((n = read(STDIN_FILENO, buf, sizeof buf)) > 0) out.append(buf, size_t(n));
  }
  Rng rng(seed);
  for (uint64_t i = 0; i < garbage; ++i) out += char(rng.next() & 0xff);
  if (line) out += std::string(line, 'x') + "\n";
  if (partial) out += std::string(partial, 'y');
  // With -w, each TEXT is a piece of its own, sent GAP seconds after the
  // one before; otherwise everything goes out at once.
  std::vector<std::string> later;
  for (const std::string& t : texts) {
    if (gap > 0 && !(out.empty() && later.empty())) later.push_back(t);
    else out += t;
  }
  size_t next_piece = 0;
  double release = 0;

  double deadline = now() + timeout;
  std::string why;
  int fd = connect_target(target, deadline, &why);
  if (fd < 0) {
    std::fprintf(stderr, "ctltool send: connect %s: %s\n", target.text().c_str(), why.c_str());
    return 1;
  }
  std::string in;
  bool writing = true, shut_done = false;
  const char* end = "timeout";
  double last_data = now();
  for (;;) {
    if (writing && out.empty() && next_piece < later.size()) {
      if (release == 0) release = now() + gap;
      if (now() >= release) {
        out = later[next_piece++];
        release = 0;
      }
    }
    if (writing && out.empty() && next_piece == later.size()) {
      writing = false;
      if (shut && !shut_done) {
        shutdown(fd, SHUT_WR);
        shut_done = true;
      }
    }
    if (want_replies >= 0 && long(scan_replies(in).replies) >= want_replies &&
        !scan_replies(in).malformed) {
      end = "count";
      break;
    }
    if (now() >= deadline) break;
    if (quiet > 0 && !writing && now() >= last_data + quiet) {
      end = "quiet";
      break;
    }
    if (deaf && !writing) {
      // Never reads: wait for the deadline, or for the peer to hang up.
      pollfd h{fd, 0, 0};
      if (poll(&h, 1, ms_until(deadline)) > 0 && (h.revents & (POLLHUP | POLLERR))) {
        end = "eof";
        break;
      }
      continue;
    }
    pollfd p{fd, short((deaf ? 0 : POLLIN) | (writing && !out.empty() ? POLLOUT : 0)), 0};
    int wait = ms_until(deadline);
    if (writing && out.empty()) wait = std::min(wait, ms_until(release));
    if (quiet > 0 && !writing) wait = std::min(wait, ms_until(last_data + quiet));
    int r = poll(&p, 1, wait);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    if (writing && (p.revents & POLLOUT) && !write_some(fd, &out)) {
      writing = false;  // the peer hung up; read what it said
      out.clear();
      later.clear();
      if (deaf) {
        end = "eof";
        break;
      }
    }
    if (deaf && (p.revents & (POLLHUP | POLLERR))) {
      end = "eof";
      break;
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      size_t before = in.size();
      bool open = read_some(fd, &in);
      if (in.size() != before) last_data = now();
      if (!open) {
        end = "eof";
        break;
      }
    }
    if (writing) last_data = now();
  }
  close(fd);
  ReplyScan scan = scan_replies(in);
  if (summary)
    std::printf("replies=%zu errors=%zu end=%s\n", scan.replies, scan.errors, end);
  else
    std::fwrite(in.data(), 1, in.size(), stdout);
  std::fflush(stdout);
  if (check && !in.empty() && scan.malformed) {
    std::fprintf(stderr, "ctltool send: malformed: %s\n", scan.why.c_str());
    return 1;
  }
  if (std::strcmp(end, "timeout") == 0 && want_replies >= 0) {
    std::fprintf(stderr, "ctltool send: %ld replies wanted from %s, %zu came within %g s\n", want_replies,
                 target.text().c_str(), scan.replies, timeout);
    return 2;
  }
  return 0;
}

// ---- hold -------------------------------------------------------------------------

int hold_main(int argc, char** argv) {
  size_t count = 100;
  double hold = 2, timeout = 5;
  std::string text, ready;
  bool retry_full = true;
  int ch;
  while ((ch = getopt(argc, argv, "n:H:a:r:t:E")) != -1) {
    switch (ch) {
      case 'n': count = size_t(parse_u64(optarg, "-n")); break;
      case 'H': hold = parse_sec(optarg, "-H"); break;
      case 'a': text = unescape(optarg); break;
      case 'r': ready = optarg; break;
      case 't': timeout = parse_sec(optarg, "-t"); break;
      case 'E': retry_full = false; break;
      default: die("usage: ctltool hold [-n N] [-H SEC] [-a TEXT] [-r FILE] [-t SEC] [-E] TARGET");
    }
  }
  Target target = target_from(argc, argv, optind);
  struct Conn {
    int fd;
    std::string out;
    bool closed = false, data = false;
  };
  std::vector<Conn> conns;
  double connect_deadline = now() + timeout;
  for (size_t i = 0; i < count; ++i) {
    std::string why;
    int fd = connect_target(target, connect_deadline, &why, retry_full);
    if (fd < 0) {
      std::fprintf(stderr, "ctltool hold: connection %zu: %s\n", i, why.c_str());
      continue;
    }
    conns.push_back(Conn{fd, text});
    write_some(fd, &conns.back().out);
  }
  if (!ready.empty()) {
    FILE* f = std::fopen(ready.c_str(), "w");
    if (f) std::fclose(f);
  }
  double until = now() + hold;
  std::string sink;
  while (now() < until) {
    std::vector<pollfd> fds;
    std::vector<size_t> index;
    for (size_t i = 0; i < conns.size(); ++i) {
      if (conns[i].closed) continue;
      fds.push_back(pollfd{conns[i].fd, short(POLLIN | (conns[i].out.empty() ? 0 : POLLOUT)), 0});
      index.push_back(i);
    }
    if (fds.empty()) break;
    int r = poll(fds.data(), fds.size(), ms_until(until));
    if (r <= 0) continue;
    for (size_t k = 0; k < fds.size(); ++k) {
      Conn& c = conns[index[k]];
      if (fds[k].revents & POLLOUT) write_some(c.fd, &c.out);
      if (fds[k].revents & (POLLIN | POLLHUP | POLLERR)) {
        sink.clear();
        bool open = read_some(c.fd, &sink);
        if (!sink.empty()) c.data = true;
        if (!open) c.closed = true;
      }
    }
  }
  size_t closed = 0, data = 0;
  for (Conn& c : conns) {
    closed += c.closed;
    data += c.data;
    close(c.fd);
  }
  std::printf("opened=%zu closed=%zu data=%zu\n", conns.size(), closed, data);
  return 0;
}

// ---- http -------------------------------------------------------------------------

int http_main(int argc, char** argv) {
  double timeout = 5, interval = 0;
  std::string method = "GET", body;
  uint64_t pad = 0, chunk = 0;
  bool raw = false, headers = false, has_body = false;
  int ch;
  while ((ch = getopt(argc, argv, "t:m:d:O:Rk:I:H")) != -1) {
    switch (ch) {
      case 't': timeout = parse_sec(optarg, "-t"); break;
      case 'm': method = optarg; break;
      case 'd': body = optarg; has_body = true; break;
      case 'O': pad = parse_u64(optarg, "-O"); break;
      case 'R': raw = true; break;
      case 'k': chunk = parse_u64(optarg, "-k"); break;
      case 'I': interval = parse_sec(optarg, "-I"); break;
      case 'H': headers = true; break;
      default: die("usage: ctltool http [-t SEC] [-m METHOD] [-d BODY] [-O N] [-R] [-k BYTES -I SEC] [-H] HOST PORT [PATH]");
    }
  }
  int n = argc - optind;
  if (n < 2 || n > 3 || (n == 2 && !raw)) die("expected HOST PORT PATH (or -R HOST PORT)");
  Target target{"", argv[optind], argv[optind + 1]};
  std::string out;
  if (raw) {
    char buf[65536];
    ssize_t r;
    while ((r = read(STDIN_FILENO, buf, sizeof buf)) > 0) out.append(buf, size_t(r));
  } else {
    out = method + " " + argv[optind + 2] + " HTTP/1.0\r\nHost: " + target.host + "\r\n";
    if (pad) out += "X-Pad: " + std::string(pad, 'p') + "\r\n";
    if (has_body) out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    out += "\r\n" + body;
  }
  double deadline = now() + timeout;
  std::string why;
  int fd = connect_target(target, deadline, &why);
  if (fd < 0) {
    std::fprintf(stderr, "ctltool http: connect %s: %s\n", target.text().c_str(), why.c_str());
    return 1;
  }
  std::string in;
  bool writing = true, eof = false;
  double next_chunk = now();
  while (now() < deadline) {
    bool may_write = writing && !out.empty() && (chunk == 0 || now() >= next_chunk);
    pollfd p{fd, short(POLLIN | (may_write ? POLLOUT : 0)), 0};
    int wait = ms_until(deadline);
    if (writing && !out.empty() && chunk && !may_write) wait = std::min(wait, ms_until(next_chunk));
    int r = poll(&p, 1, wait);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    if (may_write && (p.revents & POLLOUT)) {
      if (!write_some(fd, &out, chunk ? chunk : SIZE_MAX)) writing = false;
      next_chunk = now() + interval;
      if (out.empty()) writing = false;
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      if (!read_some(fd, &in)) {
        eof = true;
        break;
      }
      writing = false;  // the server answered: the rest of the request is moot
    }
  }
  close(fd);
  if (headers) {
    std::fwrite(in.data(), 1, in.size(), stdout);
  } else {
    size_t eol = in.find("\r\n");
    size_t head_end = in.find("\r\n\r\n");
    std::printf("%s\n", in.substr(0, eol).c_str());
    if (head_end != std::string::npos) {
      std::string rest = in.substr(head_end + 4);
      std::fwrite(rest.data(), 1, rest.size(), stdout);
    }
  }
  std::fflush(stdout);
  if (!eof) {
    std::fprintf(stderr, "ctltool http: no complete response within %.1f s (%zu bytes)\n", timeout,
                 in.size());
    return 2;
  }
  return in.empty() ? 1 : 0;
}

// ---- fuzz -------------------------------------------------------------------------
//
// The fuzzer judges balance from the outside only: it does not know the
// parser (a copy of its keyword table would agree with it by construction
// and drift with it). What any correct balance must do, per SPEC §4:
//   - every reply is well framed: non-empty lines of printable text ended
//     by exactly one empty line, one reply per command line, and "error: "
//     only ever as the start of a reply;
//   - a line holding a byte that is not printable ASCII or a tab (one
//     trailing CR aside), or longer than 4096 bytes, gets an error;
//   - a handful of lines with known outcomes (kKnown) get them, wherever
//     they fall among the generated ones;
//   - the connection stays open unless the line may be quit (or was over
//     long), and the session answers to the end.
// Generated lines are built from the command words of SPEC §4 and hostile
// arguments; the few that could touch the proxy's own channels (kill, group
// 0, a host name for the resolver) are kept out by their first letter.

// The command words of SPEC §4, as raw material (kill is never sent).
const char* const kWords[] = {"help",    "?",       "show",   "group", "rr",     "hash",
                              "enable",  "disable", "create", "assign", "maxc",  "weight",
                              "delete",  "reset",   "mrtg-bytes", "mrtg-conns", "version", "quit"};

const char* const kHostile[] = {
    "0", "1", "2", "3", "00", "007", "-1", "-0", "+1", "1e3", "0x10", "1.5", "1,5", "4294967295",
    "4294967296", "18446744073709551615", "18446744073709551616", "99999999999999999999",
    "9999999999999999999", "0000000000000000001", "00000000000000000001", "1000000", "1000001",
    "999999", "1000000000", "1000000001", "2147483647", "2147483648", "-2147483648", "65535",
    "65536", "NaN", "inf", "-inf", "nan", "\xd9\xa3", "\xef\xbc\x91", "\xc3\xa9", ("\xe2\x80\x8b" "1"),
    "1\xc2\xa0", "%n%s%x", "$(id)", "json", "csv", "queue", "JSON", "json ", "127.0.0.1", "::1",
    "[::1]", "localhost", "\"", "'", "\\", "{}", "[]", "-", "--", ";", "|", "*", "?", "\x7f",
};

// Arguments that never send balance to the resolver (for create / assign).
const char* const kLocal[] = {"127.0.0.1", "::1", "[::1]", "localhost", "0", "1", "2", "3", "00", "007",
                              "4294967295", "2147483647", "65535", "65536", "999999", "1000000", "1000001"};

enum class Want { Ok, Error, Any };

// Lines whose outcome any correct balance gives; `starts` is what the
// reply's first line must start with (nothing to check when empty).
struct Known {
  const char* line;
  Want want;
  const char* starts;
};

const Known kKnown[] = {
    {"version", Want::Ok, "This is balance "},
    {"show", Want::Ok, "GRP "},
    {"help", Want::Ok, ""},
    {"show queue", Want::Ok, ""},
    {"group 1", Want::Ok, ""},
    {"bogus", Want::Error, ""},
    {"maxc 0 -1", Want::Error, ""},
    {"maxc 0 99999999999999999999", Want::Error, ""},
    {"weight 0 0", Want::Error, ""},
    {"enable", Want::Error, ""},
    {"create", Want::Error, ""},
    {"group -1", Want::Error, ""},
    {"show\x01", Want::Error, ""},
    {"vers\xc3\xa9ion", Want::Error, ""},
};

std::string random_digits(Rng& rng) {
  std::string s;
  size_t n = 1 + rng.below(30);
  for (size_t i = 0; i < n; ++i) s += char('0' + rng.below(10));
  return s;
}

std::string random_bytes(Rng& rng, size_t n, bool printable) {
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    char c = printable ? char(33 + rng.below(94)) : char(rng.next() & 0xff);
    s += c == '\n' ? 'n' : c;  // one line stays one line
  }
  return s;
}

std::string hostile_word(Rng& rng) {
  size_t pick = rng.below(10);
  if (pick < 6) return kHostile[rng.below(std::size(kHostile))];
  if (pick < 8) return random_digits(rng);
  return random_bytes(rng, 1 + rng.below(12), pick < 9);
}

std::string first_word(Rng& rng) {
  std::string name = kWords[rng.below(std::size(kWords))];
  size_t pick = rng.below(100);
  if (pick < 55) return name;
  if (pick < 75) return name.substr(0, 1 + rng.below(name.size()));
  if (pick < 84) {
    for (char& c : name) c = char(std::toupper((unsigned char)c));
    return name;
  }
  if (pick < 90) return name + hostile_word(rng);
  return hostile_word(rng);
}

std::string separator(Rng& rng) {
  size_t pick = rng.below(20);
  if (pick < 14) return " ";
  if (pick < 16) return "  ";
  if (pick < 18) return "\t";
  if (pick < 19) return " \t ";
  return std::string(1 + rng.below(40), ' ');
}

// Inserts a NUL, a control byte, a UTF-8 sequence or a long run, sometimes.
void spoil(Rng& rng, std::string* line) {
  size_t pick = rng.below(100);
  size_t at = rng.below(line->size() + 1);
  if (pick < 3) line->insert(at, 1, '\0');
  else if (pick < 5) line->insert(at, 1, char(1 + rng.below(31)));
  else if (pick < 7) line->insert(at, "\xe2\x82\xac");
  else if (pick < 8) *line += std::string(4000 + rng.below(4000), rng.chance(50) ? 'a' : ' ');
  for (char& c : *line)
    if (c == '\n') c = '\x0b';
}

std::string generate_line(Rng& rng) {
  if (rng.chance(3)) return rng.chance(50) ? "" : std::string(rng.below(6), ' ') + (rng.chance(50) ? "\r" : "");
  std::string line = rng.chance(10) ? separator(rng) : "";
  line += first_word(rng);
  size_t arity = rng.below(rng.chance(25) ? 6 : 4);
  for (size_t i = 0; i < arity; ++i) line += separator(rng) + hostile_word(rng);
  if (rng.chance(8)) line += separator(rng);
  if (rng.chance(8)) line += "\r";
  spoil(rng, &line);
  return line;
}

// The words of a line, split at blanks (what a reader of SPEC §4 expects).
std::vector<std::string> words_of(const std::string& line) {
  std::vector<std::string> words;
  size_t pos = 0;
  while ((pos = line.find_first_not_of(" \t", pos)) != std::string::npos) {
    size_t end = line.find_first_of(" \t", pos);
    if (end == std::string::npos) end = line.size();
    words.push_back(line.substr(pos, end - pos));
    pos = end;
  }
  return words;
}

char first_letter(const std::string& line) {
  std::vector<std::string> w = words_of(line);
  return w.empty() ? '\0' : char(std::tolower((unsigned char)w[0][0]));
}

// What the outside view knows of a line before sending it.
struct Verdict {
  bool blank = false;       // nothing but blanks: no reply, or one well-framed reply
  Want want = Want::Any;
  const char* starts = "";  // known lines: how the reply starts
  bool may_close = false;   // quit (or a prefix of it), or an over-long line
  bool regroup = false;     // may have left group 1: "group 1" follows it
};

Verdict judge(const std::string& raw) {
  Verdict v;
  std::string line = raw;
  if (!line.empty() && line.back() == '\r') line.pop_back();  // CRLF is a line end
  bool bad_byte = std::any_of(line.begin(), line.end(), [](char ch) {
    unsigned char c = (unsigned char)ch;
    return (c < 32 && c != '\t') || c >= 127;
  });
  v.may_close = raw.size() > 4096 || first_letter(line) == 'q';
  if (raw.size() > 4096 || bad_byte) {
    v.want = Want::Error;
    return v;
  }
  v.blank = words_of(line).empty();
  v.regroup = first_letter(line) == 'g';
  return v;
}

// Lines kept out: anything that may be kill, and create / assign (or any
// prefix-mate) with an argument the resolver would be asked about (balance
// resolves in its loop; a DNS query would stall the test).
bool unsafe(const std::string& line) {
  char first = first_letter(line);
  if (first == 'k') return true;
  if (first != 'c' && first != 'a') return false;
  std::vector<std::string> w = words_of(line);
  for (size_t i = 1; i < w.size(); ++i)
    if (std::none_of(std::begin(kLocal), std::end(kLocal), [&](const char* s) { return w[i] == s; })) return true;
  return false;
}

// A line for the control socket, shown with escapes.
std::string shown(const std::string& line) {
  std::string out;
  for (unsigned char c : line.substr(0, 120)) {
    if (c >= 32 && c < 127) out += char(c);
    else out += fmt("\\x%02x", c);
  }
  return out + (line.size() > 120 ? "..." : "");
}

struct Session {
  const Target& target;
  double timeout;
  int fd = -1;
  std::string pending;
  size_t replies = 0, errors = 0, reconnects = 0, failures = 0, lines = 0;

  Session(const Target& t, double to) : target(t), timeout(to) {}
  ~Session() {
    if (fd >= 0) close(fd);
  }

  void fail(const std::string& line, const std::string& what) {
    if (++failures <= 20) std::fprintf(stderr, "ctltool fuzz: line \"%s\": %s\n", shown(line).c_str(), what.c_str());
  }

  bool open() {
    if (fd >= 0) close(fd);
    pending.clear();
    std::string why;
    fd = connect_target(target, now() + timeout, &why);
    if (fd < 0) {
      fail("(connect)", why);
      return false;
    }
    // Stay out of group 0: the proxy's own channels live there.
    std::string reply;
    bool eof = false;
    if (!send("group 1\n") || !read_reply(&reply, &eof) || reply.compare(0, 7, "error: ") == 0) {
      fail("group 1", "the session does not start: \"" + reply + "\"");
      close(fd);
      fd = -1;
      return false;
    }
    return true;
  }

  bool regroup() {
    Verdict v = judge("group 1");
    v.regroup = false;
    return exchange("group 1", v, Want::Ok);
  }

  // Opens the session again; fd stays -1 when that fails (the end).
  void reconnect() {
    ++reconnects;
    open();
  }

  bool send(std::string data) {
    double deadline = now() + timeout;
    while (!data.empty()) {
      if (!write_some(fd, &data)) return false;
      if (data.empty()) break;
      pollfd p{fd, POLLOUT, 0};
      if (poll(&p, 1, ms_until(deadline)) <= 0) return false;
    }
    return true;
  }

  // One reply up to its empty line; false at EOF or the deadline (*eof
  // tells). An empty line where a reply should start is returned as "".
  bool read_reply(std::string* reply, bool* eof) {
    double deadline = now() + timeout;
    *eof = false;
    for (;;) {
      size_t end = pending.compare(0, 1, "\n") == 0 ? 0 : pending.find("\n\n");
      if (end != std::string::npos) {
        *reply = end == 0 ? "" : pending.substr(0, end + 1);
        pending.erase(0, end == 0 ? 1 : end + 2);
        return true;
      }
      if (*eof) return false;
      pollfd p{fd, POLLIN, 0};
      int r = poll(&p, 1, ms_until(deadline));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      if (!read_some(fd, &pending)) *eof = true;
    }
  }

  // The checks of one reply to line.
  void check(const std::string& line, const Verdict& v, const std::string& reply) {
    ++replies;
    if (reply.empty()) return fail(line, "an empty reply (a lone empty line)");
    ReplyScan scan = scan_replies(reply + "\n");
    if (scan.malformed) return fail(line, "malformed reply: " + scan.why);
    if (reply.find("\nerror: ") != std::string::npos)
      return fail(line, "\"error: \" inside a reply: \"" + reply + "\"");
    bool error = reply.compare(0, 7, "error: ") == 0;
    errors += error;
    if (v.want == Want::Error && !error) return fail(line, "no error for a line that must get one: \"" + reply + "\"");
    if (v.want == Want::Ok && error) return fail(line, "an error for a line that must work: \"" + reply + "\"");
    if (reply.compare(0, std::strlen(v.starts), v.starts) != 0)
      fail(line, std::string("the reply does not start with \"") + v.starts + "\": \"" + reply + "\"");
  }

  // Sends line and checks its reply; false when the session had to be
  // opened again.
  bool exchange(const std::string& line, Verdict v, Want want = Want::Any) {
    if (want != Want::Any) v.want = want;
    ++lines;
    if (!send(line + "\n")) {
      fail(line, "the socket stopped taking data");
      reconnect();
      return false;
    }
    if (v.blank) return sync(line);
    std::string reply;
    bool eof = false;
    if (!read_reply(&reply, &eof)) {
      if (!(eof && v.may_close)) fail(line, eof ? "the connection closed without a reply" : "no reply in time");
      reconnect();
      return false;
    }
    check(line, v, reply);
    if (eof && !v.may_close) fail(line, "the connection closed after the reply");
    if (v.may_close) return closed_after(line, eof, reply.compare(0, 7, "error: ") == 0);
    if (eof) {
      reconnect();
      return false;
    }
    if (v.regroup) return regroup();
    return true;
  }

  // After a blank line: at most one (well framed) reply before that to a
  // version sent behind it.
  bool sync(const std::string& line) {
    if (!send("version\n")) return false;
    ++lines;
    std::string reply;
    bool eof = false;
    for (int seen = 0; read_reply(&reply, &eof); ++seen) {
      if (reply.compare(0, 16, "This is balance ") == 0) return true;
      if (seen == 1) break;
      check(line, Verdict(), reply);
    }
    fail(line, "no version reply behind a blank line");
    reconnect();
    return false;
  }

  // After a line that may close the session: an error reply leaves it
  // open (a command that failed did nothing), unless the line was over
  // long; a quit that worked closes it. Either way the session is opened
  // again and must work.
  bool closed_after(const std::string& line, bool eof, bool error) {
    bool overlong = line.size() > 4096;
    if (error && !overlong) {
      if (eof) fail(line, "the connection closed after an error reply");
      if (!eof) return true;
    } else if (!error && !eof) {
      std::string rest;
      if (!read_reply(&rest, &eof) && !eof) fail(line, "quit replied but left the connection open");
      else if (!eof) fail(line, "a second reply after quit: \"" + rest + "\"");
    }
    reconnect();
    return false;
  }

  // Sends a batch in one write; expects exactly one reply per line.
  void batch(const std::vector<std::string>& batch_lines, const std::vector<Verdict>& verdicts) {
    std::string data;
    for (const std::string& l : batch_lines) data += l + "\n";
    lines += batch_lines.size();
    if (!send(data)) {
      fail("(batch)", "the socket stopped taking data");
      reconnect();
      return;
    }
    for (size_t i = 0; i < batch_lines.size(); ++i) {
      std::string reply;
      bool eof = false;
      if (!read_reply(&reply, &eof)) {
        fail(batch_lines[i], eof ? "the connection closed in a batch" : "no reply in a batch");
        reconnect();
        return;
      }
      check(batch_lines[i], verdicts[i], reply);
    }
  }
};

// The next line: generated (and safe), or now and then a known one.
std::string next_line(Rng& rng, Verdict* v) {
  if (rng.chance(3)) {
    const Known& k = kKnown[rng.below(std::size(kKnown))];
    *v = judge(k.line);
    v->want = k.want;
    v->starts = k.starts;
    return k.line;
  }
  for (;;) {
    std::string line = generate_line(rng);
    if (unsafe(line)) continue;
    *v = judge(line);
    return line;
  }
}

// A pipelined batch: no blank, over-long, closing or group-changing lines,
// so that each line gets exactly one reply on the same session in group 1.
void send_batch(Rng& rng, Session& s) {
  std::vector<std::string> batch_lines;
  std::vector<Verdict> verdicts;
  size_t n = 2 + rng.below(40);
  while (batch_lines.size() < n) {
    Verdict v;
    std::string line = next_line(rng, &v);
    if (v.blank || v.may_close || v.regroup || line.size() > 1000) continue;
    batch_lines.push_back(line);
    verdicts.push_back(v);
  }
  s.batch(batch_lines, verdicts);
}

int fuzz_main(int argc, char** argv) {
  size_t count = 5000;
  uint64_t seed = 1;
  double timeout = 5;
  bool verbose = false;
  int ch;
  while ((ch = getopt(argc, argv, "n:z:t:v")) != -1) {
    switch (ch) {
      case 'n': count = size_t(parse_u64(optarg, "-n")); break;
      case 'z': seed = parse_u64(optarg, "-z"); break;
      case 't': timeout = parse_sec(optarg, "-t"); break;
      case 'v': verbose = true; break;
      default: die("usage: ctltool fuzz [-n COUNT] [-z SEED] [-t SEC] [-v] PATH");
    }
  }
  Target target = target_from(argc, argv, optind);
  if (target.path.empty()) die("fuzz needs a UNIX socket PATH");
  Rng rng(seed);
  Session s(target, timeout);
  if (!s.open()) return 1;
  while (s.fd >= 0 && s.lines < count && s.failures < 50) {
    if (rng.chance(10)) {
      send_batch(rng, s);
      continue;
    }
    Verdict v;
    std::string line = next_line(rng, &v);
    if (verbose) std::fprintf(stderr, "> %s\n", shown(line).c_str());
    s.exchange(line, v);
  }
  // The session must still work after all that.
  if (s.fd < 0 || !s.exchange("version", judge("version"), Want::Ok)) s.fail("version", "the session no longer answers");
  std::printf("lines=%zu replies=%zu errors=%zu reconnects=%zu failures=%zu\n", s.lines, s.replies, s.errors,
              s.reconnects, s.failures);
  return s.failures ? 1 : 0;
}

}  // namespace

// ---- readers ------------------------------------------------------------------------

// N slow HTTP readers: each asks for PATH, then takes at most BYTES every
// SEC for HOLD seconds, then all close. Prints "opened=O read=R ended=E"
// (E: connections the server closed meanwhile).
int readers_main(int argc, char** argv) {
  size_t count = 16, chunk = 1024;
  double interval = 0.05, hold = 2;
  std::string path = "/metrics";
  int ch;
  while ((ch = getopt(argc, argv, "n:k:I:H:p:")) != -1) {
    switch (ch) {
      case 'n': count = size_t(parse_u64(optarg, "-n")); break;
      case 'k': chunk = size_t(parse_u64(optarg, "-k")); break;
      case 'I': interval = parse_sec(optarg, "-I"); break;
      case 'H': hold = parse_sec(optarg, "-H"); break;
      case 'p': path = optarg; break;
      default: die("usage: ctltool readers [-n N] [-k BYTES] [-I SEC] [-H SEC] [-p PATH] HOST PORT");
    }
  }
  Target target = target_from(argc, argv, optind);
  std::vector<int> fds;
  for (size_t i = 0; i < count; ++i) {
    std::string why;
    int fd = connect_target(target, now() + 5, &why);
    if (fd < 0) die("connection %zu: %s", i, why.c_str());
    int small = 4096;  // a slow reader's own buffer stays small too
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    std::string request = "GET " + path + " HTTP/1.0\r\n\r\n";
    if (!write_some(fd, &request) || !request.empty()) die("connection %zu: request not sent", i);
    fds.push_back(fd);
  }
  uint64_t total = 0;
  size_t ended = 0;
  std::vector<bool> done(fds.size(), false);
  std::vector<char> buffer(chunk);
  for (double until = now() + hold; now() < until;) {
    for (size_t i = 0; i < fds.size(); ++i) {
      if (done[i]) continue;
      ssize_t n = recv(fds[i], buffer.data(), chunk, MSG_DONTWAIT);
      if (n > 0) total += uint64_t(n);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        done[i] = true;
        ++ended;
      }
    }
    usleep(useconds_t(interval * 1e6));
  }
  for (int fd : fds) close(fd);
  std::printf("opened=%zu read=%llu ended=%zu\n", fds.size(), (unsigned long long)total, ended);
  return 0;
}

int main(int argc, char** argv) {
  g_tool = g_cmd = "ctltool";
  signal(SIGPIPE, SIG_IGN);
  if (argc < 2) die("usage: ctltool send|hold|http|fuzz|readers ...");
  std::string cmd = argv[1];
  g_cmd = argv[1];
  --argc;
  ++argv;
  if (cmd == "send") return send_main(argc, argv);
  if (cmd == "hold") return hold_main(argc, argv);
  if (cmd == "http") return http_main(argc, argv);
  if (cmd == "fuzz") return fuzz_main(argc, argv);
  if (cmd == "readers") return readers_main(argc, argv);
  die("unknown sub-command (send, hold, http, fuzz or readers)");
}
