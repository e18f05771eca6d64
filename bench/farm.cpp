// farm: scheduling benchmark for balance (SPEC §7; issues 7 and 14).
//
// A simulated farm of unequal build hosts, each a real TCP server on
// loopback, and a batch of "compile jobs" of unequal sizes run through a
// proxy; the makespan is compared with a simulated perfect scheduler's and
// with a lower bound no scheduler can beat.
//
//   farm hosts [-H 4x3,2x2,2x1] [-u MS]
//       Starts one TCP server per host on 127.0.0.1 (ephemeral ports) plus a
//       control port, prints one line "CTL PA PB PC ..." on stdout and serves
//       until SIGTERM/SIGINT.  Host "SxV" has S slots of speed V.
//
//       A job is one connection: the client sends "JOB <id> <work> <bytes>\n"
//       (framed as a distcc request: "DIST00000001DOTI" and 8 hex digits,
//       the length of the rest, come first, so that balance -j reads the
//       job's size as it reads a compile's; the hosts accept either form)
//       and then <bytes> payload bytes (byte p is byte p of the testnet
//       stream seeded with <id>, so the host checks every one); the host
//       reads the whole payload first, as distccd reads the whole
//       preprocessed source, then "compiles" the job and answers
//       "DONE <id> <work>\n", then closes.  A wrong byte, a byte too many or
//       a bad header closes the connection without an answer (the job
//       fails).  Compiling is a fluid (processor-sharing) simulation: a job
//       needs work*MS milliseconds of one speed-1 CPU; while a host has n
//       jobs in progress each progresses at speed * min(1, slots/n), i.e. a
//       host given more jobs than slots slows all of them down
//       proportionally.  Every host records the highest number of
//       connections it had open at once (max concurrency) and the jobs it
//       finished.
//
//       Control port, one command a line:
//         RESET  zero the counters, every host back to its own speed -> "OK"
//         SLOW <host> <factor>  the host becomes factor times slower from now
//                on, its jobs in progress too (factor 1 restores it); zeroes
//                its count of jobs since the change -> "OK"
//         STATS  -> "UNIT <ms>", then a line per host "HOST <i> <slots>
//                <speed> <maxconc> <jobs> <open> <port> <speed now>
//                <jobs since the last SLOW> <bad requests>", then "END".
//
//   farm run -c CTL -p PORT [-k K] [-n JOBS] [-s SEED] [-o desc|random]
//            [-b BYTES] [-l LABEL] [-t SEC] [-V slow|ahead|none]
//            [-W] [-S SOCKET [-P MS]] [-C HOST:FACTOR] [-I]
//       Runs the seeded batch of JOBS jobs through 127.0.0.1:PORT with K
//       concurrent clients (each takes the next job when its previous one is
//       finished; a job of w units sends w*BYTES payload bytes, default
//       8192), then prints one table row (see `farm header`):
//         makespan; /ideal: over the makespan of a perfect cost-oblivious
//           scheduler (fastest free slot, FIFO wait) computed by an
//           in-process simulation of the same job list and clients;
//         /bound: over the lower bound max(total work / capacity, longest
//           job on the fastest slot), where capacity is the summed speed of
//           the min(K, slots) fastest slots (K clients never run more than K
//           jobs at once);
//         max concurrency per host vs slots, jobs per host, failed jobs,
//         a verdict, notes.
//       -W  learning: run the same batch once before, cold, and report the
//           second (warm) batch as the row; the notes give the cold batch's
//           /ideal (the makespan counting the warm-up).  Max concurrency and
//           failures count both batches.
//       -S  balance's control socket: every -P ms (100) the speeds balance
//           has learned ("speed" of each channel in `show json`, matched to
//           the hosts by port) are sampled; the notes say after how many
//           finished jobs of the cold batch they were, and stayed, within
//           10 % of the hosts' true speeds relative to each other (both
//           scaled to the same sum), and with -C after how many of the
//           slowed host's own jobs its estimate, relative to the sum of the
//           others', was and stayed within 20 % of its new speed.
//       -C  when job JOBS/2 is handed out (the client that takes it sends
//           "SLOW HOST FACTOR" first), HOST becomes FACTOR times slower; the
//           ideal is simulated with the same change at the same point (it
//           knows the change: it uses the new speed from then on), and
//           /bound is not given.  With -W the cold batch runs unchanged.
//       -V  the verdict's criterion besides correctness: slow (default) says
//           SLOW above 1.05 x ideal; ahead says NOT-AHEAD unless the
//           makespan is below the cost-oblivious ideal (a size-aware
//           scheduler's goal); none judges correctness only.
//       -I  prints the reference rows instead (the lower bound, the ideal,
//           and the ideal's spread when every job takes 0..1 ms longer at
//           random) and runs no job.
//
//   farm header    prints the table header matching `farm run` rows.
//   farm freeport [N]   prints N distinct free TCP ports (tests/testnet.hpp).
//   farm wait PORT [SEC [PID]]   waits until 127.0.0.1:PORT listens (SEC, 5),
//                  on a socket of process PID, failing at once when PID is gone.
//   farm ideal [-H ..] [-u MS] [-k K] [-n JOBS] [-s SEED] [-o ORDER]
//              [-C HOST:FACTOR] [-j JITTER_MS [-r RUNS]]
//       The ideal makespan and the lower bound only; with -j, also the
//       ideal's spread when every job takes up to JITTER_MS longer at random
//       (timing sensitivity).
//
// Jobs: work units 2..16 uniformly, one job in ten 20..40 (a 20x range, like
// a source tree with a few big translation units), payload bytes
// proportional to the work.
//
// Numbers are parsed strictly (whole, in range). Linux only (epoll,
// timerfd): it is a benchmark tool, not part of balance.

#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <sys/un.h>

#include <atomic>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <queue>
#include <sstream>
#include <thread>
#include <tuple>
#include <vector>

#include "../tests/testnet.hpp"

namespace {

using namespace testnet;

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: farm hosts [-H 4x3,2x2,2x1] [-u MS]\n"
               "       farm run -c CTLPORT -p PORT [-k K] [-n JOBS] [-s SEED] [-o desc|random]\n"
               "                [-b BYTES] [-l LABEL] [-t SEC] [-V slow|ahead|none]\n"
               "                [-W] [-S SOCKET [-P MS]] [-C HOST:FACTOR] [-I]\n"
               "       farm ideal [-H spec] [-u MS] [-k K] [-n JOBS] [-s SEED] [-o ORDER]\n"
               "                  [-C HOST:FACTOR] [-j JITTER_MS [-r RUNS]]\n"
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

// When job at_job is handed out, host `host` becomes `factor` times slower,
// its jobs in progress too. host < 0: nothing changes.
struct Change {
  int host = -1;
  double factor = 1;
  int at_job = 0;
};

// "HOST:FACTOR" (the job is set by the caller).
Change parse_change(const char* s, int nhosts) {
  const char* colon = std::strchr(s, ':');
  if (!colon) die("-C: want HOST:FACTOR, not %s", s);
  Change c;
  c.host = parse_int(std::string(s, colon).c_str(), "-C host", 0, nhosts - 1);
  c.factor = parse_ms(colon + 1, "-C factor");
  return c;
}

// ---------------------------------------------------------------- jobs ----

// splitmix64 (testnet.hpp): the same job list on every platform and standard library.
struct Rng {
  uint64_t s;
  uint64_t next() { return splitmix64_next(s); }
  int range(int lo, int hi) { return lo + int(next() % uint64_t(hi - lo + 1)); }
};

// Work units per job: mostly small translation units (2..16), one in ten a
// big one (20..40), like a real source tree: a 20x range, mean ~11 units.
//
// Order: "desc" (default) submits the biggest jobs first, as a build system
// that schedules its longest compiles first does.  It also makes the
// benchmark stable: in "random" order the makespan of even the perfect
// scheduler swings by up to +-10% with sub-millisecond timing differences
// (which big job happens to land on a slow slot near the end: try
// `farm ideal -o random -j 1`), which would drown the proxy's own
// contribution; in "desc" order the spread is under 1%.  Random order is
// where knowing the jobs' sizes pays: a big job that comes late must not
// take a slow slot.
std::vector<int> make_jobs(int n, uint64_t seed, const std::string& order) {
  Rng r{seed};
  std::vector<int> w(static_cast<size_t>(n));
  for (auto& x : w) x = (r.next() % 10 == 0) ? r.range(20, 40) : r.range(2, 16);
  if (order == "desc") std::stable_sort(w.begin(), w.end(), std::greater<int>());
  else if (order != "random") die("order must be desc or random");
  return w;
}

// Perfect cost-oblivious scheduler, simulated event by event: K clients,
// each asks for the next job of the list the moment its previous one ends;
// a request takes the fastest free slot, else waits in one FIFO queue for
// the first slot to free (fastest among those freeing at the same instant).
// The change, if any, applies when its job is handed out, with the same
// effect as the farm's SLOW: the host's jobs in progress finish their
// remaining work at the new speed.  Returns the makespan in seconds.
// jitter_s > 0 adds a uniform random 0..jitter_s to every job's duration (a
// diagnostic: how sensitive the makespan is to small timing differences).
//
// blind: the same scheduler starting with every weight 1, that learns a
// host's true speed the moment one of its jobs ends (no learner can do
// better from nothing). Until then an idle unknown host is tried first
// (it gets measured) and a busy one counts as the mean slot speed of the
// known hosts (all equal while none is known); equal hosts are taken
// round-robin after the last chosen, as balance takes equal channels.
//
// sized: the same with balance -j's rule and perfect knowledge of every
// speed and job: the head of the queue waits for a faster busy slot
// (its earliest expected end) when that finishes it sooner by more than
// waiting costs the others (the next job, or one of the mean size of the
// last 256 finished, on the slower slot instead of the faster one, plus
// the wait times each free slot a waiting job, this one included, could
// start now); no job is held before one has finished, as balance then has
// no scale.
double ideal_makespan(const std::vector<HostSpec>& hosts, const std::vector<int>& jobs, int k, double unit_s,
                      const Change& change = {}, double jitter_s = 0, uint64_t jseed = 1, bool blind = false,
                      bool sized = false) {
  Rng jr{jseed};
  struct Slot {
    int host;
    double speed;
    double end;
    double expected;  // sized: its end as expected (without jitter)
    double start;
    int client;    // -1: free
    double work;   // of the job it runs, in speed-1 seconds
    unsigned gen;  // bumped when the job's end moves: older end events are stale
  };
  std::vector<Slot> slots;
  for (size_t h = 0; h < hosts.size(); h++)
    for (int i = 0; i < hosts[h].slots; i++) slots.push_back({int(h), double(hosts[h].speed), 0, 0, 0, -1, 0, 0});
  // Events at the same instant: the ends first (a freed slot is free for a
  // request made then), then the requests in client order; a wake-up
  // (sized: a held job is looked at again) only runs the placement.
  enum Kind { kEnd = 0, kRequest = 1, kWake = 2 };
  using Ev = std::tuple<double, int, int, unsigned>;  // time, kind, slot or client, gen
  std::priority_queue<Ev, std::vector<Ev>, std::greater<Ev>> evs;
  for (int c = 0; c < k; c++) evs.push({0.0, kRequest, c, 0u});
  std::deque<std::pair<int, size_t>> waiting;  // (client, job), FIFO
  std::vector<bool> known(hosts.size(), !blind);
  std::vector<int> busy(hosts.size(), 0);
  size_t last_host = hosts.size() - 1;
  // How the scheduler ranks a slot: its speed, or (blind) what it believes.
  auto believed = [&](const Slot& s) {
    if (known[size_t(s.host)]) return s.speed;
    if (busy[size_t(s.host)] == 0) return HUGE_VAL;
    double sum = 0;
    int n = 0;
    for (auto& o : slots)
      if (known[size_t(o.host)]) sum += o.speed, n++;
    return n ? sum / n : 1.0;
  };
  // sized: whether the head waits for a faster slot (and until when).
  std::deque<int> finished;  // work of the last 256 finished jobs
  double finished_sum = 0;
  auto hold_until = [&](double t, size_t best) -> double {
    if (finished.empty()) return -1;
    double cost = jobs[waiting.front().second] * unit_s;
    double next_cost = waiting.size() > 1 ? jobs[waiting[1].second] * unit_s : finished_sum / double(finished.size());
    double here = cost / slots[best].speed;
    size_t free = 0;
    for (auto& s : slots) free += s.client < 0;
    double idle_slots = double(std::min(waiting.size(), free));
    for (size_t h = 0; h < hosts.size(); h++) {
      double speed = -1, end = HUGE_VAL;
      bool idle = false;
      for (auto& s : slots) {
        if (size_t(s.host) != h) continue;
        speed = s.speed;
        if (s.client < 0) idle = true;
        else if (s.expected >= t - (s.expected - s.start)) end = std::min(end, s.expected);  // not overdue
      }
      if (idle || speed <= slots[best].speed || end == HUGE_VAL) continue;
      double wait = std::max(end - t, 0.0);
      double others = next_cost / slots[best].speed - next_cost / speed + wait * idle_slots;
      if (wait + cost / speed + others < here) return std::max(end, t);
    }
    return -1;
  };
  size_t next = 0;
  double makespan = 0;
  const double eps = 1e-12;
  while (!evs.empty()) {
    double t = std::get<0>(evs.top());
    while (!evs.empty() && std::get<0>(evs.top()) <= t + eps) {
      auto [et, kind, idx, gen] = evs.top();
      evs.pop();
      if (kind == kEnd) {
        Slot& s = slots[size_t(idx)];
        if (gen != s.gen || s.client < 0) continue;
        makespan = std::max(makespan, et);
        evs.push({et, kRequest, s.client, 0u});
        s.client = -1;
        finished.push_back(s.work);
        finished_sum += s.work;
        if (finished.size() > 256) {
          finished_sum -= finished.front();
          finished.pop_front();
        }
        known[size_t(s.host)] = true;
        busy[size_t(s.host)]--;
        continue;
      }
      if (kind == kWake) continue;
      if (next >= jobs.size()) continue;  // this client is done
      if (change.host >= 0 && next == size_t(change.at_job)) {
        for (size_t i = 0; i < slots.size(); i++) {
          Slot& s = slots[i];
          if (s.host != change.host) continue;
          s.speed /= change.factor;
          if (s.client < 0) continue;
          s.end = t + (s.end - t) * change.factor;
          s.expected = t + std::max(s.expected - t, 0.0) * change.factor;
          evs.push({s.end, kEnd, int(i), ++s.gen});
        }
      }
      waiting.push_back({idx, next++});
    }
    while (!waiting.empty()) {
      size_t best = slots.size();
      if (!blind) {
        for (size_t i = 0; i < slots.size(); i++)
          if (slots[i].client < 0 && (best == slots.size() || slots[i].speed > slots[best].speed)) best = i;
      } else {  // hosts in round-robin order after the last chosen, a free slot of each
        double best_rank = 0;
        for (size_t step = 1; step <= hosts.size(); step++) {
          size_t h = (last_host + step) % hosts.size();
          for (size_t i = 0; i < slots.size(); i++) {
            if (size_t(slots[i].host) != h || slots[i].client >= 0) continue;
            double rank = believed(slots[i]);
            if (best == slots.size() || rank > best_rank) best = i, best_rank = rank;
            break;
          }
        }
      }
      if (best == slots.size()) break;
      if (sized) {
        double until = hold_until(t, best);
        if (until >= 0) {
          // Looked at again when that slot is expected to free (if that is
          // past, its job runs late: its real end comes as an event).
          if (until > t + eps) evs.push({until, kWake, 0, 0u});
          break;
        }
      }
      Slot& s = slots[best];
      last_host = size_t(s.host);
      busy[size_t(s.host)]++;
      s.client = waiting.front().first;
      s.work = jobs[waiting.front().second] * unit_s;
      s.start = t;
      s.end = s.expected = t + s.work / s.speed;
      if (jitter_s > 0) s.end += jitter_s * double(jr.next() % 1000000) / 1e6;
      waiting.pop_front();
      evs.push({s.end, kEnd, int(best), ++s.gen});
    }
  }
  return makespan;
}

// Sorted makespans of `runs` simulations (seeds 1..runs) in which every job
// takes up to jitter_s longer at random: how much the ideal's makespan
// turns on timing.
std::vector<double> jittered_makespans(const std::vector<HostSpec>& hosts, const std::vector<int>& jobs, int k,
                                       double unit_s, const Change& change, double jitter_s, int runs, bool sized) {
  std::vector<double> m;
  for (int r = 1; r <= runs; r++)
    m.push_back(ideal_makespan(hosts, jobs, k, unit_s, change, jitter_s, uint64_t(r), false, sized));
  std::sort(m.begin(), m.end());
  return m;
}

// No scheduler finishes before max(total work / capacity, longest job on
// the fastest slot), capacity being the summed speed of the slots K
// clients can keep busy at once (the min(K, slots) fastest).
double lower_bound(const std::vector<HostSpec>& hosts, const std::vector<int>& jobs, int k, double unit_s) {
  std::vector<double> speeds;
  for (auto& h : hosts)
    for (int i = 0; i < h.slots; i++) speeds.push_back(h.speed);
  std::sort(speeds.begin(), speeds.end(), std::greater<double>());
  double capacity = 0;
  for (size_t i = 0; i < speeds.size() && i < size_t(k); i++) capacity += speeds[i];
  double total = 0, longest = 0;
  for (int w : jobs) {
    total += w;
    longest = std::max(longest, double(w));
  }
  return std::max(total / capacity, longest / speeds[0]) * unit_s;
}

// --------------------------------------------------------------- hosts ----

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

// A job connection goes kHeader -> kPayload (when it carries bytes) ->
// kWorking; a control connection stays kControl.
enum class Phase { kControl, kHeader, kPayload, kWorking };

struct Conn {
  int fd = -1;
  int host = -1;  // -1: control connection
  Phase phase = Phase::kHeader;
  std::string in;        // the header line (or control lines) so far
  uint64_t need = 0;     // payload bytes still to come
  uint64_t got = 0;      // payload bytes checked so far
  double remaining = 0;  // speed-1 seconds of work left
  long id = 0;
  int work = 0;
};

struct Host {
  HostSpec spec;
  double speed = 0;  // now: spec.speed unless SLOW changed it
  Fd lfd;
  int port = 0;
  int open = 0;
  int maxconc = 0;
  long jobs = 0;
  long since = 0;  // jobs finished since the last SLOW
  long bad = 0;    // requests closed for a bad header or payload
  int working = 0;
};

// The farm's hosts and its control port, served by one epoll loop; the
// fluid simulation advances at every event and a timerfd wakes it at the
// next job's completion. Invariant: a host's `working` counts its
// connections in Phase::kWorking, `open` all of its connections.
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
  void on_readable(int fd);
  bool feed(Conn& c, const char* data, size_t n);
  bool on_header(Conn& c);
  void start_work(Conn& c);
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
    hosts_[i].speed = spec[i].speed;
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
    if (c.phase == Phase::kWorking) hosts_[size_t(c.host)].working--;
  }
  epoll_ctl(ep_.get(), EPOLL_CTL_DEL, fd, nullptr);
  close(fd);
  conns_.erase(it);
}

double Farm::rate(const Host& h) const {
  return h.working <= h.spec.slots ? h.speed : h.speed * h.spec.slots / h.working;
}

// Arms the timer for the next completion (or disarms it).
void Farm::arm_timer() {
  double next = 1e300;
  for (auto& kv : conns_) {
    const Conn& c = kv.second;
    if (c.phase == Phase::kWorking) next = std::min(next, c.remaining / rate(hosts_[size_t(c.host)]));
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
    if (c.phase != Phase::kWorking) continue;
    c.remaining -= rate(hosts_[size_t(c.host)]) * dt;
    if (c.remaining <= 1e-6) done.push_back(kv.first);
  }
  for (int fd : done) {
    Conn& c = conns_[fd];
    std::string reply = fmt("DONE %ld %d\n", c.id, c.work);
    // A tiny reply into an empty socket buffer: never blocks.
    if (write(fd, reply.data(), reply.size()) == ssize_t(reply.size())) {
      hosts_[size_t(c.host)].jobs++;
      hosts_[size_t(c.host)].since++;
    }
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
    c.phase = host >= 0 ? Phase::kHeader : Phase::kControl;
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
      h.jobs = h.since = h.bad = 0;
      h.speed = h.spec.speed;
    }
    return "OK\n";
  }
  size_t idx = 0;
  double factor = 0;
  char extra;
  if (std::sscanf(line.c_str(), "SLOW %zu %lf%c", &idx, &factor, &extra) == 2) {
    if (idx >= hosts_.size() || !(factor > 0)) return "ERR\n";
    hosts_[idx].speed = hosts_[idx].spec.speed / factor;
    hosts_[idx].since = 0;
    return "OK\n";
  }
  if (line != "STATS") return "ERR\n";
  std::string out = fmt("UNIT %.3f\n", unit_ms_);
  for (size_t j = 0; j < hosts_.size(); j++) {
    const Host& h = hosts_[j];
    out += fmt("HOST %zu %d %d %d %ld %d %d %.6g %ld %ld\n", j, h.spec.slots, h.spec.speed, h.maxconc, h.jobs, h.open,
               h.port, h.speed, h.since, h.bad);
  }
  return out + "END\n";
}

void Farm::start_work(Conn& c) {
  c.phase = Phase::kWorking;
  c.remaining = c.work * unit_ms_ / 1000.0;
  hosts_[size_t(c.host)].working++;
}

// The header line is in c.in; false when it is bad.
bool Farm::on_header(Conn& c) {
  long id = 0;
  int work = -1;
  unsigned long long bytes = 0;
  char extra;
  // The distcc framing first, if any: DIST and a version, DOTI and the
  // length of the rest (this line, its newline and the payload).
  const char* line = c.in.c_str();
  uint64_t framed = 0;
  bool distcc = c.in.compare(0, 4, "DIST") == 0;
  if (distcc) {
    if (!parse_distcc_head(c.in, &framed)) return false;
    line += kDistccHead;
  }
  int n = std::sscanf(line, "JOB %ld %d %llu%c", &id, &work, &bytes, &extra);
  if ((n != 2 && n != 3) || work < 0 || id < 0) return false;
  if (distcc && framed != std::strlen(line) + 1 + (n == 3 ? bytes : 0)) return false;
  c.id = id;
  c.work = work;
  c.need = n == 3 ? bytes : 0;
  c.in.clear();
  if (c.need == 0) start_work(c);
  else c.phase = Phase::kPayload;
  return true;
}

// The bytes a job connection sent; false when the request is bad.
bool Farm::feed(Conn& c, const char* data, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (c.phase == Phase::kHeader) {
      const char* nl = static_cast<const char*>(std::memchr(data + i, '\n', n - i));
      size_t take = nl ? size_t(nl - (data + i)) : n - i;
      c.in.append(data + i, take);
      if (c.in.size() > 4096) return false;
      if (!nl) return true;
      i += take + 1;
      if (!on_header(c)) return false;
    } else if (c.phase == Phase::kPayload) {
      size_t take = size_t(std::min<uint64_t>(c.need, n - i));
      if (mismatch(uint64_t(c.id), c.got, data + i, take) != kNone) return false;
      c.got += take;
      c.need -= take;
      i += take;
      if (c.need == 0) start_work(c);
    } else {
      return false;  // nothing may follow the payload
    }
  }
  return true;
}

// Reads a connection: a job's request, or control lines.
void Farm::on_readable(int fd) {
  auto it = conns_.find(fd);
  if (it == conns_.end()) return;
  Conn& c = it->second;
  static char buf[65536];
  ssize_t r = read(fd, buf, sizeof buf);
  if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (r <= 0) {
    close_conn(fd);  // the client is gone (a job abandoned mid-way is simply dropped)
    return;
  }
  if (c.host >= 0) {
    if (!feed(c, buf, size_t(r))) {
      hosts_[size_t(c.host)].bad++;
      close_conn(fd);
    }
    return;
  }
  c.in.append(buf, size_t(r));
  if (c.in.size() > 4096) {
    close_conn(fd);
    return;
  }
  for (size_t nl; (nl = c.in.find('\n')) != std::string::npos;) {
    std::string out = control(c.in.substr(0, nl));
    c.in.erase(0, nl + 1);
    // Small replies; the control client reads them at once.
    if (write(fd, out.data(), out.size()) < 0) {
      close_conn(fd);
      return;
    }
  }
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
    advance();  // the progress of running jobs up to now, before any change
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      auto l = listener_.find(fd);
      if (fd == tfd_.get()) {
        uint64_t x;
        while (read(fd, &x, sizeof x) > 0) {}
      } else if (l != listener_.end()) {
        accept_all(fd, l->second);
      } else {
        on_readable(fd);
      }
    }
    advance();  // re-arm with the new job mix (and speeds)
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

// Read and write deadlines on a blocking socket.
void set_timeouts(int fd, double timeout_s) {
  timeval tv{};
  tv.tv_sec = time_t(timeout_s);
  tv.tv_usec = suseconds_t((timeout_s - double(tv.tv_sec)) * 1e6);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

// A blocking connection to 127.0.0.1:port whose reads and writes give up
// after timeout_s; not ok() when the connect failed (errno tells).
Fd connect_port(int port, double timeout_s) {
  Fd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.ok()) return fd;
  int one = 1;
  setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  set_timeouts(fd.get(), timeout_s);
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
  int slots = 0, speed = 0, maxconc = 0;
  long jobs = 0;
  int open = 0, port = 0;
  double speed_now = 0;
  long since = 0, bad = 0;
};

bool ctl(int port, const std::string& cmd, std::string& reply) {
  Fd fd = connect_port(port, 10);
  if (!fd.ok()) return false;
  return write_all(fd.get(), cmd + "\n") && read_reply(fd.get(), reply, cmd == "STATS" ? "END" : "OK");
}

bool stats(int port, double* unit_ms, std::vector<HostStat>& hs) {
  std::string r;
  if (!ctl(port, "STATS", r)) return false;
  hs.clear();
  std::istringstream in(r);
  std::string line;
  while (std::getline(in, line)) {
    HostStat h;
    size_t idx;
    if (std::sscanf(line.c_str(), "UNIT %lf", unit_ms) == 1) continue;
    if (std::sscanf(line.c_str(), "HOST %zu %d %d %d %ld %d %d %lf %ld %ld", &idx, &h.slots, &h.speed, &h.maxconc,
                    &h.jobs, &h.open, &h.port, &h.speed_now, &h.since, &h.bad) == 10)
      hs.push_back(h);
  }
  return !hs.empty();
}

// ------------------------------------------------- balance's estimates ----

// One "show json" from balance's control socket at path (text lines; the
// reply ends with an empty line); "" when it cannot be had.
std::string balance_json(const std::string& path) {
  Fd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  if (!fd.ok() || path.size() >= sizeof a.sun_path) return "";
  set_timeouts(fd.get(), 2);
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path.c_str(), path.size());
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return "";
  if (!write_all(fd.get(), "show json\n")) return "";
  std::string out;
  char buf[4096];
  while (out.find("\n\n") == std::string::npos && out.size() < (1 << 20)) {
    ssize_t r = read(fd.get(), buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return "";
    out.append(buf, size_t(r));
  }
  return out;
}

// The number after key in s, if any.
bool json_number(const std::string& s, const char* key, double* v) {
  size_t p = s.find(key);
  if (p == std::string::npos) return false;
  const char* start = s.c_str() + p + std::strlen(key);
  char* end = nullptr;
  *v = std::strtod(start, &end);
  return end != start;
}

// The per-slot speed balance reports for each channel, by port: a tiny
// scan of show json, one object per channel, each with "port": and
// "speed": (not "speed_jobs":, whose key differs).
std::map<int, double> json_speeds(const std::string& json) {
  std::map<int, double> out;
  const std::string mark = "{\"channel\":";
  for (size_t p = json.find(mark); p != std::string::npos;) {
    size_t q = json.find(mark, p + 1);
    std::string obj = json.substr(p, q == std::string::npos ? std::string::npos : q - p);
    double port = 0, speed = 0;
    if (json_number(obj, "\"port\":", &port) && json_number(obj, "\"speed\":", &speed)) out[int(port)] = speed;
    p = q;
  }
  return out;
}

// What the sampler saw at one moment.
struct Sample {
  double t;
  int done;                     // jobs of the batch finished
  long since;                   // jobs the changed host finished since the change (-1: unknown)
  std::map<int, double> speed;  // balance's per-slot speed by port
};

// Samples balance's speeds (and the changed host's job count) every
// period_s on a thread of its own, until stopped.
class Sampler {
 public:
  Sampler(const std::string& sock, double period_s, int ctl_port, const std::atomic<int>& done)
      : sock_(sock), period_s_(period_s), ctl_port_(ctl_port), done_(done) {}
  void start() {
    th_ = std::thread([this] { loop(); });
  }
  std::vector<Sample> stop() {
    {
      std::lock_guard<std::mutex> g(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    th_.join();
    sample();  // the state at the end
    return samples_;
  }
  void watch(int host) { host_ = host; }  // count this host's jobs from now on

 private:
  void sample() {
    Sample s{now(), done_.load(), -1, json_speeds(balance_json(sock_))};
    int h = host_.load();
    if (h >= 0) {
      double unit = 0;
      std::vector<HostStat> hs;
      if (stats(ctl_port_, &unit, hs) && size_t(h) < hs.size()) s.since = hs[size_t(h)].since;
    }
    if (!s.speed.empty()) samples_.push_back(s);
  }
  void loop() {
    std::unique_lock<std::mutex> lk(mu_);
    while (!stop_) {
      lk.unlock();
      sample();
      lk.lock();
      cv_.wait_for(lk, std::chrono::duration<double>(period_s_), [this] { return stop_; });
    }
  }

  std::string sock_;
  double period_s_;
  int ctl_port_;
  const std::atomic<int>& done_;
  std::atomic<int> host_{-1};
  std::vector<Sample> samples_;
  std::thread th_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
};

// The index of the first sample from which ok() holds to the end, or -1.
template <class Pred>
int settled(const std::vector<Sample>& s, Pred ok) {
  int first = -1;
  for (size_t i = 0; i < s.size(); i++) {
    if (!ok(s[i])) first = -1;
    else if (first < 0) first = int(i);
  }
  return first;
}

// Whether every host's estimate is within tol of its true speed, both
// scaled to the same sum (relative speeds).
bool all_within(const Sample& s, const std::vector<HostStat>& hs, const std::vector<double>& truth, double tol) {
  double est = 0, tru = 0;
  for (size_t i = 0; i < hs.size(); i++) {
    auto it = s.speed.find(hs[i].port);
    if (it == s.speed.end()) return false;
    est += it->second;
    tru += truth[i];
  }
  if (est <= 0) return false;
  for (size_t i = 0; i < hs.size(); i++) {
    double rel = (s.speed.at(hs[i].port) / est) / (truth[i] / tru);
    if (std::fabs(rel - 1) > tol) return false;
  }
  return true;
}

// Whether host h's estimate, relative to the sum of the others', is within
// tol of its true speed relative to theirs.
bool one_within(const Sample& s, const std::vector<HostStat>& hs, const std::vector<double>& truth, size_t h,
                double tol) {
  double est = 0, tru = 0;
  for (size_t i = 0; i < hs.size(); i++) {
    auto it = s.speed.find(hs[i].port);
    if (it == s.speed.end()) return false;
    if (i == h) continue;
    est += it->second;
    tru += truth[i];
  }
  if (est <= 0 || hs.size() < 2) return false;
  double rel = (s.speed.at(hs[h].port) / est) / (truth[h] / tru);
  return std::fabs(rel - 1) <= tol;
}

// "3.01 1.98 0.99": the last estimates, in host order.
std::string speeds_text(const Sample& s, const std::vector<HostStat>& hs) {
  std::string out;
  for (auto& h : hs) {
    auto it = s.speed.find(h.port);
    out += (out.empty() ? "" : " ") + (it == s.speed.end() ? std::string("?") : fmt("%.2f", it->second));
  }
  return out;
}

// ----------------------------------------------------------- the batch ----

// Prints a table line without trailing blanks.
void put_line(std::string line) {
  while (!line.empty() && line.back() == ' ') line.pop_back();
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

void header() {
  put_line(fmt("%-24s %3s %4s %9s %7s %7s  %-14s %-14s %4s %-9s %s", "target", "K", "jobs", "makespan", "/ideal",
               "/bound", "maxconc/slots", "jobs per host", "fail", "verdict", "notes"));
}

struct RunOpts {
  int ctl_port = 0, port = 0, k = 16, njobs = 200;
  uint64_t seed = 7;
  uint64_t bytes_per_unit = 8192;
  double timeout = 60, poll_s = 0.1;
  std::string label = "proxy", order = "desc", sock, verdict = "slow";
  bool warm = false, ideal_only = false;
  Change change;
};

// K client threads run the jobs through the proxy, each taking the next job
// once its previous one is done.
class Batch {
 public:
  // on_handout(j) runs in the client that takes job j, before it connects.
  Batch(const RunOpts& o, const std::vector<int>& jobs, std::function<void(int)> on_handout = {})
      : o_(o), jobs_(jobs), on_handout_(std::move(on_handout)) {}
  double run();  // the makespan
  int failed() const { return failed_; }
  const std::string& first_error() const { return first_error_; }
  const std::atomic<int>& done() const { return done_; }

 private:
  std::string one_job(int j);
  void client();

  const RunOpts& o_;
  const std::vector<int>& jobs_;
  std::function<void(int)> on_handout_;
  std::atomic<int> next_{0};
  std::atomic<int> done_{0};
  std::atomic<int> failed_{0};
  std::mutex mu_;
  std::string first_error_;
  double t_end_ = 0;
};

// Runs job j: the header and the whole payload, then the answer; what went
// wrong, or "".
std::string Batch::one_job(int j) {
  int work = jobs_[size_t(j)];
  uint64_t bytes = uint64_t(work) * o_.bytes_per_unit;
  std::string line = fmt("JOB %d %d %llu\n", j, work, static_cast<unsigned long long>(bytes));
  // Framed as a distcc request, whose DOTI token gives the size of what
  // follows: a size-aware proxy knows the job's size exactly, as it does
  // a real compile's.
  std::string req = distcc_head(line.size() + bytes) + line;
  size_t head = req.size();
  req.resize(head + bytes);
  gen(uint64_t(j), 0, &req[head], bytes);
  std::string want = fmt("DONE %d %d\n", j, work);
  Fd fd = connect_port(o_.port, o_.timeout);
  if (!fd.ok()) return std::string("connect: ") + why(errno);
  std::string reply;
  if (!write_all(fd.get(), req)) return std::string("send: ") + why(errno);
  if (!read_reply(fd.get(), reply)) return std::string("recv: ") + why(errno);
  if (reply != want) return reply.empty() ? "closed without reply" : "wrong reply";
  return "";
}

void Batch::client() {
  for (int j; (j = next_.fetch_add(1)) < o_.njobs;) {
    if (on_handout_) on_handout_(j);
    std::string err = one_job(j);
    double t = now();
    done_++;
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

// One row of the table; bound <= 0: not given.
struct Row {
  double makespan = 0, ideal = 0, bound = 0;
  std::vector<HostStat> hs;  // the hosts' counters after the row's batch
  std::vector<int> maxconc;  // per host, over every batch of the row
  int failed = 0;
  std::string first_error, notes;
};

void print_row(const RunOpts& o, const Row& r) {
  std::string conc, per;
  bool over = false;
  long served = 0, bad = 0;
  for (size_t i = 0; i < r.hs.size(); i++) {
    const HostStat& h = r.hs[i];
    int mc = r.maxconc[i];
    conc += (conc.empty() ? "" : " ") + std::to_string(mc) + "/" + std::to_string(h.slots);
    per += (per.empty() ? "" : " ") + std::to_string(h.jobs);
    over |= mc > h.slots;
    served += h.jobs;
    bad += h.bad;
  }
  double ratio = r.makespan / r.ideal;
  std::string verdict;
  if (r.failed) verdict += "DROPPED ";
  if (over) verdict += "OVER-MAXC ";
  if (o.verdict == "slow" && ratio > 1.05) verdict += "SLOW ";
  if (o.verdict == "ahead" && ratio >= 1) verdict += "NOT-AHEAD ";
  if (verdict.empty()) verdict = "ok";
  else verdict.pop_back();
  std::string bound = r.bound > 0 ? fmt("%7.3f", r.makespan / r.bound) : fmt("%7s", "-");
  put_line(fmt("%-24s %3d %4d %8.3fs %7.3f %s  %-14s %-14s %4d %-9s %s", o.label.c_str(), o.k, o.njobs, r.makespan,
               ratio, bound.c_str(), conc.c_str(), per.c_str(), r.failed, verdict.c_str(), r.notes.c_str()));
  if (!r.first_error.empty())
    std::printf("  first failure: %s (hosts finished %ld jobs, closed %ld bad requests)\n", r.first_error.c_str(),
                served, bad);
  std::fflush(stdout);
}

// The reference rows: the lower bound, the ideal and its timing spread.
void print_reference(const RunOpts& o, const std::vector<HostSpec>& spec, const std::vector<int>& jobs, double unit_s) {
  double ideal = ideal_makespan(spec, jobs, o.k, unit_s, o.change);
  std::vector<double> m = jittered_makespans(spec, jobs, o.k, unit_s, o.change, 0.001, 21, false);
  std::string spread = fmt("0..1 ms more per job: %.3f..%.3f x ideal, median %.3f", m.front() / ideal, m.back() / ideal,
                           m[m.size() / 2] / ideal);
  if (o.change.host >= 0) {
    put_line(fmt("%-24s %3d %4d %8.3fs %7.3f %7s  %-14s %-14s %4s %-9s %s", "ideal, knows the change", o.k, o.njobs,
                 ideal, 1.0, "-", "", "", "", "", spread.c_str()));
    return;
  }
  double bound = lower_bound(spec, jobs, o.k, unit_s);
  put_line(fmt("%-24s %3d %4d %8.3fs %7.3f %7.3f  %-14s %-14s %4s %-9s %s", "lower bound", o.k, o.njobs, bound,
               bound / ideal, 1.0, "", "", "", "", "no scheduler can beat it"));
  put_line(fmt("%-24s %3d %4d %8.3fs %7.3f %7.3f  %-14s %-14s %4s %-9s %s", "ideal, cost-oblivious", o.k, o.njobs,
               ideal, 1.0, ideal / bound, "", "", "", "", spread.c_str()));
  double blind = ideal_makespan(spec, jobs, o.k, unit_s, Change{}, 0, 1, true);
  put_line(fmt("%-24s %3d %4d %8.3fs %7.3f %7.3f  %-14s %-14s %4s %-9s %s", "ideal, starts blind", o.k, o.njobs, blind,
               blind / ideal, blind / bound, "", "", "", "", "every weight 1, learns each speed exactly at its first end"));
  double sized = ideal_makespan(spec, jobs, o.k, unit_s, Change{}, 0, 1, false, true);
  std::vector<double> ms = jittered_makespans(spec, jobs, o.k, unit_s, Change{}, 0.001, 21, true);
  put_line(fmt("%-24s %3d %4d %8.3fs %7.3f %7.3f  %-14s %-14s %4s %-9s %s", "ideal, size-aware", o.k, o.njobs, sized,
               sized / ideal, sized / bound, "", "", "", "",
               fmt("-j's rule knowing every size and speed; 0..1 ms more per job: %.3f..%.3f, median %.3f",
                   ms.front() / ideal, ms.back() / ideal, ms[ms.size() / 2] / ideal)
                   .c_str()));
}

// RESET, then the hosts' STATS (and the farm's unit in *unit_ms).
std::vector<HostStat> reset_hosts(int ctl_port, double* unit_ms) {
  std::string r;
  if (!ctl(ctl_port, "RESET", r)) die("cannot reach the hosts' control port %d", ctl_port);
  std::vector<HostStat> hs;
  if (!stats(ctl_port, unit_ms, hs)) die("bad STATS reply");
  return hs;
}

// Runs one batch (with the sampler when o.sock is set) and returns its
// makespan; the hosts' counters after it go to row.hs, its samples to
// samples, its failures and max concurrency add to the row's.
double run_batch(const RunOpts& o, const std::vector<int>& jobs, const Change& change, std::vector<Sample>& samples,
                 Row& row) {
  double unit_ms = 0;
  reset_hosts(o.ctl_port, &unit_ms);
  Sampler* sp = nullptr;
  std::function<void(int)> handout;
  if (change.host >= 0)
    handout = [&o, &change, &sp](int j) {
      if (j != change.at_job) return;
      std::string r;
      if (!ctl(o.ctl_port, fmt("SLOW %d %g", change.host, change.factor), r)) die("SLOW failed");
      if (sp) sp->watch(change.host);
    };
  Batch b(o, jobs, handout);
  Sampler sampler(o.sock, o.poll_s, o.ctl_port, b.done());
  if (!o.sock.empty()) {
    sp = &sampler;
    sampler.start();
  }
  double makespan = b.run();
  if (sp) samples = sampler.stop();
  usleep(50000);  // let the hosts notice the last closes before reading the counters
  if (!stats(o.ctl_port, &unit_ms, row.hs)) die("bad STATS reply");
  row.maxconc.resize(row.hs.size(), 0);
  for (size_t i = 0; i < row.hs.size(); i++) row.maxconc[i] = std::max(row.maxconc[i], row.hs[i].maxconc);
  row.failed += b.failed();
  if (row.first_error.empty()) row.first_error = b.first_error();
  return makespan;
}

// After how many jobs balance's speeds were, and stayed, within 10 % of
// the truth relative to each other: over the cold batch's samples and then,
// when it ran unchanged, the warm batch's (its jobs counted after the cold
// batch's njobs).
std::string warmup_note(std::vector<Sample> samples, const std::vector<Sample>& warm, int njobs,
                        const std::vector<HostStat>& hs, const std::vector<double>& truth) {
  for (Sample s : warm) {
    s.done += njobs;
    samples.push_back(s);
  }
  if (samples.empty()) return "no \"speed\" in show json";
  int i = settled(samples, [&](const Sample& s) { return all_within(s, hs, truth, 0.10); });
  std::string last = " (" + speeds_text(samples.back(), hs) + ")";
  if (i < 0) return fmt("speeds not within 10%% after %d jobs", samples.back().done) + last;
  return fmt("speeds within 10%% after %d jobs", samples[size_t(i)].done) + last;
}

// After how many of the slowed host's jobs since the change its estimate,
// relative to the others', was and stayed within 20 % of its new speed.
std::string change_note(const std::vector<Sample>& samples, const Change& change, const std::vector<HostStat>& hs,
                        const std::vector<double>& truth) {
  size_t h = size_t(change.host);
  std::vector<double> after = truth;
  after[h] /= change.factor;
  std::vector<Sample> since;
  for (auto& s : samples)
    if (s.since >= 0) since.push_back(s);
  std::string what = fmt("host %zu's estimate", h);
  if (since.empty()) return what + " not sampled after the change";
  int i = settled(since, [&](const Sample& s) { return one_within(s, hs, after, h, 0.20); });
  std::string last = " (" + speeds_text(since.back(), hs) + ")";
  if (i < 0) return what + fmt(" not within 20%% of its new speed after %ld of its jobs", since.back().since) + last;
  return what + fmt(" within 20%% after %ld of its jobs", since[size_t(i)].since) + last;
}

int cmd_run(int argc, char** argv) {
  RunOpts o;
  const char* change = nullptr;
  int ch;
  while ((ch = getopt(argc, argv, "b:c:p:k:n:s:l:o:t:V:WS:P:C:I")) != -1) {
    switch (ch) {
      case 'b': o.bytes_per_unit = parse_range(optarg, "-b", 0, 1 << 24); break;
      case 'c': o.ctl_port = parse_int(optarg, "-c", 1, 65535); break;
      case 'p': o.port = parse_int(optarg, "-p", 1, 65535); break;
      case 'k': o.k = parse_int(optarg, "-k", 1, 10000); break;
      case 'n': o.njobs = parse_int(optarg, "-n", 1, 10000000); break;
      case 's': o.seed = parse_u64(optarg, "-s"); break;
      case 'l': o.label = optarg; break;
      case 'o': o.order = optarg; break;
      case 't': o.timeout = parse_sec(optarg, "-t"); break;
      case 'V': o.verdict = optarg; break;
      case 'W': o.warm = true; break;
      case 'S': o.sock = optarg; break;
      case 'P': o.poll_s = parse_ms(optarg, "-P") / 1000; break;
      case 'C': change = optarg; break;
      case 'I': o.ideal_only = true; break;
      default: usage();
    }
  }
  if (o.ctl_port == 0 || (o.port == 0 && !o.ideal_only) || optind != argc) usage();
  if (o.verdict != "slow" && o.verdict != "ahead" && o.verdict != "none") die("-V: slow, ahead or none");
  signal(SIGPIPE, SIG_IGN);
  double unit_ms = 0;
  std::vector<HostStat> hs = reset_hosts(o.ctl_port, &unit_ms);
  std::vector<HostSpec> spec;
  for (auto& h : hs) spec.push_back({h.slots, h.speed});
  if (change) {
    o.change = parse_change(change, int(hs.size()));
    o.change.at_job = o.njobs / 2;
  }
  std::vector<int> jobs = make_jobs(o.njobs, o.seed, o.order);
  double unit_s = unit_ms / 1000.0;
  if (o.ideal_only) {
    print_reference(o, spec, jobs, unit_s);
    return 0;
  }

  Row row;
  std::vector<double> truth;
  for (auto& h : spec) truth.push_back(h.speed);
  std::vector<Sample> cold_samples, samples;
  std::vector<std::string> notes;
  if (o.warm) {
    double cold = run_batch(o, jobs, Change{}, cold_samples, row);
    notes.push_back(fmt("cold %.3f x ideal (%.3f x the blind ideal)", cold / ideal_makespan(spec, jobs, o.k, unit_s),
                        cold / ideal_makespan(spec, jobs, o.k, unit_s, Change{}, 0, 1, true)));
  }
  row.ideal = ideal_makespan(spec, jobs, o.k, unit_s, o.change);
  row.bound = o.change.host >= 0 ? 0 : lower_bound(spec, jobs, o.k, unit_s);
  row.makespan = run_batch(o, jobs, o.change, samples, row);
  if (!o.sock.empty()) {
    // The warm batch's samples continue the warm-up only when nothing changed in it.
    std::vector<Sample> more = o.change.host < 0 ? samples : std::vector<Sample>{};
    if (o.warm) notes.push_back(warmup_note(cold_samples, more, o.njobs, row.hs, truth));
    if (o.change.host >= 0) notes.push_back(change_note(samples, o.change, row.hs, truth));
  }
  for (auto& n : notes) row.notes += (row.notes.empty() ? "" : "; ") + n;
  print_row(o, row);
  return 0;
}

int cmd_ideal(int argc, char** argv) {
  std::string spec = "4x3,2x2,2x1", order = "desc";
  const char* change = nullptr;
  double unit_ms = 30, jitter_ms = 0;
  int k = 16, njobs = 200, reps = 20;
  uint64_t seed = 7;
  int ch;
  while ((ch = getopt(argc, argv, "C:j:o:r:H:u:k:n:s:")) != -1) {
    switch (ch) {
      case 'C': change = optarg; break;
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
  Change c;
  if (change) {
    c = parse_change(change, int(hosts.size()));
    c.at_job = njobs / 2;
  }
  long total = 0;
  for (int w : jobs) total += w;
  double ideal = ideal_makespan(hosts, jobs, k, unit_ms / 1000.0, c);
  std::printf("jobs %d total work %ld units, ideal makespan %.3fs", njobs, total, ideal);
  if (c.host < 0) {
    double bound = lower_bound(hosts, jobs, k, unit_ms / 1000.0);
    std::printf(", lower bound %.3fs (ideal %.3f x bound)", bound, ideal / bound);
  }
  double sized = ideal_makespan(hosts, jobs, k, unit_ms / 1000.0, c, 0, 1, false, true);
  std::printf("\nsize-aware (balance -j's rule, knowing every speed and size) %.3fs (%.3f x ideal)\n", sized,
              sized / ideal);
  if (jitter_ms <= 0 || reps <= 0) return 0;
  for (bool aware : {false, true}) {
    std::vector<double> m = jittered_makespans(hosts, jobs, k, unit_ms / 1000.0, c, jitter_ms / 1000.0, reps, aware);
    std::printf("%s with 0..%.2f ms jitter per job, %d runs: min %.3fs median %.3fs max %.3fs\n",
                aware ? "size-aware" : "ideal", jitter_ms, reps, m.front(), m[m.size() / 2], m.back());
  }
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
