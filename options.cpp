// Command-line parsing (pure) and name resolution (see options.hpp).
#include "options.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

const char* const kUsage =
    "usage: balance [-46adefFHLMpx] [-A net] [-b addr] [-B addr] [-D net] [-G group]\n"
    "               [-j sec] [-k t,i,n] [-K t,i,n] [-O sec] [-P net] [-q len] [-r sec] [-R n]\n"
    "               [-s [addr:]port] [-S path] [-t sec] [-T sec] [-w sec]\n"
    "               port channel ... [! | % channel ...] ...\n"
    "       balance [-b addr] [-S path] [-t sec] -i port\n"
    "       balance [-b addr] [-S path] [-t sec] -c command port\n"
    "       balance -h | -V\n";

// One line per option, as balance 3.x's usage had them; `balance -h`
// prints them after the synopsis.
const char* const kOptionHelp =
    "channel: host[:port[:maxc[:weight]]] (IPv6 in brackets); ! starts the next group,\n"
    "         % does too and makes the group before it a hash group\n"
    "  -4          IPv4 only\n"
    "  -6          IPv6 only\n"
    "  -a          a channel that fails is disabled (autodisable), not probed\n"
    "  -A net      allow clients from net (IPv4 or IPv6 CIDR); once one is given, others are refused\n"
    "  -b addr     listen on addr only (and name the control socket after it)\n"
    "  -B addr     connect to back-ends from addr\n"
    "  -c command  run control commands (separated by ; or newlines) and exit\n"
    "  -d          log a line for every connection when it ends\n"
    "  -D net      refuse clients from net (rules apply in order, first match wins)\n"
    "  -f, -F      stay in the foreground, log to standard error\n"
    "  -G group    let members of group use the control socket read-only\n"
    "  -h          print this help and exit\n"
    "  -H          hash failover: a busy hash channel passes its client on\n"
    "  -i          control the running balance interactively\n"
    "  -j sec      size-aware: wait up to sec for a request's size and keep big jobs off slow slots\n"
    "  -k t,i,n    TCP keepalive to clients: idle t s, then every i s, n probes\n"
    "  -K t,i,n    TCP keepalive to back-ends, the same way\n"
    "  -L          learn each channel's speed from its jobs (the weights become priors)\n"
    "  -e          a waiting client that half-closes keeps its place (default: it leaves)\n"
    "  -M          accepted and ignored (balance 3.x's shared memory)\n"
    "  -O sec      new clients wait up to sec while no channel is in service (default 0)\n"
    "  -p          print every relayed byte on standard output (implies -f)\n"
    "  -P net      waiting clients from net are served before the others\n"
    "  -q len      at most len clients wait for a slot (default 1024; 0 = none)\n"
    "  -r sec      probe a down channel every sec seconds (default 5)\n"
    "  -R n        with -P, at least one client in n served is not a priority one (default 5)\n"
    "  -s [addr:]port  serve statistics over HTTP (addr default 127.0.0.1)\n"
    "  -S path     control socket path\n"
    "  -t sec      connect timeout (default 5); with -c and -i, the longest wait for an answer\n"
    "  -T sec      close a relayed connection idle that long (default 0 = never)\n"
    "  -V          print the version and exit\n"
    "  -w sec      the longest a client waits for a slot (default 60; 0 = forever)\n"
    "  -x          take over the balance running on this port: its listeners, waiting clients\n"
    "              and state; it relays its connections to their end, then exits\n";

bool parse_unsigned(const std::string& text, uint64_t lo, uint64_t hi, uint64_t* value) {
  if (text.empty() || text.size() > 19) return false;
  uint64_t v = 0;
  for (char ch : text) {
    if (ch < '0' || ch > '9') return false;
    v = v * 10 + uint64_t(ch - '0');
  }
  if (v < lo || v > hi) return false;
  *value = v;
  return true;
}

bool parse_seconds(const std::string& text, int64_t lo_ms, int64_t hi_ms, int64_t* ms) {
  size_t dot = text.find('.');
  std::string whole = text.substr(0, dot);
  std::string fraction = dot == std::string::npos ? "" : text.substr(dot + 1);
  if (dot != std::string::npos && fraction.empty()) return false;
  if (fraction.size() > 3) return false;
  uint64_t seconds = 0, thousandths = 0;
  if (whole.empty() && fraction.empty()) return false;
  if (!whole.empty() && !parse_unsigned(whole, 0, 10000000, &seconds)) return false;
  if (!fraction.empty()) {
    while (fraction.size() < 3) fraction += '0';
    if (!parse_unsigned(fraction, 0, 999, &thousandths)) return false;
  }
  int64_t total = int64_t(seconds) * 1000 + int64_t(thousandths);
  if (total < lo_ms || total > hi_ms) return false;
  *ms = total;
  return true;
}

namespace {

const char* const kPortWhy = "port must be a number from 1 to 65535 or a service name";

// A port as written: a number in range, or something shaped like a
// services(5) name (letters, digits and . _ + -, with a letter; no blank).
// Whether such a name exists is the resolver's to say, at start-up.
bool valid_port_text(const std::string& port) {
  uint64_t number;
  if (!port.empty() && port.find_first_not_of("0123456789") == std::string::npos)
    return parse_unsigned(port, 1, 65535, &number);
  bool letter = false;
  for (char ch : port) {
    bool alpha = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
    letter |= alpha;
    if (!alpha && !(ch >= '0' && ch <= '9') && std::strchr("._+-", ch) == nullptr) return false;
  }
  return letter && port[0] != '-';
}

const char* const kMaxcWhy = "maxc must be an integer from 0 to 1000000";
const char* const kWeightWhy = "weight must be an integer from 1 to 1000000";

// Splits "a:b:c" at colons, honouring a leading "[v6 literal]".
bool split_channel(const std::string& text, std::vector<std::string>* fields, std::string* why) {
  size_t pos = 0;
  std::string host;
  if (!text.empty() && text[0] == '[') {
    size_t close = text.find(']');
    if (close == std::string::npos) {
      *why = "missing ']' after the IPv6 address";
      return false;
    }
    host = text.substr(1, close - 1);
    pos = close + 1;
    if (pos < text.size() && text[pos] != ':') {
      *why = "expected ':' after ']'";
      return false;
    }
  } else {
    size_t colon = text.find(':');
    host = text.substr(0, colon);
    pos = colon == std::string::npos ? text.size() : colon;
  }
  fields->push_back(host);
  while (pos < text.size()) {  // text[pos] == ':'
    size_t next = text.find(':', pos + 1);
    fields->push_back(text.substr(pos + 1, next == std::string::npos ? std::string::npos
                                                                     : next - pos - 1));
    pos = next == std::string::npos ? text.size() : next;
  }
  return true;
}

// "::1" or "2001:db8::1:2:3" without brackets would split at its colons;
// such a text is refused with a hint. "name::4" stays balance's syntax
// (default port, maxc 4), even where the name is hex digits.
bool looks_like_bare_ipv6(const std::string& text) {
  size_t colons = 0;
  for (char ch : text) colons += ch == ':';
  in6_addr scratch;
  return (text[0] == ':' || colons > 3) && inet_pton(AF_INET6, text.c_str(), &scratch) == 1;
}

bool take_value(const std::vector<std::string>& args, size_t* i, size_t* pos, char flag,
                std::string* value, std::string* err) {
  const std::string& arg = args[*i];
  if (*pos + 1 < arg.size()) {
    *value = arg.substr(*pos + 1);
  } else if (*i + 1 < args.size()) {
    *value = args[++*i];
  } else {
    *err = std::string("-") + flag + ": missing argument";
    return false;
  }
  *pos = std::string::npos;  // the rest of this word was the value
  return true;
}

bool set_seconds(char flag, const std::string& value, int64_t lo_ms, Options* options,
                 int64_t* field, std::string* err) {
  (void)options;
  if (!parse_seconds(value, lo_ms, 86400000, field)) {
    *err = std::string("-") + flag + " " + value + ": must be a number of seconds from " +
           (lo_ms ? "0.001" : "0") + " to 86400";
    return false;
  }
  return true;
}

// -k and -K: "idle,interval,count", as balance 3.x took them.
bool parse_keepalive(char flag, const std::string& value, Keepalive* keepalive, std::string* err) {
  uint64_t numbers[3];
  size_t start = 0;
  for (int i = 0; i < 3; ++i) {
    size_t comma = value.find(',', start);
    if ((i < 2) != (comma != std::string::npos) ||
        !parse_unsigned(value.substr(start, comma == std::string::npos ? std::string::npos
                                                                        : comma - start),
                        1, 86400, &numbers[i])) {
      *err = std::string("-") + flag + " " + value +
             ": must be idle,interval,count (whole numbers from 1 to 86400)";
      return false;
    }
    start = comma + 1;
  }
  keepalive->idle_s = int(numbers[0]);
  keepalive->interval_s = int(numbers[1]);
  keepalive->count = int(numbers[2]);
  return true;
}

bool parse_stats(const std::string& value, Options* options, std::string* err) {
  std::string address, port = value;
  if (!value.empty() && value[0] == '[') {
    size_t close = value.find("]:");
    if (close == std::string::npos) {
      *err = "-s " + value + ": write an IPv6 address as [addr]:port";
      return false;
    }
    address = value.substr(1, close - 1);
    port = value.substr(close + 2);
  } else if (value.find(':') != std::string::npos) {
    size_t colon = value.rfind(':');
    address = value.substr(0, colon);
    port = value.substr(colon + 1);
    if (address.find(':') != std::string::npos) {
      *err = "-s " + value + ": write an IPv6 address as [addr]:port";
      return false;
    }
  }
  if (!valid_port_text(port)) {
    *err = "-s " + value + ": " + kPortWhy;
    return false;
  }
  options->stats_address = address.empty() ? "127.0.0.1" : address;
  options->stats_port = port;
  return true;
}

}  // namespace

bool parse_channel(const std::string& text, ChannelSpec* spec, std::string* err) {
  spec->text = text;
  std::string why;
  std::vector<std::string> fields;
  if (looks_like_bare_ipv6(text)) {
    *err = text + ": write an IPv6 address in brackets, as [" + text + "]";
    return false;
  }
  if (!split_channel(text, &fields, &why)) {
    *err = text + ": " + why;
    return false;
  }
  if (fields.size() > 4) {
    *err = text + ": too many fields (host[:port[:maxc[:weight]]]; IPv6 in brackets)";
    return false;
  }
  spec->host = fields[0];
  if (spec->host.empty()) {
    *err = text + ": missing host";
    return false;
  }
  spec->port = fields.size() > 1 ? fields[1] : "";
  uint64_t number;
  if (fields.size() > 2 && !fields[2].empty()) {
    if (!parse_unsigned(fields[2], 0, kMaxMaxc, &number)) {
      *err = text + ": " + kMaxcWhy;
      return false;
    }
    spec->maxc = unsigned(number);
  }
  if (fields.size() > 3 && !fields[3].empty()) {
    if (!parse_unsigned(fields[3], 1, kMaxWeight, &number)) {
      *err = text + ": " + kWeightWhy;
      return false;
    }
    spec->weight = unsigned(number);
  }
  if (!spec->port.empty() && !valid_port_text(spec->port)) {
    *err = text + ": " + kPortWhy;
    return false;
  }
  return true;
}

bool parse_options(const std::vector<std::string>& args, Options* options, std::string* err) {
  size_t i = 0;
  bool interactive = false, command = false;
  for (; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      ++i;
      break;
    }
    if (arg.size() < 2 || arg[0] != '-') break;
    for (size_t pos = 1; pos < arg.size(); ++pos) {
      char flag = arg[pos];
      std::string value;
      uint64_t number;
      switch (flag) {
        case '4': options->ipv4_only = true; break;
        case '6': options->ipv6_only = true; break;
        case 'a': options->pool.autodisable = true; break;
        case 'd': options->debug = true; break;
        case 'f':
        case 'F': options->foreground = true; break;  // 3.42 lists both
        case 'e': options->keep_half_closed = true; break;
        case 'L': options->pool.learn_all = true; break;
        case 'x': options->take_over = true; break;
        case 'H': options->pool.hash_failover = true; break;
        case 'M': break;  // balance's memory-mapped IPC; nothing is shared here
        case 'p': options->packet_dump = true; break;
        case 'i': interactive = true; break;
        case 'h': options->mode = Mode::Help; return true;
        case 'V': options->mode = Mode::Version; return true;
        case 'b':
        case 'B':
        case 'G':
        case 'S':
          if (!take_value(args, &i, &pos, flag, &value, err)) return false;
          if (value.empty()) {
            *err = std::string("-") + flag + ": empty argument";
            return false;
          }
          // An IPv6 literal may come in brackets, as in channels and -s;
          // the control socket is named after the address without them.
          if ((flag == 'b' || flag == 'B') && value.size() > 2 && value.front() == '[' &&
              value.back() == ']')
            value = value.substr(1, value.size() - 2);
          (flag == 'b'   ? options->bind_address
           : flag == 'B' ? options->source_address
           : flag == 'G' ? options->monitor_group
                         : options->socket_path) = value;
          break;
        case 'c':
          if (!take_value(args, &i, &pos, flag, &options->command, err)) return false;
          command = true;
          break;
        case 't':
          if (!take_value(args, &i, &pos, flag, &value, err) ||
              !set_seconds(flag, value, 1, options, &options->connect_timeout_ms, err))
            return false;
          options->timeout_given = true;
          break;
        case 'r':
          if (!take_value(args, &i, &pos, flag, &value, err) ||
              !set_seconds(flag, value, 1, options, &options->pool.retry_ms, err))
            return false;
          break;
        case 'T':
          if (!take_value(args, &i, &pos, flag, &value, err) ||
              !set_seconds(flag, value, 0, options, &options->idle_timeout_ms, err))
            return false;
          break;
        case 'w':
          if (!take_value(args, &i, &pos, flag, &value, err) ||
              !set_seconds(flag, value, 0, options, &options->pool.queue_wait_ms, err))
            return false;
          break;
        case 'A':
        case 'D':
        case 'P': {
          if (!take_value(args, &i, &pos, flag, &value, err)) return false;
          Network network;
          std::string why;
          if (!parse_network(value, &network, &why)) {
            *err = std::string("-") + flag + " " + why;
            return false;
          }
          options->rules.emplace_back(flag == 'A'   ? RuleKind::Allow
                                      : flag == 'D' ? RuleKind::Deny
                                                    : RuleKind::Priority,
                                      value);
          break;
        }
        case 'R':
          if (!take_value(args, &i, &pos, flag, &value, err)) return false;
          if (!parse_unsigned(value, 1, 1000000, &number)) {
            *err = "-R " + value + ": must be an integer from 1 to 1000000";
            return false;
          }
          options->pool.relief_every = unsigned(number);
          break;
        case 'k':
        case 'K':
          if (!take_value(args, &i, &pos, flag, &value, err) ||
              !parse_keepalive(flag, value,
                               flag == 'k' ? &options->client_keepalive : &options->server_keepalive,
                               err))
            return false;
          break;
        case 'O':
          if (!take_value(args, &i, &pos, flag, &value, err) ||
              !set_seconds(flag, value, 0, options, &options->pool.outage_wait_ms, err))
            return false;
          break;
        case 'j':
          if (!take_value(args, &i, &pos, flag, &value, err) ||
              !set_seconds(flag, value, 0, options, &options->size_wait_ms, err))
            return false;
          break;
        case 'q':
          if (!take_value(args, &i, &pos, flag, &value, err)) return false;
          if (!parse_unsigned(value, 0, 10000000, &number)) {
            *err = "-q " + value + ": must be an integer from 0 to 10000000";
            return false;
          }
          options->pool.queue_limit = size_t(number);
          break;
        case 's':
          if (!take_value(args, &i, &pos, flag, &value, err) ||
              !parse_stats(value, options, err))
            return false;
          break;
        default:
          *err = std::string("-") + flag + ": unknown option";
          return false;
      }
      if (pos == std::string::npos) break;
    }
  }
  if (interactive && command) {
    *err = "-i: cannot be combined with -c";
    return false;
  }
  if (options->ipv4_only && options->ipv6_only) {
    *err = "-4: cannot be combined with -6";
    return false;
  }
  if (i >= args.size()) {
    *err = "missing port";  // reported with the program name only
    return false;
  }
  options->port = args[i++];
  if (!valid_port_text(options->port)) {
    *err = options->port + ": " + kPortWhy;
    return false;
  }
  if (interactive || command) {
    options->mode = interactive ? Mode::Interactive : Mode::Command;
    if (i < args.size()) {
      *err = args[i] + ": unexpected argument after the port";
      return false;
    }
    return true;
  }
  options->groups.emplace_back();
  for (; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "!" || arg == "%") {
      // "!" at the end would open an empty last group: refused like a
      // leading one. A final "%" types the last group (balance 3.x).
      if (options->groups.back().channels.empty() || (arg == "!" && i + 1 == args.size())) {
        *err = arg + ": empty group";
        return false;
      }
      if (arg == "%") options->groups.back().type = GroupType::Hash;
      options->groups.emplace_back();
      continue;
    }
    ChannelSpec spec;
    if (!parse_channel(arg, &spec, err)) return false;
    options->groups.back().channels.push_back(spec);
  }
  if (options->groups.size() == 1 && options->groups[0].channels.empty()) {
    *err = options->port + ": missing channel";
    return false;
  }
  // A trailing "%" types the last group and opens no new one.
  if (options->groups.back().channels.empty()) options->groups.pop_back();
  return true;
}

int address_family(const Options& options) {
  return options.ipv4_only ? AF_INET : options.ipv6_only ? AF_INET6 : AF_UNSPEC;
}
