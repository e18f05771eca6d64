// helper_load.cpp: the helper's clients that load or misuse connections:
// `end` (how does a connection end?), `push` (write until the other side
// stops taking), `slowread-client` (read slowly from a fast back-end) and
// `slowloris` / `flood` (many idle connections).

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "helper.hpp"

namespace helper {

using namespace testnet;

// ---- end ------------------------------------------------------------------------------

namespace {

struct EndState {
  uint64_t got = 0, sent = 0;
  double last = 0;  // when the last byte came
  const char* how = "timeout";
};

// One round: write what is due, read what came; false once the connection ended.
bool end_round(int fd, uint64_t send_bytes, double deadline, EndState* st) {
  char buf[kChunk];
  pollfd p{fd, short(POLLIN | (st->sent < send_bytes ? POLLOUT : 0)), 0};
  if (poll(&p, 1, ms_until(deadline, 1.0)) < 0 && errno != EINTR) die("poll: %s", why(errno));
  if (p.revents & POLLOUT) {
    size_t len = size_t(std::min<uint64_t>(send_bytes - st->sent, sizeof buf));
    gen(7, st->sent, buf, len);
    ssize_t n = write(fd, buf, len);
    if (n > 0) {
      st->sent += uint64_t(n);
    } else if (n < 0 && !try_again(errno)) {
      // A reset is reported to whichever call comes first; after it read()
      // only says EOF.
      st->how = errno == ECONNRESET || errno == EPIPE ? "reset" : "error";
      if (*st->how == 'e') std::fprintf(stderr, "helper end: write: %s\n", why(errno));
      return false;
    }
  }
  if (!(p.revents & (POLLIN | POLLHUP | POLLERR))) return true;
  ssize_t n = read(fd, buf, sizeof buf);
  if (n > 0) {
    st->got += uint64_t(n);
    st->last = now();
  } else if (n == 0) {
    st->how = "eof";
    return false;
  } else if (!try_again(errno)) {
    st->how = errno == ECONNRESET ? "reset" : "error";
    if (*st->how == 'e') std::fprintf(stderr, "helper end: read: %s\n", why(errno));
    return false;
  }
  return true;
}

}  // namespace

int end_main(int argc, char** argv) {
  uint64_t send_bytes = 0;
  double timeout = 10;
  bool reset = false;
  int ch;
  while ((ch = getopt(argc, argv, "n:t:x")) != -1) {
    if (ch == 'n') send_bytes = parse_u64(optarg, "-n");
    else if (ch == 't') timeout = parse_sec(optarg, "-t");
    else if (ch == 'x') reset = true;
    else die("usage: helper end [-n BYTES] [-t SEC] [-x] HOST PORT");
  }
  if (argc - optind != 2) die("usage: helper end [-n BYTES] [-t SEC] [-x] HOST PORT");
  double start = now(), deadline = start + timeout;
  Fd fd(connect_or_die(argv[optind], argv[optind + 1], deadline));
  EndState st;
  st.last = now();
  while (now() < deadline) {
    if (reset && st.sent == send_bytes) {
      linger_reset(fd.get());
      st.how = "we-reset";
      break;
    }
    if (!end_round(fd.get(), send_bytes, deadline, &st)) break;
  }
  double t = now();
  std::printf("read=%llu sent=%llu end=%s secs=%.3f quiet=%.3f\n", (unsigned long long)st.got,
              (unsigned long long)st.sent, st.how, t - start, t - st.last);
  if (std::strcmp(st.how, "timeout") == 0) std::fprintf(stderr, "helper end: no end within %g s\n", timeout);
  return std::strcmp(st.how, "timeout") == 0 || std::strcmp(st.how, "error") == 0 ? 2 : 0;
}

// ---- push -----------------------------------------------------------------------------

int push_main(int argc, char** argv) {
  int conns = 1;
  uint64_t bytes = 1ull << 30;
  double stall = 1, hold = 0, timeout = 10;
  std::string ready;
  int ch;
  while ((ch = getopt(argc, argv, "c:n:S:H:r:t:")) != -1) {
    switch (ch) {
      case 'c': conns = parse_int(optarg, "-c", 1, 100000); break;
      case 'n': bytes = parse_u64(optarg, "-n"); break;
      case 'S': stall = parse_sec(optarg, "-S"); break;
      case 'H': hold = parse_sec(optarg, "-H"); break;
      case 'r': ready = optarg; break;
      case 't': timeout = parse_sec(optarg, "-t"); break;
      default: die("usage: helper push [-c N] [-n BYTES] [-S SEC] [-H SEC] [-r FILE] [-t SEC] HOST PORT");
    }
  }
  if (argc - optind != 2) die("usage: helper push [options] HOST PORT");
  raise_fd_limit();
  double start = now(), deadline = start + timeout;
  std::vector<Fd> fds;
  for (int i = 0; i < conns; ++i) fds.emplace_back(connect_or_die(argv[optind], argv[optind + 1], deadline));
  std::vector<uint64_t> sent(fds.size(), 0);
  char buf[kChunk];
  gen(3, 0, buf, sizeof buf);
  double last_progress = now();
  bool stalled = false, broken = false;
  std::vector<pollfd> pfds(fds.size());
  while (now() < deadline && !stalled) {
    bool any = false;
    for (size_t i = 0; i < fds.size(); ++i) {
      pfds[i] = pollfd{fds[i].get(), short(sent[i] < bytes ? POLLOUT : 0), 0};
      any |= sent[i] < bytes;
    }
    if (!any) break;
    if (poll(pfds.data(), pfds.size(), 50) < 0 && errno != EINTR) die("poll: %s", why(errno));
    for (size_t i = 0; i < fds.size(); ++i) {
      if (!(pfds[i].revents & (POLLOUT | POLLERR | POLLHUP))) continue;
      ssize_t n = write(fds[i].get(), buf, size_t(std::min<uint64_t>(bytes - sent[i], sizeof buf)));
      if (n > 0) {
        sent[i] += uint64_t(n);
        last_progress = now();
      } else if (n < 0 && !try_again(errno)) {
        std::fprintf(stderr, "helper push: write on connection %zu: %s\n", i, why(errno));
        broken = true;
        sent[i] = bytes;  // stop writing there
      }
    }
    stalled = now() - last_progress >= stall;
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

// ---- slowread-client ----------------------------------------------------------------------

int slowread_client_main(int argc, char** argv) {
  int conns = 1;
  size_t step = 4096;
  double interval = 0.1, hold = 5;
  uint64_t seed = 1;
  std::string ready;
  int ch;
  while ((ch = getopt(argc, argv, "c:k:i:H:r:s:")) != -1) {
    switch (ch) {
      case 'c': conns = parse_int(optarg, "-c", 1, 100000); break;
      case 'k': step = size_t(parse_range(optarg, "-k", 1, kChunk)); break;
      case 'i': interval = parse_sec(optarg, "-i"); break;
      case 'H': hold = parse_sec(optarg, "-H"); break;
      case 'r': ready = optarg; break;
      case 's': seed = parse_u64(optarg, "-s"); break;
      default: die("usage: helper slowread-client [-c N] [-k BYTES] [-i SEC] [-H SEC] [-r FILE] [-s SEED] HOST PORT");
    }
  }
  if (argc - optind != 2) die("usage: helper slowread-client [options] HOST PORT");
  if (interval < 0.001) die("-i: at least 0.001 s");
  raise_fd_limit();
  double start = now(), end = start + hold;
  std::vector<Fd> fds;
  for (int i = 0; i < conns; ++i) fds.emplace_back(connect_or_die(argv[optind], argv[optind + 1], now() + 5));
  std::vector<uint64_t> got(fds.size(), 0);
  char buf[kChunk];
  bool ready_written = false;
  std::string wrong;          // where the first stream went wrong
  const char* ended = nullptr;  // how the first connection to end ended
  bool open = true;
  while (open && now() < end) {  // until -H, or until every connection has ended
    bool all = true;
    open = false;
    for (size_t i = 0; i < fds.size(); ++i) {
      if (!fds[i].ok()) continue;
      ssize_t n = read(fds[i].get(), buf, step);
      if (n > 0) {
        uint64_t bad = mismatch(seed, got[i], buf, size_t(n));
        if (bad != kNone && wrong.empty())
          wrong = fmt("connection %zu: wrong byte at offset %llu", i, (unsigned long long)(got[i] + bad));
        got[i] += uint64_t(n);
      } else if (n == 0 || !try_again(errno)) {
        if (!ended) ended = n == 0 ? "eof" : errno == ECONNRESET ? "reset" : "error";
        fds[i].reset();
      }
      open |= fds[i].ok();
      all &= got[i] > 0;
    }
    if (all && !ready_written) {
      write_atomic(ready, "ready\n");
      ready_written = true;
    }
    usleep(useconds_t(interval * 1e6));
  }
  uint64_t total = 0;
  for (uint64_t g : got) total += g;
  std::printf("read=%llu wrong=%d ended=%s secs=%.2f\n", (unsigned long long)total, wrong.empty() ? 0 : 1,
              ended ? ended : "no", now() - start);
  if (!wrong.empty()) std::fprintf(stderr, "helper slowread-client: %s\n", wrong.c_str());
  if (ended) std::fprintf(stderr, "helper slowread-client: a connection ended (%s) within %g s\n", ended, hold);
  return !wrong.empty() || ended ? 1 : 0;
}

// ---- slowloris and flood: many idle connections ---------------------------------------------

namespace {

enum class St { Pending, Connecting, Open, Closed, Failed };

struct Idle {
  int fd = -1;
  St st = St::Pending;
};

struct IdleCounts {
  int connected = 0, failed = 0, closed = 0, resets = 0, never = 0;
  std::map<std::string, int> fail_why;
};

void idle_failed(Idle& c, int err, IdleCounts* k) {
  if (c.fd >= 0) close(c.fd);
  c.fd = -1;
  c.st = St::Failed;
  ++k->failed;
  ++k->fail_why[why(err)];
}

// A connecting socket became writable: connected or failed.
void idle_connect_done(Idle& c, IdleCounts* k) {
  if (int err = so_error(c.fd)) return idle_failed(c, err, k);
  c.st = St::Open;
  ++k->connected;
}

// Phase 1: connect them all, at most `batch` handshakes at once, bounded by deadline.
void idle_connect(std::vector<Idle>& conns, const addrinfo* ai, size_t batch, double deadline, IdleCounts* k) {
  size_t next = 0, in_flight = 0;
  std::vector<pollfd> pfds;
  std::vector<size_t> which;
  while ((next < conns.size() || in_flight) && now() < deadline) {
    while (next < conns.size() && in_flight < batch) {
      Idle& c = conns[next++];
      int err = 0;
      c.fd = start_connect(ai, &err);
      if (c.fd < 0 || err) {
        idle_failed(c, err, k);
        continue;
      }
      c.st = St::Connecting;
      ++in_flight;
    }
    pfds.clear();
    which.clear();
    for (size_t i = 0; i < conns.size(); ++i)
      if (conns[i].st == St::Connecting) {
        pfds.push_back(pollfd{conns[i].fd, POLLOUT, 0});
        which.push_back(i);
      }
    if (pfds.empty()) continue;
    if (poll(pfds.data(), pfds.size(), ms_until(deadline, 0.1)) < 0 && errno != EINTR) die("poll: %s", why(errno));
    for (size_t j = 0; j < pfds.size(); ++j) {
      if (!pfds[j].revents) continue;
      --in_flight;
      idle_connect_done(conns[which[j]], k);
    }
  }
  for (auto& c : conns) k->never += c.st == St::Connecting || c.st == St::Pending;
}

// Phase 2: hold them until `until`, counting those the peer closes; pending
// handshakes still count. Returns when the last one closed.
double idle_hold(std::vector<Idle>& conns, double until, bool exit_when_closed, const std::string& status,
                 IdleCounts* k) {
  double all_up = now(), last_close = 0;
  int reported = -1;
  std::vector<pollfd> pfds;
  std::vector<size_t> which;
  char buf[4096];
  while (now() < until) {
    pfds.clear();
    which.clear();
    for (size_t i = 0; i < conns.size(); ++i)
      if (conns[i].st == St::Open || conns[i].st == St::Connecting) {
        pfds.push_back(pollfd{conns[i].fd, short(conns[i].st == St::Open ? POLLIN : POLLOUT), 0});
        which.push_back(i);
      }
    if (k->closed != reported) {
      write_atomic(status, fmt("closed=%d\n", k->closed));
      reported = k->closed;
    }
    if (exit_when_closed && pfds.empty()) break;
    if (poll(pfds.data(), pfds.size(), ms_until(until, 0.2)) < 0 && errno != EINTR) die("poll: %s", why(errno));
    for (size_t j = 0; j < pfds.size(); ++j) {
      if (!pfds[j].revents) continue;
      Idle& c = conns[which[j]];
      if (c.st == St::Connecting) {
        --k->never;
        idle_connect_done(c, k);
        continue;
      }
      ssize_t r = read(c.fd, buf, sizeof buf);
      if (r > 0 || (r < 0 && try_again(errno))) continue;  // data from an idle back-end: ignored
      if (r < 0) ++k->resets;
      close(c.fd);
      c.fd = -1;
      c.st = St::Closed;
      ++k->closed;
      last_close = now() - all_up;
    }
  }
  return last_close;
}

}  // namespace

int idle_main(bool flood, int argc, char** argv) {
  int n = 0;
  double hold = 10, timeout = 20;
  bool exit_when_closed = false;
  std::string ready, status;
  int ch;
  while ((ch = getopt(argc, argv, "n:H:er:t:o:")) != -1) {
    switch (ch) {
      case 'n': n = parse_int(optarg, "-n", 1, 1000000); break;
      case 'H': hold = parse_sec(optarg, "-H"); break;
      case 'e': exit_when_closed = true; break;
      case 'r': ready = optarg; break;
      case 'o': status = optarg; break;
      case 't': timeout = parse_sec(optarg, "-t"); break;
      default: die("usage: helper %s -n N [-H SEC] [-e] [-r FILE] [-o FILE] [-t SEC] HOST PORT", g_cmd);
    }
  }
  if (argc - optind != 2 || n < 1) die("usage: helper %s -n N [-H SEC] [-e] [-r FILE] [-o FILE] HOST PORT", g_cmd);
  raise_fd_limit();
  addrinfo* ai = resolve(argv[optind], argv[optind + 1], false);
  std::vector<Idle> conns(static_cast<size_t>(n));
  IdleCounts k;
  double start = now();
  idle_connect(conns, ai, flood ? size_t(n) : 256, start + timeout, &k);
  freeaddrinfo(ai);
  double connect_secs = now() - start;
  write_atomic(ready, fmt("connected=%d failed=%d pending=%d\n", k.connected, k.failed, k.never));
  double last = idle_hold(conns, now() + hold, exit_when_closed, status, &k);
  for (auto& c : conns)
    if (c.fd >= 0) close(c.fd);
  std::string whys;
  for (auto& [w, count] : k.fail_why) whys += fmt(" [%s: %d]", w.c_str(), count);
  std::printf("connected=%d failed=%d pending=%d closed=%d resets=%d connect_secs=%.2f last=%.2f%s\n", k.connected,
              k.failed, k.never, k.closed, k.resets, connect_secs, last, whys.c_str());
  std::fflush(stdout);
  if (flood) return 0;
  if (k.failed || k.never) {
    std::fprintf(stderr, "helper %s: %d connects failed,%s %d still pending\n", g_cmd, k.failed, whys.c_str(), k.never);
    return 1;
  }
  if (exit_when_closed && k.closed != n) {
    std::fprintf(stderr, "helper %s: only %d of %d connections were closed by the peer\n", g_cmd, k.closed, n);
    return 1;
  }
  return 0;
}

}  // namespace helper
