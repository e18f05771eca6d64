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
//   ctltool hold [-n N] [-H SEC] [-a TEXT] [-r FILE] [-t SEC] TARGET
//       Opens N connections (default 100), sends TEXT on each, creates FILE once
//       all are open, holds them SEC seconds (default 2), then prints
//       "opened=O closed=C data=D": how many connected, how many the peer
//       closed meanwhile, how many received some bytes.
//   ctltool http [-t SEC] [-m METHOD] [-d BODY] [-O N] [-R] [-k BYTES -I SEC] [-H]
//                HOST PORT [PATH]
//       A tiny HTTP/1.0 client: prints the status line, then the body (-H: the
//       whole response). -O N adds a header of N bytes; -R sends stdin as the
//       request instead; -k/-I trickle it BYTES at a time every SEC seconds.
//   ctltool fuzz [-n COUNT] [-z SEED] [-t SEC] [-v] PATH
//       Sends COUNT generated command lines (hostile numbers, empty fields,
//       prefixes, unicode, NULs, control bytes, over-long lines), one at a time
//       and in pipelined batches, and checks every reply: whole text lines
//       ended by one empty line, an "error: " reply for every line that cannot
//       parse, no parse error for a line that can, and the session usable to
//       the end. It stays out of group 0 and never sends kill, so the proxy's
//       own channels are untouched. Prints "lines=L replies=R errors=E
//       reconnects=K failures=F"; exit 0 only if every check held.
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
// non-blocking on return.
int connect_target(const Target& t, double deadline, std::string* why) {
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
      if (rc == 0 || errno != EAGAIN || now() >= deadline) break;
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
  if (std::strcmp(end, "timeout") == 0 && want_replies >= 0) return 2;
  return 0;
}

// ---- hold -------------------------------------------------------------------------

int hold_main(int argc, char** argv) {
  size_t count = 100;
  double hold = 2, timeout = 5;
  std::string text, ready;
  int ch;
  while ((ch = getopt(argc, argv, "n:H:a:r:t:")) != -1) {
    switch (ch) {
      case 'n': count = size_t(parse_u64(optarg, "-n")); break;
      case 'H': hold = parse_sec(optarg, "-H"); break;
      case 'a': text = unescape(optarg); break;
      case 'r': ready = optarg; break;
      case 't': timeout = parse_sec(optarg, "-t"); break;
      default: die("usage: ctltool hold [-n N] [-H SEC] [-a TEXT] [-r FILE] [-t SEC] TARGET");
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
    int fd = connect_target(target, connect_deadline, &why);
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

enum class Arg { Channel, Group, Maxc, Weight, Word, ShowFormat };

struct Keyword {
  const char* name;
  std::vector<Arg> required, optional;
};

// A copy of balance's keyword table (control.cpp), the fuzzer's oracle for
// which lines must parse and which must be refused.
const std::vector<Keyword>& keywords() {
  static const std::vector<Keyword> table = {
      {"help", {}, {}},
      {"show", {}, {Arg::ShowFormat}},
      {"group", {Arg::Group}, {}},
      {"rr", {}, {}},
      {"hash", {}, {}},
      {"enable", {Arg::Channel}, {}},
      {"disable", {Arg::Channel}, {}},
      {"create", {Arg::Word, Arg::Word}, {Arg::Maxc, Arg::Weight}},
      {"assign", {Arg::Channel, Arg::Word, Arg::Word}, {}},
      {"maxc", {Arg::Channel, Arg::Maxc}, {}},
      {"weight", {Arg::Channel, Arg::Weight}, {}},
      {"delete", {Arg::Channel}, {}},
      {"reset", {Arg::Channel}, {}},
      {"mrtg-bytes", {Arg::Group, Arg::Channel}, {}},
      {"mrtg-conns", {Arg::Group, Arg::Channel}, {}},
      {"version", {}, {}},
      {"kill", {}, {}},
      {"quit", {}, {}},
  };
  return table;
}

bool number_in(const std::string& w, uint64_t lo, uint64_t hi, uint64_t* value = nullptr) {
  if (w.empty() || w.size() > 19) return false;
  uint64_t v = 0;
  for (char c : w) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + uint64_t(c - '0');
  }
  if (value) *value = v;
  return v >= lo && v <= hi;
}

bool arg_ok(Arg a, const std::string& w) {
  switch (a) {
    case Arg::Channel: return number_in(w, 0, 1000000000);
    case Arg::Group: return number_in(w, 0, 1000000);
    case Arg::Maxc: return number_in(w, 0, 1000000);
    case Arg::Weight: return number_in(w, 1, 1000000);
    case Arg::ShowFormat: return w == "json" || w == "csv" || w == "queue";
    case Arg::Word: return true;
  }
  return true;
}

// What balance must make of a line, by the table above.
struct Verdict {
  bool blank = false;     // no reply at all
  bool must_fail = false; // a parse error is the only right answer
  const Keyword* keyword = nullptr;
  std::vector<std::string> args;
};

Verdict judge(const std::string& raw) {
  Verdict v;
  if (raw.size() > 4096) {
    v.must_fail = true;
    return v;
  }
  std::string line = raw;
  if (!line.empty() && line.back() == '\r') line.pop_back();
  for (unsigned char c : line)
    if ((c < 32 && c != '\t') || c >= 127) {
      v.must_fail = true;
      return v;
    }
  std::vector<std::string> words;
  size_t pos = 0;
  while ((pos = line.find_first_not_of(" \t", pos)) != std::string::npos) {
    size_t end = line.find_first_of(" \t", pos);
    if (end == std::string::npos) end = line.size();
    words.push_back(line.substr(pos, end - pos));
    pos = end;
  }
  if (words.empty()) {
    v.blank = true;
    return v;
  }
  const Keyword* found = nullptr;
  if (words[0] == "?") {
    found = &keywords()[0];
  } else {
    std::vector<const Keyword*> matches;
    for (const Keyword& k : keywords()) {
      if (words[0] == k.name) {
        matches.assign(1, &k);
        break;
      }
      if (std::string(k.name).compare(0, words[0].size(), words[0]) == 0) matches.push_back(&k);
    }
    if (matches.size() != 1) {
      v.must_fail = true;
      return v;
    }
    found = matches[0];
  }
  size_t given = words.size() - 1;
  if (given < found->required.size() || given > found->required.size() + found->optional.size()) {
    v.must_fail = true;
    return v;
  }
  for (size_t i = 0; i < given; ++i) {
    Arg a = i < found->required.size() ? found->required[i] : found->optional[i - found->required.size()];
    if (!arg_ok(a, words[i + 1])) {
      v.must_fail = true;
      return v;
    }
  }
  v.keyword = found;
  v.args.assign(words.begin() + 1, words.end());
  return v;
}

const char* const kHostile[] = {
    "0", "1", "2", "3", "00", "007", "-1", "-0", "+1", "1e3", "0x10", "1.5", "1,5", "4294967295",
    "4294967296", "18446744073709551615", "18446744073709551616", "99999999999999999999",
    "9999999999999999999", "0000000000000000001", "00000000000000000001", "1000000", "1000001",
    "999999", "1000000000", "1000000001", "2147483647", "2147483648", "-2147483648", "65535",
    "65536", "NaN", "inf", "-inf", "nan", "\xd9\xa3", "\xef\xbc\x91", "\xc3\xa9", ("\xe2\x80\x8b" "1"),
    "1\xc2\xa0", "%n%s%x", "$(id)", "json", "csv", "queue", "JSON", "json ", "127.0.0.1", "::1",
    "[::1]", "localhost", "\"", "'", "\\", "{}", "[]", "-", "--", ";", "|", "*", "?", "\x7f",
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
    if (c == '\n') c = 'n';  // one line stays one line
    s += c;
  }
  return s;
}

std::string hostile_word(Rng& rng) {
  size_t pick = rng.below(10);
  if (pick < 6) return kHostile[rng.below(sizeof kHostile / sizeof *kHostile)];
  if (pick < 8) return random_digits(rng);
  if (pick < 9) return random_bytes(rng, 1 + rng.below(12), true);
  return random_bytes(rng, 1 + rng.below(12), false);
}

std::string first_word(Rng& rng) {
  const auto& table = keywords();
  std::string name = table[rng.below(table.size())].name;
  size_t pick = rng.below(100);
  if (pick < 55) return name;
  if (pick < 75) return name.substr(0, 1 + rng.below(name.size()));
  if (pick < 78) return "?";
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

std::string generate_line(Rng& rng) {
  if (rng.chance(3)) return rng.chance(50) ? "" : std::string(rng.below(6), ' ') + (rng.chance(50) ? "\r" : "");
  std::string first = first_word(rng);
  std::string line = rng.chance(10) ? separator(rng) : "";
  line += first;
  size_t arity = 0;
  for (const Keyword& k : keywords())
    if (first == k.name) arity = k.required.size() + rng.below(k.optional.size() + 1);
  if (rng.chance(25)) arity = rng.below(6);
  for (size_t i = 0; i < arity; ++i) line += separator(rng) + hostile_word(rng);
  if (rng.chance(8)) line += separator(rng);
  if (rng.chance(8)) line += "\r";
  size_t pick = rng.below(100);
  if (pick < 3) line.insert(rng.below(line.size() + 1), 1, '\0');
  else if (pick < 5) {
    char control = char(1 + rng.below(31));
    line.insert(rng.below(line.size() + 1), 1, control == '\n' ? '\x0b' : control);
  }
  else if (pick < 7) line.insert(rng.below(line.size() + 1), "\xe2\x82\xac");
  else if (pick < 8) line += std::string(4000 + rng.below(4000), rng.chance(50) ? 'a' : ' ');
  for (char& c : line)
    if (c == '\n') c = ' ';
  return line;
}

// Lines the proxy's own set-up must not see: kill, anything that makes group
// 0 current, and create/assign with a host that would go to the resolver
// (balance resolves inside its loop, so a DNS query would stall the test).
bool unsafe(const Verdict& v) {
  if (!v.keyword) return false;
  std::string name = v.keyword->name;
  if (name == "kill") return true;
  if (name == "group") return number_in(v.args[0], 0, 0);
  if (name == "create" || name == "assign") {
    const std::string& host = name == "create" ? v.args[0] : v.args[1];
    static const char* const safe[] = {"127.0.0.1", "::1", "[::1]", "localhost", "0", "1", "2", "3",
                                       "00", "007", "4294967295", "2147483647", "65535", "65536",
                                       "999999", "1000000", "1000001"};
    for (const char* s : safe)
      if (host == s) return false;
    return true;
  }
  return false;
}

struct Session {
  const Target& target;
  double timeout;
  bool verbose;
  int fd = -1;
  std::string pending;
  size_t replies = 0, errors = 0, reconnects = 0, failures = 0, lines = 0;

  Session(const Target& t, double to, bool v) : target(t), timeout(to), verbose(v) {}

  void fail(const std::string& line, const std::string& what) {
    ++failures;
    if (failures <= 20) {
      std::string shown;
      for (unsigned char c : line.substr(0, 120)) {
        char buf[8];
        if (c >= 32 && c < 127) shown += char(c);
        else std::snprintf(buf, sizeof buf, "\\x%02x", c), shown += buf;
      }
      std::fprintf(stderr, "ctltool fuzz: line \"%s\"%s: %s\n", shown.c_str(),
                   line.size() > 120 ? "..." : "", what.c_str());
    }
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
    if (!send("group 1\n") || !read_reply(&reply)) return false;
    if (reply != "group 1\n") {
      fail("group 1", "unexpected reply \"" + reply + "\"");
      return false;
    }
    return true;
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

  // One reply up to its empty line; false at EOF or the deadline (*eof tells).
  bool read_reply(std::string* reply, bool* eof = nullptr) {
    double deadline = now() + timeout;
    if (eof) *eof = false;
    for (;;) {
      if (pending.compare(0, 1, "\n") == 0) {
        *reply = "";
        pending.erase(0, 1);
        return true;
      }
      size_t end = pending.find("\n\n");
      if (end != std::string::npos) {
        *reply = pending.substr(0, end + 1);
        pending.erase(0, end + 2);
        return true;
      }
      pollfd p{fd, POLLIN, 0};
      int r = poll(&p, 1, ms_until(deadline));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      if (!read_some(fd, &pending)) {
        if (eof) *eof = true;
        size_t end2 = pending.find("\n\n");
        if (end2 == std::string::npos) return false;
      }
    }
  }

  // Checks one reply against the verdict for its line.
  void check(const std::string& line, const Verdict& v, const std::string& reply) {
    ++replies;
    if (reply.empty()) return fail(line, "an empty reply");
    ReplyScan scan = scan_replies(reply + "\n");
    if (scan.malformed) return fail(line, "malformed reply: " + scan.why);
    bool error = reply.compare(0, 7, "error: ") == 0;
    errors += error;
    if (v.must_fail && !error) return fail(line, "accepted a line that cannot parse: \"" + reply + "\"");
    bool parse_error = error && (reply.compare(7, 16, "unknown command ") == 0 ||
                                 reply.compare(7, 10, "ambiguous ") == 0 ||
                                 reply.compare(7, 6, "usage:") == 0 ||
                                 ((reply.compare(7, 9, "channel \"") == 0 ||
                                   reply.compare(7, 7, "group \"") == 0 ||
                                   reply.compare(7, 6, "maxc \"") == 0 ||
                                   reply.compare(7, 8, "weight \"") == 0) &&
                                  reply.find(" must be ") != std::string::npos) ||
                                 reply.compare(7, 10, "show takes") == 0 ||
                                 reply.compare(7, 14, "the line holds") == 0 ||
                                 reply.compare(7, 14, "line too long ") == 0);
    if (!v.must_fail && parse_error) fail(line, "refused a line that parses: \"" + reply + "\"");
  }

  // Sends one line and checks its reply; reconnects after quit, after an
  // over-long line and after anything that went wrong.
  void one(const std::string& line, const Verdict& v) {
    ++lines;
    if (!send(line + "\n")) {
      fail(line, "the socket stopped taking data");
      reconnect();
      return;
    }
    if (v.blank) return;
    std::string reply;
    bool eof = false;
    if (!read_reply(&reply, &eof)) {
      fail(line, eof ? "the connection closed without a reply" : "no reply in time");
      reconnect();
      return;
    }
    check(line, v, reply);
    bool quit = v.keyword && std::string(v.keyword->name) == "quit";
    if (quit) {
      if (reply != "bye\n") fail(line, "quit replied \"" + reply + "\"");
      reconnect();
    } else if (eof || line.size() > 4096) {
      reconnect();  // balance may hang up after an over-long line
    }
  }

  // Sends a batch in one write; expects exactly one reply per non-blank line.
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
      if (verdicts[i].blank) continue;
      std::string reply;
      bool eof = false;
      if (!read_reply(&reply, &eof)) {
        fail(batch_lines[i], "no reply in a batch");
        reconnect();
        return;
      }
      check(batch_lines[i], verdicts[i], reply);
      if (eof) {
        reconnect();
        return;
      }
    }
  }

  void reconnect() {
    ++reconnects;
    open();
  }
};

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
  Session s(target, timeout, verbose);
  if (!s.open()) return 1;
  size_t sent = 0;
  while (sent < count && s.failures < 50) {
    auto next = [&](Verdict* v) {
      for (;;) {
        std::string line = generate_line(rng);
        *v = judge(line);
        if (!unsafe(*v)) return line;
      }
    };
    if (rng.chance(10)) {
      // A pipelined batch; over-long lines stay out, since balance may hang
      // up on them depending on where its reads split the stream.
      std::vector<std::string> batch_lines;
      std::vector<Verdict> verdicts;
      size_t n = 2 + rng.below(40);
      while (batch_lines.size() < n) {
        Verdict v;
        std::string line = next(&v);
        if (line.size() > 1000) continue;
        if (v.keyword && std::string(v.keyword->name) == "quit") continue;
        batch_lines.push_back(line);
        verdicts.push_back(v);
      }
      s.batch(batch_lines, verdicts);
      sent += n;
    } else {
      Verdict v;
      std::string line = next(&v);
      if (verbose) std::fprintf(stderr, "> %s\n", line.c_str());
      s.one(line, v);
      ++sent;
    }
  }
  // The session must still work after all that.
  std::string reply;
  if (s.fd < 0 || !s.send("version\n") || !s.read_reply(&reply) || reply.compare(0, 8, "balance ") != 0)
    s.fail("version", "the session no longer answers (\"" + reply + "\")");
  std::printf("lines=%zu replies=%zu errors=%zu reconnects=%zu failures=%zu\n", s.lines, s.replies,
              s.errors, s.reconnects, s.failures);
  if (s.fd >= 0) close(s.fd);
  return s.failures ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  g_tool = g_cmd = "ctltool";
  signal(SIGPIPE, SIG_IGN);
  if (argc < 2) die("usage: ctltool send|hold|http|fuzz ...");
  std::string cmd = argv[1];
  g_cmd = argv[1];
  --argc;
  ++argv;
  if (cmd == "send") return send_main(argc, argv);
  if (cmd == "hold") return hold_main(argc, argv);
  if (cmd == "http") return http_main(argc, argv);
  if (cmd == "fuzz") return fuzz_main(argc, argv);
  die("unknown sub-command (send, hold, http or fuzz)");
}
