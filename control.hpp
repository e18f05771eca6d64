// The control channel: a private UNIX socket served inside the relay
// loop, its line protocol, and the `balance -i` / `balance -c` client.
// Also the read-only HTTP statistics listener (-s).
//
// Protocol: one command a line; every reply is zero or more lines of
// text followed by one empty line, and an error reply's first line
// starts with "error: ". Replies never contain an empty line otherwise.
#ifndef BALANCE_CONTROL_HPP
#define BALANCE_CONTROL_HPP

#include <string>
#include <vector>

#include "balance.hpp"
#include "net.hpp"

enum class CommandKind {
  Help, Show, Group, RoundRobin, Hash, Enable, Disable, Create, Assign, Maxc, Weight,
  Delete, Reset, MrtgBytes, MrtgConns, Version, Kill, Quit,
};

struct Command {
  CommandKind kind = CommandKind::Help;
  std::vector<std::string> args;  // words after the keyword, validated
};

// Parses one line. Pure: no I/O, no state. Returns false with *err set
// (without the "error: " prefix) for unknown, ambiguous or malformed
// commands. An empty line parses to nothing (*empty set).
bool parse_command(const std::string& line, Command* command, bool* empty, std::string* err);

// True for a line of blanks (and an optional trailing CR): no command.
bool blank_line(const std::string& line);

// The text of `help`, generated from the keyword table.
std::string help_text();

// What a control session remembers between its commands.
struct Session {
  size_t group = 0;
  bool quit = false;
};

// Runs one command against the process state; returns the reply body
// (without the final empty line). *ok is false for an error reply, whose
// text then starts with "error: ".
std::string execute(const Command& command, Session& session, State& state, bool* ok);

// Statistics renderers, shared by the control socket and HTTP.
std::string render_show(const State& state);
std::string render_json(const State& state);
std::string render_csv(const State& state);
std::string render_queue(const State& state);
std::string render_prometheus(const State& state);

// The control socket path for the options: -S, or derived from the uid,
// the listen address (-b) and the port. *directory is the directory the
// derived path lives in (empty with -S).
bool control_socket_path(const Options& options, std::string* path, std::string* directory,
                         std::string* err);

class ControlServer final : public Watcher {
 public:
  explicit ControlServer(State& state);
  ~ControlServer();
  // Creates the directory and socket; fails with "already running" if a
  // live instance owns the socket.
  bool listen(std::string* err);
  void on_ready(int fd, unsigned events) override;
  void tick();
  int64_t next_deadline_ms() const;
  void close();

 private:
  struct Client;
  void accept_clients();
  void close_client(Client& client);
  size_t live_clients() const;

  State& state_;
  Fd listener_;
  std::string path_;
  std::vector<std::unique_ptr<Client>> clients_;
  bool accept_paused_ = false;
  int64_t accept_resume_ms_ = 0;
};

class StatsServer final : public Watcher {
 public:
  explicit StatsServer(State& state);
  ~StatsServer();
  bool listen(std::string* err);
  void on_ready(int fd, unsigned events) override;
  void tick();
  int64_t next_deadline_ms() const;

 private:
  struct Client;
  void close_client(Client& client);

  State& state_;
  Fd listener_;
  std::vector<std::unique_ptr<Client>> clients_;
};

// `balance -i port` and `balance -c command port`; returns the exit status.
int run_control_client(const Options& options);

// The HTTP response for one request head ("GET /metrics HTTP/1.1...").
// Pure apart from reading the state; used by StatsServer and tests.
std::string http_response(const std::string& request, const State& state);

#endif
