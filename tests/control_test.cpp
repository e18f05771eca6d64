// The control protocol: parsing on string literals and each command's
// effect on a pool, without sockets.
#include "control.hpp"
#include "test.h"

namespace {

std::string parse_error(const std::string& line) {
  Command command;
  bool empty = false;
  std::string err;
  return parse_command(line, &command, &empty, &err) ? "" : err;
}

Command parsed(const std::string& line) {
  Command command;
  bool empty = false;
  std::string err;
  EXPECT_TRUE(parse_command(line, &command, &empty, &err));
  return command;
}

Verb verb_of(const std::string& line) { return parsed(line).verb; }

// A state with group 0 = two channels on 127.0.0.1 (9001 maxc 2, 9002).
struct Fixture {
  State state;
  ControlContext context{state};
  Fixture() {
    state.pool.add_group(GroupType::RoundRobin);
    ChannelConfig a, b;
    std::string err;
    resolve_address("127.0.0.1", "9001", 0, false, &a.address, &err);
    resolve_address("127.0.0.1", "9002", 0, false, &b.address, &err);
    a.host = b.host = "127.0.0.1";
    a.maxc = 2;
    state.pool.add_channel(0, a);
    state.pool.add_channel(0, b);
  }
  std::string run(const std::string& line, bool* ok_out = nullptr) {
    Command command;
    bool empty = false;
    std::string err;
    if (!parse_command(line, &command, &empty, &err)) {
      if (ok_out) *ok_out = false;
      return "error: " + err;
    }
    Reply reply = execute(command, context);
    if (ok_out) *ok_out = reply.ok;
    return reply.stream ? reply.text + render_all(*reply.stream) : reply.text;
  }
  Channel& channel(size_t group, unsigned number) { return *state.pool.find(group, number); }
};

}  // namespace

TEST(balance3_first_match_prefixes_and_newer_unambiguous_ones) {
  // balance 3.x tries quit show help kill disable group reset enable
  // create assign maxc mrtg-bytes mrtg-conns version hash rr, in order.
  EXPECT_TRUE(verb_of("d 1") == Verb::Disable);
  EXPECT_TRUE(verb_of("h") == Verb::Help);
  EXPECT_TRUE(verb_of("r 1") == Verb::Reset);
  EXPECT_TRUE(verb_of("m 1 2") == Verb::Maxc);
  EXPECT_TRUE(verb_of("mrtg 0 1") == Verb::MrtgBytes);
  EXPECT_TRUE(verb_of("mrtg-c 0 1") == Verb::MrtgConns);
  EXPECT_TRUE(verb_of("q") == Verb::Quit);
  EXPECT_TRUE(verb_of("s") == Verb::Show);
  EXPECT_TRUE(verb_of("e 1") == Verb::Enable);
  EXPECT_TRUE(verb_of("ha") == Verb::Hash);
  EXPECT_TRUE(verb_of("rr") == Verb::RoundRobin);
  EXPECT_TRUE(verb_of("v") == Verb::Version);
  EXPECT_TRUE(verb_of("?") == Verb::Help);
  // Newer commands: any prefix that does not begin a 3.x command.
  EXPECT_TRUE(verb_of("de 1") == Verb::Delete);
  EXPECT_TRUE(verb_of("w 1 2") == Verb::Weight);
  EXPECT_TRUE(verb_of("  en   1 ") == Verb::Enable);
  EXPECT_TRUE(verb_of("show json\r") == Verb::Show);
  EXPECT_EQ(parse_error("frobnicate"), "unknown command \"frobnicate\"; type help for the list");
  EXPECT_EQ(parse_error("dx 1"), "unknown command \"dx\"; type help for the list");
}

TEST(arguments_are_parsed_once_into_typed_fields) {
  Command create = parsed("create host.example 3632 4 2");
  EXPECT_EQ(create.host, "host.example");
  EXPECT_EQ(create.port, "3632");
  EXPECT_EQ(create.maxc, 4u);
  EXPECT_EQ(create.weight, 2u);
  EXPECT_TRUE(create.has_maxc && create.has_weight);
  Command bare = parsed("create h p");
  EXPECT_FALSE(bare.has_maxc);
  EXPECT_EQ(bare.weight, 1u);
  Command mrtg = parsed("mrtg-bytes 3 7");
  EXPECT_EQ(mrtg.group, size_t(3));
  EXPECT_EQ(mrtg.channel, 7u);
  EXPECT_TRUE(parsed("show brief").form == ShowForm::Brief);
  EXPECT_TRUE(parsed("show queue").form == ShowForm::Queue);
  EXPECT_TRUE(parsed("show").form == ShowForm::Table);
}

TEST(arguments_are_checked_strictly) {
  EXPECT_EQ(parse_error("enable"), "usage: enable C");
  EXPECT_EQ(parse_error("enable 1 2"), "usage: enable C");
  EXPECT_EQ(parse_error("enable -1"), "channel \"-1\" must be a channel number");
  EXPECT_EQ(parse_error("enable 99999999999999999999"),
            "channel \"99999999999999999999\" must be a channel number");
  EXPECT_EQ(parse_error("maxc 0 1000001"), "maxc \"1000001\" must be an integer from 0 to 1000000");
  EXPECT_EQ(parse_error("weight 0 0"), "weight \"0\" must be an integer from 1 to 1000000 or auto");
  EXPECT_EQ(parse_error("create h p 1 auto"), "weight \"auto\" must be an integer from 1 to 1000000");
  EXPECT_TRUE(parsed("weight 3 auto").learn);
  EXPECT_EQ(parse_error("show xml"), "show takes brief, csv, json, queue, rules or config, not \"xml\"");
  // handover turns the session over: only its whole name runs it.
  EXPECT_TRUE(parsed("handover").verb == Verb::Handover);
  EXPECT_EQ(parse_error("hando"), "unknown command \"hando\"; type help for the list");
  EXPECT_EQ(parse_error("handover now"), "usage: handover");
  EXPECT_EQ(parse_error("rule allow 10.0.0.0/33"), "10.0.0.0/33: prefix longer than 32 bits for IPv4");
  EXPECT_EQ(parse_error("rule block 10.0.0.0/8"),
            "\"block\" is not allow, deny or priority; usage: rule allow|deny|priority NET, or rule "
            "remove allow|deny|priority NET");
  EXPECT_EQ(parse_error("rule remove allow"),
            "usage: rule allow|deny|priority NET, or rule remove allow|deny|priority NET");
  Command rule = parsed("rule remove priority 10.2.0.0/24");
  EXPECT_TRUE(rule.remove && rule.rule == RuleKind::Priority);
  EXPECT_EQ(rule.network, "10.2.0.0/24");
  EXPECT_EQ(parse_error("create host"), "usage: create host port [maxc [weight]]");
  EXPECT_EQ(parse_error(std::string("show\x01", 5)), "the line holds bytes that are not printable text");
  EXPECT_EQ(parse_error("sh\xc3\xa9"), "the line holds bytes that are not printable text");
  Command command;
  bool empty = false;
  std::string err;
  EXPECT_TRUE(parse_command("   \t ", &command, &empty, &err));
  EXPECT_TRUE(empty);
}

TEST(help_lists_every_keyword) {
  std::string help = help_text();
  for (const std::string& name : command_names())
    EXPECT_TRUE(help.find("\n  " + name) != std::string::npos);
  EXPECT_EQ(command_names().size(), size_t(20));
  EXPECT_TRUE(help.find("\n\n") == std::string::npos);
}

TEST(enable_disable_and_errors) {
  Fixture f;
  bool ok = true;
  EXPECT_EQ(f.run("disable 1", &ok), "channel 1 disabled");
  EXPECT_TRUE(ok);
  EXPECT_TRUE(f.channel(0, 1).admin() == AdminState::Disabled);
  EXPECT_EQ(f.run("disable 1"), "channel 1 already disabled");
  EXPECT_EQ(f.run("enable 1"), "channel 1 enabled");
  EXPECT_EQ(f.run("enable 7", &ok), "error: no channel 7 in group 0");
  EXPECT_FALSE(ok);
}

TEST(groups_switch_and_grow) {
  Fixture f;
  bool ok = true;
  EXPECT_EQ(f.run("group 1"), "group 1");  // a new, empty group
  EXPECT_EQ(f.state.pool.groups().size(), size_t(2));
  EXPECT_EQ(f.run("group 3", &ok), "error: no group 3 (groups are 0 to 2, the last one new)");
  EXPECT_FALSE(ok);
  EXPECT_EQ(f.run("hash"), "group 1 set to hash");
  EXPECT_TRUE(f.state.pool.groups()[1]->type() == GroupType::Hash);
  EXPECT_EQ(f.run("rr"), "group 1 set to round robin");
  EXPECT_EQ(f.run("enable 0", &ok), "error: no channel 0 in group 1");
}

TEST(create_starts_disabled_and_numbers_never_shift) {
  Fixture f;
  bool ok = true;
  EXPECT_EQ(f.run("create 127.0.0.1 9003 4 2", &ok),
            "channel 2 created in group 0, disabled; enable it to use it");
  EXPECT_TRUE(ok);
  Channel& created = f.channel(0, 2);
  EXPECT_TRUE(created.admin() == AdminState::Disabled);
  EXPECT_EQ(created.config().maxc, 4u);
  EXPECT_EQ(created.config().weight, 2u);
  EXPECT_EQ(created.config().address.port(), 9003);
  EXPECT_EQ(f.run("delete 1"), "channel 1 deleted");
  EXPECT_EQ(f.run("create [::1] 9004"), "channel 3 created in group 0, disabled; enable it to use it");
  EXPECT_EQ(f.channel(0, 3).config().address.host_text(), "::1");
  EXPECT_EQ(f.run("enable 1", &ok), "error: no channel 1 in group 0");
  EXPECT_EQ(f.run("create 127.0.0.1 nosuchservice", &ok),
            "error: 127.0.0.1 nosuchservice: unknown service \"nosuchservice\"");
  EXPECT_FALSE(ok);
}

TEST(assign_needs_a_disabled_channel) {
  Fixture f;
  bool ok = true;
  EXPECT_EQ(f.run("assign 0 127.0.0.1 9100", &ok), "error: channel 0 is enabled; disable it first");
  EXPECT_FALSE(ok);
  f.run("disable 0");
  EXPECT_EQ(f.run("assign 0 127.0.0.1 9100"), "channel 0 assigned to 127.0.0.1 9100");
  EXPECT_EQ(f.channel(0, 0).config().address.port(), 9100);
}

TEST(maxc_weight_reset) {
  Fixture f;
  EXPECT_EQ(f.run("maxc 1 5"), "maxc of channel 1 set to 5");
  EXPECT_EQ(f.channel(0, 1).config().maxc, 5u);
  EXPECT_EQ(f.run("weight 1 7"), "weight of channel 1 set to 7");
  EXPECT_EQ(f.channel(0, 1).config().weight, 7u);
  f.state.pool.count_sent(f.channel(0, 1), 10);
  f.state.pool.connected(f.channel(0, 1));
  EXPECT_EQ(f.run("reset 1"), "channel 1 counters reset");
  EXPECT_EQ(f.channel(0, 1).counters().sent, uint64_t(0));
  EXPECT_EQ(f.channel(0, 1).counters().connections, uint64_t(0));
}

TEST(mrtg_four_lines) {
  Fixture f;
  Channel& c = f.channel(0, 1);
  f.state.pool.count_received(c, 123);
  f.state.pool.count_sent(c, 456);
  for (int i = 0; i < 9; ++i) f.state.pool.connected(c);
  EXPECT_EQ(f.run("mrtg-bytes 0 1"), "123\n456\nUNKNOWN\ngroup 0 channel 1");
  EXPECT_EQ(f.run("mrtg-conns 0 1"), "9\nUNKNOWN\nUNKNOWN\ngroup 0 channel 1");
  bool ok = true;
  EXPECT_EQ(f.run("mrtg-conns 4 1", &ok), "error: no group 4");
  EXPECT_FALSE(ok);
  EXPECT_EQ(f.run("mrtg-conns 0 5", &ok), "error: no channel 5 in group 0");
}

TEST(show_forms_stream_through_the_reply) {
  Fixture f;
  f.run("disable 1");
  std::string show = f.run("show");
  EXPECT_TRUE(show.compare(0, 18, "GRP Type   # S    ") == 0);
  EXPECT_TRUE(show.find("DIS") != std::string::npos);
  EXPECT_TRUE(show.find("queue: 0 waiting") != std::string::npos);
  EXPECT_TRUE(show.find("\n\n") == std::string::npos);
  EXPECT_TRUE(f.run("show csv").compare(0, 25, "group,type,channel,state,") == 0);
  EXPECT_TRUE(f.run("show json").find("\"channels\":[{\"channel\":0,\"state\":\"ENA\"") !=
              std::string::npos);
  EXPECT_TRUE(f.run("show queue").compare(0, 9, "0 waiting") == 0);
}

TEST(version_is_what_balance3_scripts_grep_for) {
  Fixture f;
  std::string version = f.run("version");
  EXPECT_TRUE(version.compare(0, 16, "This is balance ") == 0);
  EXPECT_TRUE(version.find(", pid ") != std::string::npos);
}

TEST(rules_change_through_the_rule_command) {
  Fixture f;
  bool ok = true;
  EXPECT_EQ(f.run("rule deny 10.1.2.3/16", &ok), "rule deny 10.1.0.0/16 added");
  EXPECT_TRUE(ok);
  EXPECT_EQ(f.run("rule deny 10.1.0.0/16", &ok), "error: 10.1.0.0/16: already a rule (deny 10.1.0.0/16)");
  EXPECT_FALSE(ok);
  EXPECT_EQ(f.state.rules.rules().size(), size_t(1));
  EXPECT_EQ(f.run("rule remove deny 10.1.0.0/16"), "rule deny 10.1.0.0/16 removed");
  EXPECT_TRUE(f.run("show rules").compare(0, 7, "0 rules") == 0);
  f.context.read_only = true;
  EXPECT_EQ(f.run("rule allow 10.0.0.0/8", &ok),
            "error: permission denied: rule changes balance, and this session is read-only (-G)");
  EXPECT_TRUE(f.state.rules.rules().empty());
}

TEST(kill_and_quit) {
  Fixture f;
  EXPECT_EQ(f.run("quit"), "bye");
  EXPECT_TRUE(f.context.quit);
  EXPECT_EQ(f.run("kill"), "balance stops");
  EXPECT_TRUE(f.state.stopping);
}

TEST(socket_path_derivation) {
  Options options;
  options.port = "3632";
  std::string path, dir, err;
  EXPECT_TRUE(control_socket_path(options, &path, &dir, &err));
  EXPECT_TRUE(path.size() > dir.size());
  EXPECT_EQ(path.substr(path.size() - 10), "/3632.sock");
  options.bind_address = "::1";
  EXPECT_TRUE(control_socket_path(options, &path, &dir, &err));
  EXPECT_EQ(path.substr(path.size() - 14), "/::1_3632.sock");
  options.socket_path = "/tmp/x.sock";
  EXPECT_TRUE(control_socket_path(options, &path, &dir, &err));
  EXPECT_EQ(path, "/tmp/x.sock");
  EXPECT_EQ(dir, "");
}

// Reads pieces up to the end of one reply; "" with *ok false at TooLong.
std::string one_reply(ReplyReader& reader, bool* error, bool* ok) {
  std::string reply, piece;
  *ok = true;
  for (;;) {
    ReplyReader::Event event = reader.next(&piece);
    if (event == ReplyReader::Event::Text) {
      reply += piece;
      *error = reader.error();
      continue;
    }
    *ok = event == ReplyReader::Event::End;
    return reply;
  }
}

TEST(reply_reader_splits_replies_in_pieces_of_any_line_length) {
  ReplyReader reader(100);
  std::string input = "one\ntwo\n\n\nerror: x\n\n" + std::string(60, 'j') + "\n\n";
  bool error = false, ok = false;
  // Fed a byte at a time: pieces never hold a whole long line back.
  std::vector<std::string> replies;
  std::string current, piece;
  for (char ch : input) {
    reader.feed(&ch, 1);
    for (;;) {
      ReplyReader::Event event = reader.next(&piece);
      if (event == ReplyReader::Event::None) break;
      if (event == ReplyReader::Event::Text) current += piece;
      if (event == ReplyReader::Event::End) {
        replies.push_back(current + (reader.error() ? "!" : ""));
        current.clear();
      }
    }
  }
  EXPECT_EQ(replies.size(), size_t(4));
  EXPECT_EQ(replies[0], "one\ntwo\n");
  EXPECT_EQ(replies[1], "");  // an empty reply
  EXPECT_EQ(replies[2], "error: x\n!");
  EXPECT_EQ(replies[3], std::string(60, 'j') + "\n");
  std::string too_long(101, 'x');
  reader.feed(too_long.data(), too_long.size());
  EXPECT_EQ(one_reply(reader, &error, &ok), "");
  EXPECT_FALSE(ok);
}

TEST(line_framer_bounds_lines_and_gives_up_on_endless_ones) {
  LineFramer framer(8, 32);
  std::string in = "version\nabcdefghijkl\nshow\n", line;
  EXPECT_TRUE(framer.next(&in, &line) == LineFramer::Event::Line);
  EXPECT_EQ(line, "version");
  EXPECT_TRUE(framer.next(&in, &line) == LineFramer::Event::TooLong);
  EXPECT_TRUE(framer.next(&in, &line) == LineFramer::Event::Line);
  EXPECT_EQ(line, "show");
  EXPECT_TRUE(framer.next(&in, &line) == LineFramer::Event::None);
  in = std::string(20, 'y');  // an unended long line: dropped as it comes
  EXPECT_TRUE(framer.next(&in, &line) == LineFramer::Event::None);
  EXPECT_TRUE(in.empty());
  in = std::string(20, 'y');
  EXPECT_TRUE(framer.next(&in, &line) == LineFramer::Event::Abandon);
}

TEST(http_head_framing) {
  EXPECT_TRUE(http_head_state("GET / HTTP/1.0\r\n", 100) == HeadState::Incomplete);
  EXPECT_TRUE(http_head_state("GET / HTTP/1.0\r\n\r\n", 100) == HeadState::Complete);
  EXPECT_TRUE(http_head_state("GET / HTTP/1.0\n\n", 100) == HeadState::Complete);
  EXPECT_TRUE(http_head_state(std::string(101, 'x'), 100) == HeadState::TooLarge);
}

TEST_MAIN()
