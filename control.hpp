// The control channel: the command table, the pure parser from a line to
// a typed Command, one handler per command, the private UNIX socket
// served inside the relay loop, and the socket path with its checks.
//
// Protocol: one command a line; every reply is zero or more lines of
// text followed by one empty line, and an error reply's first line
// starts with "error: ". Replies never contain an empty line otherwise.
#ifndef BALANCE_CONTROL_HPP
#define BALANCE_CONTROL_HPP

#include <sys/types.h>

#include <memory>
#include <string>

#include "balance.hpp"
#include "server.hpp"
#include "stats.hpp"

enum class Verb {
  Quit, Show, Help, Kill, Disable, Group, Reset, Enable, Create, Assign, Maxc, MrtgBytes,
  MrtgConns, Version, Hash, RoundRobin, Weight, Delete, Rule, Handover,
};

// One parsed command line; numbers are parsed and range-checked once.
struct Command {
  Verb verb = Verb::Help;
  size_t group = 0;       // G
  unsigned channel = 0;   // C
  unsigned maxc = 0;      // N (maxc, create)
  unsigned weight = 1;    // W (weight, create)
  bool learn = false;     // weight C auto: learn the speed
  bool has_maxc = false;  // create was given maxc
  bool has_weight = false;
  std::string host, port;  // create, assign
  ShowForm form = ShowForm::Table;
  bool remove = false;             // rule remove KIND NET
  RuleKind rule = RuleKind::Allow;  // rule KIND NET
  std::string network;              // NET, as typed (checked by the parser)
};

constexpr size_t kMaxLine = 4096;

// Parses one line. Pure: no I/O, no state. Returns false with *err set
// (without the "error: " prefix) for unknown, ambiguous or malformed
// commands. A blank line parses to nothing (*empty set).
bool parse_command(const std::string& line, Command* command, bool* empty, std::string* err);

// True for a line of blanks (and an optional trailing CR): no command.
bool blank_line(const std::string& line);

// The command names, in the order prefixes are tried.
std::vector<std::string> command_names();

// The text of `help`, generated from the keyword table.
std::string help_text();

// What a control session remembers between its commands.
struct ControlContext {
  State& state;
  size_t group = 0;   // the current group
  bool quit = false;  // `quit` was run
  bool handover = false;  // `handover` was run: the session's connection goes to it
  uid_t peer_uid = 0;  // for the log
  bool read_only = false;  // a -G member: commands that change balance are refused
};

struct Reply {
  bool ok = true;
  std::string text;                  // without the final empty line
  std::unique_ptr<Producer> stream;  // rendered after text, if set
};

// Runs one command against the process state.
Reply execute(const Command& command, ControlContext& context);

// The control socket path for the options: -S, or derived from the uid,
// the listen address (-b) and the port. *directory is the directory the
// derived path lives in (empty with -S).
bool control_socket_path(const Options& options, std::string* path, std::string* directory,
                         std::string* err);

// The checks a control socket's directory must pass, for the server and
// the client alike: a real directory (no symbolic link), owned by this
// user (or by root, when root_may_own: the client may use root's), not
// writable by group or others. False with *err saying what to do.
bool check_socket_directory(const std::string& dir, bool root_may_own, std::string* err);
// The derived socket directory of a user: /run/balance (or
// /var/run/balance) for root, ${TMPDIR:-/tmp}/balance-UID for others.
std::string socket_directory(uid_t uid, const char* tmpdir);
// The socket's file name in it: [ADDR_]PORT.sock.
std::string socket_name(const Options& options, int port);

// UNIX socket helpers shared by the server and the client.
struct sockaddr_un;
bool fill_unix_address(const std::string& path, sockaddr_un* address, std::string* err);
// Connects to a control socket (blocking); an invalid Fd with errno set.
Fd connect_unix(const std::string& path);
// The uid and gid of the process at the other end of a UNIX socket.
bool peer_credentials(int fd, uid_t* uid, gid_t* gid);
// Whether a user (with primary group `primary`) is a member of `group`.
bool user_in_group(uid_t uid, gid_t primary, gid_t group);

// The control socket, served in the relay loop: at most 64 sessions (a
// new one closes the idlest), each closed after 10 minutes idle.
class ControlServer {
 public:
  explicit ControlServer(State& state);
  ~ControlServer();
  // Creates the directory and socket; fails with "already running" if a
  // live instance owns the socket. Taking over (-x), the socket replaces
  // the old one's at the same path at once (a rename), so that the path
  // answers throughout.
  bool listen(std::string* err, bool take_over = false);
  // After a hand-over: stops listening, leaving the path to the new
  // process.
  void give_away();
  void tick() { sessions_.tick(); }
  int64_t next_deadline_ms() const { return sessions_.next_deadline_ms(); }
  void close();

 private:
  State& state_;
  SessionServer sessions_;
  std::string path_;
  gid_t monitor_gid_ = gid_t(-1);  // -G: read-only members
};

// `balance -i port` and `balance -c command port`; returns the exit status.
int run_control_client(const Options& options);

// Pure, fuzzed: splits the control socket's byte stream into replies,
// each ended by an empty line, without holding a whole line (`show json`
// is one line of any length): the text comes out in pieces as it arrives.
// A reply longer than max_reply bytes is an error, not unbounded output.
class ReplyReader {
 public:
  enum class Event { None, Text, End, TooLong };
  explicit ReplyReader(uint64_t max_reply) : max_reply_(max_reply) {}
  void feed(const char* data, size_t length);
  // Text: *text is the next piece of the current reply (newlines kept);
  // End: the reply ended (its empty line); None: more bytes are needed.
  Event next(std::string* text);
  // Whether the current reply is an error ("error: ..."); known once its
  // first piece came out.
  bool error() const { return error_; }

 private:
  std::string buffer_;
  size_t start_ = 0;         // where the unread bytes begin
  bool line_start_ = true;   // the next byte begins a line
  bool reply_start_ = true;  // ... and the reply
  bool error_ = false;
  uint64_t reply_bytes_ = 0;
  uint64_t max_reply_;
};

#endif
