// fuzz_parsers: a libFuzzer harness over balance's parsers (SPEC §7: "the
// parsers (arguments, control lines, HTTP requests) are fuzzed"). Not part
// of `make check`; build and run it by hand, from tests/:
//
//   clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined \
//     -fno-sanitize-recover=undefined -DBALANCE_VERSION='"fuzz"' -I.. \
//     fuzz_parsers.cpp ../control.cpp ../stats.cpp ../options.cpp ../pool.cpp \
//     ../net.cpp ../log.cpp ../relay.cpp ../poller.cpp -o fuzz_parsers
//   mkdir -p corpus && for t in command options channel http; do
//     FUZZ_TARGET=$t ./fuzz_parsers -max_total_time=60 -max_len=4096 corpus; done
//
// (Debian/Ubuntu: the fuzzer runtime is in libclang-rt-14-dev, or the
// clang package of your version.)
//
// FUZZ_TARGET picks one parser for every input; without it the first byte
// of each input does (0 command, 1 options, 2 channel, 3 http):
//   command  parse_command() on each line of the input, then execute() of
//            what parsed on a small State (create/assign only with numeric
//            hosts, since they resolve names); checks that a reply is never
//            empty, never holds an empty line (the reply terminator), and
//            starts with "error: " exactly when it is an error.
//   options  parse_options() on the input split into arguments at NUL and
//            newline; an accepted line has a port and, to run a proxy, a
//            channel.
//   channel  parse_channel() on the whole input.
//   http     http_response() on the input as a request head; checks the
//            status line, the header terminator and Content-Length.
// A broken check calls __builtin_trap(), which libFuzzer reports as a crash.
#include <arpa/inet.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "control.hpp"

namespace {

void check(bool condition) {
  if (!condition) __builtin_trap();
}

enum Target { kCommand, kOptions, kChannel, kHttp, kTargets };

int fixed_target() {
  static int target = [] {
    const char* name = std::getenv("FUZZ_TARGET");
    if (!name) return -1;
    std::string t = name;
    if (t == "command") return int(kCommand);
    if (t == "options") return int(kOptions);
    if (t == "channel") return int(kChannel);
    if (t == "http") return int(kHttp);
    std::abort();
  }();
  return target;
}

Address numeric_address(const char* host, int port) {
  Address address;
  std::string err;
  // Numeric, so no resolver is involved.
  check(resolve_address(host, std::to_string(port), 0, false, &address, &err));
  return address;
}

// Group 0: two rr channels (one IPv6); group 1: a hash group with one
// disabled, down channel. The log goes to syslog so the fuzzer's output
// stays readable.
void fill_state(State* state) {
  state->log.use_syslog();
  state->now_ms = 1000;
  state->started = 1700000000;
  state->listen_text = "127.0.0.1:3632";
  Pool& pool = state->pool;
  pool.add_group(GroupType::RoundRobin);
  ChannelConfig a, b, c;
  a.host = "127.0.0.1";
  a.port = "9001";
  a.address = numeric_address("127.0.0.1", 9001);
  a.maxc = 2;
  b.host = "::1";
  b.port = "9002";
  b.address = numeric_address("::1", 9002);
  b.weight = 3;
  c.host = "192.0.2.7";
  c.port = "25";
  c.address = numeric_address("192.0.2.7", 25);
  pool.add_channel(0, a, 0);
  pool.add_channel(0, b, 0);
  pool.add_group(GroupType::Hash);
  Channel& down = pool.add_channel(1, c, 0);
  pool.set_admin(down, AdminState::Disabled, 0);
  pool.connect_failed(down, 0);
}

bool numeric_host(std::string host) {
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  unsigned char scratch[16];
  return inet_pton(AF_INET, host.c_str(), scratch) == 1 || inet_pton(AF_INET6, host.c_str(), scratch) == 1;
}

bool numeric_port(const std::string& port) {
  return !port.empty() && port.size() < 8 && port.find_first_not_of("0123456789") == std::string::npos;
}

void fuzz_commands(const std::string& input) {
  State state;
  fill_state(&state);
  Session session;
  size_t start = 0;
  while (start <= input.size()) {
    size_t end = input.find('\n', start);
    if (end == std::string::npos) end = input.size();
    std::string line = input.substr(start, end - start);
    start = end + 1;
    Command command;
    bool empty = true;
    std::string err;
    if (!parse_command(line, &command, &empty, &err)) {
      check(!err.empty());
      check(err.find('\n') == std::string::npos);
      continue;
    }
    if (empty) continue;
    if (command.kind == CommandKind::Create &&
        !(numeric_host(command.args[0]) && numeric_port(command.args[1])))
      continue;
    if (command.kind == CommandKind::Assign &&
        !(numeric_host(command.args[1]) && numeric_port(command.args[2])))
      continue;
    bool ok = true;
    std::string reply = execute(command, session, state, &ok);
    check(!reply.empty());
    check(reply.find("\n\n") == std::string::npos);
    check(reply.back() != '\n');
    check(ok != (reply.compare(0, 7, "error: ") == 0));
    if (session.quit || state.stopping) break;
  }
  // The renderers must cope with whatever the commands left behind.
  check(!render_show(state).empty());
  check(render_json(state).back() == '}');
  check(render_csv(state).find("\n\n") == std::string::npos);
  check(!render_prometheus(state).empty());
}

void fuzz_options(const std::string& input) {
  std::vector<std::string> args;
  size_t start = 0;
  while (start <= input.size()) {
    size_t end = input.find_first_of(std::string("\0\n", 2), start);
    if (end == std::string::npos) end = input.size();
    args.push_back(input.substr(start, end - start));
    start = end + 1;
  }
  Options options;
  std::string err;
  if (!parse_options(args, &options, &err)) {
    check(!err.empty());
    return;
  }
  if (options.mode == Mode::Help || options.mode == Mode::Version) return;
  check(!options.port.empty());
  if (options.mode == Mode::Proxy) {
    check(!options.groups.empty());
    for (const GroupSpec& group : options.groups) {
      check(!group.channels.empty());
      for (const ChannelSpec& channel : group.channels) {
        check(!channel.host.empty());
        check(channel.maxc <= kMaxMaxc);
        check(channel.weight >= 1 && channel.weight <= kMaxWeight);
      }
    }
  }
}

void fuzz_channel(const std::string& input) {
  ChannelSpec spec;
  std::string err;
  if (!parse_channel(input, &spec, &err)) {
    check(!err.empty());
    return;
  }
  check(!spec.host.empty());
  check(spec.maxc <= kMaxMaxc);
  check(spec.weight >= 1 && spec.weight <= kMaxWeight);
}

void fuzz_http(const std::string& input) {
  static State* state = [] {
    State* s = new State;
    fill_state(s);
    return s;
  }();
  std::string response = http_response(input, *state);
  check(response.compare(0, 9, "HTTP/1.0 ") == 0);
  size_t head_end = response.find("\r\n\r\n");
  check(head_end != std::string::npos);
  const char* key = "Content-Length: ";
  size_t at = response.find(key);
  check(at != std::string::npos && at < head_end);
  size_t length = std::strtoul(response.c_str() + at + std::strlen(key), nullptr, 10);
  size_t body = response.size() - head_end - 4;
  // As the server reads it: the method is the first line up to a space.
  std::string first = input.substr(0, input.find_first_of("\r\n"));
  bool head = first.substr(0, first.find(' ')) == "HEAD";
  check(head ? body == 0 : body == length);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  int target = fixed_target();
  if (target < 0) {
    if (size == 0) return 0;
    target = data[0] % kTargets;
    ++data;
    --size;
  }
  std::string input(reinterpret_cast<const char*>(data), size);
  switch (target) {
    case kCommand: fuzz_commands(input); break;
    case kOptions: fuzz_options(input); break;
    case kChannel: fuzz_channel(input); break;
    case kHttp: fuzz_http(input); break;
  }
  return 0;
}
