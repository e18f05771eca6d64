// loadgen: back-end server and load generator for benchmarking balance.
// C++17, POSIX + standard library only (Linux: epoll, /proc).
//
//   loadgen server PORT [--host H]        back-end: echo / sink / source
//   loadgen short    --port P [--conns 20000] [--conc 32] [--size 64] [--pid PID]
//   loadgen pingpong --port P [--conns 1] [--size 64] [--secs 3] [--idle 0] [--pid PID]
//   loadgen bulk     --port P --dir up|down [--conns 4] [--bytes N] [--pid PID]
//   loadgen freeport                      print a free TCP port on 127.0.0.1
//   loadgen wait PORT [SECS]              wait until PORT accepts connections
//   loadgen rss PID                       print VmRSS (kB) of PID
//
// Wire protocol (client -> back-end), decided by the first byte:
//   'E' ...            echo: every byte received (including the 'E') is echoed.
//   'S' seed8 len8     sink: the server reads len bytes of the stream(seed) and
//                      verifies them, then answers 'O' or 'F' + first bad offset (8 B).
//   'R' seed8 len8     source: the server sends len bytes of stream(seed).
// stream(seed): 64-bit words w[i] = base[i % 4096] ^ (i * K) ^ seed (little endian),
// a position-dependent pattern: loss, duplication, reordering or cross-talk
// between connections (each has its own seed) is detected by the receiver.
//
// Results are printed as one line of key=value pairs on stdout; on failure the
// line contains error=... and the exit status is 1.

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

// ---------------------------------------------------------------- utilities

double now() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

[[noreturn]] void die(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void die(const char* fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char* p = msg; *p; ++p)
        if (*p == ' ') *p = '_';
    printf("error=%s\n", msg);
    fflush(stdout);
    fprintf(stderr, "loadgen: %s\n", msg);
    exit(1);
}

void raise_nofile() {
    rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

void set_nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

sockaddr_in make_addr(const std::string& host, int port) {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    if (inet_pton(AF_INET, host.c_str(), &sa.sin_addr) != 1) die("bad address %s", host.c_str());
    return sa;
}

// CPU time of a process in microseconds, -1 if unknown: the scheduler's
// nanosecond run time of each of its threads (/proc/PID/task/T/schedstat)
// where the kernel keeps it, else utime+stime, which counts in 10 ms ticks.
long long proc_cpu_us(int pid) {
    if (pid <= 0) return -1;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    if (DIR* tasks = opendir(path)) {
        unsigned long long ns = 0;
        bool found = false;
        while (dirent* t = readdir(tasks)) {
            if (t->d_name[0] == '.') continue;
            std::ifstream f(std::string(path) + "/" + t->d_name + "/schedstat");
            unsigned long long run = 0;
            if (f >> run) { ns += run; found = true; }
        }
        closedir(tasks);
        if (found && ns > 0) return (long long)(ns / 1000);
    }
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    std::ifstream f(path);
    std::string s;
    if (!std::getline(f, s)) return -1;
    size_t p = s.rfind(')');
    if (p == std::string::npos) return -1;
    std::istringstream is(s.substr(p + 2));
    std::string field;
    // fields after ')' start with field 3 (state); utime is 14, stime 15
    unsigned long long ut = 0, st = 0;
    for (int i = 3; i <= 15 && (is >> field); ++i) {
        if (i == 14) ut = std::stoull(field);
        if (i == 15) st = std::stoull(field);
    }
    long tck = sysconf(_SC_CLK_TCK);
    return (long long)((ut + st) * 1000000ULL / (unsigned long long)tck);
}

long proc_rss_kb(int pid) {
    if (pid <= 0) return -1;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    std::ifstream f(path);
    std::string line;
    while (std::getline(f, line))
        if (line.compare(0, 6, "VmRSS:") == 0) return std::atol(line.c_str() + 6);
    return -1;
}

bool proc_alive(int pid) {
    if (pid <= 0) return true;
    return kill(pid, 0) == 0;
}

// ---------------------------------------------------------------- stream pattern

struct Pattern {
    uint64_t base[4096];
    Pattern() {
        uint64_t x = 0x243F6A8885A308D3ULL;
        for (auto& b : base) {  // splitmix64
            x += 0x9E3779B97F4A7C15ULL;
            uint64_t z = x;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
            b = z ^ (z >> 31);
        }
    }
    inline uint64_t word(uint64_t seed, uint64_t i) const {
        return base[i & 4095] ^ (i * 0xD6E8FEB86659FD93ULL) ^ seed;
    }
    inline uint8_t byte(uint64_t seed, uint64_t off) const {
        return (uint8_t)(word(seed, off >> 3) >> ((off & 7) * 8));
    }
    void gen(uint8_t* out, uint64_t off, size_t n, uint64_t seed) const {
        while (n && (off & 7)) { *out++ = byte(seed, off++); --n; }
        uint64_t i = off >> 3;
        while (n >= 8) {
            uint64_t w = word(seed, i++);
            memcpy(out, &w, 8);
            out += 8;
            n -= 8;
        }
        off = i << 3;
        while (n) { *out++ = byte(seed, off++); --n; }
    }
    // returns offset of first mismatch, or UINT64_MAX if all match
    uint64_t check(const uint8_t* in, uint64_t off, size_t n, uint64_t seed) const {
        while (n && (off & 7)) {
            if (*in != byte(seed, off)) return off;
            ++in, ++off, --n;
        }
        uint64_t i = off >> 3;
        while (n >= 8) {
            uint64_t w;
            memcpy(&w, in, 8);
            if (w != word(seed, i)) {
                for (int k = 0; k < 8; ++k)
                    if (in[k] != byte(seed, i * 8 + k)) return i * 8 + k;
            }
            ++i, in += 8, n -= 8;
        }
        off = i << 3;
        while (n) {
            if (*in != byte(seed, off)) return off;
            ++in, ++off, --n;
        }
        return UINT64_MAX;
    }
};
const Pattern pat;

void put64(uint8_t* p, uint64_t v) { memcpy(p, &v, 8); }
uint64_t get64(const uint8_t* p) { uint64_t v; memcpy(&v, p, 8); return v; }

// ---------------------------------------------------------------- arguments

struct Args {
    std::map<std::string, std::string> kv;
    std::vector<std::string> pos;
    Args(int argc, char** argv, int start) {
        for (int i = start; i < argc; ++i) {
            std::string a = argv[i];
            if (a.size() > 2 && a[0] == '-' && a[1] == '-') {
                if (i + 1 >= argc) die("option %s needs a value", a.c_str());
                kv[a.substr(2)] = argv[++i];
            } else {
                pos.push_back(a);
            }
        }
    }
    std::string str(const std::string& k, const std::string& d) const {
        auto it = kv.find(k);
        return it == kv.end() ? d : it->second;
    }
    long long num(const std::string& k, long long d) const {
        auto it = kv.find(k);
        if (it == kv.end()) return d;
        char* end;
        long long v = strtoll(it->second.c_str(), &end, 10);
        if (*end == 'k' || *end == 'K') v <<= 10;
        else if (*end == 'm' || *end == 'M') v <<= 20;
        else if (*end == 'g' || *end == 'G') v <<= 30;
        return v;
    }
    double dbl(const std::string& k, double d) const {
        auto it = kv.find(k);
        return it == kv.end() ? d : atof(it->second.c_str());
    }
};

// ---------------------------------------------------------------- back-end server

struct SConn {
    int fd = -1;
    char mode = 0;
    uint8_t hdr[17];
    int hlen = 0;
    uint64_t seed = 0, len = 0, done = 0;
    uint64_t bad = UINT64_MAX;
    std::vector<uint8_t> out;  // pending output
    size_t outpos = 0;
    bool out_armed = false;
    bool verdict_sent = false;
};

int cmd_server(const Args& a) {
    if (a.pos.empty()) die("server needs a port");
    int port = atoi(a.pos[0].c_str());
    std::string host = a.str("host", "127.0.0.1");
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in sa = make_addr(host, port);
    if (bind(lfd, (sockaddr*)&sa, sizeof sa) < 0) die("bind %d: %s", port, strerror(errno));
    if (listen(lfd, 4096) < 0) die("listen: %s", strerror(errno));
    int ep = epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = lfd;
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);

    std::vector<SConn*> conns;
    static uint8_t buf[256 * 1024];
    std::vector<epoll_event> evs(512);

    auto closec = [&](SConn* c) {
        close(c->fd);
        conns[c->fd] = nullptr;
        delete c;
    };
    auto arm = [&](SConn* c, bool want_out) {
        if (c->out_armed == want_out) return;
        epoll_event e{};
        // while output is pending for echo, stop reading (back-pressure)
        e.events = want_out ? (c->mode == 'E' ? EPOLLOUT : (EPOLLIN | EPOLLOUT)) : EPOLLIN;
        e.data.fd = c->fd;
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
        c->out_armed = want_out;
    };
    // flush pending output; returns false if connection died
    auto flush = [&](SConn* c) -> bool {
        while (c->outpos < c->out.size()) {
            ssize_t n = write(c->fd, c->out.data() + c->outpos, c->out.size() - c->outpos);
            if (n < 0) {
                if (errno == EAGAIN) return true;
                if (errno == EINTR) continue;
                return false;
            }
            c->outpos += n;
        }
        c->out.clear();
        c->outpos = 0;
        return true;
    };
    // source: generate and write until blocked or done
    auto pump_source = [&](SConn* c) -> bool {
        while (c->done < c->len) {
            size_t n = (size_t)std::min<uint64_t>(sizeof buf, c->len - c->done);
            pat.gen(buf, c->done, n, c->seed);
            ssize_t w = write(c->fd, buf, n);
            if (w < 0) {
                if (errno == EAGAIN) { arm(c, true); return true; }
                if (errno == EINTR) continue;
                return false;
            }
            c->done += w;
        }
        arm(c, false);
        return true;
    };
    auto send_verdict = [&](SConn* c) -> bool {
        uint8_t v[9];
        size_t n = 1;
        if (c->bad == UINT64_MAX) v[0] = 'O';
        else { v[0] = 'F'; put64(v + 1, c->bad); n = 9; }
        c->verdict_sent = true;
        c->out.insert(c->out.end(), v, v + n);
        if (!flush(c)) return false;
        arm(c, !c->out.empty());
        return true;
    };
    // process received bytes; returns false to close
    auto consume = [&](SConn* c, uint8_t* p, size_t n) -> bool {
        if (c->mode == 0) {
            c->mode = (char)p[0];
            if (c->mode != 'E' && c->mode != 'S' && c->mode != 'R') {
                fprintf(stderr, "loadgen server: unknown mode byte 0x%02x\n", p[0]);
                return false;
            }
        }
        if (c->mode == 'E') {
            if (!c->out.empty()) {
                c->out.insert(c->out.end(), p, p + n);
                return true;
            }
            size_t off = 0;
            while (off < n) {
                ssize_t w = write(c->fd, p + off, n - off);
                if (w < 0) {
                    if (errno == EINTR) continue;
                    if (errno == EAGAIN) break;
                    return false;
                }
                off += w;
            }
            if (off < n) {
                c->out.assign(p + off, p + n);
                c->outpos = 0;
                arm(c, true);
            }
            return true;
        }
        // S or R: header first
        while (c->hlen < 17 && n) {
            c->hdr[c->hlen++] = *p++;
            --n;
            if (c->hlen == 17) {
                c->seed = get64(c->hdr + 1);
                c->len = get64(c->hdr + 9);
                if (c->mode == 'R') return pump_source(c);
                if (c->mode == 'S' && c->len == 0) return send_verdict(c);
            }
        }
        if (!n) return true;
        if (c->mode == 'R') {
            fprintf(stderr, "loadgen server: unexpected %zu bytes on source connection\n", n);
            return false;
        }
        // sink
        if (c->verdict_sent || c->done + n > c->len) {
            if (c->bad == UINT64_MAX) c->bad = c->done + std::min<uint64_t>(n, c->len - c->done);
            fprintf(stderr, "loadgen server: sink got more than %" PRIu64 " bytes\n", c->len);
            return false;
        }
        if (c->bad == UINT64_MAX) c->bad = pat.check(p, c->done, n, c->seed);
        c->done += n;
        if (c->done == c->len) return send_verdict(c);
        return true;
    };

    for (;;) {
        int k = epoll_wait(ep, evs.data(), (int)evs.size(), -1);
        if (k < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait: %s", strerror(errno));
        }
        for (int i = 0; i < k; ++i) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                for (;;) {
                    int cfd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (cfd < 0) {
                        if (errno == EAGAIN || errno == EINTR) break;
                        if (errno == EMFILE || errno == ENFILE) {
                            fprintf(stderr, "loadgen server: accept: %s\n", strerror(errno));
                            break;
                        }
                        break;
                    }
                    set_nodelay(cfd);
                    if ((size_t)cfd >= conns.size()) conns.resize(cfd + 1024, nullptr);
                    SConn* c = new SConn;
                    c->fd = cfd;
                    conns[cfd] = c;
                    epoll_event e{};
                    e.events = EPOLLIN;
                    e.data.fd = cfd;
                    epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &e);
                }
                continue;
            }
            SConn* c = conns[fd];
            if (!c) continue;
            uint32_t e = evs[i].events;
            bool ok = true;
            if (e & EPOLLOUT) {
                if (c->mode == 'R' && c->done < c->len) ok = pump_source(c);
                else {
                    ok = flush(c);
                    if (ok && c->out.empty()) arm(c, false);
                }
            }
            if (ok && (e & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !(c->mode == 'E' && c->out_armed)) {
                for (int rounds = 0; rounds < 4; ++rounds) {
                    ssize_t n = read(fd, buf, sizeof buf);
                    if (n > 0) {
                        ok = consume(c, buf, (size_t)n);
                        if (!ok || (size_t)n < sizeof buf) break;
                        if (c->mode == 'E' && c->out_armed) break;
                        continue;
                    }
                    if (n == 0) ok = false;
                    else if (errno != EAGAIN && errno != EINTR) ok = false;
                    break;
                }
            } else if (ok && (e & (EPOLLHUP | EPOLLERR))) {
                ok = false;
            }
            if (!ok) closec(c);
        }
    }
}

// ---------------------------------------------------------------- client helpers

struct Client {
    sockaddr_in addr;
    int ep;
    double stall;
    int pid;
    Client(const Args& a) {
        addr = make_addr(a.str("host", "127.0.0.1"), (int)a.num("port", 0));
        if (a.num("port", 0) <= 0) die("--port is required");
        ep = epoll_create1(EPOLL_CLOEXEC);
        stall = a.dbl("stall", 10);
        pid = (int)a.num("pid", 0);
    }
    // start a non-blocking connect; returns fd (registered for EPOLLOUT with data u32 = tag)
    int start_connect(uint64_t tag) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) die("socket: %s", strerror(errno));
        set_nodelay(fd);
        int r = connect(fd, (sockaddr*)&addr, sizeof addr);
        if (r < 0 && errno != EINPROGRESS) die("connect: %s", strerror(errno));
        epoll_event e{};
        e.events = EPOLLOUT;
        e.data.u64 = tag;
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
        return fd;
    }
    void mod(int fd, uint32_t events, uint64_t tag) {
        epoll_event e{};
        e.events = events;
        e.data.u64 = tag;
        epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e);
    }
    static int sock_error(int fd) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
        return err;
    }
    // blocking connect with timeout, then non-blocking
    int connect_blocking() {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) die("socket: %s", strerror(errno));
        set_nodelay(fd);
        timeval tv{(time_t)stall, 0};
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, (sockaddr*)&addr, sizeof addr) < 0) die("connect: %s", strerror(errno));
        set_nonblock(fd);
        return fd;
    }
};

// write all of buf on a non-blocking fd, waiting with poll if needed (small messages)
bool write_all_nb(int fd, const uint8_t* p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) { usleep(100); continue; }
            return false;
        }
        p += w, n -= w;
    }
    return true;
}

void fill_msg(uint8_t* m, size_t size, uint64_t conn, uint64_t counter) {
    for (size_t i = 0; i < size; ++i) m[i] = (uint8_t)(conn * 131 + counter * 7 + i);
    m[0] = 'E';
    if (size >= 17) {
        put64(m + 1, conn);
        put64(m + 9, counter);
    }
}

// ---------------------------------------------------------------- idle connections
// Opens n connections, each does one 16-byte echo exchange (so the proxy has
// relayed it to the back-end), then stays open. Returns the fds.

std::vector<int> open_idle(Client& cl, int n, int conc) {
    std::vector<int> fds(n, -1);
    std::vector<int> got(n, 0);
    std::vector<int> state(n, 0);  // 0 connecting, 1 waiting echo, 2 done
    const size_t SZ = 16;
    int started = 0, done = 0, inflight = 0;
    double last = now();
    std::vector<epoll_event> evs(256);
    uint8_t buf[64], msg[SZ];
    while (done < n) {
        while (inflight < conc && started < n) {
            fds[started] = cl.start_connect((uint64_t)started);
            ++started, ++inflight;
        }
        int k = epoll_wait(cl.ep, evs.data(), (int)evs.size(), 100);
        for (int i = 0; i < k; ++i) {
            int id = (int)evs[i].data.u64;
            int fd = fds[id];
            if (state[id] == 0) {
                int err = Client::sock_error(fd);
                if (err) die("idle connect %d: %s", id, strerror(err));
                fill_msg(msg, SZ, id, 0);
                if (!write_all_nb(fd, msg, SZ)) die("idle write: %s", strerror(errno));
                state[id] = 1;
                cl.mod(fd, EPOLLIN, (uint64_t)id);
            } else if (state[id] == 1) {
                ssize_t r = read(fd, buf, sizeof buf);
                if (r == 0) die("idle connection %d closed by peer during setup", id);
                if (r < 0) {
                    if (errno == EAGAIN) continue;
                    die("idle read: %s", strerror(errno));
                }
                got[id] += (int)r;
                if (got[id] > (int)SZ) die("idle connection %d: too many bytes", id);
                if (got[id] == (int)SZ) {
                    state[id] = 2;
                    // stay registered: any later event means the proxy broke the idle connection
                    cl.mod(fd, EPOLLIN | EPOLLRDHUP, (uint64_t)id | (1ULL << 40));
                    ++done, --inflight;
                    last = now();
                }
            }
        }
        if (now() - last > cl.stall) die("stall opening idle connections (%d of %d done)", done, n);
    }
    return fds;
}

// final check: one more echo exchange on every idle connection
int check_idle(std::vector<int>& fds) {
    const size_t SZ = 16;
    uint8_t msg[SZ], buf[64];
    int bad = 0;
    for (size_t i = 0; i < fds.size(); ++i) {
        fill_msg(msg, SZ, i, 1);
        if (!write_all_nb(fds[i], msg, SZ)) ++bad;
    }
    double t0 = now();
    for (size_t i = 0; i < fds.size(); ++i) {
        size_t got = 0;
        while (got < SZ) {
            ssize_t r = read(fds[i], buf, sizeof buf);
            if (r > 0) { got += r; continue; }
            if (r < 0 && errno == EAGAIN && now() - t0 < 10) { usleep(200); continue; }
            break;
        }
        if (got != SZ) ++bad;
    }
    return bad;
}

// ---------------------------------------------------------------- short connections

int cmd_short(const Args& a) {
    Client cl(a);
    int total = (int)a.num("conns", 20000);
    int conc = (int)a.num("conc", 32);
    size_t size = (size_t)a.num("size", 64);
    struct S { int fd = -1; int state = 0; size_t got = 0; double t0 = 0; uint64_t id = 0; };
    std::vector<S> slots(conc);
    std::vector<double> lat;
    lat.reserve(total);
    std::vector<uint8_t> msg(size), buf(std::max<size_t>(size, 4096));
    int started = 0, completed = 0, errors = 0;
    std::vector<epoll_event> evs(256);
    long long cpu0 = proc_cpu_us(cl.pid);
    double t0 = now(), last = t0;
    char firsterr[128] = "";
    auto fail = [&](S& s, const char* why) {
        ++errors;
        if (!firsterr[0]) snprintf(firsterr, sizeof firsterr, "conn_%" PRIu64 "_%s", s.id, why);
        close(s.fd);
        s.fd = -1;
        ++completed;
        last = now();
    };
    auto launch = [&](int slot) {
        S& s = slots[slot];
        s.id = (uint64_t)started++;
        s.state = 0;
        s.got = 0;
        s.t0 = now();
        s.fd = cl.start_connect((uint64_t)slot);
    };
    for (int i = 0; i < conc && started < total; ++i) launch(i);
    while (completed < total) {
        int k = epoll_wait(cl.ep, evs.data(), (int)evs.size(), 100);
        for (int i = 0; i < k; ++i) {
            int slot = (int)evs[i].data.u64;
            S& s = slots[slot];
            if (s.fd < 0) continue;
            if (s.state == 0) {
                int err = Client::sock_error(s.fd);
                if (err) { fail(s, strerror(err)); continue; }
                fill_msg(msg.data(), size, s.id, 0);
                if (write(s.fd, msg.data(), size) != (ssize_t)size) { fail(s, "write"); continue; }
                s.state = 1;
                cl.mod(s.fd, EPOLLIN, (uint64_t)slot);
            } else {
                ssize_t r = read(s.fd, buf.data(), buf.size());
                if (r < 0 && errno == EAGAIN) continue;
                if (r <= 0) { fail(s, r == 0 ? "eof_before_echo" : strerror(errno)); continue; }
                fill_msg(msg.data(), size, s.id, 0);
                if (s.got + r > size || memcmp(buf.data(), msg.data() + s.got, r) != 0) {
                    fail(s, "bad_echo");
                    continue;
                }
                s.got += r;
                if (s.got < size) continue;
                double t = now();
                lat.push_back(t - s.t0);
                close(s.fd);
                s.fd = -1;
                ++completed;
                last = t;
            }
        }
        // relaunch free slots (after successful completion)
        for (int i = 0; i < conc; ++i)
            if (slots[i].fd < 0 && started < total) launch(i);
        if (now() - last > cl.stall) die("stall: %d of %d connections completed, %d errors", completed, total, errors);
    }
    double el = now() - t0;
    long long cpu1 = proc_cpu_us(cl.pid);
    std::sort(lat.begin(), lat.end());
    auto pct = [&](double p) { return lat.empty() ? 0 : lat[std::min(lat.size() - 1, (size_t)(p * lat.size()))] * 1e6; };
    printf("rate=%.1f p50_us=%.1f p99_us=%.1f conns=%d errors=%d secs=%.3f", total / el, pct(0.50), pct(0.99), total, errors, el);
    if (cpu0 >= 0 && cpu1 >= 0) printf(" cpu_us=%lld cpu_per_unit=%.2f", cpu1 - cpu0, (double)(cpu1 - cpu0) / total);
    if (errors) printf(" error=%d_failed_connections_first:%s", errors, firsterr);
    printf("\n");
    if (!proc_alive(cl.pid)) { printf("error=proxy_died\n"); return 1; }
    return errors ? 1 : 0;
}

// ---------------------------------------------------------------- ping-pong

int cmd_pingpong(const Args& a) {
    raise_nofile();
    Client cl(a);
    int nconn = (int)a.num("conns", 1);
    size_t size = (size_t)a.num("size", 64);
    double secs = a.dbl("secs", 3);
    int nidle = (int)a.num("idle", 0);
    if (size < 17) size = 17;

    long rss0 = -1, rss1 = -1;
    std::vector<int> idle;
    double idle_secs = 0;
    if (nidle > 0) {
        rss0 = proc_rss_kb(cl.pid);
        double t = now();
        idle = open_idle(cl, nidle, (int)a.num("idleconc", 64));
        idle_secs = now() - t;
        usleep(300000);
        rss1 = proc_rss_kb(cl.pid);
    }

    struct P { int fd; uint64_t counter = 0; size_t got = 0; std::vector<uint8_t> msg; };
    std::vector<P> ps(nconn);
    for (int i = 0; i < nconn; ++i) {
        ps[i].fd = cl.connect_blocking();
        ps[i].msg.resize(size);
        epoll_event e{};
        e.events = EPOLLIN | EPOLLRDHUP;
        e.data.u64 = (uint64_t)i;
        epoll_ctl(cl.ep, EPOLL_CTL_ADD, ps[i].fd, &e);
    }
    std::vector<uint8_t> buf(std::max<size_t>(size * 2, 65536));
    std::vector<epoll_event> evs(256);
    uint64_t rts = 0;
    int idle_broken = 0;
    bool measuring = false;
    double t0 = now(), tend = t0 + 0.2;  // 0.2 s warm-up
    long long cpu0 = -1;
    double last = t0;
    auto send_next = [&](int i) {
        P& p = ps[i];
        fill_msg(p.msg.data(), size, i, p.counter);
        p.got = 0;
        if (!write_all_nb(p.fd, p.msg.data(), size)) die("pingpong write: %s", strerror(errno));
    };
    for (int i = 0; i < nconn; ++i) send_next(i);
    for (;;) {
        int k = epoll_wait(cl.ep, evs.data(), (int)evs.size(), 100);
        double t = now();
        for (int i = 0; i < k; ++i) {
            uint64_t tag = evs[i].data.u64;
            if (tag >> 40) {  // an idle connection got an event
                int fd = idle[tag & 0xFFFFFFFF];
                ssize_t r = read(fd, buf.data(), buf.size());
                if (r == 0 || (r < 0 && errno != EAGAIN)) {
                    ++idle_broken;
                    epoll_ctl(cl.ep, EPOLL_CTL_DEL, fd, nullptr);
                }
                continue;
            }
            P& p = ps[tag];
            ssize_t r = read(p.fd, buf.data(), buf.size());
            if (r < 0 && errno == EAGAIN) continue;
            if (r <= 0) die("pingpong connection %d: %s after %" PRIu64 " round trips", (int)tag, r == 0 ? "closed by peer" : strerror(errno), rts);
            if (p.got + r > size || memcmp(buf.data(), p.msg.data() + p.got, r) != 0)
                die("pingpong connection %d: bad echo data at round trip %" PRIu64, (int)tag, p.counter);
            p.got += r;
            if (p.got == size) {
                ++p.counter;
                if (measuring) ++rts;
                last = t;
                if (t < tend || !measuring) send_next((int)tag);
            }
        }
        if (!measuring && t >= tend) {
            // warm-up over: wait until everything is in flight again, then measure
            measuring = true;
            cpu0 = proc_cpu_us(cl.pid);
            t0 = now();
            tend = t0 + secs;
            rts = 0;
        }
        if (measuring && t >= tend) {
            bool all = true;
            for (auto& p : ps)
                if (p.got != size) all = false;
            if (all) break;
        }
        if (t - last > cl.stall) die("stall: no echo for %.0f s after %" PRIu64 " round trips", cl.stall, rts);
    }
    double el = now() - t0;
    long long cpu1 = proc_cpu_us(cl.pid);
    int idle_bad = 0;
    if (!idle.empty()) idle_bad = check_idle(idle);
    uint64_t rts_total = 0;  // including warm-up (for syscall counting)
    for (auto& p : ps) rts_total += p.counter;
    printf("rate=%.1f rt_us=%.2f rts=%" PRIu64 " rts_total=%" PRIu64 " conns=%d size=%zu secs=%.3f", rts / el,
           el / rts * 1e6 * nconn, rts, rts_total, nconn, size, el);
    if (cpu0 >= 0 && cpu1 >= 0) printf(" cpu_us=%lld cpu_per_unit=%.3f", cpu1 - cpu0, (double)(cpu1 - cpu0) / rts);
    if (nidle > 0) {
        printf(" idle=%d idle_open_secs=%.3f", nidle, idle_secs);
        if (rss0 >= 0 && rss1 >= 0)
            printf(" rss0_kb=%ld rss1_kb=%ld idle_bytes_per_conn=%.0f", rss0, rss1, (rss1 - rss0) * 1024.0 / nidle);
        printf(" idle_broken=%d idle_check_failed=%d", idle_broken, idle_bad);
    }
    int rc = 0;
    if (idle_broken || idle_bad) {
        printf(" error=%d_idle_connections_broken", idle_broken + idle_bad);
        rc = 1;
    }
    printf("\n");
    for (int fd : idle) close(fd);
    if (!proc_alive(cl.pid)) { printf("error=proxy_died\n"); return 1; }
    return rc;
}

// ---------------------------------------------------------------- bulk

int cmd_bulk(const Args& a) {
    Client cl(a);
    std::string dir = a.str("dir", "up");
    bool up = dir == "up";
    if (!up && dir != "down") die("--dir must be up or down");
    int nconn = (int)a.num("conns", 4);
    uint64_t bytes = (uint64_t)a.num("bytes", 512LL << 20);
    const size_t CH = 256 * 1024;
    struct B {
        int fd;
        uint64_t seed, off = 0;
        std::vector<uint8_t> buf;
        size_t bpos = 0, blen = 0;
        uint8_t verdict[9];
        int vlen = 0;
        bool done = false;
    };
    std::vector<B> bs(nconn);
    std::vector<uint8_t> rbuf(CH);
    long long cpu0 = proc_cpu_us(cl.pid);
    double t0 = now(), last = t0;
    std::mt19937_64 rng((uint64_t)getpid() * 7919 + (uint64_t)(t0 * 1e6));
    for (int i = 0; i < nconn; ++i) {
        B& b = bs[i];
        b.fd = cl.connect_blocking();
        b.seed = rng();
        uint8_t h[17];
        h[0] = up ? 'S' : 'R';
        put64(h + 1, b.seed);
        put64(h + 9, bytes);
        if (!write_all_nb(b.fd, h, 17)) die("bulk header write: %s", strerror(errno));
        if (up) b.buf.resize(CH);
        epoll_event e{};
        e.events = up ? (EPOLLIN | EPOLLOUT) : EPOLLIN;
        e.data.u64 = (uint64_t)i;
        epoll_ctl(cl.ep, EPOLL_CTL_ADD, b.fd, &e);
    }
    int ndone = 0;
    std::vector<epoll_event> evs(64);
    while (ndone < nconn) {
        int k = epoll_wait(cl.ep, evs.data(), (int)evs.size(), 100);
        for (int i = 0; i < k; ++i) {
            int id = (int)evs[i].data.u64;
            B& b = bs[id];
            if (b.done) continue;
            uint32_t ev = evs[i].events;
            if (up && (ev & EPOLLOUT) && b.off < bytes) {
                for (;;) {
                    if (b.bpos == b.blen) {
                        if (b.off + b.blen >= bytes) break;
                        uint64_t start = b.off;
                        b.blen = (size_t)std::min<uint64_t>(CH, bytes - start);
                        pat.gen(b.buf.data(), start, b.blen, b.seed);
                        b.bpos = 0;
                    }
                    ssize_t w = write(b.fd, b.buf.data() + b.bpos, b.blen - b.bpos);
                    if (w < 0) {
                        if (errno == EAGAIN) break;
                        if (errno == EINTR) continue;
                        die("bulk up conn %d: write: %s at offset %" PRIu64, id, strerror(errno), b.off);
                    }
                    b.bpos += w;
                    b.off += w;
                    last = now();
                    if (b.bpos == b.blen) {
                        b.bpos = b.blen = 0;
                        if (b.off >= bytes) break;
                    }
                }
                if (b.off >= bytes) cl.mod(b.fd, EPOLLIN, (uint64_t)id);
            }
            if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                for (int rounds = 0; rounds < 8; ++rounds) {
                    ssize_t r = read(b.fd, rbuf.data(), rbuf.size());
                    if (r < 0 && (errno == EAGAIN || errno == EINTR)) break;
                    if (r < 0) die("bulk %s conn %d: read: %s at offset %" PRIu64, dir.c_str(), id, strerror(errno), b.off);
                    if (r == 0) die("bulk %s conn %d: closed by peer at offset %" PRIu64 " of %" PRIu64, dir.c_str(), id, b.off, bytes);
                    last = now();
                    if (up) {
                        if (b.vlen + r > 9) die("bulk up conn %d: unexpected bytes from server", id);
                        memcpy(b.verdict + b.vlen, rbuf.data(), r);
                        b.vlen += (int)r;
                        if (b.verdict[0] == 'O' && b.vlen == 1) { b.done = true; ++ndone; break; }
                        if (b.verdict[0] == 'F' && b.vlen == 9)
                            die("bulk up conn %d: server saw corrupt data at offset %" PRIu64 " (sent %" PRIu64 ")", id, get64(b.verdict + 1), b.off);
                        if (b.verdict[0] != 'O' && b.verdict[0] != 'F') die("bulk up conn %d: bad verdict byte", id);
                    } else {
                        if (b.off + r > bytes) die("bulk down conn %d: got more than %" PRIu64 " bytes", id, bytes);
                        uint64_t bad = pat.check(rbuf.data(), b.off, (size_t)r, b.seed);
                        if (bad != UINT64_MAX) die("bulk down conn %d: corrupt data at offset %" PRIu64, id, bad);
                        b.off += r;
                        if (b.off == bytes) { b.done = true; ++ndone; break; }
                        if ((size_t)r < rbuf.size()) break;
                    }
                }
            }
        }
        if (now() - last > cl.stall) {
            std::string st;
            for (auto& b : bs) st += std::to_string(b.off) + (b.done ? "(done)" : "") + ",";
            die("stall: no progress for %.0f s; per-connection offsets %s", cl.stall, st.c_str());
        }
    }
    double el = now() - t0;
    long long cpu1 = proc_cpu_us(cl.pid);
    for (auto& b : bs) close(b.fd);
    double total = (double)bytes * nconn;
    printf("rate=%.1f bytes=%.0f secs=%.3f verified=1", total / el / 1e6, total, el);
    if (cpu0 >= 0 && cpu1 >= 0) printf(" cpu_us=%lld cpu_per_unit=%.2f", cpu1 - cpu0, (cpu1 - cpu0) / 1000.0 / (total / 1e9));
    printf("\n");
    if (!proc_alive(cl.pid)) { printf("error=proxy_died\n"); return 1; }
    return 0;
}

// ---------------------------------------------------------------- small commands

int cmd_freeport() {
    int lo = 32768, hi = 61000;
    if (FILE* f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r")) {
        if (fscanf(f, "%d %d", &lo, &hi) != 2) lo = 32768, hi = 61000;
        fclose(f);
    }
    std::mt19937 rng((unsigned)(getpid() ^ (unsigned)(now() * 1e6)));
    for (int tries = 0; tries < 1000; ++tries) {
        int p;
        // prefer ports below the ephemeral range (no clash with outgoing connections)
        if (lo > 12000) p = 10000 + (int)(rng() % (unsigned)(lo - 10000));
        else p = hi + 1 + (int)(rng() % (unsigned)(65535 - hi));
        if (p > 65535 || p < 1024) continue;
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in sa = make_addr("127.0.0.1", p);
        bool ok = bind(fd, (sockaddr*)&sa, sizeof sa) == 0;
        close(fd);
        if (!ok) continue;
        // also check nothing listens on the wildcard / other address
        fd = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in any{};
        any.sin_family = AF_INET;
        any.sin_port = htons(p);
        ok = bind(fd, (sockaddr*)&any, sizeof any) == 0;
        close(fd);
        if (!ok) continue;
        printf("%d\n", p);
        return 0;
    }
    die("no free port found");
}

int cmd_wait(const Args& a) {
    if (a.pos.empty()) die("wait needs a port");
    int port = atoi(a.pos[0].c_str());
    double secs = a.pos.size() > 1 ? atof(a.pos[1].c_str()) : 5;
    sockaddr_in sa = make_addr(a.str("host", "127.0.0.1"), port);
    double end = now() + secs;
    while (now() < end) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int r = connect(fd, (sockaddr*)&sa, sizeof sa);
        close(fd);
        if (r == 0) return 0;
        usleep(20000);
    }
    fprintf(stderr, "loadgen: port %d not accepting after %.1f s\n", port, secs);
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    setvbuf(stdout, nullptr, _IOLBF, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: loadgen server|short|pingpong|bulk|freeport|wait|rss ...\n");
        return 2;
    }
    std::string cmd = argv[1];
    Args a(argc, argv, 2);
    if (cmd == "server") return cmd_server(a);
    if (cmd == "short") return cmd_short(a);
    if (cmd == "pingpong") return cmd_pingpong(a);
    if (cmd == "bulk") return cmd_bulk(a);
    if (cmd == "freeport") return cmd_freeport();
    if (cmd == "wait") return cmd_wait(a);
    if (cmd == "rss") {
        if (a.pos.empty()) die("rss needs a pid");
        printf("%ld\n", proc_rss_kb(atoi(a.pos[0].c_str())));
        return 0;
    }
    fprintf(stderr, "loadgen: unknown command %s\n", cmd.c_str());
    return 2;
}
