// The log (stderr in the foreground, syslog once detached) and the clock.
#include <syslog.h>

#include <chrono>
#include <cstdio>
#include <ctime>

#include "balance.hpp"

void Log::use_syslog() {
  openlog("balance", LOG_PID | LOG_NDELAY, LOG_DAEMON);
  syslog_ = true;
}

void Log::write(int priority, const char* format, va_list args) {
  if (syslog_) {
    vsyslog(priority, format, args);
    return;
  }
  // In the foreground each line starts with the local time, to the
  // millisecond: "2026-11-29 16:50:01.123 balance: ...".
  char line[1024];
  std::vsnprintf(line, sizeof line, format, args);
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  struct tm local {};
  localtime_r(&now.tv_sec, &local);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &local);
  std::fprintf(stderr, "%s.%03ld balance: %s\n", stamp, long(now.tv_nsec / 1000000), line);
}

void Log::info(const char* format, ...) {
  va_list args;
  va_start(args, format);
  write(LOG_INFO, format, args);
  va_end(args);
}

void Log::warning(const char* format, ...) {
  va_list args;
  va_start(args, format);
  write(LOG_WARNING, format, args);
  va_end(args);
}

int64_t monotonic_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

