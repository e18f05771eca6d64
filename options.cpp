// Command-line parsing (pure) and name resolution (see options.hpp).
#include "options.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

const char* const kUsage =
    "usage: balance [-46adfHMp] [-b addr] [-B addr] [-t sec] [-T sec] [-q len]\n"
    "               [-w sec] [-r sec] [-S path] [-s [addr:]port]\n"
    "               port channel ... [! | % channel ...] ...\n"
    "       balance [-b addr] [-S path] -i port\n"
    "       balance [-b addr] [-S path] -c command port\n"
    "       balance -h | -V\n";

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
  uint64_t number;
  bool numeric = !port.empty() && port.find_first_not_of("0123456789") == std::string::npos;
  if (port.empty() || (numeric && !parse_unsigned(port, 1, 65535, &number))) {
    *err = "-s " + value + ": port must be a number from 1 to 65535 or a service name";
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
  if (!spec->port.empty() && spec->port.find_first_not_of("0123456789") == std::string::npos &&
      !parse_unsigned(spec->port, 1, 65535, &number)) {
    *err = text + ": port must be a number from 1 to 65535 or a service name";
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
        case 'f': options->foreground = true; break;
        case 'H': options->pool.hash_failover = true; break;
        case 'M': break;  // balance's memory-mapped IPC; nothing is shared here
        case 'p': options->packet_dump = true; break;
        case 'i': interactive = true; break;
        case 'h': options->mode = Mode::Help; return true;
        case 'V': options->mode = Mode::Version; return true;
        case 'b':
        case 'B':
        case 'S':
          if (!take_value(args, &i, &pos, flag, &value, err)) return false;
          if (value.empty()) {
            *err = std::string("-") + flag + ": empty argument";
            return false;
          }
          (flag == 'b' ? options->bind_address
                       : flag == 'B' ? options->source_address : options->socket_path) = value;
          break;
        case 'c':
          if (!take_value(args, &i, &pos, flag, &options->command, err)) return false;
          command = true;
          break;
        case 't':
          if (!take_value(args, &i, &pos, flag, &value, err) ||
              !set_seconds(flag, value, 1, options, &options->connect_timeout_ms, err))
            return false;
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
  uint64_t number;
  bool numeric = options->port.find_first_not_of("0123456789") == std::string::npos;
  if (options->port.empty() || (numeric && !parse_unsigned(options->port, 1, 65535, &number))) {
    *err = options->port + ": port must be a number from 1 to 65535 or a service name";
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
      if (options->groups.back().channels.empty()) {
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
