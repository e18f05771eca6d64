// The control channel (see control.hpp): the keyword table and the pure
// parser, the commands' effects on the pool, the UNIX socket server run
// inside the relay loop, and the -i / -c client.
//
// Invariants: the server never blocks (a client that does not read its
// replies is dropped once its output passes kMaxOutput); a line longer
// than kMaxLine, or one with bytes that are not printable text, gets an
// error reply; only balance's own uid and root may connect.
#include "control.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "relay.hpp"

namespace {

constexpr size_t kMaxLine = 4096;
constexpr size_t kMaxOutput = 1 << 20;
constexpr size_t kMaxClients = 64;
constexpr int64_t kIdleMs = 600000;  // an idle control session ends after 10 min

enum class Arg { None, Channel, Group, Maxc, Weight, Word, ShowFormat };

struct Keyword {
  const char* name;
  CommandKind kind;
  std::vector<Arg> required;
  std::vector<Arg> optional;
  const char* synopsis;
  const char* help;
};

const std::vector<Keyword>& keywords() {
  static const std::vector<Keyword> table = {
      {"help", CommandKind::Help, {}, {}, "help", "show this list (also ?)"},
      {"show", CommandKind::Show, {}, {Arg::ShowFormat}, "show [json|csv|queue]",
       "show channels and counters; json or csv for programs; queue lists waiting clients"},
      {"group", CommandKind::Group, {Arg::Group}, {}, "group G",
       "make group G current (G = number of groups adds an empty group)"},
      {"rr", CommandKind::RoundRobin, {}, {}, "rr", "schedule the current group by fastest free slot"},
      {"hash", CommandKind::Hash, {}, {}, "hash", "schedule the current group by client address hash"},
      {"enable", CommandKind::Enable, {Arg::Channel}, {}, "enable C", "put channel C in service"},
      {"disable", CommandKind::Disable, {Arg::Channel}, {}, "disable C",
       "take channel C out of service; its connections finish (drain)"},
      {"create", CommandKind::Create, {Arg::Word, Arg::Word}, {Arg::Maxc, Arg::Weight},
       "create host port [maxc [weight]]", "add a channel to the current group, disabled"},
      {"assign", CommandKind::Assign, {Arg::Channel, Arg::Word, Arg::Word}, {},
       "assign C host port", "point disabled channel C at another host and port"},
      {"maxc", CommandKind::Maxc, {Arg::Channel, Arg::Maxc}, {}, "maxc C N",
       "set the slots of channel C (0 = unlimited)"},
      {"weight", CommandKind::Weight, {Arg::Channel, Arg::Weight}, {}, "weight C W",
       "set the speed of one slot of channel C"},
      {"delete", CommandKind::Delete, {Arg::Channel}, {}, "delete C",
       "remove channel C at once; its connections finish"},
      {"reset", CommandKind::Reset, {Arg::Channel}, {}, "reset C",
       "clear the totalc, failure and byte counters of channel C"},
      {"mrtg-bytes", CommandKind::MrtgBytes, {Arg::Group, Arg::Channel}, {}, "mrtg-bytes G C",
       "bytes received and sent by channel C of group G, for MRTG"},
      {"mrtg-conns", CommandKind::MrtgConns, {Arg::Group, Arg::Channel}, {}, "mrtg-conns G C",
       "total connections of channel C of group G, for MRTG"},
      {"version", CommandKind::Version, {}, {}, "version", "show balance's version"},
      {"kill", CommandKind::Kill, {}, {}, "kill", "stop this balance process"},
      {"quit", CommandKind::Quit, {}, {}, "quit", "end this control session"},
  };
  return table;
}

bool valid_arg(Arg arg, const std::string& word, std::string* why) {
  uint64_t value;
  switch (arg) {
    case Arg::Channel:
      if (parse_unsigned(word, 0, 1000000000, &value)) return true;
      *why = "channel \"" + word + "\" must be a channel number";
      return false;
    case Arg::Group:
      if (parse_unsigned(word, 0, 1000000, &value)) return true;
      *why = "group \"" + word + "\" must be a group number";
      return false;
    case Arg::Maxc:
      if (parse_unsigned(word, 0, kMaxMaxc, &value)) return true;
      *why = "maxc \"" + word + "\" must be an integer from 0 to 1000000";
      return false;
    case Arg::Weight:
      if (parse_unsigned(word, 1, kMaxWeight, &value)) return true;
      *why = "weight \"" + word + "\" must be an integer from 1 to 1000000";
      return false;
    case Arg::ShowFormat:
      if (word == "json" || word == "csv" || word == "queue") return true;
      *why = "show takes json, csv or queue, not \"" + word + "\"";
      return false;
    case Arg::Word:
    case Arg::None:
      return true;
  }
  return true;
}

unsigned number_arg(const std::string& word) { return unsigned(std::strtoul(word.c_str(), nullptr, 10)); }

}  // namespace

bool blank_line(const std::string& line) {
  size_t length = line.size();
  if (length && line[length - 1] == '\r') --length;
  return line.find_first_not_of(" \t") >= length;
}

bool parse_command(const std::string& raw, Command* command, bool* empty, std::string* err) {
  // Blank lines get no reply, however long: server and client agree.
  *empty = blank_line(raw);
  if (*empty) return true;
  std::string line = raw;
  if (!line.empty() && line.back() == '\r') line.pop_back();
  for (unsigned char ch : line)
    if ((ch < 32 && ch != '\t') || ch >= 127) {
      *err = "the line holds bytes that are not printable text";
      return false;
    }
  std::vector<std::string> words;
  size_t pos = 0;
  while (pos < line.size()) {
    size_t start = line.find_first_not_of(" \t", pos);
    if (start == std::string::npos) break;
    size_t end = line.find_first_of(" \t", start);
    if (end == std::string::npos) end = line.size();
    words.push_back(line.substr(start, end - start));
    pos = end;
  }
  if (words.empty()) {
    *empty = true;
    return true;
  }
  const std::string& word = words[0];
  const Keyword* found = nullptr;
  if (word == "?") {
    found = &keywords()[0];
  } else {
    std::vector<const Keyword*> matches;
    for (const Keyword& keyword : keywords()) {
      if (word == keyword.name) {
        matches.assign(1, &keyword);
        break;
      }
      if (std::string(keyword.name).compare(0, word.size(), word) == 0) matches.push_back(&keyword);
    }
    if (matches.empty()) {
      *err = "unknown command \"" + word.substr(0, 64) + "\"; type help for the list";
      return false;
    }
    if (matches.size() > 1) {
      *err = "ambiguous command \"" + word + "\":";
      for (const Keyword* match : matches) *err += std::string(" ") + match->name;
      return false;
    }
    found = matches[0];
  }
  size_t given = words.size() - 1;
  if (given < found->required.size() || given > found->required.size() + found->optional.size()) {
    *err = std::string("usage: ") + found->synopsis;
    return false;
  }
  command->kind = found->kind;
  command->args.assign(words.begin() + 1, words.end());
  for (size_t i = 0; i < given; ++i) {
    Arg arg = i < found->required.size() ? found->required[i]
                                         : found->optional[i - found->required.size()];
    if (!valid_arg(arg, command->args[i], err)) return false;
  }
  return true;
}

std::string help_text() {
  std::string text = "commands (any unambiguous prefix will do; C is a channel of the current group):";
  for (const Keyword& keyword : keywords()) {
    char line[200];
    std::snprintf(line, sizeof line, "\n  %-32s %s", keyword.synopsis, keyword.help);
    text += line;
  }
  return text;
}

// ---------------------------------------------------------------- commands

namespace {

std::string error_reply(bool* ok, const std::string& why) {
  *ok = false;
  return "error: " + why;
}

Group* current_group(State& state, const Session& session) {
  auto& groups = state.pool.groups();
  return session.group < groups.size() ? groups[session.group].get() : nullptr;
}

bool resolve_channel(State& state, const std::string& host, const std::string& port,
                     Address* address, std::string* why) {
  int family = address_family(state.options);
  std::string bare = host;
  if (bare.size() > 2 && bare.front() == '[' && bare.back() == ']') bare = bare.substr(1, bare.size() - 2);
  if (!resolve_address(bare, port, family, false, address, why)) {
    *why = host + " " + port + ": " + *why;
    return false;
  }
  return true;
}

void log_change(State& state, const Channel& channel, const char* what) {
  state.log.info("control: channel %s %s", channel_name(channel).c_str(), what);
}

void slots_changed(State& state) {
  if (state.proxy) state.proxy->slots_changed();
}

}  // namespace

std::string execute(const Command& command, Session& session, State& state, bool* ok) {
  *ok = true;
  const std::vector<std::string>& args = command.args;
  Pool& pool = state.pool;
  Group* group = current_group(state, session);
  Channel* channel = nullptr;
  std::string number = args.empty() ? "" : args[0];
  switch (command.kind) {
    case CommandKind::Enable:
    case CommandKind::Disable:
    case CommandKind::Assign:
    case CommandKind::Maxc:
    case CommandKind::Weight:
    case CommandKind::Delete:
    case CommandKind::Reset:
      channel = group ? group->find(number_arg(number)) : nullptr;
      if (!channel)
        return error_reply(ok, "no channel " + number + " in group " + std::to_string(session.group));
      break;
    default:
      break;
  }
  switch (command.kind) {
    case CommandKind::Help:
      return help_text();
    case CommandKind::Show:
      if (args.empty()) return render_show(state);
      if (args[0] == "json") return render_json(state);
      if (args[0] == "csv") return render_csv(state);
      return render_queue(state);
    case CommandKind::Group: {
      size_t wanted = number_arg(args[0]);
      if (wanted > pool.groups().size())
        return error_reply(ok, "no group " + args[0] + " (groups are 0 to " +
                                   std::to_string(pool.groups().size()) + ", the last one new)");
      if (wanted == pool.groups().size()) {
        pool.add_group(GroupType::RoundRobin);
        state.log.info("control: group %zu added", wanted);
      }
      session.group = wanted;
      return "group " + std::to_string(wanted);
    }
    case CommandKind::RoundRobin:
    case CommandKind::Hash: {
      if (!group) return error_reply(ok, "no group " + std::to_string(session.group));
      group->type = command.kind == CommandKind::Hash ? GroupType::Hash : GroupType::RoundRobin;
      state.log.info("control: group %zu set to %s", session.group,
                     group->type == GroupType::Hash ? "hash" : "rr");
      slots_changed(state);
      return "group " + std::to_string(session.group) + " set to " +
             (group->type == GroupType::Hash ? "hash" : "round robin");
    }
    case CommandKind::Enable:
    case CommandKind::Disable: {
      bool enable = command.kind == CommandKind::Enable;
      if (!pool.set_admin(*channel, enable ? AdminState::Enabled : AdminState::Disabled,
                          state.now_ms)) {
        if (enable && channel->health == Health::Down) {
          channel->next_probe_ms = state.now_ms;  // the admin says it is back: look now
          return "channel " + number + " already enabled; it is down, probing it now";
        }
        return "channel " + number + " already " + (enable ? "enabled" : "disabled");
      }
      log_change(state, *channel, enable ? "enabled" : "disabled");
      if (enable) {
        // Give it a fresh chance: a down channel is probed at once.
        channel->next_probe_ms = state.now_ms;
        slots_changed(state);
      }
      return "channel " + number + (enable ? " enabled" : " disabled");
    }
    case CommandKind::Create: {
      if (!group) return error_reply(ok, "no group " + std::to_string(session.group));
      ChannelConfig config;
      config.host = args[0];
      config.port = args[1];
      if (args.size() > 2) config.maxc = number_arg(args[2]);
      if (args.size() > 3) config.weight = number_arg(args[3]);
      std::string why;
      if (!resolve_channel(state, config.host, config.port, &config.address, &why))
        return error_reply(ok, why);
      Channel& created = pool.add_channel(session.group, config, state.now_ms);
      pool.set_admin(created, AdminState::Disabled, state.now_ms);
      log_change(state, created, "created (disabled)");
      return "channel " + std::to_string(created.number) + " created in group " +
             std::to_string(session.group) + ", disabled; enable it to use it";
    }
    case CommandKind::Assign: {
      if (channel->admin != AdminState::Disabled)
        return error_reply(ok, "channel " + number + " is enabled; disable it first");
      Address address;
      std::string why;
      if (!resolve_channel(state, args[1], args[2], &address, &why)) return error_reply(ok, why);
      channel->config.host = args[1];
      channel->config.port = args[2];
      channel->config.address = address;
      pool.mark_up(*channel, state.now_ms);  // a new address gets a fresh start
      if (state.proxy) state.proxy->forget_channel(*channel);
      log_change(state, *channel, "assigned");
      return "channel " + number + " assigned to " + args[1] + " " + args[2];
    }
    case CommandKind::Maxc:
    case CommandKind::Weight: {
      bool maxc = command.kind == CommandKind::Maxc;
      (maxc ? channel->config.maxc : channel->config.weight) = number_arg(args[1]);
      log_change(state, *channel, maxc ? "maxc changed" : "weight changed");
      slots_changed(state);
      return (maxc ? "maxc of channel " : "weight of channel ") + number + " set to " + args[1];
    }
    case CommandKind::Delete: {
      log_change(state, *channel, "deleted");
      if (state.proxy) state.proxy->forget_channel(*channel);
      pool.remove_channel(session.group, channel->number);
      return "channel " + number + " deleted";
    }
    case CommandKind::Reset:
      channel->total_connections = channel->failures = 0;
      channel->sent = channel->received = 0;
      channel->finished = channel->busy_ms = 0;
      return "channel " + number + " counters reset";
    case CommandKind::MrtgBytes:
    case CommandKind::MrtgConns: {
      size_t g = number_arg(args[0]);
      Channel* target = g < pool.groups().size() ? pool.groups()[g]->find(number_arg(args[1])) : nullptr;
      if (!target) return error_reply(ok, "no channel " + args[1] + " in group " + args[0]);
      // balance's four MRTG lines: two values, uptime, target name.
      std::string name = "group " + args[0] + " channel " + args[1];
      if (command.kind == CommandKind::MrtgBytes)
        return std::to_string(target->received) + "\n" + std::to_string(target->sent) +
               "\nUNKNOWN\n" + name;
      return std::to_string(target->total_connections) + "\nUNKNOWN\nUNKNOWN\n" + name;
    }
    case CommandKind::Version:
      return std::string("balance ") + BALANCE_VERSION + " (" +
             (state.poller ? state.poller->name() : "no loop") + ")";
    case CommandKind::Kill:
      state.log.info("control: kill");
      state.stopping = true;
      return "balance stops";
    case CommandKind::Quit:
      session.quit = true;
      return "bye";
  }
  return error_reply(ok, "internal: unhandled command");
}

// ---------------------------------------------------------------- socket path

namespace {

bool private_directory(const std::string& dir, std::string* err) {
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    *err = dir + ": " + std::strerror(errno);
    return false;
  }
  struct stat st;
  if (lstat(dir.c_str(), &st) != 0) {
    *err = dir + ": " + std::strerror(errno);
    return false;
  }
  if (!S_ISDIR(st.st_mode)) {
    *err = dir + ": not a directory (a symbolic link or file is in the way); refusing to use it";
    return false;
  }
  if (st.st_uid != geteuid()) {
    *err = dir + ": owned by uid " + std::to_string(st.st_uid) + ", not by you; refusing to use it";
    return false;
  }
  if (st.st_mode & (S_IWGRP | S_IWOTH)) {
    *err = dir + ": writable by others; refusing to use it (chmod 700 it)";
    return false;
  }
  return true;
}

}  // namespace

bool control_socket_path(const Options& options, std::string* path, std::string* directory,
                         std::string* err) {
  directory->clear();
  if (!options.socket_path.empty()) {
    *path = options.socket_path;
    return true;
  }
  int port;
  std::string why;
  if (!resolve_port(options.port, &port, &why)) {
    *err = options.port + ": " + why;
    return false;
  }
  if (geteuid() == 0) {
    struct stat st;
    *directory = stat("/run", &st) == 0 && S_ISDIR(st.st_mode) ? "/run/balance" : "/var/run/balance";
  } else {
    const char* tmp = std::getenv("TMPDIR");
    *directory = std::string(tmp && *tmp ? tmp : "/tmp") + "/balance-" + std::to_string(geteuid());
  }
  std::string name = options.bind_address;
  for (char& ch : name)
    if (ch == '/') ch = '_';
  *path = *directory + "/" + (name.empty() ? "" : name + "_") + std::to_string(port) + ".sock";
  return true;
}

namespace {

bool fill_unix_address(const std::string& path, sockaddr_un* address, std::string* err) {
  std::memset(address, 0, sizeof *address);
  address->sun_family = AF_UNIX;
  if (path.size() >= sizeof address->sun_path) {
    *err = path + ": control socket path too long (use -S with a shorter one)";
    return false;
  }
  std::memcpy(address->sun_path, path.c_str(), path.size());
  return true;
}

// Connects to a control socket; -1 with errno set on failure.
int connect_unix(const std::string& path) {
  sockaddr_un address;
  std::string err;
  if (!fill_unix_address(path, &address, &err)) {
    errno = ENAMETOOLONG;
    return -1;
  }
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  set_cloexec(fd);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    int saved = errno;
    ::close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

bool peer_allowed(int fd, uid_t* uid) {
#if defined(__linux__) && defined(SO_PEERCRED)
  struct ucred cred;
  socklen_t length = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0) return false;
  *uid = cred.uid;
#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || \
    defined(__NetBSD__) || defined(__DragonFly__)
  gid_t gid;
  if (getpeereid(fd, uid, &gid) != 0) return false;
#else
  // No way to ask: the socket's mode 0600 and its 0700 directory decide.
  (void)fd;
  *uid = geteuid();
#endif
  return *uid == geteuid() || *uid == 0;
}

}  // namespace

// ---------------------------------------------------------------- server

struct ControlServer::Client final : Watcher {
  ControlServer& server;
  Fd fd;
  std::string in, out;
  Session session;
  int64_t active_ms = 0;
  bool closing = false;  // close once `out` is written
  bool closed = false;

  Client(ControlServer& owner, int descriptor) : server(owner), fd(descriptor) {}

  void on_ready(int, unsigned events) override {
    if (closed) return;
    State& state = server.state_;
    active_ms = state.now_ms;
    if ((events & (kReadable | kHangup)) && !closing) {
      char buffer[4096];
      ssize_t n = read(fd.get(), buffer, sizeof buffer);
      if (n == 0 || (n < 0 && !would_block(errno))) {
        server.close_client(*this);
        return;
      }
      if (n > 0) {
        in.append(buffer, size_t(n));
        handle_lines();
      }
    }
    flush();
  }

  void handle_lines() {
    size_t newline;
    while (!closing && (newline = in.find('\n')) != std::string::npos) {
      std::string line = in.substr(0, newline);
      in.erase(0, newline + 1);
      if (blank_line(line)) continue;
      if (line.size() > kMaxLine) {
        reply(false, "error: line too long (at most " + std::to_string(kMaxLine) + " bytes)");
        continue;
      }
      Command command;
      bool empty = false;
      std::string err;
      if (!parse_command(line, &command, &empty, &err)) {
        reply(false, "error: " + err);
        continue;
      }
      if (empty) continue;
      bool ok = true;
      std::string body = execute(command, session, server.state_, &ok);
      reply(ok, body);
      if (session.quit) closing = true;
    }
    if (in.size() > kMaxLine) {
      // A line that does not end: answer once and hang up.
      reply(false, "error: line too long (at most " + std::to_string(kMaxLine) + " bytes)");
      in.clear();
      closing = true;
    }
  }

  void reply(bool, const std::string& body) {
    out += body;
    if (!body.empty() && body.back() != '\n') out += '\n';
    out += '\n';
  }

  void flush() {
    while (!out.empty()) {
      ssize_t n = write(fd.get(), out.data(), out.size());
      if (n < 0) {
        if (would_block(errno)) break;
        server.close_client(*this);
        return;
      }
      out.erase(0, size_t(n));
    }
    if (out.size() > kMaxOutput || (closing && out.empty())) {
      server.close_client(*this);
      return;
    }
    unsigned want = out.empty() ? kReadable : kWritable;
    if (closing) want = kWritable;
    server.state_.poller->watch(fd.get(), want, this);
  }
};

ControlServer::ControlServer(State& state) : state_(state) {}
ControlServer::~ControlServer() { close(); }

bool ControlServer::listen(std::string* err) {
  std::string directory;
  if (!control_socket_path(state_.options, &path_, &directory, err)) return false;
  if (!directory.empty() && !private_directory(directory, err)) return false;
  sockaddr_un address;
  if (!fill_unix_address(path_, &address, err)) return false;
  struct stat st;
  if (lstat(path_.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      *err = path_ + ": exists and is not a socket; refusing to replace it";
      return false;
    }
    int fd = connect_unix(path_);
    if (fd >= 0) {
      ::close(fd);
      *err = "already running (socket " + path_ + ")";
      return false;
    }
    unlink(path_.c_str());  // left by an instance that died
  }
  Fd fd(socket(AF_UNIX, SOCK_STREAM, 0));
  if (!fd) {
    *err = sys_error("socket");
    return false;
  }
  set_cloexec(fd.get());
  set_nonblocking(fd.get());
  mode_t old_mask = umask(0177);
  int rc = bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address);
  umask(old_mask);
  if (rc != 0) {
    *err = path_ + ": " + sys_error("bind");
    return false;
  }
  chmod(path_.c_str(), 0600);
  if (::listen(fd.get(), 16) != 0) {
    *err = path_ + ": " + sys_error("listen");
    unlink(path_.c_str());
    return false;
  }
  listener_ = std::move(fd);
  state_.socket_path = path_;
  state_.poller->watch(listener_.get(), kReadable, this);
  return true;
}

void ControlServer::on_ready(int, unsigned) { accept_clients(); }

void ControlServer::accept_clients() {
  for (int i = 0; i < 16; ++i) {
    int fd = accept(listener_.get(), nullptr, nullptr);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE) {
        accept_paused_ = true;
        accept_resume_ms_ = state_.now_ms + 100;
        state_.poller->watch(listener_.get(), 0, this);
      }
      return;
    }
    set_cloexec(fd);
    set_nonblocking(fd);
    uid_t uid = 0;
    if (!peer_allowed(fd, &uid)) {
      state_.log.warning("control: refused a connection from uid %ld", long(uid));
      const char refusal[] = "error: permission denied\n\n";
      ssize_t ignored = write(fd, refusal, sizeof refusal - 1);
      (void)ignored;
      ::close(fd);
      continue;
    }
    if (live_clients() >= kMaxClients) {
      // The least recently active session makes room, so idle sessions
      // can never lock the administrator out.
      Client* oldest = nullptr;
      for (auto& client : clients_)
        if (!client->closed && (!oldest || client->active_ms < oldest->active_ms))
          oldest = client.get();
      const char busy[] = "error: too many control connections; closing the idlest\n\n";
      ssize_t ignored = write(oldest->fd.get(), busy, sizeof busy - 1);
      (void)ignored;
      close_client(*oldest);
    }
    clients_.push_back(std::make_unique<Client>(*this, fd));
    clients_.back()->active_ms = state_.now_ms;
    state_.poller->watch(fd, kReadable, clients_.back().get());
  }
}

size_t ControlServer::live_clients() const {
  size_t live = 0;
  for (auto& client : clients_) live += !client->closed;
  return live;
}

void ControlServer::close_client(Client& client) {
  if (client.closed) return;
  client.closed = true;
  state_.poller->forget(client.fd.get());
  client.fd.reset();
}

void ControlServer::tick() {
  for (auto& client : clients_)
    if (!client->closed && state_.now_ms - client->active_ms >= kIdleMs) close_client(*client);
  clients_.erase(std::remove_if(clients_.begin(), clients_.end(),
                                [](const std::unique_ptr<Client>& c) { return c->closed; }),
                 clients_.end());
  if (accept_paused_ && accept_resume_ms_ <= state_.now_ms) {
    accept_paused_ = false;
    state_.poller->watch(listener_.get(), kReadable, this);
  }
}

int64_t ControlServer::next_deadline_ms() const {
  int64_t next = accept_paused_ ? accept_resume_ms_ : -1;
  for (auto& client : clients_)
    if (next < 0 || client->active_ms + kIdleMs < next) next = client->active_ms + kIdleMs;
  return next;
}

void ControlServer::close() {
  for (auto& client : clients_) {
    client->flush();
    close_client(*client);
  }
  clients_.clear();
  if (listener_) {
    state_.poller->forget(listener_.get());
    listener_.reset();
    unlink(path_.c_str());
  }
}

// ---------------------------------------------------------------- client

namespace {

// Reads one reply (up to its empty line). False when the connection ended.
bool read_reply(int fd, std::string* pending, std::string* body) {
  body->clear();
  for (;;) {
    size_t end = pending->find("\n\n");
    if (pending->compare(0, 1, "\n") == 0) end = 0;
    if (end != std::string::npos) {
      *body = pending->substr(0, end == 0 ? 0 : end + 1);
      pending->erase(0, end == 0 ? 1 : end + 2);
      return true;
    }
    char buffer[4096];
    ssize_t n = read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    pending->append(buffer, size_t(n));
  }
}

bool send_line(int fd, const std::string& line) {
  std::string data = line + "\n";
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += size_t(n);
  }
  return true;
}

// Sends one command and prints its reply; false when it was an error.
// The group shown in the prompt follows successful `group` commands.
bool run_one(int fd, const std::string& line, std::string* pending, size_t* group, bool* ended) {
  *ended = false;
  if (!send_line(fd, line)) {
    std::fprintf(stderr, "balance: the control connection was closed\n");
    *ended = true;
    return false;
  }
  Command command;
  bool empty = false;
  std::string ignored;
  bool parsed = parse_command(line, &command, &empty, &ignored);
  if (parsed && empty) return true;  // the server sends nothing back
  std::string body;
  if (!read_reply(fd, pending, &body)) {
    std::fprintf(stderr, "balance: the control connection was closed\n");
    *ended = true;
    return false;
  }
  bool error = body.compare(0, 7, "error: ") == 0;
  std::fputs(body.c_str(), error ? stderr : stdout);
  std::fflush(stdout);
  if (!error && parsed && command.kind == CommandKind::Group) *group = number_arg(command.args[0]);
  if (parsed && (command.kind == CommandKind::Quit || command.kind == CommandKind::Kill))
    *ended = true;
  return !error;
}

}  // namespace

int run_control_client(const Options& options) {
  std::string path, directory, err;
  if (!control_socket_path(options, &path, &directory, &err)) {
    std::fprintf(stderr, "balance: %s\n", err.c_str());
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  int fd = connect_unix(path);
  if (fd < 0) {
    if (errno == ENOENT || errno == ECONNREFUSED)
      std::fprintf(stderr, "balance: no balance running on port %s (socket %s)\n",
                   options.port.c_str(), path.c_str());
    else
      std::fprintf(stderr, "balance: %s: %s\n", path.c_str(), std::strerror(errno));
    return 1;
  }
  Fd owner(fd);
  std::string pending;
  size_t group = 0;
  bool ended = false;
  if (options.mode == Mode::Command) {
    // Several commands may be given, separated by ';' or newlines; the
    // first error stops the run.
    size_t start = 0;
    while (start <= options.command.size() && !ended) {
      size_t semicolon = options.command.find_first_of(";\n", start);
      if (semicolon == std::string::npos) semicolon = options.command.size();
      std::string line = options.command.substr(start, semicolon - start);
      start = semicolon + 1;
      if (line.find_first_not_of(" \t") == std::string::npos) continue;
      if (!run_one(fd, line, &pending, &group, &ended)) return 1;
    }
    return 0;
  }
  bool tty = isatty(STDIN_FILENO);
  bool failed = false;
  std::string line;
  for (;;) {
    if (tty) {
      std::printf("balance[%zu] ", group);
      std::fflush(stdout);
    }
    if (!std::getline(std::cin, line)) break;
    if (!run_one(fd, line, &pending, &group, &ended)) failed = true;
    if (ended) break;
  }
  if (tty && std::cin.eof()) std::printf("\n");
  // Piped commands report failure in the exit status; a person at the
  // prompt has seen the errors already.
  return failed && !tty ? 1 : 0;
}
