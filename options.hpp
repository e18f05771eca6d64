// The command line: a pure parser from argv to Options. Errors are
// returned as "<argument>: <why>" so main() can print "balance: " before
// them. Names are resolved later (address.hpp).
#ifndef BALANCE_OPTIONS_HPP
#define BALANCE_OPTIONS_HPP

#include <cstdint>
#include <string>
#include <vector>

#include "classes.hpp"
#include "pool.hpp"

enum class Mode { Proxy, Interactive, Command, Help, Version };

struct ChannelSpec {
  std::string text;  // the argument as typed, for error messages
  std::string host;
  std::string port;  // empty = the listening port
  unsigned maxc = 0;
  unsigned weight = 1;
};

struct GroupSpec {
  GroupType type = GroupType::RoundRobin;
  std::vector<ChannelSpec> channels;
};

// TCP keepalive (-k, -K): off when idle_s is 0.
struct Keepalive {
  int idle_s = 0;
  int interval_s = 0;
  int count = 0;
};

struct Options {
  Mode mode = Mode::Proxy;
  bool ipv4_only = false;        // -4
  bool ipv6_only = false;        // -6
  bool debug = false;            // -d
  bool foreground = false;       // -f
  bool packet_dump = false;      // -p
  bool keep_half_closed = false; // -e: a waiting client's EOF is not abandonment
  Keepalive client_keepalive;    // -k
  Keepalive server_keepalive;    // -K
  // -A, -D, -P in the order given: access rules and priority networks.
  std::vector<std::pair<RuleKind, std::string>> rules;
  PoolOptions pool;              // -a, -H, -q, -w, -r
  std::string bind_address;      // -b, empty = every address
  std::string source_address;    // -B
  int64_t connect_timeout_ms = 5000;  // -t
  int64_t idle_timeout_ms = 0;        // -T, 0 = none
  int64_t size_wait_ms = 0;           // -j: wait this long for a request's size, 0 = off
  std::string socket_path;            // -S, empty = derived
  std::string monitor_group;          // -G: read-only control access
  bool timeout_given = false;         // -t was given (the client's default differs)
  bool take_over = false;             // -x: take over the balance running on this port
  std::string stats_address;          // -s addr part (default 127.0.0.1)
  std::string stats_port;             // -s port part, empty = no listener
  std::string command;                // -c
  std::string port;                   // the listening port as typed
  std::vector<GroupSpec> groups;
};

extern const char* const kUsage;       // the SYNOPSIS of balance.1
extern const char* const kOptionHelp;  // one line per option, after it

// Parses argv[1..]. Returns false with *err = "<argument>: <why>".
bool parse_options(const std::vector<std::string>& args, Options* options, std::string* err);

// Parses "host[:port[:maxc[:weight]]]" (IPv6 literals in brackets).
bool parse_channel(const std::string& text, ChannelSpec* spec, std::string* err);

// Strict number parsing: no sign, no trailing garbage, within [lo, hi].
bool parse_unsigned(const std::string& text, uint64_t lo, uint64_t hi, uint64_t* value);
// Seconds as a decimal with at most three fractional digits, in ms.
bool parse_seconds(const std::string& text, int64_t lo_ms, int64_t hi_ms, int64_t* ms);

// AF_INET for -4, AF_INET6 for -6, else AF_UNSPEC.
int address_family(const Options& options);


#endif
