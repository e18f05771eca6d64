// The control channel (see control.hpp): the keyword table and the pure
// parser, one handler per command, the socket path with its checks, and
// the UNIX socket server run inside the relay loop.
//
// Invariants: handlers change the pool only through Pool's methods; the
// server never blocks and takes no new line from a session while its
// reply is still being rendered or a window's worth of output waits; a
// line longer than kMaxLine, or one with bytes that are not printable
// text, gets an error reply; only balance's own uid and root may connect.
#include "control.hpp"

#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "handover.hpp"

namespace {

constexpr size_t kMaxDiscard = 64 * 1024;  // a longer unended line ends the session
constexpr size_t kMaxSessions = 64;
constexpr int64_t kIdleMs = 600000;  // an idle control session ends after 10 min

enum class Arg { Channel, Group, Maxc, Weight, Host, Port, Form, Rule };

using Handler = Reply (*)(const Command&, ControlContext&);

struct Keyword {
  const char* name;
  Verb verb;
  std::vector<Arg> required;
  std::vector<Arg> optional;
  const char* synopsis;
  const char* help;
  // balance 3.x's commands keep its first-match prefixes; newer ones
  // need a prefix that is not also a prefix of a 3.x command.
  bool balance3;
  Handler run;
  // Refused to read-only peers (-G): it changes the running balance.
  bool changes = true;
};

const std::vector<Keyword>& keywords();

// ---------------------------------------------------------------- handlers

Reply error(const std::string& why) {
  Reply reply;
  reply.ok = false;
  reply.text = "error: " + why;
  return reply;
}

Reply text(const std::string& body) {
  Reply reply;
  reply.text = body;
  return reply;
}

// The channel C of the current group, or an error reply in *failure.
Channel* target(const Command& command, ControlContext& context, Reply* failure) {
  Channel* channel = context.state.pool.find(context.group, command.channel);
  if (!channel)
    *failure = error("no channel " + std::to_string(command.channel) + " in group " +
                     std::to_string(context.group));
  return channel;
}

void log_change(ControlContext& context, const Channel& channel, const std::string& what) {
  context.state.log.info("control (uid %ld): channel %s %s", long(context.peer_uid),
                         channel_name(channel).c_str(), what.c_str());
}

std::string channel_text(const Command& command) { return "channel " + std::to_string(command.channel); }

bool resolve_channel(ControlContext& context, const std::string& host, const std::string& port,
                     Address* address, std::string* why) {
  if (!resolve_address(host, port, address_family(context.state.options), false, address, why) ||
      loops_back(context.state, *address, why)) {
    *why = host + " " + port + ": " + *why;
    return false;
  }
  return true;
}

Reply run_quit(const Command&, ControlContext& context) {
  context.quit = true;
  return text("bye");
}

Reply run_show(const Command& command, ControlContext& context) {
  Reply reply;
  reply.stream = make_show(context.state, command.form);
  return reply;
}

Reply run_help(const Command&, ControlContext&) { return text(help_text()); }

Reply run_kill(const Command&, ControlContext& context) {
  context.state.log.info("control (uid %ld): kill", long(context.peer_uid));
  context.state.stopping = true;
  return text("balance stops");
}

Reply run_admin(const Command& command, ControlContext& context) {
  Reply failure;
  Channel* channel = target(command, context, &failure);
  if (!channel) return failure;
  bool enable = command.verb == Verb::Enable;
  State& state = context.state;
  AdminState was = channel->admin();
  if (!state.pool.set_admin(*channel, enable ? AdminState::Enabled : AdminState::Disabled,
                            state.now_ms)) {
    if (enable && channel->health() == Health::Down)
      return text(channel_text(command) + " already enabled; it is down, probing it now");
    return text(channel_text(command) + " already " + (enable ? "enabled" : "disabled"));
  }
  log_change(context, *channel, std::string(to_string(was)) + " -> " + to_string(channel->admin()));
  return text(channel_text(command) + (enable ? " enabled" : " disabled"));
}

Reply run_group(const Command& command, ControlContext& context) {
  Pool& pool = context.state.pool;
  size_t count = pool.groups().size();
  if (command.group > count)
    return error("no group " + std::to_string(command.group) + " (groups are 0 to " +
                 std::to_string(count) + ", the last one new)");
  if (command.group == count) {
    if (context.read_only) return error("permission denied: read-only access cannot add a group");
    pool.add_group(GroupType::RoundRobin);
    context.state.log.info("control (uid %ld): group %zu added", long(context.peer_uid), count);
  }
  context.group = command.group;
  return text("group " + std::to_string(command.group));
}

Reply run_reset(const Command& command, ControlContext& context) {
  Reply failure;
  Channel* channel = target(command, context, &failure);
  if (!channel) return failure;
  context.state.pool.reset_counters(*channel);
  log_change(context, *channel, "counters reset");
  return text(channel_text(command) + " counters reset");
}

Reply run_create(const Command& command, ControlContext& context) {
  State& state = context.state;
  if (context.group >= state.pool.groups().size())
    return error("no group " + std::to_string(context.group));
  ChannelConfig config;
  config.host = command.host;
  config.port = command.port;
  config.maxc = command.maxc;
  config.weight = command.weight;
  std::string why;
  if (!resolve_channel(context, config.host, config.port, &config.address, &why)) return error(why);
  Channel& created =
      state.pool.add_channel(context.group, config, AdminState::Disabled, state.now_ms);
  log_change(context, created,
             "created (disabled), maxc " + std::to_string(config.maxc) + ", weight " +
                 std::to_string(config.weight));
  return text("channel " + std::to_string(created.number()) + " created in group " +
              std::to_string(context.group) + ", disabled; enable it to use it");
}

Reply run_assign(const Command& command, ControlContext& context) {
  Reply failure;
  Channel* channel = target(command, context, &failure);
  if (!channel) return failure;
  State& state = context.state;
  if (channel->enabled()) return error(channel_text(command) + " is enabled; disable it first");
  Address address;
  std::string why;
  if (!resolve_channel(context, command.host, command.port, &address, &why)) return error(why);
  std::string was = channel->config().address.text();
  if (!state.pool.assign(*channel, command.host, command.port, address, state.now_ms, &why))
    return error(why);
  log_change(context, *channel, "assigned: " + was + " -> " + address.text());
  return text(channel_text(command) + " assigned to " + command.host + " " + command.port);
}

// "3", or "auto (prior 3)" for a learned weight.
std::string weight_text(const Channel& channel) {
  std::string weight = std::to_string(channel.config().weight);
  return channel.learned() ? "auto (prior " + weight + ")" : weight;
}

// maxc C N and weight C W|auto: one setting of a channel.
Reply run_setting(const Command& command, ControlContext& context) {
  Reply failure;
  Channel* channel = target(command, context, &failure);
  if (!channel) return failure;
  Pool& pool = context.state.pool;
  bool maxc = command.verb == Verb::Maxc;
  std::string name = maxc ? "maxc" : "weight";
  std::string was = maxc ? std::to_string(channel->config().maxc) : weight_text(*channel);
  if (maxc)
    pool.set_maxc(*channel, command.maxc);
  else if (command.learn)  // the weight it has stays, as the prior
    pool.set_weight(*channel, channel->config().weight, true);
  else
    pool.set_weight(*channel, command.weight);
  std::string now = maxc ? std::to_string(command.maxc) : weight_text(*channel);
  log_change(context, *channel, name + " " + was + " -> " + now);
  return text(name + " of " + channel_text(command) + " set to " + now);
}

Reply run_delete(const Command& command, ControlContext& context) {
  Reply failure;
  Channel* channel = target(command, context, &failure);
  if (!channel) return failure;
  log_change(context, *channel, "deleted");
  context.state.pool.remove_channel(*channel);
  return text(channel_text(command) + " deleted");
}

Reply run_mrtg(const Command& command, ControlContext& context) {
  Pool& pool = context.state.pool;
  std::string g = std::to_string(command.group), c = std::to_string(command.channel);
  if (command.group >= pool.groups().size()) return error("no group " + g);
  const Channel* channel = pool.find(command.group, command.channel);
  if (!channel) return error("no channel " + c + " in group " + g);
  // balance's four MRTG lines: two values, uptime, target name.
  const ChannelCounters& counters = channel->counters();
  std::string name = "group " + g + " channel " + c;
  if (command.verb == Verb::MrtgBytes)
    return text(std::to_string(counters.received) + "\n" + std::to_string(counters.sent) +
                "\nUNKNOWN\n" + name);
  return text(std::to_string(counters.connections) + "\nUNKNOWN\nUNKNOWN\n" + name);
}

Reply run_version(const Command&, ControlContext& context) {
  // What balance 3.x scripts grep for ("This is balance"); the fourth
  // word is the version, as 3.x's was.
  const State& state = context.state;
  return text(std::string("This is balance ") + BALANCE_VERSION + " (" +
              (state.poller ? state.poller->name() : "no loop") + ", pid " +
              std::to_string(long(getpid())) + ")");
}

Reply run_group_type(const Command& command, ControlContext& context) {
  Pool& pool = context.state.pool;
  std::string g = std::to_string(context.group);
  if (context.group >= pool.groups().size()) return error("no group " + g);
  bool hash = command.verb == Verb::Hash;
  if (pool.set_group_type(context.group, hash ? GroupType::Hash : GroupType::RoundRobin))
    context.state.log.info("control (uid %ld): group %s set to %s", long(context.peer_uid),
                           g.c_str(), hash ? "hash" : "rr");
  return text("group " + g + " set to " + (hash ? "hash" : "round robin"));
}

Reply run_rule(const Command& command, ControlContext& context) {
  ClientRules& rules = context.state.rules;
  std::string why;
  bool done = command.remove ? rules.remove(command.rule, command.network, &why)
                             : rules.add(command.rule, command.network, &why);
  if (!done) return error(why);
  Network network;
  parse_network(command.network, &network, &why);
  std::string rule = std::string(to_string(command.rule)) + " " + to_string(network);
  context.state.log.info("control (uid %ld): rule %s %s", long(context.peer_uid), rule.c_str(),
                         command.remove ? "removed" : "added");
  return text("rule " + rule + (command.remove ? " removed" : " added"));
}

Reply run_handover(const Command&, ControlContext& context) {
  // The session gives its connection to the hand-over (handover.cpp),
  // which speaks its own protocol on it from here.
  context.handover = true;
  Reply reply;
  return reply;
}

const std::vector<Keyword>& keywords() {
  // balance 3.x's commands first, in the order 3.x tries them, so that
  // its one-letter prefixes mean what they meant (d = disable, h = help,
  // r = reset, m = maxc); then the newer ones.
  static const std::vector<Keyword> table = {
      {"quit", Verb::Quit, {}, {}, "quit", "end this control session", true, run_quit, false},
      {"show", Verb::Show, {}, {Arg::Form}, "show [brief|csv|json|queue|rules|config]",
       "channels and counters; brief fits 80 columns; csv and json for programs; "
       "queue lists waiting clients; rules the client rules; config the command line",
       true, run_show, false},
      {"help", Verb::Help, {}, {}, "help", "show this list (also ?)", true, run_help, false},
      {"kill", Verb::Kill, {}, {}, "kill", "stop this balance process", true, run_kill},
      {"disable", Verb::Disable, {Arg::Channel}, {}, "disable C",
       "take channel C out of service; its connections finish (drain)", true, run_admin},
      {"group", Verb::Group, {Arg::Group}, {}, "group G",
       "make group G current (G = number of groups adds an empty group)", true, run_group, false},
      {"reset", Verb::Reset, {Arg::Channel}, {}, "reset C",
       "clear the totalc, failure and byte counters of channel C", true, run_reset},
      {"enable", Verb::Enable, {Arg::Channel}, {}, "enable C", "put channel C in service", true,
       run_admin},
      {"create", Verb::Create, {Arg::Host, Arg::Port}, {Arg::Maxc, Arg::Weight},
       "create host port [maxc [weight]]", "add a channel to the current group, disabled", true,
       run_create},
      {"assign", Verb::Assign, {Arg::Channel, Arg::Host, Arg::Port}, {}, "assign C host port",
       "point disabled channel C at another host and port", true, run_assign},
      {"maxc", Verb::Maxc, {Arg::Channel, Arg::Maxc}, {}, "maxc C N",
       "set the slots of channel C (0 = unlimited)", true, run_setting},
      {"mrtg-bytes", Verb::MrtgBytes, {Arg::Group, Arg::Channel}, {}, "mrtg-bytes G C",
       "bytes received and sent by channel C of group G, for MRTG", true, run_mrtg, false},
      {"mrtg-conns", Verb::MrtgConns, {Arg::Group, Arg::Channel}, {}, "mrtg-conns G C",
       "total connections of channel C of group G, for MRTG", true, run_mrtg, false},
      {"version", Verb::Version, {}, {}, "version", "show balance's version", true, run_version, false},
      {"hash", Verb::Hash, {}, {}, "hash", "schedule the current group by client address hash",
       true, run_group_type},
      {"rr", Verb::RoundRobin, {}, {}, "rr", "schedule the current group by fastest free slot",
       true, run_group_type},
      {"weight", Verb::Weight, {Arg::Channel, Arg::Weight}, {}, "weight C W|auto",
       "pin the speed of one slot of channel C, or learn it (auto)", false, run_setting},
      {"delete", Verb::Delete, {Arg::Channel}, {}, "delete C",
       "remove channel C at once; its connections finish", false, run_delete},
      {"rule", Verb::Rule, {Arg::Rule, Arg::Rule}, {Arg::Rule}, "rule [remove] allow|deny|priority NET",
       "add (or remove) a client rule; show rules lists them", false, run_rule},
      {"handover", Verb::Handover, {}, {}, "handover",
       "give the listeners and waiting clients to a new balance (balance -x sends it; whole word only)", false,
       run_handover},
  };
  return table;
}

// ---------------------------------------------------------------- parsing

bool parse_arg(Arg arg, const std::string& word, Command* command, std::string* why) {
  uint64_t value;
  switch (arg) {
    case Arg::Channel:
      if (parse_unsigned(word, 0, 1000000000, &value)) {
        command->channel = unsigned(value);
        return true;
      }
      *why = "channel \"" + word + "\" must be a channel number";
      return false;
    case Arg::Group:
      if (parse_unsigned(word, 0, 1000000, &value)) {
        command->group = size_t(value);
        return true;
      }
      *why = "group \"" + word + "\" must be a group number";
      return false;
    case Arg::Maxc:
      if (parse_unsigned(word, 0, kMaxMaxc, &value)) {
        command->maxc = unsigned(value);
        command->has_maxc = true;
        return true;
      }
      *why = "maxc \"" + word + "\" must be an integer from 0 to 1000000";
      return false;
    case Arg::Weight:
      if (word == "auto" && command->verb == Verb::Weight) {
        command->learn = true;
        return true;
      }
      if (parse_unsigned(word, 1, kMaxWeight, &value)) {
        command->weight = unsigned(value);
        command->has_weight = true;
        return true;
      }
      *why = "weight \"" + word + "\" must be an integer from 1 to 1000000" +
             std::string(command->verb == Verb::Weight ? " or auto" : "");
      return false;
    case Arg::Host:
      command->host = word;
      return true;
    case Arg::Port:
      command->port = word;
      return true;
    case Arg::Form: {
      static const std::pair<const char*, ShowForm> forms[] = {
          {"brief", ShowForm::Brief}, {"csv", ShowForm::Csv}, {"json", ShowForm::Json},
          {"queue", ShowForm::Queue}, {"rules", ShowForm::Rules}, {"config", ShowForm::Config}};
      for (auto& [name, form] : forms)
        if (word == name) {
          command->form = form;
          return true;
        }
      *why = "show takes brief, csv, json, queue, rules or config, not \"" + word + "\"";
      return false;
    }
    case Arg::Rule:
      return true;  // the whole rule is checked by parse_rule()
  }
  return false;
}

std::vector<std::string> split_words(const std::string& line) {
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
  return words;
}

bool begins(const char* name, const std::string& word) {
  return std::strncmp(name, word.c_str(), word.size()) == 0;
}

// "rule allow|deny|priority NET" or "rule remove allow|deny|priority NET".
bool parse_rule(const std::vector<std::string>& words, Command* command, std::string* err) {
  static const char* usage = "usage: rule allow|deny|priority NET, or rule remove allow|deny|priority NET";
  size_t at = 1;
  command->remove = words[at] == "remove";
  if (command->remove) ++at;
  if (words.size() != at + 2) {
    *err = usage;
    return false;
  }
  const std::string& kind = words[at];
  if (kind == "allow") {
    command->rule = RuleKind::Allow;
  } else if (kind == "deny") {
    command->rule = RuleKind::Deny;
  } else if (kind == "priority") {
    command->rule = RuleKind::Priority;
  } else {
    *err = "\"" + kind + "\" is not allow, deny or priority; " + usage;
    return false;
  }
  Network network;
  if (!parse_network(words[at + 1], &network, err)) return false;
  command->network = words[at + 1];
  return true;
}

// The keyword a word names: itself, else the first 3.x command it
// begins, else the one newer command it begins.
const Keyword* find_keyword(const std::string& word, std::string* err) {
  if (word == "?")
    for (const Keyword& keyword : keywords())
      if (keyword.verb == Verb::Help) return &keyword;
  for (const Keyword& keyword : keywords())
    if (word == keyword.name) return &keyword;
  for (const Keyword& keyword : keywords())
    if (keyword.balance3 && begins(keyword.name, word)) return &keyword;
  // handover only by its whole name: it turns the session over to the
  // hand-over protocol and holds accepting until the taker answers.
  std::vector<const Keyword*> matches;
  for (const Keyword& keyword : keywords())
    if (!keyword.balance3 && keyword.verb != Verb::Handover && begins(keyword.name, word))
      matches.push_back(&keyword);
  if (matches.size() == 1) return matches[0];
  if (matches.empty()) {
    *err = "unknown command \"" + word.substr(0, 64) + "\"; type help for the list";
  } else {
    *err = "ambiguous command \"" + word + "\":";
    for (const Keyword* match : matches) *err += std::string(" ") + match->name;
  }
  return nullptr;
}

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
  std::vector<std::string> words = split_words(line);
  const Keyword* keyword = find_keyword(words[0], err);
  if (!keyword) return false;
  size_t given = words.size() - 1;
  if (given < keyword->required.size() ||
      given > keyword->required.size() + keyword->optional.size()) {
    *err = std::string("usage: ") + keyword->synopsis;
    return false;
  }
  *command = Command();
  command->verb = keyword->verb;
  if (keyword->verb == Verb::Rule) return parse_rule(words, command, err);
  for (size_t i = 0; i < given; ++i) {
    Arg arg = i < keyword->required.size() ? keyword->required[i]
                                           : keyword->optional[i - keyword->required.size()];
    if (!parse_arg(arg, words[i + 1], command, err)) return false;
  }
  return true;
}

std::vector<std::string> command_names() {
  std::vector<std::string> names;
  for (const Keyword& keyword : keywords()) names.push_back(keyword.name);
  return names;
}

std::string help_text() {
  std::string help =
      "commands (a word that begins a balance 3.x command runs the first such command, in the "
      "order below; newer commands take any prefix that is not also a 3.x one; C is a channel "
      "of the current group):";
  for (const Keyword& keyword : keywords()) {
    std::string synopsis = keyword.synopsis;
    if (synopsis.size() < 32) synopsis.append(32 - synopsis.size(), ' ');
    help += "\n  " + synopsis + " " + keyword.help;
  }
  return help;
}

Reply execute(const Command& command, ControlContext& context) {
  for (const Keyword& keyword : keywords()) {
    if (keyword.verb != command.verb) continue;
    if (context.read_only && keyword.changes)
      return error(std::string("permission denied: ") + keyword.name +
                   " changes balance, and this session is read-only (-G)");
    return keyword.run(command, context);
  }
  return error("internal: no handler");
}

// ---------------------------------------------------------------- socket path

namespace {

// The server's socket directory: made 0700 if missing, then held to the
// checks every user of it applies (check_socket_directory); with -G its
// group may enter it (0750), to reach the socket.
bool private_directory(const std::string& dir, gid_t group, std::string* err) {
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    *err = dir + ": " + std::strerror(errno);
    return false;
  }
  if (!check_socket_directory(dir, false, err)) return false;
  if (group != gid_t(-1) && (chown(dir.c_str(), uid_t(-1), group) != 0 || chmod(dir.c_str(), 0750) != 0)) {
    *err = dir + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

}  // namespace

bool check_socket_directory(const std::string& dir, bool root_may_own, std::string* err) {
  std::string elsewhere = "give -S a socket path in a directory of your own)";
  struct stat st;
  if (lstat(dir.c_str(), &st) != 0) {
    *err = dir + ": " + std::strerror(errno);
    return false;
  }
  if (!S_ISDIR(st.st_mode)) {
    *err = dir + ": not a directory (a symbolic link or file is in the way); refusing to use it "
           "(remove it, or " + elsewhere;
    return false;
  }
  if (st.st_uid != geteuid() && !(root_may_own && st.st_uid == 0)) {
    *err = dir + ": owned by uid " + std::to_string(st.st_uid) +
           ", not by you; refusing to use it (remove it, or " + elsewhere;
    return false;
  }
  if (st.st_mode & (S_IWGRP | S_IWOTH)) {
    *err = dir + ": writable by others; refusing to use it (chmod 700 it, or " + elsewhere;
    return false;
  }
  return true;
}

std::string socket_directory(uid_t uid, const char* tmpdir) {
  if (uid == 0) {
    struct stat st;
    return stat("/run", &st) == 0 && S_ISDIR(st.st_mode) ? "/run/balance" : "/var/run/balance";
  }
  return std::string(tmpdir && *tmpdir ? tmpdir : "/tmp") + "/balance-" + std::to_string(uid);
}

std::string socket_name(const Options& options, int port) {
  std::string name = options.bind_address;
  for (char& ch : name)
    if (ch == '/') ch = '_';
  return (name.empty() ? "" : name + "_") + std::to_string(port) + ".sock";
}

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
  *directory = socket_directory(geteuid(), std::getenv("TMPDIR"));
  *path = *directory + "/" + socket_name(options, port);
  return true;
}

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

Fd connect_unix(const std::string& path) {
  sockaddr_un address;
  std::string err;
  if (!fill_unix_address(path, &address, &err)) {
    errno = ENAMETOOLONG;
    return Fd();
  }
  Fd fd(socket(AF_UNIX, SOCK_STREAM, 0));
  if (!fd) return Fd();
  set_cloexec(fd.get());
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) return Fd();
  return fd;
}

bool peer_credentials(int fd, uid_t* uid, gid_t* gid) {
#if defined(__linux__) && defined(SO_PEERCRED)
  struct ucred cred;
  socklen_t length = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0) return false;
  *uid = cred.uid;
  *gid = cred.gid;
  return true;
#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || \
    defined(__NetBSD__) || defined(__DragonFly__)
  return getpeereid(fd, uid, gid) == 0;
#else
  // No way to ask: the socket's mode and its directory decide.
  (void)fd;
  *uid = geteuid();
  *gid = getegid();
  return true;
#endif
}

bool user_in_group(uid_t uid, gid_t primary, gid_t group) {
  if (primary == group) return true;
  // Supplementary groups, from the group database.
  passwd entry{}, *found = nullptr;
  std::vector<char> buffer(16384);
  if (getpwuid_r(uid, &entry, buffer.data(), buffer.size(), &found) != 0 || !found) return false;
  std::vector<gid_t> groups(64);
  for (int attempt = 0; attempt < 4; ++attempt) {
    int count = int(groups.size());
#if defined(__APPLE__)
    std::vector<int> ids(groups.size());
    int rc = getgrouplist(found->pw_name, int(primary), ids.data(), &count);
    for (int i = 0; i < count && i < int(ids.size()); ++i) groups[size_t(i)] = gid_t(ids[size_t(i)]);
#else
    int rc = getgrouplist(found->pw_name, primary, groups.data(), &count);
#endif
    if (rc >= 0) {
      for (int i = 0; i < count; ++i)
        if (groups[size_t(i)] == group) return true;
      return false;
    }
    groups.resize(size_t(count) > groups.size() ? size_t(count) : groups.size() * 2);
  }
  return false;
}

// ---------------------------------------------------------------- server

namespace {

class ControlSession final : public Session {
 public:
  ControlSession(SessionServer& server, Fd fd, uid_t uid, bool read_only)
      : Session(server, std::move(fd)), context_{server.state()} {
    context_.peer_uid = uid;
    context_.read_only = read_only;
  }
  int64_t deadline_ms() const override { return active_ms() + kIdleMs; }
  void evict() override {
    write_now("error: too many control connections; closing the idlest\n\n");
    close();
  }

 protected:
  size_t input_limit() const override { return 2 * kMaxLine; }
  void consume() override {
    while (!busy() && !ended_) {
      std::string line;
      switch (framer_.next(&in_, &line)) {
        case LineFramer::Event::None:
          // Input ended: what was asked has been answered; an unended
          // last line is never run.
          if (input_ended()) close_when_done();
          return;
        case LineFramer::Event::TooLong:
          reply_text(too_long());
          break;
        case LineFramer::Event::Abandon:
          reply_text(too_long());
          end();
          return;
        case LineFramer::Event::Line:
          run(line);
          if (context_.quit) end();
          break;
      }
    }
  }

 private:
  // No more lines: the session closes once its replies are sent.
  void end() {
    ended_ = true;
    in_.clear();
    close_when_done();
  }
  static std::string too_long() {
    return "error: line too long (at most " + std::to_string(kMaxLine) + " bytes)\n\n";
  }
  void run(const std::string& line) {
    Command command;
    bool empty = false;
    std::string err;
    if (!parse_command(line, &command, &empty, &err)) {
      reply_text("error: " + err + "\n\n");
      return;
    }
    if (empty) return;
    Reply reply = execute(command, context_);
    if (context_.handover) {
      std::string why;
      State& state = server_.state();
      if (!state.handover) {
        context_.handover = false;
        reply_text("error: this balance cannot hand over\n\n");
        return;
      }
      end();
      state.handover->offer(take_socket(), &why);
      return;
    }
    if (reply.stream) {
      reply_text(reply.text);
      reply_stream(std::move(reply.stream), "\n\n");
      return;
    }
    std::string body = reply.text;
    if (!body.empty() && body.back() != '\n') body += '\n';
    reply_text(body + "\n");
  }

  LineFramer framer_{kMaxLine, kMaxDiscard};
  ControlContext context_;
  bool ended_ = false;
};

}  // namespace

ControlServer::ControlServer(State& state)
    : state_(state),
      sessions_(state, kMaxSessions,
                [this](SessionServer& server, Fd fd, const Address&) -> std::unique_ptr<Session> {
                  // balance's own user and root may do anything; members of
                  // the -G group may look; anyone else is turned away.
                  uid_t uid = uid_t(-1);
                  gid_t gid = gid_t(-1);
                  bool known = peer_credentials(fd.get(), &uid, &gid);
                  bool full = known && (uid == geteuid() || uid == 0);
                  bool reader = known && !full && monitor_gid_ != gid_t(-1) &&
                                user_in_group(uid, gid, monitor_gid_);
                  if (!full && !reader) {
                    state_.log.warning("control: refused a connection from uid %ld", long(uid));
                    const char refusal[] = "error: permission denied\n\n";
                    ssize_t ignored = send(fd.get(), refusal, sizeof refusal - 1, MSG_NOSIGNAL);
                    (void)ignored;
                    return nullptr;
                  }
                  return std::make_unique<ControlSession>(server, std::move(fd), uid, reader);
                }) {}

ControlServer::~ControlServer() { close(); }

bool ControlServer::listen(std::string* err, bool take_over) {
  // path_ is set only once the socket is ours: close() removes it.
  std::string path, directory;
  if (!control_socket_path(state_.options, &path, &directory, err)) return false;
  const std::string& group_name = state_.options.monitor_group;
  if (!group_name.empty()) {
    struct group* entry = getgrnam(group_name.c_str());
    uint64_t number;
    if (entry) {
      monitor_gid_ = entry->gr_gid;
    } else if (parse_unsigned(group_name, 0, 0x7fffffff, &number)) {
      monitor_gid_ = gid_t(number);
    } else {
      *err = "-G " + group_name + ": no such group";
      return false;
    }
  }
  if (!directory.empty() && !private_directory(directory, monitor_gid_, err)) return false;
  // Taking over, the socket is made beside the old one's and renamed over
  // it once it listens.
  std::string bind_path = take_over ? path + ".new" : path;
  if (take_over) unlink(bind_path.c_str());
  sockaddr_un address;
  if (!fill_unix_address(bind_path, &address, err)) return false;
  struct stat st;
  if (!take_over && lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      *err = path + ": exists and is not a socket; refusing to replace it";
      return false;
    }
    if (connect_unix(path)) {
      *err = "already running (socket " + path + ")";
      return false;
    }
    unlink(path.c_str());  // left by an instance that died
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
    *err = bind_path + ": " + sys_error("bind");
    return false;
  }
  // 0600, or 0660 for the -G group, which the session then holds to
  // read-only commands.
  if (monitor_gid_ != gid_t(-1) && chown(bind_path.c_str(), uid_t(-1), monitor_gid_) == 0)
    chmod(bind_path.c_str(), 0660);
  else
    chmod(bind_path.c_str(), 0600);
  // A burst of clients that connect without blocking must not find the
  // backlog full.
  if (::listen(fd.get(), SOMAXCONN) != 0) {
    *err = bind_path + ": " + sys_error("listen");
    unlink(bind_path.c_str());
    return false;
  }
  if (take_over && rename(bind_path.c_str(), path.c_str()) != 0) {
    *err = path + ": " + sys_error("rename");
    unlink(bind_path.c_str());
    return false;
  }
  path_ = path;
  state_.socket_path = path;
  sessions_.start(std::move(fd));
  return true;
}

void ControlServer::give_away() {
  path_.clear();  // the path is the new process's now: not removed
  sessions_.close_all();
}

void ControlServer::close() {
  sessions_.close_all();
  if (!path_.empty()) {
    unlink(path_.c_str());
    path_.clear();
  }
}
