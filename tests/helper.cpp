// helper: the fake back-ends and clients that balance's bats suites drive.
//
// One program, one sub-command per role, so the suite builds a single binary
// with nothing but a C++17 compiler and POSIX. Every socket is non-blocking
// under poll() and every wait is bounded. Every byte stream is a
// position-addressed splitmix64 stream (testnet.hpp): both ends regenerate
// it instead of storing it, and a check names the offset of the first wrong
// byte. Every failure is said on stderr ("helper CMD: what: why"), so that
// it shows in the test's output.
//
// Servers (helper_server.cpp). SERVER options: -b ADDR (127.0.0.1; ::1 for
// IPv6), -p PORT (0 = ephemeral), -P FILE (the port bound, written
// atomically once listening; "ready PORT" is printed too), -L SEC (exit by
// itself after SEC, default 120, so nothing outlives a broken run), -N NAME,
// -R FILE (one report line per connection: its end, or an error).
//   helper echo         echo every byte; at the client's EOF drain, then FIN
//   helper sink [-u SEED]
//                       read to EOF, checking the bytes against stream(SEED)
//                       (default 1); reply "COUNT ok" or "COUNT wrong at OFFSET"
//   helper source -n N [-s SEED] [-h] [-u SEED]
//                       send N bytes of stream(SEED), then close (-h: FIN only,
//                       and read on to EOF); -R: "NAME sent=S received=R", then
//                       " intact" or " first wrong byte at X" when -u says what
//                       the client sends
//   helper reset-after -n N
//                       send N stream bytes, then a reset (SO_LINGER 0)
//   helper hold [-m STATE] [-o LOG] [-H SEC]
//                       greet "hello NAME\n", log the client's first line (its
//                       id) to LOG, hold until the client's EOF (or -H SEC),
//                       reply "bye ID\n"; STATE holds "CUR MAX TOTAL\n"
//   helper duplex       the integrity protocol below, as back-end
//   helper mute         accept, then never read nor write
//   helper slowread [-k BYTES] [-i SEC]
//                       read BYTES (4096) per connection every SEC (0.1)
//   helper blackhole    listen with a full accept queue: connects hang
//
// Clients (all take HOST PORT last; -t SEC is the overall deadline).
//   helper client [-n BYTES] [-s SEED] [-i ID] [-x] [-H SEC] [-g] [-A]
//                 [-k BYTES -I SEC] [-m MODE] [-r FILE] [-c N] [-B ADDR] [-D]
//       send BYTES of stream(SEED) (after "ID\n" with -i), receive, check;
//       -D: all that framed as a distcc request ("DIST00000001DOTI" and 8
//       hex digits, the length of the rest: what balance -j reads a job's
//       size from; hold servers leave the framing out of the id);
//       -x: shut the write side once all is sent (-H: SEC later; -g: counted
//       from the server's first line), -A: send only after the server's EOF,
//       -k/-I: one chunk every SEC, -m echo (default) | sink | source:N:SEED |
//       hold | print, -r FILE: created once connected, -c N: N clients in
//       parallel processes (ids and seeds count up), -B ADDR: connect from
//       ADDR (e.g. 127.0.0.2). Exit 0 correct, 1 wrong
//       or failed, 2 deadline passed.
//   helper integrity [-c N] [-M MIB] [-C MIB] [-z BYTES] [-m duplex|echo]
//                    [-F FLAGS] [-s SEED] [-r FILE] [-a]
//       N parallel connections (64), each moving a random number of bytes
//       (uniform, up to MIB MiB, 64) each way, the sum capped at -C MiB; -z
//       fixes the size. Every byte is checked both ways, and every stream must
//       end exactly where it should. -r FILE once every connection is
//       established end to end. Prints one line per failed connection,
//       "server NAME ok=X failed=Y" per back-end, then "total ...". Exit 0
//       only if all are correct (-a: always, for tests that expect failures).
//   helper halfclose -w client|server -u UP -d DOWN
//       client: send UP bytes and FIN, then the back-end replies DOWN bytes.
//       server: the back-end sends DOWN bytes and its FIN first; only then
//       the client sends UP bytes (checked by the server, see -R).
//   helper end [-n BYTES] [-x]
//       send BYTES while reading everything; print "read=R sent=S
//       end=eof|reset|timeout secs=S quiet=Q" (Q: seconds from the last byte
//       received to the end). Exit 2 on timeout, else 0. -x: once BYTES are
//       sent, reset the connection ourselves (end=we-reset).
//   helper push [-c N] [-n BYTES] [-S SEC] [-H SEC] [-r FILE]
//       N connections write BYTES each as fast as they can; once none has
//       made progress for -S SEC (1) write FILE ("written=W") and hold them
//       -H SEC (0). Prints "written=W of N*BYTES stalled=0|1 ...".
//   helper slowread-client [-c N] [-k BYTES] [-i SEC] [-H SEC] [-r FILE] [-s SEED]
//       N connections reading BYTES every SEC for -H SEC (less once every
//       one has ended), checking them against stream(SEED); FILE once all
//       have data. Prints "read=R
//       wrong=0|1 ended=no|eof|reset|error secs=S"; exit 0 only if none ended.
//   helper slowloris -n N [-H SEC] [-e] [-r FILE] [-o FILE]
//   helper flood -n N [-H SEC] [-r FILE] [-o FILE]
//       open N idle connections (slowloris: at most 256 handshakes at once,
//       all must succeed; flood: all at once, outcomes counted), write FILE,
//       hold them -H SEC counting those the peer closes (-e: exit once all
//       are; -o FILE: "closed=X" as X changes). Prints "connected=C failed=F
//       pending=P closed=X ... last=S".
//   helper whoami       print the name a duplex server greets with
//   helper probe        "closed"/"reset" (exit 0) when the peer accepts and
//                       closes without data; "open", "data", "refused",
//                       "timeout" (exit 1) otherwise
// Tools.
//   helper freeport [ADDR]   print a TCP port free on every address, outside
//                            the kernel's ephemeral range
//   helper wait-listen [-t SEC] [-b ADDR] [-p PID] PORT
//                            wait until ADDR:PORT listens (-p: on a socket of
//                            process PID, failing at once if PID exits)
//
// The integrity protocol (duplex). The server greets with its name, padded
// with spaces to 15 bytes, and "\n". The client sends a 32-byte header:
// "HOS1", flags (u32), UP (u64), DOWN (u64), SEED (u64), little-endian; then
// UP bytes of stream(2*SEED+1) and its FIN. The server sends DOWN bytes of
// stream(2*SEED), then, after the client's FIN, a 16-byte trailer: the count
// of bytes it received and the offset of the first wrong one (all ones if
// none); then its FIN. Flag 1: the server starts its DOWN bytes only after
// the client's FIN. Flag 2: the server sends DOWN bytes and its FIN at once,
// no trailer, and the client sends its UP bytes only after that FIN; the
// server's verdict goes to -R. Flag 4: each end sends one byte of TCP urgent
// data (MSG_OOB) halfway through its stream; it is not part of the stream (a
// relay drops it, as recv() does), so the streams must still arrive intact.

#include <arpa/inet.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "helper.hpp"

namespace helper {
namespace {

using namespace testnet;

// ---- probe and whoami --------------------------------------------------------------

// Waits for the first byte or the end of fd; says which.
const char* first_event(int fd, double deadline) {
  pollfd p{fd, POLLIN, 0};
  for (;;) {
    int n = poll(&p, 1, ms_until(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return "open";
    char c;
    ssize_t r = read(fd, &c, 1);
    if (r > 0) return "data";
    if (r == 0) return "closed";
    if (try_again(errno)) continue;
    if (errno == ECONNRESET) return "reset";
    std::fprintf(stderr, "helper probe: read: %s\n", why(errno));
    return "error";
  }
}

// The options of a client whose only option is -t SEC (default 5): its
// deadline. HOST PORT are then argv[optind] and argv[optind + 1].
double deadline_of(int argc, char** argv) {
  double timeout = 5;
  int ch;
  while ((ch = getopt(argc, argv, "t:")) != -1) {
    if (ch == 't') timeout = parse_sec(optarg, "-t");
    else die("usage: helper %s [-t SEC] HOST PORT", g_cmd);
  }
  if (argc - optind != 2) die("usage: helper %s [-t SEC] HOST PORT", g_cmd);
  return now() + timeout;
}

int probe_main(int argc, char** argv) {
  double deadline = deadline_of(argc, argv);
  int err = 0;
  Fd fd(connect_tcp(argv[optind], argv[optind + 1], deadline, &err));
  if (!fd.ok()) {
    // Refused and timeout are answers here; anything else is a failure.
    if (err != ECONNREFUSED && err != ETIMEDOUT) std::fprintf(stderr, "helper probe: connect: %s\n", why(err));
    std::printf("%s\n", err == ECONNREFUSED ? "refused" : err == ETIMEDOUT ? "timeout" : "error");
    return 1;
  }
  const char* what = first_event(fd.get(), deadline);
  std::printf("%s\n", what);
  return std::strcmp(what, "closed") == 0 || std::strcmp(what, "reset") == 0 ? 0 : 1;
}

int whoami_main(int argc, char** argv) {
  double start = now(), deadline = deadline_of(argc, argv);
  Fd fd(connect_or_die(argv[optind], argv[optind + 1], deadline));
  char greet[kGreeting];
  size_t got = 0;
  while (got < sizeof greet && now() < deadline) {
    pollfd p{fd.get(), POLLIN, 0};
    poll(&p, 1, ms_until(deadline, 1.0));
    ssize_t n = read(fd.get(), greet + got, sizeof greet - got);
    if (n == 0) die("EOF after %zu bytes of the greeting", got);
    if (n < 0 && !try_again(errno)) die("read: %s", why(errno));
    if (n > 0) got += size_t(n);
  }
  if (got < sizeof greet) die("no greeting within %g s (%zu bytes)", deadline - start, got);
  std::string name(greet, kGreeting - 1);
  name.erase(name.find_last_not_of(' ') + 1);
  std::printf("%s\n", name.c_str());
  return 0;
}

// ---- freeport ----------------------------------------------------------------------

// With ADDR, the port is also one that ADDR can bind (so that a test can ask
// whether ::1 exists).
int freeport_main(int argc, char** argv) {
  if (argc > 2) die("usage: helper freeport [ADDR]");
  int port = free_port();
  if (argc == 2) close(listen_on(argv[1], port, 1));
  std::printf("%d\n", port);
  return 0;
}

// ---- wait-listen ---------------------------------------------------------------------

int wait_listen_main(int argc, char** argv) {
  double timeout = 5;
  std::string addr = "127.0.0.1";
  long pid = 0;
  int ch;
  while ((ch = getopt(argc, argv, "t:b:p:")) != -1) {
    if (ch == 't') timeout = parse_sec(optarg, "-t");
    else if (ch == 'b') addr = optarg;
    else if (ch == 'p') pid = long(parse_range(optarg, "-p", 1, 1u << 30));
    else die("usage: helper wait-listen [-t SEC] [-b ADDR] [-p PID] PORT");
  }
  if (argc - optind != 1) die("usage: helper wait-listen [-t SEC] [-b ADDR] [-p PID] PORT");
  int port = parse_int(argv[optind], "PORT", 1, 65535);
  std::string why;
  if (!wait_listening(addr, port, pid, now() + timeout, &why)) die("%s", why.c_str());
  return 0;
}

}  // namespace
}  // namespace helper

int main(int argc, char** argv) {
  using namespace helper;
  testnet::g_tool = testnet::g_cmd = "helper";
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, nullptr, _IOLBF, 0);
  if (argc < 2) testnet::die("usage: helper SUB-COMMAND ... (see the comment at the top of tests/helper.cpp)");
  std::string cmd = argv[1];
  testnet::g_cmd = argv[1];
  argc--;
  argv++;  // getopt now sees the sub-command as argv[0]
  static const struct {
    const char* name;
    Mode mode;
  } servers[] = {{"echo", Mode::Echo},        {"sink", Mode::Sink},         {"source", Mode::Source},
                 {"reset-after", Mode::ResetAfter}, {"hold", Mode::Hold}, {"duplex", Mode::Duplex},
                 {"mute", Mode::Mute},        {"slowread", Mode::SlowRead}, {"blackhole", Mode::Blackhole}};
  for (const auto& s : servers)
    if (cmd == s.name) return server_main(s.mode, argc, argv);
  static const struct {
    const char* name;
    int (*main)(int, char**);
  } tools[] = {{"client", client_main},       {"integrity", integrity_main},
               {"halfclose", halfclose_main}, {"end", end_main},
               {"push", push_main},           {"slowread-client", slowread_client_main},
               {"whoami", whoami_main},       {"probe", probe_main},
               {"freeport", freeport_main},   {"wait-listen", wait_listen_main}};
  for (const auto& t : tools)
    if (cmd == t.name) return t.main(argc, argv);
  if (cmd == "slowloris" || cmd == "flood") return idle_main(cmd == "flood", argc, argv);
  testnet::die("unknown sub-command (see the comment at the top of tests/helper.cpp)");
}
