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

CommandKind kind_of(const std::string& line) {
  Command command;
  bool empty = false;
  std::string err;
  EXPECT_TRUE(parse_command(line, &command, &empty, &err));
  return command.kind;
}

// A state with group 0 = two channels on 127.0.0.1 (9001 maxc 2, 9002).
struct Fixture {
  State state;
  Session session;
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
    bool empty = false, ok = true;
    std::string err;
    if (!parse_command(line, &command, &empty, &err)) {
      if (ok_out) *ok_out = false;
      return "error: " + err;
    }
    std::string reply = execute(command, session, state, &ok);
    if (ok_out) *ok_out = ok;
    return reply;
  }
  Channel& channel(size_t group, unsigned number) { return *state.pool.groups()[group]->find(number); }
};

}  // namespace

TEST(keywords_and_unambiguous_prefixes) {
  EXPECT_TRUE(kind_of("show") == CommandKind::Show);
  EXPECT_TRUE(kind_of("sh") == CommandKind::Show);
  EXPECT_TRUE(kind_of("  en   1 ") == CommandKind::Enable);
  EXPECT_TRUE(kind_of("dis 1") == CommandKind::Disable);
  EXPECT_TRUE(kind_of("del 1") == CommandKind::Delete);
  EXPECT_TRUE(kind_of("?") == CommandKind::Help);
  EXPECT_TRUE(kind_of("mrtg-b 0 1") == CommandKind::MrtgBytes);
  EXPECT_TRUE(kind_of("q") == CommandKind::Quit);
  EXPECT_TRUE(kind_of("show json\r") == CommandKind::Show);
  EXPECT_EQ(parse_error("d 1"), "ambiguous command \"d\": disable delete");
  EXPECT_EQ(parse_error("h"), "ambiguous command \"h\": help hash");
  EXPECT_EQ(parse_error("frobnicate"), "unknown command \"frobnicate\"; type help for the list");
}

TEST(arguments_are_checked_strictly) {
  EXPECT_EQ(parse_error("enable"), "usage: enable C");
  EXPECT_EQ(parse_error("enable 1 2"), "usage: enable C");
  EXPECT_EQ(parse_error("enable -1"), "channel \"-1\" must be a channel number");
  EXPECT_EQ(parse_error("enable 99999999999999999999"),
            "channel \"99999999999999999999\" must be a channel number");
  EXPECT_EQ(parse_error("maxc 0 1000001"), "maxc \"1000001\" must be an integer from 0 to 1000000");
  EXPECT_EQ(parse_error("weight 0 0"), "weight \"0\" must be an integer from 1 to 1000000");
  EXPECT_EQ(parse_error("show xml"), "show takes json, csv or queue, not \"xml\"");
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
  for (const char* name : {"help", "show", "group", "rr", "hash", "enable", "disable", "create",
                           "assign", "maxc", "weight", "delete", "reset", "mrtg-bytes",
                           "mrtg-conns", "version", "kill", "quit"})
    EXPECT_TRUE(help.find(std::string("\n  ") + name) != std::string::npos);
  EXPECT_TRUE(help.find("\n\n") == std::string::npos);
}

TEST(enable_disable_and_errors) {
  Fixture f;
  bool ok = true;
  EXPECT_EQ(f.run("disable 1", &ok), "channel 1 disabled");
  EXPECT_TRUE(ok);
  EXPECT_TRUE(f.channel(0, 1).admin == AdminState::Disabled);
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
  EXPECT_TRUE(f.state.pool.groups()[1]->type == GroupType::Hash);
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
  EXPECT_TRUE(created.admin == AdminState::Disabled);
  EXPECT_EQ(created.config.maxc, 4u);
  EXPECT_EQ(created.config.weight, 2u);
  EXPECT_EQ(created.config.address.port(), 9003);
  EXPECT_EQ(f.run("delete 1"), "channel 1 deleted");
  EXPECT_EQ(f.run("create [::1] 9004"), "channel 3 created in group 0, disabled; enable it to use it");
  EXPECT_EQ(f.channel(0, 3).config.address.host_text(), "::1");
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
  EXPECT_EQ(f.channel(0, 0).config.address.port(), 9100);
}

TEST(maxc_weight_reset) {
  Fixture f;
  EXPECT_EQ(f.run("maxc 1 5"), "maxc of channel 1 set to 5");
  EXPECT_EQ(f.channel(0, 1).config.maxc, 5u);
  EXPECT_EQ(f.run("weight 1 7"), "weight of channel 1 set to 7");
  EXPECT_EQ(f.channel(0, 1).config.weight, 7u);
  f.channel(0, 1).sent = 10;
  f.channel(0, 1).total_connections = 3;
  EXPECT_EQ(f.run("reset 1"), "channel 1 counters reset");
  EXPECT_EQ(f.channel(0, 1).sent, uint64_t(0));
  EXPECT_EQ(f.channel(0, 1).total_connections, uint64_t(0));
}

TEST(mrtg_four_lines) {
  Fixture f;
  f.channel(0, 1).received = 123;
  f.channel(0, 1).sent = 456;
  f.channel(0, 1).total_connections = 9;
  EXPECT_EQ(f.run("mrtg-bytes 0 1"), "123\n456\nUNKNOWN\ngroup 0 channel 1");
  EXPECT_EQ(f.run("mrtg-conns 0 1"), "9\nUNKNOWN\nUNKNOWN\ngroup 0 channel 1");
  bool ok = true;
  EXPECT_EQ(f.run("mrtg-conns 4 1", &ok), "error: no channel 1 in group 4");
}

TEST(show_forms) {
  Fixture f;
  f.run("disable 1");
  std::string show = f.run("show");
  EXPECT_TRUE(show.compare(0, 18, "GRP Type   # S    ") == 0);
  EXPECT_TRUE(show.find("DIS") != std::string::npos);
  EXPECT_TRUE(show.find("queue: 0 waiting") != std::string::npos);
  EXPECT_TRUE(show.find("\n\n") == std::string::npos);
  std::string csv = f.run("show csv");
  EXPECT_TRUE(csv.compare(0, 28, "group,type,channel,state,hos") == 0);
  EXPECT_TRUE(csv.find("\n0,rr,1,DIS,127.0.0.1,127.0.0.1,9002,0,0,0,1,") != std::string::npos);
  std::string json = f.run("show json");
  EXPECT_TRUE(json.find("\"channels\":[{\"channel\":0,\"state\":\"ENA\"") != std::string::npos);
  EXPECT_TRUE(json.find('\n') == std::string::npos);
  EXPECT_TRUE(f.run("show queue").compare(0, 9, "0 waiting") == 0);
}

TEST(kill_and_quit) {
  Fixture f;
  EXPECT_EQ(f.run("quit"), "bye");
  EXPECT_TRUE(f.session.quit);
  EXPECT_EQ(f.run("kill"), "balance stops");
  EXPECT_TRUE(f.state.stopping);
}

TEST(http_routes) {
  Fixture f;
  std::string root = http_response("GET / HTTP/1.1\r\nHost: x\r\n\r\n", f.state);
  EXPECT_TRUE(root.compare(0, 15, "HTTP/1.0 200 OK") == 0);
  EXPECT_TRUE(root.find("GRP Type") != std::string::npos);
  std::string metrics = http_response("GET /metrics HTTP/1.1\r\n\r\n", f.state);
  EXPECT_TRUE(metrics.find("balance_channel_up{group=\"0\",channel=\"1\",address=\"127.0.0.1\",port=\"9002\"} 1") !=
              std::string::npos);
  EXPECT_TRUE(http_response("GET /nope HTTP/1.0\r\n\r\n", f.state).compare(0, 12, "HTTP/1.0 404") == 0);
  EXPECT_TRUE(http_response("POST / HTTP/1.0\r\n\r\n", f.state).compare(0, 12, "HTTP/1.0 405") == 0);
  EXPECT_TRUE(http_response("garbage\r\n\r\n", f.state).compare(0, 12, "HTTP/1.0 400") == 0);
  std::string head = http_response("HEAD / HTTP/1.0\r\n\r\n", f.state);
  EXPECT_TRUE(head.find("GRP") == std::string::npos);
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

TEST_MAIN()
