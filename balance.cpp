// balance: the command line, start-up (resolving channels, listening,
// detaching) and the one readiness loop that drives everything.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <vector>

#include "balance.hpp"
#include "control.hpp"
#include "handover.hpp"
#include "relay.hpp"
#include "stats.hpp"

namespace {

// Signals reach the loop through a pipe, one byte per signal (its
// number), so a signal that arrives just before the wait still wakes it.
// The one global a signal handler needs.
int g_signal_pipe[2] = {-1, -1};

void on_signal(int number) {
  int saved = errno;
  char byte = char(number);
  ssize_t ignored = write(g_signal_pipe[1], &byte, 1);
  (void)ignored;
  errno = saved;
}

// What each signal means (balance.1, SIGNALS): TERM, INT and QUIT stop;
// HUP never does (logrotate's postrotate sends it; there is nothing to
// reopen, as the log is stderr or syslog); USR1 logs a status line; USR2
// starts the binary on disk to take over (restart and upgrade).
class SignalWatcher final : public Watcher {
 public:
  SignalWatcher(State& state, Proxy& proxy, Handover& handover)
      : state_(state), proxy_(proxy), handover_(handover) {}
  void on_ready(int fd, unsigned) override {
    char bytes[16];
    ssize_t n;
    while ((n = read(fd, bytes, sizeof bytes)) > 0)
      for (ssize_t i = 0; i < n; ++i) handle(bytes[i]);
  }

 private:
  void handle(int number) {
    switch (number) {
      case SIGHUP:
        state_.log.info("SIGHUP: nothing to reload; still running (see SIGNALS in balance(1))");
        break;
      case SIGUSR1:
        log_status();
        break;
      case SIGUSR2:
        handover_.upgrade();
        break;
      default:  // SIGTERM, SIGINT, SIGQUIT
        state_.stopping = true;
    }
  }
  void log_status() {
    const Pool& pool = state_.pool;
    state_.log.info("status: %zu connections, %zu waiting, %zu of %zu channels in service; "
                    "%llu dropped, %llu refused",
                    proxy_.connection_count(), pool.queue_length(), pool.in_service_count(),
                    pool.channel_count(), (unsigned long long)pool.dropped(),
                    (unsigned long long)pool.refused());
  }

  State& state_;
  Proxy& proxy_;
  Handover& handover_;
};

bool install_signals(std::string* err) {
  if (pipe(g_signal_pipe) != 0) {
    *err = sys_error("pipe");
    return false;
  }
  for (int fd : g_signal_pipe) {
    set_nonblocking(fd);
    set_cloexec(fd);
  }
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  for (int number : {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2})
    sigaction(number, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return true;
}

// Descriptors a caller left open (a lock file, a pipe to a terminal
// session) are not balance's: closed at start-up, all but 0, 1 and 2.
void close_inherited_descriptors() {
  int highest = 1024;
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY)
    highest = int(std::min<rlim_t>(limit.rlim_cur, 1 << 20));
#if defined(__linux__) && defined(SYS_close_range)
  if (syscall(SYS_close_range, 3u, ~0u, 0u) == 0) return;
#endif
  for (int fd = 3; fd < highest; ++fd) close(fd);
}

void raise_fd_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == limit.rlim_max) return;
  rlim_t wanted = limit.rlim_max;
#ifdef OPEN_MAX
  if (wanted == RLIM_INFINITY || wanted > OPEN_MAX) wanted = OPEN_MAX;  // macOS
#endif
  limit.rlim_cur = wanted;
  setrlimit(RLIMIT_NOFILE, &limit);
}

// The binary on disk this process was started from, for SIGUSR2: the path
// is kept, not the file, so an upgrade put in its place is what starts.
std::string binary_path(const char* argv0) {
  char resolved[PATH_MAX];
#if defined(__linux__)
  ssize_t n = readlink("/proc/self/exe", resolved, sizeof resolved - 1);
  if (n > 0) {
    resolved[n] = '\0';
    return resolved;
  }
#endif
  std::string name = argv0 ? argv0 : "";
  if (name.find('/') != std::string::npos) return realpath(name.c_str(), resolved) ? resolved : name;
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  for (size_t start = 0; start <= dirs.size();) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string candidate = dirs.substr(start, end - start) + "/" + name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return "";
}

// -x carries on on the listener it is handed: the command line must name
// the same port (and the same address when it names one).
bool same_listener(const State& state, int listener, std::string* err) {
  Address offered;
  offered.length = sizeof offered.storage;
  getsockname(listener, reinterpret_cast<sockaddr*>(&offered.storage), &offered.length);
  const Address& wanted = state.listen_address;
  bool same = offered.port() == wanted.port() &&
              (state.options.bind_address.empty() || offered.text() == wanted.text());
  if (!same)
    *err = "-x: the running balance listens on " + offered.text() + ", this command line on " +
           wanted.text() + "; a restart keeps the address (stop the old one to change it)";
  return same;
}

// systemd's readiness protocol (sd_notify) without libsystemd: under a
// Type=notify unit, READY=1 once serving, MAINPID= from a process that
// took over (so the unit follows it across SIGUSR2), STOPPING=1 at a stop.
void notify_service(const std::string& message) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (!path || (path[0] != '/' && path[0] != '@')) return;
  sockaddr_un address{};
  size_t length = std::strlen(path);
  if (length >= sizeof address.sun_path) return;
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path, length);
  if (path[0] == '@') address.sun_path[0] = '\0';  // an abstract socket
  Fd fd(socket(AF_UNIX, SOCK_DGRAM, 0));
  if (!fd) return;
  ssize_t ignored = sendto(fd.get(), message.data(), message.size(), 0,
                           reinterpret_cast<const sockaddr*>(&address),
                           socklen_t(offsetof(sockaddr_un, sun_path) + length));
  (void)ignored;
}

int fail(const std::string& message) {
  std::fprintf(stderr, "balance: %s\n", message.c_str());
  return 1;
}

int usage_error(const std::string& message) {
  std::fprintf(stderr, "balance: %s\nTry 'balance -h' for more information.\n", message.c_str());
  return 1;
}

// Resolves every channel of the command line into the pool.
bool build_pool(State& state, std::string* err) {
  const Options& options = state.options;
  int family = address_family(options);
  for (const GroupSpec& group : options.groups) {
    state.pool.add_group(group.type);
    for (const ChannelSpec& spec : group.channels) {
      ChannelConfig config;
      config.host = spec.host;
      config.port = spec.port.empty() ? options.port : spec.port;
      config.maxc = spec.maxc;
      config.weight = spec.weight;
      std::string why;
      if (!resolve_address(config.host, config.port, family, false, &config.address, &why) ||
          loops_back(state, config.address, &why)) {
        *err = spec.text + ": " + why;
        return false;
      }
      state.pool.add_channel(state.pool.groups().size() - 1, config, AdminState::Enabled,
                             state.now_ms);
    }
  }
  return true;
}

// Resolves the listening addresses once, before anything listens, so that
// a bad -b, port or -s is an argument error.
bool resolve_listen_addresses(State& state, std::string* err) {
  const Options& options = state.options;
  std::string why;
  if (!resolve_address(options.bind_address, options.port, address_family(options), true,
                       &state.listen_address, &why)) {
    int port;
    std::string port_why;
    bool port_ok = resolve_port(options.port, &port, &port_why);
    *err = (port_ok ? "-b " + options.bind_address : options.port) + ": " + why;
    return false;
  }
  if (!options.stats_port.empty() &&
      !resolve_address(options.stats_address, options.stats_port, AF_UNSPEC, true,
                       &state.stats_address, &why)) {
    *err = "-s " + options.stats_address + ":" + options.stats_port + ": " + why;
    return false;
  }
  return true;
}

// Detaches from the terminal; the parent exits 0 only now, when the
// listener and the control socket are known to be up.
bool detach(State& state, std::string* err) {
  pid_t pid = fork();
  if (pid < 0) {
    *err = sys_error("fork");
    return false;
  }
  if (pid > 0) _exit(0);
  setsid();
  if (chdir("/") != 0) {
  }
  int null = open("/dev/null", O_RDWR);
  if (null >= 0) {
    dup2(null, STDIN_FILENO);
    dup2(null, STDOUT_FILENO);
    dup2(null, STDERR_FILENO);
    if (null > STDERR_FILENO) close(null);
  }
  state.log.use_syslog();
  return true;
}

int run_proxy(State& state) {
  // First, before any library opens a descriptor of its own.
  close_inherited_descriptors();
  std::string err;
  state.now_ms = monotonic_ms();
  state.pool.set_options(state.options.pool);
  for (const auto& [kind, network] : state.options.rules) {
    std::string why;
    if (!state.rules.add(kind, network, &why))
      return usage_error(std::string(kind == RuleKind::Allow  ? "-A "
                                     : kind == RuleKind::Deny ? "-D "
                                                              : "-P ") +
                         why);
  }
  // Names are looked up once, now: a name that does not resolve is not a
  // usage error (no pointer to -h), just reported with the resolver's why.
  if (!resolve_listen_addresses(state, &err)) return fail(err);
  // -x: the running balance's offer first; with the same arguments its
  // channels and rules, run-time changes included, replace the command
  // line's. A failure here leaves it as it was.
  Offer offer;
  Fd link;
  bool restored = false;
  if (state.options.take_over &&
      (!receive_offer(state.options, &offer, &link, &err) ||
       !restore_offer(state, offer, &restored, &err)))
    return fail(err);
  if (state.options.take_over && !same_listener(state, offer.proxy_listener.get(), &err))
    return fail(err);
  if (!restored && !build_pool(state, &err)) return fail(err);
  if (state.options.take_over) adopt_slots(state, offer);

  if (!state.options.source_address.empty() &&
      !resolve_address(state.options.source_address, "1", AF_UNSPEC, true,
                       &state.source_address, &err))
    return fail("-B " + state.options.source_address + ": " + err);
  state.source_address.set_port(0);
  raise_fd_limit();
  state.poller = Poller::create();
  state.started = time(nullptr);
  state.now_ms = monotonic_ms();
  if (!install_signals(&err)) return fail(err);

  // The control socket first: a second balance for the same port finds
  // the first one there and says "already running" (one taking over puts
  // its socket in the old one's place).
  ControlServer control(state);
  if (!control.listen(&err, state.options.take_over)) return fail(err);
  Proxy proxy(state);
  StatsServer stats(state);
  if (state.options.take_over) {
    proxy.adopt_listener(std::move(offer.proxy_listener));
    if (!state.options.stats_port.empty() && offer.stats_listener)
      stats.adopt(std::move(offer.stats_listener));
    else if (!state.options.stats_port.empty() && !stats.listen(&err))
      return fail(err);
    for (HandedWaiter& waiter : offer.waiters) proxy.adopt_waiter(waiter);
  } else {
    if (!proxy.listen(&err)) return fail(err);
    if (!state.options.stats_port.empty() && !stats.listen(&err)) return fail(err);
  }
  Handover handover(state, proxy, stats, control);
  state.handover = &handover;
  if (state.options.take_over && !handover.taken(std::move(link), offer.pid, &err)) return fail(err);
  // -p writes to stdout, so it keeps balance in the foreground.
  if (!state.options.foreground && !state.options.packet_dump && !detach(state, &err))
    return fail(err);

  SignalWatcher signals(state, proxy, handover);
  state.poller->watch(g_signal_pipe[0], kReadable, &signals);
  std::string stats_text =
      state.options.stats_port.empty() ? "" : ", statistics on " + state.stats_address.text();
  state.log.info("%s started on %s (%s), control socket %s%s", BALANCE_VERSION,
                 state.listen_text.c_str(), state.poller->name(), state.socket_path.c_str(),
                 stats_text.c_str());
  if (state.options.take_over)
    state.log.info("took over from pid %ld: %zu waiting clients, %llu connections it still relays%s",
                   offer.pid, offer.waiters.size(), (unsigned long long)state.pool.adopted_total(),
                   restored ? ", its channels and changes" : "; the channels of this command line");
  notify_service("READY=1\nMAINPID=" + std::to_string(long(getpid())) + "\nSTATUS=serving on " +
                 state.listen_text);

  std::vector<ReadyEvent> ready;
  while (!state.stopping) {
    int64_t deadline = -1;
    for (int64_t next : {proxy.next_deadline_ms(), control.next_deadline_ms(),
                         stats.next_deadline_ms(), handover.next_deadline_ms()})
      if (next >= 0 && (deadline < 0 || next < deadline)) deadline = next;
    int timeout = -1;
    if (deadline >= 0) {
      int64_t wait = deadline - state.now_ms;
      timeout = wait <= 0 ? 0 : wait > 60000 ? 60000 : int(wait) + 1;
    }
    if (!state.poller->wait(timeout, &ready)) {
      state.log.warning("%s", sys_error(state.poller->name()).c_str());
      return 1;
    }
    state.now_ms = monotonic_ms();
    for (const ReadyEvent& event : ready) event.watcher->on_ready(event.fd, event.events);
    control.tick();
    stats.tick();
    proxy.tick();
    handover.tick();
  }
  state.log.info("stopping");
  // A process that handed over is no longer the service: it says nothing.
  if (!handover.gave_away()) notify_service("STOPPING=1");
  proxy.close_all();
  stats.close();
  control.close();
  state.handover = nullptr;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  State state;
  state.args = args;
  state.binary = binary_path(argv[0]);
  std::string err;
  if (!parse_options(args, &state.options, &err)) return usage_error(err);
  switch (state.options.mode) {
    case Mode::Help:
      std::fputs(kUsage, stdout);
      std::fputs("\n", stdout);
      std::fputs(kOptionHelp, stdout);
      return 0;
    case Mode::Version:
      std::printf("balance %s\n", BALANCE_VERSION);
      return 0;
    case Mode::Interactive:
    case Mode::Command:
      return run_control_client(state.options);
    case Mode::Proxy:
      break;
  }
  return run_proxy(state);
}
