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
//   farm freeport [N]   prints N distinct free TCP ports of 127.0.0.1.
//   farm ideal [-H ..] [-u MS] [-k K] [-n JOBS] [-s SEED] [-o ORDER]
//              [-j JITTER_MS [-r RUNS]]
//       The ideal makespan only; with -j, also its spread when every job
//       takes up to JITTER_MS longer at random (timing sensitivity).
//
// Linux only (epoll, timerfd): it is a benchmark tool, not part of balance.

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <queue>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

namespace {

[[noreturn]] void die(const char *what) {
    std::fprintf(stderr, "farm: %s: %s\n", what, std::strerror(errno));
    std::exit(2);
}

[[noreturn]] void usage() {
    std::fprintf(stderr,
                 "usage: farm hosts [-H 4x3,2x2,2x1] [-u MS]\n"
                 "       farm run -c CTLPORT -p PORT [-k K] [-n JOBS] [-s SEED] [-o desc|random]\n"
                 "                [-l LABEL] [-t SEC]\n"
                 "       farm ideal [-H spec] [-u MS] [-k K] [-n JOBS] [-s SEED] [-o ORDER]\n"
                 "                  [-j JITTER_MS [-r RUNS]]\n"
                 "       farm header | farm freeport [N]\n");
    std::exit(2);
}

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct HostSpec {
    int slots;
    int speed;
};

std::vector<HostSpec> parse_hosts(const std::string &s) {
    std::vector<HostSpec> v;
    size_t pos = 0;
    while (pos <= s.size()) {
        size_t comma = s.find(',', pos);
        std::string item = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        int a = 0, b = 0;
        if (std::sscanf(item.c_str(), "%dx%d", &a, &b) != 2 || a < 1 || b < 1) {
            std::fprintf(stderr, "farm: bad host spec '%s' (want SLOTSxSPEED,...)\n", item.c_str());
            std::exit(2);
        }
        v.push_back({a, b});
        if (comma == std::string::npos) break;
        pos = comma + 1;
    }
    return v;
}

// ---------------------------------------------------------------- jobs ----

// splitmix64: the same job list on every platform and standard library.
struct Rng {
    uint64_t s;
    uint64_t next() {
        uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
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
std::vector<int> make_jobs(int n, uint64_t seed, const std::string &order) {
    Rng r{seed};
    std::vector<int> w(static_cast<size_t>(n));
    for (auto &x : w) x = (r.next() % 10 == 0) ? r.range(20, 40) : r.range(2, 16);
    if (order == "desc") std::stable_sort(w.begin(), w.end(), std::greater<int>());
    else if (order != "random") {
        std::fprintf(stderr, "farm: order must be desc or random\n");
        std::exit(2);
    }
    return w;
}

// Perfect scheduler: K clients, each submits its next job the moment the
// previous one ends; a request takes the fastest free slot, else waits in
// one FIFO queue for the first slot to free (fastest among those freeing at
// the same instant).  Returns the makespan in seconds.
// jitter_s > 0 adds a uniform random 0..jitter_s to every job's duration (a
// diagnostic: how sensitive the makespan is to small timing differences).
double ideal_makespan(const std::vector<HostSpec> &hosts, const std::vector<int> &jobs, int k, double unit_s,
                      double jitter_s = 0, uint64_t jseed = 1) {
    Rng jr{jseed};
    struct Slot {
        double speed;
        double busy_until;
    };
    std::vector<Slot> slots;
    for (auto &h : hosts)
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
        for (auto &s : slots) earliest = std::min(earliest, s.busy_until);
        double start = std::max(t, earliest);
        Slot *best = nullptr;
        for (auto &s : slots)
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

void set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) die("fcntl");
}

int listen_loopback(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (bind(fd, (sockaddr *)&a, sizeof a) < 0) die("bind");
    if (listen(fd, 1024) < 0) die("listen");
    socklen_t len = sizeof a;
    if (getsockname(fd, (sockaddr *)&a, &len) < 0) die("getsockname");
    *port = ntohs(a.sin_port);
    set_nonblock(fd);
    return fd;
}

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
    int lfd = -1;
    int port = 0;
    int open = 0;
    int maxconc = 0;
    long jobs = 0;
    int working = 0;
};

int cmd_hosts(int argc, char **argv) {
    std::string spec = "4x3,2x2,2x1";
    double unit_ms = 30;
    for (int i = 2; i < argc; i++) {
        std::string a = argv[i];
        if (a == "-H" && i + 1 < argc) spec = argv[++i];
        else if (a == "-u" && i + 1 < argc) unit_ms = std::atof(argv[++i]);
        else usage();
    }
    if (unit_ms <= 0) usage();
    const double unit_s = unit_ms / 1000.0;
    std::vector<Host> hosts;
    for (auto &h : parse_hosts(spec)) hosts.push_back(Host{h});

    struct sigaction sa{};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (tfd < 0) die("timerfd_create");
    // epoll data: fd number; listeners/timer identified by lookup tables.
    std::map<int, int> listener;  // fd -> host index, -1 = control
    int ctl_port = 0;
    int cfd = listen_loopback(&ctl_port);
    listener[cfd] = -1;
    for (size_t i = 0; i < hosts.size(); i++) {
        hosts[i].lfd = listen_loopback(&hosts[i].port);
        listener[hosts[i].lfd] = int(i);
    }
    auto add = [&](int fd) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.fd = fd;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
    };
    add(tfd);
    for (auto &l : listener) add(l.first);

    std::printf("%d", ctl_port);
    for (auto &h : hosts) std::printf(" %d", h.port);
    std::printf("\n");
    std::fflush(stdout);

    std::map<int, Conn> conns;
    double last = now_s();

    auto close_conn = [&](int fd) {
        auto it = conns.find(fd);
        if (it == conns.end()) return;
        Conn &c = it->second;
        if (c.host >= 0) {
            hosts[c.host].open--;
            if (c.working) hosts[c.host].working--;
        }
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
        close(fd);
        conns.erase(it);
    };
    auto rate = [&](const Host &h) {
        return h.working <= h.spec.slots ? double(h.spec.speed)
                                         : double(h.spec.speed) * h.spec.slots / h.working;
    };
    // Advance the fluid simulation to now, finish completed jobs, arm the
    // timer for the next completion.
    auto advance = [&]() {
        double t = now_s();
        double dt = t - last;
        last = t;
        std::vector<int> done;
        for (auto &kv : conns) {
            Conn &c = kv.second;
            if (!c.working) continue;
            c.remaining -= rate(hosts[c.host]) * dt;
            if (c.remaining <= 1e-6) done.push_back(kv.first);
        }
        for (int fd : done) {
            Conn &c = conns[fd];
            Host &h = hosts[c.host];
            char buf[64];
            int n = std::snprintf(buf, sizeof buf, "DONE %ld %d\n", c.id, c.work);
            // Tiny reply into an empty socket buffer: never blocks.
            if (write(fd, buf, size_t(n)) == n) h.jobs++;
            close_conn(fd);
        }
        double next = 1e300;
        for (auto &kv : conns) {
            const Conn &c = kv.second;
            if (c.working) next = std::min(next, c.remaining / rate(hosts[c.host]));
        }
        itimerspec its{};
        if (next < 1e299) {
            if (next < 1e-6) next = 1e-6;
            its.it_value.tv_sec = time_t(next);
            its.it_value.tv_nsec = long((next - double(its.it_value.tv_sec)) * 1e9);
            if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1000;
        }
        timerfd_settime(tfd, 0, &its, nullptr);
    };

    epoll_event evs[256];
    while (!g_stop) {
        int n = epoll_wait(ep, evs, 256, 1000);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        bool changed = false;
        advance();  // progress of running jobs up to now, before any change
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == tfd) {
                uint64_t x;
                while (read(tfd, &x, sizeof x) > 0) {
                }
                changed = true;
                continue;
            }
            auto l = listener.find(fd);
            if (l != listener.end()) {
                for (;;) {
                    int s = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (s < 0) break;
                    int one = 1;
                    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    Conn c;
                    c.fd = s;
                    c.host = l->second;
                    if (c.host >= 0) {
                        Host &h = hosts[c.host];
                        h.open++;
                        h.maxconc = std::max(h.maxconc, h.open);
                    }
                    conns[s] = c;
                    add(s);
                }
                continue;
            }
            auto it = conns.find(fd);
            if (it == conns.end()) continue;
            Conn &c = it->second;
            char buf[4096];
            ssize_t r = read(fd, buf, sizeof buf);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                close_conn(fd);  // client gone (a job abandoned mid-way is simply dropped)
                changed = true;
                continue;
            }
            if (r < 0) continue;
            c.in.append(buf, size_t(r));
            if (c.in.size() > 4096) {
                close_conn(fd);
                changed = true;
                continue;
            }
            size_t nl;
            while ((nl = c.in.find('\n')) != std::string::npos) {
                std::string line = c.in.substr(0, nl);
                c.in.erase(0, nl + 1);
                if (c.host >= 0) {
                    long id;
                    int work;
                    if (c.working || std::sscanf(line.c_str(), "JOB %ld %d", &id, &work) != 2 || work < 0) {
                        close_conn(fd);
                        break;
                    }
                    c.working = true;
                    c.id = id;
                    c.work = work;
                    c.remaining = work * unit_s;
                    hosts[c.host].working++;
                    changed = true;
                } else {
                    std::string out;
                    if (line == "RESET") {
                        for (auto &h : hosts) {
                            h.maxconc = h.open;
                            h.jobs = 0;
                        }
                        out = "OK\n";
                    } else if (line == "STATS") {
                        char b[128];
                        std::snprintf(b, sizeof b, "UNIT %.3f\n", unit_ms);
                        out = b;
                        for (size_t j = 0; j < hosts.size(); j++) {
                            const Host &h = hosts[j];
                            std::snprintf(b, sizeof b, "HOST %zu %d %d %d %ld %d\n", j, h.spec.slots, h.spec.speed,
                                          h.maxconc, h.jobs, h.open);
                            out += b;
                        }
                        out += "END\n";
                    } else {
                        out = "ERR\n";
                    }
                    // Small replies; the control client reads them at once.
                    if (write(fd, out.data(), out.size()) < 0) {
                        close_conn(fd);
                        break;
                    }
                }
            }
        }
        if (changed || n == 0) advance();  // re-arm with the new job mix
    }
    return 0;
}

// ----------------------------------------------------------------- run ----

int connect_port(int port, double timeout_s) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    timeval tv{};
    tv.tv_sec = time_t(timeout_s);
    tv.tv_usec = suseconds_t((timeout_s - double(tv.tv_sec)) * 1e6);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(uint16_t(port));
    if (connect(fd, (sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

bool write_all(int fd, const std::string &s) {
    size_t off = 0;
    while (off < s.size()) {
        ssize_t w = write(fd, s.data() + off, s.size() - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        off += size_t(w);
    }
    return true;
}

// Reads until EOF (or until `until` is seen at a line start); false on error/timeout.
bool read_reply(int fd, std::string &out, const char *until = nullptr) {
    char buf[4096];
    for (;;) {
        if (until) {
            size_t p = out.find(until);
            if (p != std::string::npos && (p == 0 || out[p - 1] == '\n') && out.find('\n', p) != std::string::npos)
                return true;
        }
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

bool ctl(int port, const char *cmd, std::string &reply) {
    int fd = connect_port(port, 10);
    if (fd < 0) return false;
    bool ok = write_all(fd, std::string(cmd) + "\n") && read_reply(fd, reply, std::strcmp(cmd, "STATS") ? "OK" : "END");
    close(fd);
    return ok;
}

bool stats(int port, double *unit_ms, std::vector<HostStat> &hs) {
    std::string r;
    if (!ctl(port, "STATS", r)) return false;
    hs.clear();
    size_t pos = 0;
    while (pos < r.size()) {
        size_t nl = r.find('\n', pos);
        if (nl == std::string::npos) break;
        std::string line = r.substr(pos, nl - pos);
        pos = nl + 1;
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
    std::printf("%-18s %3s %4s %9s %9s %6s  %-14s %-14s %4s %s\n", "target", "K", "jobs", "makespan", "ideal",
                "ratio", "maxconc/slots", "jobs per host", "fail", "verdict");
}

int cmd_run(int argc, char **argv) {
    int ctl_port = 0, port = 0, k = 16, njobs = 200;
    uint64_t seed = 7;
    double timeout = 60;
    std::string label = "proxy", order = "desc";
    for (int i = 2; i < argc; i++) {
        std::string a = argv[i];
        if (i + 1 >= argc) usage();
        if (a == "-c") ctl_port = std::atoi(argv[++i]);
        else if (a == "-p") port = std::atoi(argv[++i]);
        else if (a == "-k") k = std::atoi(argv[++i]);
        else if (a == "-n") njobs = std::atoi(argv[++i]);
        else if (a == "-s") seed = std::strtoull(argv[++i], nullptr, 10);
        else if (a == "-l") label = argv[++i];
        else if (a == "-o") order = argv[++i];
        else if (a == "-t") timeout = std::atof(argv[++i]);
        else usage();
    }
    if (ctl_port <= 0 || port <= 0 || k < 1 || njobs < 1) usage();
    signal(SIGPIPE, SIG_IGN);

    std::string r;
    if (!ctl(ctl_port, "RESET", r)) {
        std::fprintf(stderr, "farm: cannot reach the hosts' control port %d\n", ctl_port);
        return 2;
    }
    double unit_ms = 0;
    std::vector<HostStat> hs;
    if (!stats(ctl_port, &unit_ms, hs)) {
        std::fprintf(stderr, "farm: bad STATS reply\n");
        return 2;
    }
    std::vector<HostSpec> spec;
    for (auto &h : hs) spec.push_back({h.slots, h.speed});
    std::vector<int> jobs = make_jobs(njobs, seed, order);
    double ideal = ideal_makespan(spec, jobs, k, unit_ms / 1000.0);

    std::atomic<int> next{0};
    std::atomic<int> failed{0};
    std::mutex mu;
    std::string first_error;
    double t0 = now_s();
    double t_end = t0;
    auto client = [&]() {
        for (;;) {
            int j = next.fetch_add(1);
            if (j >= njobs) return;
            std::string err;
            int fd = connect_port(port, timeout);
            if (fd < 0) {
                err = std::string("connect: ") + std::strerror(errno);
            } else {
                char req[64];
                std::snprintf(req, sizeof req, "JOB %d %d\n", j, jobs[size_t(j)]);
                std::string reply;
                char want[64];
                std::snprintf(want, sizeof want, "DONE %d %d\n", j, jobs[size_t(j)]);
                if (!write_all(fd, req)) err = std::string("send: ") + std::strerror(errno);
                else if (!read_reply(fd, reply)) err = std::string("recv: ") + std::strerror(errno);
                else if (reply != want) err = reply.empty() ? "closed without reply" : "wrong reply";
                close(fd);
            }
            double t = now_s();
            std::lock_guard<std::mutex> g(mu);
            if (!err.empty()) {
                failed++;
                if (first_error.empty()) first_error = "job " + std::to_string(j) + ": " + err;
            } else {
                t_end = std::max(t_end, t);
            }
        }
    };
    std::vector<std::thread> th;
    for (int i = 0; i < k; i++) th.emplace_back(client);
    for (auto &t : th) t.join();
    double makespan = t_end - t0;

    // Let the hosts notice the last closes before reading the counters.
    usleep(50000);
    if (!stats(ctl_port, &unit_ms, hs)) {
        std::fprintf(stderr, "farm: bad STATS reply\n");
        return 2;
    }
    std::string conc, per;
    bool over = false;
    long served = 0;
    for (auto &h : hs) {
        if (!conc.empty()) conc += " ";
        if (!per.empty()) per += " ";
        conc += std::to_string(h.maxconc) + "/" + std::to_string(h.slots);
        per += std::to_string(h.jobs);
        if (h.maxconc > h.slots) over = true;
        served += h.jobs;
    }
    double ratio = makespan / ideal;
    std::string verdict;
    if (failed) verdict += "DROPPED ";
    if (over) verdict += "OVER-MAXC ";
    if (ratio > 1.05) verdict += "SLOW ";
    if (verdict.empty()) verdict = "ok";
    std::printf("%-18s %3d %4d %8.3fs %8.3fs %6.3f  %-14s %-14s %4d %s\n", label.c_str(), k, njobs, makespan, ideal,
                ratio, conc.c_str(), per.c_str(), failed.load(), verdict.c_str());
    if (!first_error.empty()) std::printf("  first failure: %s (hosts finished %ld jobs)\n", first_error.c_str(), served);
    std::fflush(stdout);
    return 0;
}

int cmd_ideal(int argc, char **argv) {
    std::string spec = "4x3,2x2,2x1";
    double unit_ms = 30;
    int k = 16, njobs = 200, reps = 20;
    uint64_t seed = 7;
    double jitter_ms = 0;
    std::string order = "desc";
    for (int i = 2; i < argc; i++) {
        std::string a = argv[i];
        if (i + 1 >= argc) usage();
        if (a == "-j") jitter_ms = std::atof(argv[++i]);
        else if (a == "-o") order = argv[++i];
        else if (a == "-r") reps = std::atoi(argv[++i]);
        else if (a == "-H") spec = argv[++i];
        else if (a == "-u") unit_ms = std::atof(argv[++i]);
        else if (a == "-k") k = std::atoi(argv[++i]);
        else if (a == "-n") njobs = std::atoi(argv[++i]);
        else if (a == "-s") seed = std::strtoull(argv[++i], nullptr, 10);
        else usage();
    }
    auto jobs = make_jobs(njobs, seed, order);
    long total = 0;
    for (int w : jobs) total += w;
    std::printf("jobs %d total work %ld units, ideal makespan %.3fs\n", njobs, total,
                ideal_makespan(parse_hosts(spec), jobs, k, unit_ms / 1000.0));
    if (jitter_ms > 0 && reps > 0) {
        std::vector<double> m;
        for (int r = 0; r < reps; r++)
            m.push_back(ideal_makespan(parse_hosts(spec), jobs, k, unit_ms / 1000.0, jitter_ms / 1000.0, uint64_t(r + 1)));
        std::sort(m.begin(), m.end());
        std::printf("with 0..%.2f ms jitter per job, %d runs: min %.3fs median %.3fs max %.3fs\n", jitter_ms, reps,
                    m.front(), m[m.size() / 2], m.back());
    }
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    if (argc < 2) usage();
    std::string cmd = argv[1];
    if (cmd == "hosts") return cmd_hosts(argc, argv);
    if (cmd == "run") return cmd_run(argc, argv);
    if (cmd == "ideal") return cmd_ideal(argc, argv);
    if (cmd == "freeport") {  // N distinct free loopback ports (bound together, then released)
        int n = argc > 2 ? std::atoi(argv[2]) : 1;
        std::vector<int> fds;
        for (int i = 0; i < n; i++) {
            int port;
            fds.push_back(listen_loopback(&port));
            std::printf(i ? " %d" : "%d", port);
        }
        std::printf("\n");
        for (int fd : fds) close(fd);
        return 0;
    }
    if (cmd == "header") {
        header();
        return 0;
    }
    usage();
}
