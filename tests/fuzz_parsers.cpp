// fuzz_parsers: a libFuzzer harness over balance's parsers and framing
// (SPEC §7: "the parsers (arguments, control lines, HTTP requests) are
// fuzzed"). Not part of `make check`; build and run it by hand, from tests/:
//
//   clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined \
//     -fno-sanitize-recover=undefined -DBALANCE_VERSION='"fuzz"' -I.. \
//     fuzz_parsers.cpp ../address.cpp ../classes.cpp ../client.cpp ../control.cpp \
//     ../editor.cpp ../handover.cpp ../log.cpp ../net.cpp ../options.cpp ../poller.cpp \
//     ../pool.cpp ../relay.cpp ../server.cpp ../speed.cpp ../stats.cpp -o fuzz_parsers
//   mkdir -p corpus && for t in command options channel http lines replies hosts offer; do
//     FUZZ_TARGET=$t ./fuzz_parsers -max_total_time=60 -max_len=8192 corpus; done
//
// (Debian/Ubuntu: the fuzzer runtime is in libclang-rt-14-dev, or the
// clang package of your version.)
//
// FUZZ_TARGET picks one target for every input; without it the first byte
// of each input does (0 command ... 7 offer):
//   command  parse_command() on each line of the input, then execute() of
//            what parsed on a small State (create/assign only with numeric
//            hosts, since they resolve names); checks that a reply is never
//            empty, never holds an empty line (the reply terminator), and
//            starts with "error: " exactly when it is an error; then every
//            show form and the metrics render whatever the commands left.
//   options  parse_options() on the input split into arguments at NUL and
//            newline; an accepted line has a port and, to run a proxy, a
//            channel.
//   channel  parse_channel() on the whole input.
//   http     the server's request framing (http_head_state) on the input
//            fed in pieces, then http_answer(): the status line, the
//            header terminator, a Content-Length on every error.
//   lines    the control session's LineFramer on the input fed in pieces
//            of sizes taken from the input: lines are bounded, consumed
//            bytes leave, nothing is lost or invented.
//   replies  the -c client's ReplyReader on the input fed in pieces: the
//            pieces of each reply add up to the input up to its empty
//            line, each piece ends at most at a newline, errors are told.
//   hosts    channels whose host names are pieces of the input (any bytes,
//            up to the whole input): show json must still be valid JSON
//            in structure, CSV rows must all have the header's field count.
//   offer    parse_offer_line() (a channel as a hand-over carries it) on
//            each line: what it accepts renders back to a line that parses
//            to the same rendering.
// A broken check calls __builtin_trap(), which libFuzzer reports as a crash.
#include <arpa/inet.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "control.hpp"
#include "handover.hpp"
#include "stats.hpp"

namespace {

void check(bool condition) {
  if (!condition) __builtin_trap();
}

enum Target { kCommand, kOptions, kChannel, kHttp, kLines, kReplies, kHosts, kOffer, kTargets };

int fixed_target() {
  static int target = [] {
    const char* name = std::getenv("FUZZ_TARGET");
    if (!name) return -1;
    std::string t = name;
    if (t == "command") return int(kCommand);
    if (t == "options") return int(kOptions);
    if (t == "channel") return int(kChannel);
    if (t == "http") return int(kHttp);
    if (t == "lines") return int(kLines);
    if (t == "replies") return int(kReplies);
    if (t == "hosts") return int(kHosts);
    if (t == "offer") return int(kOffer);
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
  pool.add_channel(0, a);
  pool.add_channel(0, b);
  pool.add_group(GroupType::Hash);
  Channel& down = pool.add_channel(1, c);
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

std::string render(const State& state, ShowForm form) {
  return render_all(*make_show(state, form));
}

void check_renderings(const State& state) {
  // No rendering may hold an empty line: it would end the reply early.
  for (ShowForm form : {ShowForm::Table, ShowForm::Brief, ShowForm::Queue}) {
    std::string text = render(state, form);
    check(!text.empty() && text.find("\n\n") == std::string::npos);
  }
  std::string json = render(state, ShowForm::Json);
  check(json.front() == '{' && json.back() == '}');
  for (unsigned char ch : json) check(ch >= 32 && ch < 127);  // escaped
  check(render(state, ShowForm::Csv).find("\n\n") == std::string::npos);
  check(render_all(*make_prometheus(state)).find("\n\n") == std::string::npos);
}

void fuzz_commands(const std::string& input) {
  State state;
  fill_state(&state);
  ControlContext context{state};
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
    if ((command.verb == Verb::Create || command.verb == Verb::Assign) &&
        !(numeric_host(command.host) && numeric_port(command.port)))
      continue;
    Reply reply = execute(command, context);
    if (context.handover) break;  // the session would speak the hand-over protocol now
    std::string text = reply.stream ? reply.text + render_all(*reply.stream) : reply.text;
    check(!text.empty());
    check(text.find("\n\n") == std::string::npos);
    check(text.back() != '\n');
    check(reply.ok != (text.compare(0, 7, "error: ") == 0));
    if (context.quit || state.stopping) break;
  }
  // The renderers must cope with whatever the commands left behind.
  check_renderings(state);
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

// Piece sizes for feeding an input: taken from the input itself.
size_t piece(const std::string& input, size_t at) {
  return at < input.size() ? 1 + static_cast<unsigned char>(input[at]) % 97 : 13;
}

void fuzz_http(const std::string& input) {
  static State* state = [] {
    State* s = new State;
    fill_state(s);
    return s;
  }();
  // The server's framing, fed as the network would.
  std::string in;
  HeadState head_state = HeadState::Incomplete;
  for (size_t at = 0; at < input.size() && head_state == HeadState::Incomplete;) {
    size_t n = std::min(piece(input, at), input.size() - at);
    in.append(input, at, n);
    at += n;
    head_state = http_head_state(in, 8192);
  }
  HttpAnswer answer = http_answer(in, *state);
  check(answer.head.compare(0, 9, "HTTP/1.0 ") == 0);
  size_t head_end = answer.head.find("\r\n\r\n");
  check(head_end != std::string::npos);
  bool ok = answer.head.compare(9, 3, "200") == 0;
  if (!ok) {
    // Errors carry their length and their whole body in the head.
    const char* key = "Content-Length: ";
    size_t at = answer.head.find(key);
    check(at != std::string::npos && at < head_end);
    size_t length = std::strtoul(answer.head.c_str() + at + std::strlen(key), nullptr, 10);
    check(answer.head.size() - head_end - 4 == length);
    check(!answer.body);
  } else if (answer.body) {
    check(!render_all(*answer.body).empty());
  }
}

void fuzz_lines(const std::string& input) {
  constexpr size_t kLimit = 64, kDiscard = 512;
  LineFramer framer(kLimit, kDiscard);
  std::string in, line;
  size_t fed = 0, lines = 0;
  bool abandoned = false;
  for (size_t at = 0; at < input.size() && !abandoned;) {
    size_t n = std::min(piece(input, at), input.size() - at);
    in.append(input, at, n);
    at += n;
    fed += n;
    for (;;) {
      size_t before = in.size();
      LineFramer::Event event = framer.next(&in, &line);
      if (event == LineFramer::Event::None) break;
      check(in.size() < before);  // every event consumes input
      if (event == LineFramer::Event::Abandon) {
        abandoned = true;
        break;
      }
      if (event == LineFramer::Event::Line) {
        check(line.size() <= kLimit);
        check(line.find('\n') == std::string::npos);
        ++lines;
      }
    }
    check(in.size() <= kLimit + 97);  // unended input stays bounded
  }
  check(lines <= fed);
}

void fuzz_replies(const std::string& input) {
  // The pieces of each reply, put together, are the input up to its
  // empty line; nothing is lost, invented or held without bound.
  constexpr uint64_t kMax = 4096;
  ReplyReader reader(kMax);
  std::string text, pieces;
  size_t consumed = 0;
  for (size_t at = 0; at < input.size();) {
    size_t n = std::min(piece(input, at), input.size() - at);
    reader.feed(input.data() + at, n);
    at += n;
    for (;;) {
      ReplyReader::Event event = reader.next(&text);
      if (event == ReplyReader::Event::None) break;
      if (event == ReplyReader::Event::TooLong) return;
      if (event == ReplyReader::Event::Text) {
        check(!text.empty() && text.size() <= kMax);
        check(text.find('\n') == std::string::npos || text.find('\n') == text.size() - 1);
        pieces += text;
        continue;
      }
      // End: the pieces and the empty line are exactly the next input bytes.
      check(input.compare(consumed, pieces.size(), pieces) == 0);
      consumed += pieces.size();
      check(input[consumed] == '\n');
      ++consumed;
      check(pieces.empty() || pieces.back() == '\n');
      check(reader.error() == (pieces.compare(0, 7, "error: ") == 0) || pieces.empty());
      pieces.clear();
    }
  }
}

void fuzz_hosts(const std::string& input) {
  State state;
  fill_state(&state);
  // Every NUL-separated piece is a host name as a user could give it.
  size_t start = 0;
  ChannelConfig config;
  config.address = numeric_address("127.0.0.1", 9);
  while (start <= input.size()) {
    size_t end = input.find('\0', start);
    if (end == std::string::npos) end = input.size();
    config.host = input.substr(start, end - start);
    state.pool.add_channel(0, config);
    start = end + 1;
  }
  check_renderings(state);
  std::string csv = render(state, ShowForm::Csv);
  size_t fields = 0, row_fields = 1;
  bool quoted = false, header = true;
  for (char ch : csv) {
    if (ch == '"') quoted = !quoted;
    if (quoted) continue;
    if (ch == ',') ++row_fields;
    if (ch == '\n') {
      if (header) fields = row_fields;
      check(row_fields == fields);
      header = false;
      row_fields = 1;
    }
  }
  check(!quoted && row_fields == fields);
}

void fuzz_offer(const std::string& input) {
  size_t start = 0;
  while (start <= input.size()) {
    size_t end = input.find('\n', start);
    if (end == std::string::npos) end = input.size();
    HandedChannel channel;
    if (parse_offer_line(input.substr(start, end - start), &channel)) {
      std::string line = offer_line(channel);
      HandedChannel again;
      check(parse_offer_line(line, &again));
      check(offer_line(again) == line);
    }
    start = end + 1;
  }
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
    case kLines: fuzz_lines(input); break;
    case kReplies: fuzz_replies(input); break;
    case kHosts: fuzz_hosts(input); break;
    case kOffer: fuzz_offer(input); break;
  }
  return 0;
}
