// farm: scheduling benchmark for balance (SPEC §7, issue 7).
//
// A simulated farm of unequal build hosts, each a real TCP server on
// loopback, and a batch of "compile jobs" run through a proxy.
//
//   farm hosts [-H 4x3,2x2,2x1] [-u MS]
//       Starts one TCP server per host on 127.0.0.1 (ephemeral ports) plus a
//       control port, prints one line "CTL PA PB PC ..." on stdout and serves
//       until SIGTERM/SIGINT.  Host "SxV" has S slots of speed V.
//
//       A job is one connection: the client sends "JOB <id> <work>\n"; the
//       host "compiles" it and answers "DONE <id> <work>\n", then closes.
//       Compiling is a fluid (processor-sharing) simulation: a job needs
//       work*MS milliseconds of one speed-1 CPU; while a host has n jobs in
//       progress each progresses at speed * min(1, slots/n), i.e. a host
//       given more jobs than slots slows all of them down proportionally.
//       Every host records the highest number of connections it had open at
//       once (max concurrency) and the jobs it finished.
//
//       Control port, one command a line: RESET (zero the counters) -> "OK";
//       STATS -> "UNIT <ms>" then "HOST <i> <slots> <speed> <maxconc> <jobs>
//       <open>" lines, then "END".
//
//   farm run -c CTL -p PORT [-k K] [-n JOBS] [-s SEED] [-o desc|random]
//            [-l LABEL] [-t SEC]
//       Runs the seeded batch of JOBS jobs through 127.0.0.1:PORT with K
//       concurrent clients (each takes the next job when its previous one is
//       finished), then prints one table row: makespan, the ideal makespan
//       of a perfect scheduler (fastest free slot, FIFO wait) computed by an
//       in-process simulation of the same job list and clients, their
//       ratio, max concurrency per host vs slots, failed jobs.
//
//   farm header    prints the table header matching `farm run` rows.
//   farm freeport [N]   prints N distinct free TCP ports (tests/testnet.hpp).
//   farm wait PORT [SEC [PID]]   waits until 127.0.0.1:PORT listens (SEC, 5),
//                  on a socket of process PID, failing at once when PID is gone.
//   farm ideal [-H ..] [-u MS] [-k K] [-n JOBS] [-s SEED] [-o ORDER]
//              [-j JITTER_MS [-r RUNS]]
//       The ideal makespan only; with -j, also its spread when every job
//       takes up to JITTER_MS longer at random (timing sensitivity).
//
// Numbers are parsed strictly (whole, in range). Linux only (epoll,
// timerfd): it is a benchmark tool, not part of balance.

#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <queue>
#include <sstream>
#include <thread>
#include <vector>

#include "../tests/testnet.hpp"

namespace {

using namespace testnet;

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: farm hosts [-H 4x3,2x2,2x1] [-u MS]\n"
               "       farm run -c CTLPORT -p PORT [-k K] [-n JOBS] [-s SEED] [-o desc|random]\n"
               "                [-l LABEL] [-t SEC]\n"
               "       farm ideal [-H spec] [-u MS] [-k K] [-n JOBS] [-s SEED] [-o ORDER]\n"
               "                  [-j JITTER_MS [-r RUNS]]\n"
               "       farm header | farm freeport [N] | farm wait PORT [SEC [PID]]\n");
  std::exit(2);
}

struct HostSpec {
  int slots;
  int speed;
};

// "SxV,SxV,...": slots and speed of each host.
std::vector<HostSpec> parse_hosts(const std::string& s) {
  std::vector<HostSpec> v;
  size_t pos = 0;
  for (;;) {
    size_t comma = s.find(',', pos);
    std::string item = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    size_t x = item.find('x');
    if (x == std::string::npos) die("bad host spec '%s' (want SLOTSxSPEED,...)", item.c_str());
    v.push_back({parse_int(item.substr(0, x).c_str(), "slots", 1, 100000),
                 parse_int(item.substr(x + 1).c_str(), "speed", 1, 100000)});
    if (comma == std::string::npos) return v;
    pos = comma + 1;
  }
}

double parse_ms(const char* s, const char* what) {
  double v = parse_sec(s, what);  // a positive decimal, strictly parsed
  if (v <= 0) die("%s: must be above 0", what);
  return v;
}

// ---------------------------------------------------------------- jobs ----

// splitmix64 (testnet.hpp): the same job list on every platform and standard library.
struct Rng {
  uint64_t s;
  uint64_t next() { return splitmix64_next(s); }
  int range(int lo, int hi) { return lo + int(next() % uint64_t(hi - lo + 1)); }
};

// Work units per job: mostly small translation units (2..16), one in ten a
// big one (20..40), like a real source tree.  Mean ~11 units.
//
// Order: "desc" (default) submits the biggest jobs first, as a build system
// that schedules its longest compiles first does.  It also makes the
// benchmark stable: in "random" order the makespan of even the perfect
// scheduler swings by up to +-10% with sub-millisecond timing differences
// (which big job happens to land on a slow slot near the end: try
// `farm ideal -o random -j 1`), which would drown the proxy's own
// contribution; in "desc" order the spread is under 1%.
std::vector<int> make_jobs(int n, uint64_t seed, const std::string& order) {
  Rng r{seed};
  std::vector<int> w(static_cast<size_t>(n));
  for (auto& x : w) x = (r.next() % 10 == 0) ? r.range(20, 40) : r.range(2, 16);
  if (order == "desc") std::stable_sort(w.begin(), w.end(), std::greater<int>());
  else if (order != "random") die("order must be desc or random");
  return w;
}

// Perfect scheduler: K clients, each submits its next job the moment the
// previous one ends; a request takes the fastest free slot, else waits in
// one FIFO queue for the first slot to free (fastest among those freeing at
// the same instant).  Returns the makespan in seconds.
// jitter_s > 0 adds a uniform random 0..jitter_s to every job's duration (a
// diagnostic: how sensitive the makespan is to small timing differences).
double ideal_makespan(const std::vector<HostSpec>& hosts, const std::vector<int>& jobs, int k, double unit_s,
                      double jitter_s = 0, uint64_t jseed = 1) {
  Rng jr{jseed};
  struct Slot {
    double speed;
    double busy_until;
  };
  std::vector<Slot> slots;
  for (auto& h : hosts)
    for (int i = 0; i < h.slots; i++) slots.push_back({double(h.speed), 0.0});
  // Requests ordered by time, then by client number (deterministic FIFO).
  using Req = std::pair<double, int>;
  std::priority_queue<Req, std::vector<Req>, std::greater<Req>> reqs;
  for (int c = 0; c < k; c++) reqs.push({0.0, c});
  size_t next = 0;
  double makespan = 0;
  const double eps = 1e-12;
  while (next < jobs.size() && !reqs.empty()) {
    auto [t, c] = reqs.top();
    reqs.pop();
    double earliest = 1e300;
    for (auto& s : slots) earliest = std::min(earliest, s.busy_until);
    double start = std::max(t, earliest);
    Slot* best = nullptr;
    for (auto& s : slots)
      if (s.busy_until <= start + eps && (!best || s.speed > best->speed)) best = &s;
    double end = start + jobs[next++] * unit_s / best->speed;
    if (jitter_s > 0) end += jitter_s * double(jr.next() % 1000000) / 1e6;
    best->busy_until = end;
    makespan = std::max(makespan, end);
    reqs.push({end, c});
  }
  return makespan;
}

// --------------------------------------------------------------- hosts ----

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

struct Conn {
  int fd = -1;
  int host = -1;  // -1: control connection
  std::string in;
  bool working = false;
  double remaining = 0;  // speed-1 seconds of work left
  long id = 0;
  int work = 0;
};

struct Host {
  HostSpec spec;
  Fd lfd;
  int port = 0;
  int open = 0;
  int maxconc = 0;
  long jobs = 0;
  int working = 0;
};

// The farm's hosts and its control port, served by one epoll loop; the
// fluid simulation advances at every event and a timerfd wakes it at the
// next job's completion. Invariant: a host's `working` counts its
// connections with a job in progress, `open` all of its connections.
class Farm {
 public:
  Farm(const std::vector<HostSpec>& spec, double unit_ms);
  int run();

 private:
  void add(int fd);
  void close_conn(int fd);
  double rate(const Host& h) const;
  void advance();
  void arm_timer();
  void accept_all(int lfd, int host);
  bool on_readable(int fd);
  bool on_line(Conn& c, const std::string& line);
  std::string control(const std::string& line);

  double unit_ms_;
  std::vector<Host> hosts_;
  Fd ep_, tfd_, cfd_;
  int ctl_port_ = 0;
  std::map<int, int> listener_;  // fd -> host index, -1 = control
  std::map<int, Conn> conns_;
  double last_;
};

Farm::Farm(const std::vector<HostSpec>& spec, double unit_ms) : unit_ms_(unit_ms), hosts_(spec.size()) {
  ep_.reset(epoll_create1(EPOLL_CLOEXEC));
  if (!ep_.ok()) die("epoll_create1: %s", why(errno));
  tfd_.reset(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!tfd_.ok()) die("timerfd_create: %s", why(errno));
  cfd_.reset(listen_on("127.0.0.1", 0, 1024));
  ctl_port_ = local_port(cfd_.get());
  listener_[cfd_.get()] = -1;
  for (size_t i = 0; i < hosts_.size(); i++) {
    hosts_[i].spec = spec[i];
    hosts_[i].lfd.reset(listen_on("127.0.0.1", 0, 1024));
    hosts_[i].port = local_port(hosts_[i].lfd.get());
    listener_[hosts_[i].lfd.get()] = int(i);
  }
  add(tfd_.get());
  for (auto& l : listener_) add(l.first);
  last_ = now();
}

void Farm::add(int fd) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  if (epoll_ctl(ep_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl: %s", why(errno));
}

void Farm::close_conn(int fd) {
  auto it = conns_.find(fd);
  if (it == conns_.end()) return;
  Conn& c = it->second;
  if (c.host >= 0) {
    hosts_[size_t(c.host)].open--;
    if (c.working) hosts_[size_t(c.host)].working--;
  }
  epoll_ctl(ep_.get(), EPOLL_CTL_DEL, fd, nullptr);
  close(fd);
  conns_.erase(it);
}

double Farm::rate(const Host& h) const {
  return h.working <= h.spec.slots ? double(h.spec.speed) : double(h.spec.speed) * h.spec.slots / h.working;
}

// Arms the timer for the next completion (or disarms it).
void Farm::arm_timer() {
  double next = 1e300;
  for (auto& kv : conns_) {
    const Conn& c = kv.second;
    if (c.working) next = std::min(next, c.remaining / rate(hosts_[size_t(c.host)]));
  }
  itimerspec its{};
  if (next < 1e299) {
    if (next < 1e-6) next = 1e-6;
    its.it_value.tv_sec = time_t(next);
    its.it_value.tv_nsec = long((next - double(its.it_value.tv_sec)) * 1e9);
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1000;
  }
  timerfd_settime(tfd_.get(), 0, &its, nullptr);
}

// Advances the fluid simulation to now, finishes the completed jobs, arms
// the timer for the next completion.
void Farm::advance() {
  double t = now();
  double dt = t - last_;
  last_ = t;
  std::vector<int> done;
  for (auto& kv : conns_) {
    Conn& c = kv.second;
    if (!c.working) continue;
    c.remaining -= rate(hosts_[size_t(c.host)]) * dt;
    if (c.remaining <= 1e-6) done.push_back(kv.first);
  }
  for (int fd : done) {
    Conn& c = conns_[fd];
    std::string reply = fmt("DONE %ld %d\n", c.id, c.work);
    // A tiny reply into an empty socket buffer: never blocks.
    if (write(fd, reply.data(), reply.size()) == ssize_t(reply.size())) hosts_[size_t(c.host)].jobs++;
    close_conn(fd);
  }
  arm_timer();
}

void Farm::accept_all(int lfd, int host) {
  for (;;) {
    int s = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (s < 0) return;
    int one = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    Conn c;
    c.fd = s;
    c.host = host;
    if (host >= 0) {
      Host& h = hosts_[size_t(host)];
      h.open++;
      h.maxconc = std::max(h.maxconc, h.open);
    }
    conns_[s] = c;
    add(s);
  }
}

std::string Farm::control(const std::string& line) {
  if (line == "RESET") {
    for (auto& h : hosts_) {
      h.maxconc = h.open;
      h.jobs = 0;
    }
    return "OK\n";
  }
  if (line != "STATS") return "ERR\n";
  std::string out = fmt("UNIT %.3f\n", unit_ms_);
  for (size_t j = 0; j < hosts_.size(); j++) {
    const Host& h = hosts_[j];
    out += fmt("HOST %zu %d %d %d %ld %d\n", j, h.spec.slots, h.spec.speed, h.maxconc, h.jobs, h.open);
  }
  return out + "END\n";
}

// One line of a connection; false once it is closed.
bool Farm::on_line(Conn& c, const std::string& line) {
  if (c.host < 0) {
    std::string out = control(line);
    // Small replies; the control client reads them at once.
    if (write(c.fd, out.data(), out.size()) >= 0) return true;
    close_conn(c.fd);
    return false;
  }
  long id = 0;
  int work = -1;
  char extra;
  if (c.working || std::sscanf(line.c_str(), "JOB %ld %d%c", &id, &work, &extra) != 2 || work < 0) {
    close_conn(c.fd);
    return false;
  }
  c.working = true;
  c.id = id;
  c.work = work;
  c.remaining = work * unit_ms_ / 1000.0;
  hosts_[size_t(c.host)].working++;
  return true;
}

// Reads a connection; true when the job mix changed.
bool Farm::on_readable(int fd) {
  auto it = conns_.find(fd);
  if (it == conns_.end()) return false;
  Conn& c = it->second;
  char buf[4096];
  ssize_t r = read(fd, buf, sizeof buf);
  if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
    close_conn(fd);  // the client is gone (a job abandoned mid-way is simply dropped)
    return true;
  }
  if (r < 0) return false;
  c.in.append(buf, size_t(r));
  if (c.in.size() > 4096) {
    close_conn(fd);
    return true;
  }
  bool changed = false;
  for (size_t nl; (nl = c.in.find('\n')) != std::string::npos;) {
    std::string line = c.in.substr(0, nl);
    c.in.erase(0, nl + 1);
    if (!on_line(c, line)) break;  // closed: c is gone
    changed |= c.host >= 0;
  }
  return changed;
}

int Farm::run() {
  std::string ports = std::to_string(ctl_port_);
  for (auto& h : hosts_) ports += " " + std::to_string(h.port);
  std::printf("%s\n", ports.c_str());
  std::fflush(stdout);
  epoll_event evs[256];
  while (!g_stop) {
    int n = epoll_wait(ep_.get(), evs, 256, 1000);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die("epoll_wait: %s", why(errno));
    bool changed = false;
    advance();  // the progress of running jobs up to now, before any change
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      auto l = listener_.find(fd);
      if (fd == tfd_.get()) {
        uint64_t x;
        while (read(fd, &x, sizeof x) > 0) {}
        changed = true;
      } else if (l != listener_.end()) {
        accept_all(fd, l->second);
      } else {
        changed |= on_readable(fd);
      }
    }
    if (changed || n == 0) advance();  // re-arm with the new job mix
  }
  return 0;
}

int cmd_hosts(int argc, char** argv) {
  std::string spec = "4x3,2x2,2x1";
  double unit_ms = 30;
  int ch;
  while ((ch = getopt(argc, argv, "H:u:")) != -1) {
    if (ch == 'H') spec = optarg;
    else if (ch == 'u') unit_ms = parse_ms(optarg, "-u");
    else usage();
  }
  if (optind != argc) usage();
  struct sigaction sa{};
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return Farm(parse_hosts(spec), unit_ms).run();
}

// ----------------------------------------------------------------- run ----

// A blocking connection to 127.0.0.1:port whose reads and writes give up
// after timeout_s; not ok() when the connect failed (errno tells).
Fd connect_port(int port, double timeout_s) {
  Fd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.ok()) return fd;
  int one = 1;
  setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  timeval tv{};
  tv.tv_sec = time_t(timeout_s);
  tv.tv_usec = suseconds_t((timeout_s - double(tv.tv_sec)) * 1e6);
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(uint16_t(port));
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) fd.reset();
  return fd;
}

bool write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t w = write(fd, s.data() + off, s.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    off += size_t(w);
  }
  return true;
}

// Whether `until` stands at the start of a whole line of out.
bool has_line(const std::string& out, const char* until) {
  size_t p = out.find(until);
  return p != std::string::npos && (p == 0 || out[p - 1] == '\n') && out.find('\n', p) != std::string::npos;
}

// Reads until EOF (or until `until` is seen at a line start); false on error/timeout.
bool read_reply(int fd, std::string& out, const char* until = nullptr) {
  char buf[4096];
  for (;;) {
    if (until && has_line(out, until)) return true;
    ssize_t r = read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return false;
    if (r == 0) return until == nullptr;
    out.append(buf, size_t(r));
    if (out.size() > 65536) return false;
  }
}

struct HostStat {
  int slots, speed, maxconc;
  long jobs;
  int open;
};

bool ctl(int port, const char* cmd, std::string& reply) {
  Fd fd = connect_port(port, 10);
  if (!fd.ok()) return false;
  return write_all(fd.get(), std::string(cmd) + "\n") &&
         read_reply(fd.get(), reply, std::strcmp(cmd, "STATS") ? "OK" : "END");
}

bool stats(int port, double* unit_ms, std::vector<HostStat>& hs) {
  std::string r;
  if (!ctl(port, "STATS", r)) return false;
  hs.clear();
  std::istringstream in(r);
  std::string line;
  while (std::getline(in, line)) {
    HostStat h{};
    size_t idx;
    if (std::sscanf(line.c_str(), "UNIT %lf", unit_ms) == 1) continue;
    if (std::sscanf(line.c_str(), "HOST %zu %d %d %d %ld %d", &idx, &h.slots, &h.speed, &h.maxconc, &h.jobs,
                    &h.open) == 6)
      hs.push_back(h);
  }
  return !hs.empty();
}

void header() {
  std::printf("%-18s %3s %4s %9s %9s %6s  %-14s %-14s %4s %s\n", "target", "K", "jobs", "makespan", "ideal", "ratio",
              "maxconc/slots", "jobs per host", "fail", "verdict");
}

struct RunOpts {
  int ctl_port = 0, port = 0, k = 16, njobs = 200;
  uint64_t seed = 7;
  double timeout = 60;
  std::string label = "proxy", order = "desc";
};

// K client threads run the jobs through the proxy, each taking the next job
// once its previous one is done.
class Batch {
 public:
  Batch(const RunOpts& o, const std::vector<int>& jobs) : o_(o), jobs_(jobs) {}
  double run();  // the makespan
  int failed() const { return failed_; }
  const std::string& first_error() const { return first_error_; }

 private:
  std::string one_job(int j);
  void client();

  const RunOpts& o_;
  const std::vector<int>& jobs_;
  std::atomic<int> next_{0};
  std::atomic<int> failed_{0};
  std::mutex mu_;
  std::string first_error_;
  double t_end_ = 0;
};

// Runs job j; what went wrong, or "".
std::string Batch::one_job(int j) {
  Fd fd = connect_port(o_.port, o_.timeout);
  if (!fd.ok()) return std::string("connect: ") + why(errno);
  std::string req = fmt("JOB %d %d\n", j, jobs_[size_t(j)]);
  std::string want = fmt("DONE %d %d\n", j, jobs_[size_t(j)]);
  std::string reply;
  if (!write_all(fd.get(), req)) return std::string("send: ") + why(errno);
  if (!read_reply(fd.get(), reply)) return std::string("recv: ") + why(errno);
  if (reply != want) return reply.empty() ? "closed without reply" : "wrong reply";
  return "";
}

void Batch::client() {
  for (int j; (j = next_.fetch_add(1)) < o_.njobs;) {
    std::string err = one_job(j);
    double t = now();
    std::lock_guard<std::mutex> g(mu_);
    if (err.empty()) {
      t_end_ = std::max(t_end_, t);
      continue;
    }
    failed_++;
    if (first_error_.empty()) first_error_ = "job " + std::to_string(j) + ": " + err;
  }
}

double Batch::run() {
  double t0 = now();
  t_end_ = t0;
  std::vector<std::thread> th;
  for (int i = 0; i < o_.k; i++) th.emplace_back([this] { client(); });
  for (auto& t : th) t.join();
  return t_end_ - t0;
}

// Prints the table row of a finished batch.
void report(const RunOpts& o, double makespan, double ideal, const std::vector<HostStat>& hs, const Batch& b) {
  std::string conc, per;
  bool over = false;
  long served = 0;
  for (auto& h : hs) {
    conc += (conc.empty() ? "" : " ") + std::to_string(h.maxconc) + "/" + std::to_string(h.slots);
    per += (per.empty() ? "" : " ") + std::to_string(h.jobs);
    over |= h.maxconc > h.slots;
    served += h.jobs;
  }
  double ratio = makespan / ideal;
  std::string verdict;
  if (b.failed()) verdict += "DROPPED ";
  if (over) verdict += "OVER-MAXC ";
  if (ratio > 1.05) verdict += "SLOW ";
  if (verdict.empty()) verdict = "ok";
  std::printf("%-18s %3d %4d %8.3fs %8.3fs %6.3f  %-14s %-14s %4d %s\n", o.label.c_str(), o.k, o.njobs, makespan, ideal,
              ratio, conc.c_str(), per.c_str(), b.failed(), verdict.c_str());
  if (!b.first_error().empty())
    std::printf("  first failure: %s (hosts finished %ld jobs)\n", b.first_error().c_str(), served);
  std::fflush(stdout);
}

int cmd_run(int argc, char** argv) {
  RunOpts o;
  int ch;
  while ((ch = getopt(argc, argv, "c:p:k:n:s:l:o:t:")) != -1) {
    switch (ch) {
      case 'c': o.ctl_port = parse_int(optarg, "-c", 1, 65535); break;
      case 'p': o.port = parse_int(optarg, "-p", 1, 65535); break;
      case 'k': o.k = parse_int(optarg, "-k", 1, 10000); break;
      case 'n': o.njobs = parse_int(optarg, "-n", 1, 10000000); break;
      case 's': o.seed = parse_u64(optarg, "-s"); break;
      case 'l': o.label = optarg; break;
      case 'o': o.order = optarg; break;
      case 't': o.timeout = parse_sec(optarg, "-t"); break;
      default: usage();
    }
  }
  if (o.ctl_port == 0 || o.port == 0 || optind != argc) usage();
  signal(SIGPIPE, SIG_IGN);
  std::string r;
  if (!ctl(o.ctl_port, "RESET", r)) die("cannot reach the hosts' control port %d", o.ctl_port);
  double unit_ms = 0;
  std::vector<HostStat> hs;
  if (!stats(o.ctl_port, &unit_ms, hs)) die("bad STATS reply");
  std::vector<HostSpec> spec;
  for (auto& h : hs) spec.push_back({h.slots, h.speed});
  std::vector<int> jobs = make_jobs(o.njobs, o.seed, o.order);
  double ideal = ideal_makespan(spec, jobs, o.k, unit_ms / 1000.0);
  Batch b(o, jobs);
  double makespan = b.run();
  usleep(50000);  // let the hosts notice the last closes before reading the counters
  if (!stats(o.ctl_port, &unit_ms, hs)) die("bad STATS reply");
  report(o, makespan, ideal, hs, b);
  return 0;
}

int cmd_ideal(int argc, char** argv) {
  std::string spec = "4x3,2x2,2x1", order = "desc";
  double unit_ms = 30, jitter_ms = 0;
  int k = 16, njobs = 200, reps = 20;
  uint64_t seed = 7;
  int ch;
  while ((ch = getopt(argc, argv, "j:o:r:H:u:k:n:s:")) != -1) {
    switch (ch) {
      case 'j': jitter_ms = parse_sec(optarg, "-j"); break;
      case 'o': order = optarg; break;
      case 'r': reps = parse_int(optarg, "-r", 0, 1000000); break;
      case 'H': spec = optarg; break;
      case 'u': unit_ms = parse_ms(optarg, "-u"); break;
      case 'k': k = parse_int(optarg, "-k", 1, 10000); break;
      case 'n': njobs = parse_int(optarg, "-n", 1, 10000000); break;
      case 's': seed = parse_u64(optarg, "-s"); break;
      default: usage();
    }
  }
  if (optind != argc) usage();
  auto jobs = make_jobs(njobs, seed, order);
  auto hosts = parse_hosts(spec);
  long total = 0;
  for (int w : jobs) total += w;
  std::printf("jobs %d total work %ld units, ideal makespan %.3fs\n", njobs, total,
              ideal_makespan(hosts, jobs, k, unit_ms / 1000.0));
  if (jitter_ms <= 0 || reps <= 0) return 0;
  std::vector<double> m;
  for (int r = 0; r < reps; r++)
    m.push_back(ideal_makespan(hosts, jobs, k, unit_ms / 1000.0, jitter_ms / 1000.0, uint64_t(r + 1)));
  std::sort(m.begin(), m.end());
  std::printf("with 0..%.2f ms jitter per job, %d runs: min %.3fs median %.3fs max %.3fs\n", jitter_ms, reps,
              m.front(), m[m.size() / 2], m.back());
  return 0;
}

// N distinct free ports.
int cmd_freeport(int argc, char** argv) {
  int n = argc > 1 ? parse_int(argv[1], "N", 1, 1000) : 1;
  std::vector<int> ports;
  while (int(ports.size()) < n) {
    int p = free_port();
    if (std::find(ports.begin(), ports.end(), p) == ports.end()) ports.push_back(p);
  }
  for (size_t i = 0; i < ports.size(); i++) std::printf(i ? " %d" : "%d", ports[i]);
  std::printf("\n");
  return 0;
}

int cmd_wait(int argc, char** argv) {
  if (argc < 2 || argc > 4) usage();
  int port = parse_int(argv[1], "PORT", 1, 65535);
  double secs = argc > 2 ? parse_sec(argv[2], "SEC") : 5;
  pid_t pid = argc > 3 ? pid_t(parse_int(argv[3], "PID", 1, 1 << 30)) : 0;
  std::string why;
  if (wait_listening("127.0.0.1", port, pid, now() + secs, &why)) return 0;
  std::fprintf(stderr, "farm wait: %s (%g s)\n", why.c_str(), secs);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) usage();
  std::string cmd = argv[1];
  g_tool = "farm";
  g_cmd = argv[1];
  argc--;
  argv++;  // getopt now sees the sub-command as argv[0]
  if (cmd == "hosts") return cmd_hosts(argc, argv);
  if (cmd == "run") return cmd_run(argc, argv);
  if (cmd == "ideal") return cmd_ideal(argc, argv);
  if (cmd == "freeport") return cmd_freeport(argc, argv);
  if (cmd == "wait") return cmd_wait(argc, argv);
  if (cmd == "header") {
    header();
    return 0;
  }
  usage();
}
