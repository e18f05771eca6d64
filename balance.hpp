// The one process state that the listener, the connections, the control
// socket and the statistics listener share, and the log they write to.
#ifndef BALANCE_BALANCE_HPP
#define BALANCE_BALANCE_HPP

#include <cstdarg>
#include <cstdint>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "options.hpp"
#include "pool.hpp"
#include "poller.hpp"

#ifndef BALANCE_VERSION
#define BALANCE_VERSION "unknown"
#endif

// One line per event an admin cares about: stderr in the foreground,
// syslog (LOG_DAEMON) once detached.
class Log {
 public:
  void use_syslog();
  void info(const char* format, ...) __attribute__((format(printf, 2, 3)));
  void warning(const char* format, ...) __attribute__((format(printf, 2, 3)));

 private:
  void write(int priority, const char* format, va_list args);
  bool syslog_ = false;
};

// Running out of file descriptors, as every listener sees it: logged once
// per shortage, which ends after ten seconds without one.
struct FdShortage {
  bool active = false;
  int64_t last_ms = 0;
};

class Handover;

struct State {
  Options options;
  Pool pool;               // configured from options.pool at start-up
  ClientRules rules;       // -A, -D, -P and their run-time changes
  std::unique_ptr<Poller> poller;
  Log log;
  FdShortage fd_shortage;
  int64_t now_ms = 0;      // monotonic clock, read once per loop pass
  time_t started = 0;      // wall clock at start, for statistics
  std::string listen_text; // "addr:port" as listened on
  Address source_address;  // -B, resolved once (port 0)
  Address listen_address;  // -b and the port, resolved once
  Address stats_address;   // -s, resolved once
  std::string socket_path; // the control socket
  bool stopping = false;
  // Restart and upgrade: the arguments balance was started with, the
  // path of its binary (what SIGUSR2 starts), and the hand-over.
  std::vector<std::string> args;
  std::string binary;
  Handover* handover = nullptr;
};

// Milliseconds on the monotonic clock.
int64_t monotonic_ms();

// "G:N host:port", how a channel is named in log lines.
std::string channel_name(const Channel& channel);

// True (with *err saying why) when a channel at `address` would be
// balance's own listener: every client would loop through balance.
bool loops_back(const State& state, const Address& address, std::string* err);

#endif
